"""One run over 2 gloo processes (torchrun) on the CPU: the single-process loss curve, resume after a kill,
rank 0 alone writes, and the one-line refusals."""

from __future__ import annotations

import os
import textwrap

import pytest

from curriculab.config import ConfigError, ExecutorParams, Params, RunsFailed, identity
from curriculab.executor import run_all
from curriculab.tables.spec import expand_table, get_spec

# LeNet has no BatchNorm and no dropout: the 2 ranks together compute the single-process batch
TABLE = {"seeds": [0], "rows": {"baseline": {"methods": {"baseline": {}}}},
         "run": {"model": {"name": "lenet", "width": 0.5}, "data": {"dataset": "digits", "subset_per_class": 30},
                 "train": {"epochs": 3, "batch_size": 49, "device": "cpu",  # 300 items: slices of 24 and 25
                           "optimizer": {"name": "adam", "lr": 0.003}}}}
# Not promised bit-identical: DDP averages two slice-sum gradients (scaled by 2/49) where one process takes
# one batch mean, and the logged loss is summed in another order; float32 rounding may differ from the first
# step on and compound. Observed here: train_loss within 1e-7 relative, val/test metrics equal. 1e-4 leaves room.
RTOL = 1e-4
CURVE = ("train_loss", "train_acc", "val_loss", "val_acc", "test_acc")
# Run in every torchrun worker (sitecustomize): rank != 0 logs any write under the project; with
# DDP_TEST_KILL_EPOCH set, every rank dies abruptly before that (0-based) epoch is evaluated or saved.
HOOK = '''
import os, sys
if "RANK" in os.environ:
    log = os.environ["DDP_TEST_LOG"]
    if os.environ["RANK"] != "0":
        root = os.environ["DDP_TEST_WATCH"]
        def audit(event, args):
            if event in ("open", "os.rename", "os.replace", "os.mkdir", "os.remove"):
                path = str(args[1] if event in ("os.rename", "os.replace") else args[0])
                mode, flags = (args[1], args[2]) if event == "open" else ("w", 0)
                writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                    isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
                if writes and path.startswith(root) and path != log:
                    with open(log, "a") as f:
                        f.write(f"{event} {path}\\n")
        sys.addaudithook(audit)
    kill = os.environ.get("DDP_TEST_KILL_EPOCH")
    if kill:
        from curriculab.engine import loop
        real = loop.test_epoch
        def killing_test_epoch(run, state, *a):
            if state.epoch == int(kill):
                os._exit(1)
            return real(run, state, *a)
        loop.test_epoch = killing_test_epoch
'''


def _runs(ddp=None, table=TABLE, **row):
    block = {**table, "run": {**table["run"], "train": {**table["run"]["train"], "ddp": ddp}}}
    if row:
        block = {**block, "rows": {"r": row}}
    params = Params.model_validate({"prepare": {"datasets": ["digits"]}, "tables": {"baseline": block}})
    return expand_table(get_spec("baseline"), params)


def _project(tmp_path, workdir, name):
    d = tmp_path / name
    d.mkdir()
    (d / "data").symlink_to(workdir / "data")
    return d


@pytest.fixture(scope="module")
def ddp_env(tmp_path_factory):
    """Environment for the torchrun workers: the HOOK on their path, where to watch and log."""
    tmp = tmp_path_factory.mktemp("ddp")
    (tmp / "hook").mkdir()
    (tmp / "hook" / "sitecustomize.py").write_text(textwrap.dedent(HOOK))
    mp = pytest.MonkeyPatch()
    mp.setenv("PYTHONPATH", os.pathsep.join([str(tmp / "hook"), os.environ.get("PYTHONPATH", "")]))
    mp.setenv("DDP_TEST_WATCH", str(tmp))
    mp.setenv("DDP_TEST_LOG", str(tmp / "writes.log"))
    yield tmp, mp
    mp.undo()


def _pair(root, tmp, name, **row):
    """The run in one process and over 2 gloo processes, each in its own project under tmp/name."""
    single = run_all(_runs(**row), _project(tmp, root, f"{name}1"), ExecutorParams())[0]
    ddp = run_all(_runs(2, **row), _project(tmp, root, f"{name}2"), ExecutorParams())[0]
    return {"single": single, "ddp": ddp, "dir": _runs(2, **row)[0].dir(tmp / f"{name}2"), "log": tmp / "writes.log"}


def _assert_same_curve(single: dict, ddp: dict, keys=CURVE):
    assert ddp["status"] == "done" and len(single["history"]) == len(ddp["history"]) == 3
    for a, b in zip(single["history"], ddp["history"], strict=True):
        assert a["train_seen"] == b["train_seen"]  # the ranks' slices add up to the whole epoch
        for k in (k for k in keys if k in a or k in b):  # a method's metric may start in a later epoch
            assert b[k] == pytest.approx(a[k], rel=RTOL), (a["epoch"], k)
    assert single["history"][-1]["train_loss"] < single["history"][0]["train_loss"] - 0.05  # it trained


@pytest.fixture(scope="module")
def trained(prepared_root, ddp_env):
    return _pair(prepared_root, ddp_env[0], "baseline")


def test_the_ddp_loss_curve_matches_one_process_with_the_same_global_batch(trained):
    _assert_same_curve(trained["single"], trained["ddp"])


def test_data_parameters_under_ddp_take_the_one_process_steps(prepared_root, ddp_env):
    got = _pair(prepared_root, ddp_env[0], "dp", methods={"data_parameters": {"curriculum": "joint"}})
    _assert_same_curve(got["single"], got["ddp"], CURVE + ("dp_class_sigma_std", "dp_inst_sigma_std"))
    assert got["ddp"]["history"][-1]["dp_inst_sigma_std"] > 0  # σ^inst moved (global ids, both ranks' rows)


@pytest.mark.slow  # two more torchrun launches (~45 s on 2 busy cores)
def test_a_killed_ddp_run_resumes_and_ends_as_an_uninterrupted_one(trained, prepared_root, ddp_env):
    import json

    tmp, mp = ddp_env
    killed = _project(tmp, prepared_root, "killed")
    mp.setenv("DDP_TEST_KILL_EPOCH", "1")
    try:
        with pytest.raises(RunsFailed, match=r"^\S+ run \w+ \(baseline, all, seed 0\): RuntimeError: its 2 DDP "
                                             r"processes failed \(exit 1\): a worker died without a traceback; ") as e:
            run_all(_runs(2), killed, ExecutorParams())
        assert str(e.value).count("seed 0") == 1  # the run is named once
    finally:
        mp.delenv("DDP_TEST_KILL_EPOCH")
    d = _runs(2)[0].dir(killed)
    assert len(json.loads((d / "metrics.json").read_text())["history"]) == 1  # died in epoch 2; epoch 1 saved
    resumed = run_all(_runs(2), killed, ExecutorParams())[0]

    def strip(rec):
        return [{k: v for k, v in h.items() if k != "seconds"} for h in rec["history"]]

    assert strip(resumed) == strip(trained["ddp"]) and resumed["final"] == trained["ddp"]["final"]


def test_only_rank_0_writes(trained):
    assert not trained["log"].exists(), trained["log"].read_text()  # the hook logs rank 1's writes
    assert {p.name for p in trained["dir"].iterdir()} >= {"metrics.json", "checkpoint.pt", "config.yaml"}


def test_a_ddp_run_has_its_own_run_id_and_a_single_run_keeps_its_id():
    from curriculab.config import stable_hash
    from curriculab.fingerprint import code_fingerprint

    single, ddp = _runs()[0], _runs(2)[0]
    assert single.run_id != ddp.run_id
    assert "ddp" not in identity(single.config)["train"] and identity(ddp.config)["train"]["ddp"] == 2
    dump = single.config.model_dump(mode="json")
    del dump["train"]["ddp"]  # the id of a one-process run is what it was before train.ddp existed
    assert single.run_id == stable_hash({"config": dump, "code": code_fingerprint(single.config.methods)})


def _one_line(capsys, argv) -> str:
    from curriculab.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    return err


@pytest.mark.parametrize("flag", [["--ddp"], ["--ddp", "1"]])
def test_ddp_without_a_process_count_on_one_device_is_one_line(tmp_path, capsys, monkeypatch, flag):
    import torch
    import yaml

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"prepare": {"datasets": ["digits"]},
                                                          "tracking": {"enabled": False},
                                                          "tables": {"baseline": TABLE}}))
    err = _one_line(capsys, ["--params", str(tmp_path / "params.yaml"), "--workdir", str(tmp_path),
                             "train", "baseline", *flag])
    assert "--ddp" in err and ("process count" in err or "at least 2" in err)


def test_a_process_count_below_2_in_the_settings_is_refused():
    with pytest.raises(ConfigError, match=r"train\.ddp"):
        _runs(1)


def test_a_method_that_cannot_run_under_ddp_is_refused_before_any_process_starts(workdir):
    runs = _runs(2, methods={"mixup": {}})
    with pytest.raises(ConfigError, match=r"^methods\.mixup: .*DDP") as e:
        run_all(runs, workdir, ExecutorParams())
    assert "\n" not in str(e.value)
    assert not (workdir / "runs").exists()


def test_ddp_runs_on_the_ray_backend_are_refused(workdir):
    with pytest.raises(ConfigError, match=r"^train\.ddp: .*executor\.backend: local"):
        run_all(_runs(2), workdir, ExecutorParams(backend="ray"))


def test_more_nccl_processes_than_gpus_are_refused_before_any_process_starts(workdir, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    table = {**TABLE, "run": {**TABLE["run"], "train": {**TABLE["run"]["train"], "device": "cuda"}}}
    with pytest.raises(ConfigError, match=r"^train\.ddp: 2 NCCL processes need 2 GPUs .* 1 visible; "):
        run_all(_runs(2, table=table), workdir, ExecutorParams())
    assert not (workdir / "runs").exists()


@pytest.mark.slow  # one more pair of runs (~25 s)
def test_spl_advise_under_ddp_selects_as_one_process(prepared_root, ddp_env):
    spl = {"clusters": "pixels", "k": 2, "start_fraction": 0.5, "beta1": 0.5}  # paced in epochs 2 and 3
    got = _pair(prepared_root, ddp_env[0], "spl", methods={"spl_advise": spl})
    _assert_same_curve(got["single"], got["ddp"], CURVE + ("spl_selected_fraction", "spl_lambda"))
    assert got["ddp"]["history"][1]["spl_selected_fraction"] < 1 and "spl_lambda" in got["ddp"]["history"][1]


@pytest.mark.parametrize("params", [{"losses": "last_epoch"}, {"clusters": "adaptive", "embedding": {}}])
def test_spl_advise_settings_that_cannot_run_under_ddp_are_refused(workdir, params):
    with pytest.raises(ConfigError, match=r"^methods\.spl_advise: (losses|clusters): .* under DDP"):
        run_all(_runs(2, methods={"spl_advise": {"k": 2, "clusters": "pixels", **params}}), workdir,
                ExecutorParams())
