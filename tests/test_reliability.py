"""Faults: untrusted checkpoints, truncated files, unwritable or full disks, non-finite settings."""

from __future__ import annotations

import json
import os

import pytest
import torch

from curriculab.cli import main
from curriculab.config import ConfigError, RunConfig
from curriculab.engine.checkpoint import load_checkpoint
from curriculab.engine.loop import fit
from curriculab.methods.base import Method
from curriculab.tables.spec import TableSpec, register_table
from tests.test_guards import Disk

FAIL: list = []  # the aggregate test's figure fails while this is not empty


def _figure(res, out):
    if FAIL:
        raise RuntimeError("figure failed")
    out.mkdir(parents=True, exist_ok=True)
    (out / "test.agg.png").write_bytes(b"png")
    return [out / "test.agg.png"]


register_table(TableSpec(id="test.diverged", title="diverged runs", source="harness", metrics=["test_acc"],
                         notes="A note."))
register_table(TableSpec(id="test.agg", title="aggregate", source="harness", metrics=["test_acc"],
                         figures=[_figure]))

RUN = {"data": {"dataset": "digits", "subset_per_class": 10}, "model": {"name": "small_cnn", "width": 0.25},
       "train": {"epochs": 2, "batch_size": 32}}


class _Payload:
    """Unpickling this runs a shell command."""

    def __init__(self, cmd: str):
        self.cmd = cmd

    def __reduce__(self):
        return os.system, (self.cmd,)


def test_malicious_checkpoint_is_refused_and_never_runs(workdir, tmp_path):
    marker = tmp_path / "pwned"
    run_dir = workdir / "r"
    run_dir.mkdir()
    ck = run_dir / "checkpoint.pt"
    torch.save({"model": _Payload(f"touch {marker}")}, ck)
    with pytest.raises(ConfigError) as e:
        load_checkpoint(ck, torch.device("cpu"))
    msg = str(e.value)
    assert str(ck) in msg and "\n" not in msg and "delete it" in msg
    with pytest.raises(ConfigError, match="refused"):
        fit(RunConfig.model_validate(RUN), run_dir, workdir)
    assert not marker.exists()


def test_own_checkpoints_load_with_weights_only(workdir):
    fit(RunConfig.model_validate({**RUN, "methods": {"data_parameters": {"curriculum": "joint"}}}), workdir / "r",
        workdir)
    ck = load_checkpoint(workdir / "r" / "checkpoint.pt", torch.device("cpu"))
    assert ck["record"]["status"] == "done" and ck["methods"][0]["inst_log"] is not None


def test_truncated_checkpoint_is_one_line_naming_the_file(workdir):
    run = RunConfig.model_validate(RUN)
    d = workdir / "r"
    fit(run, d, workdir)
    ck = d / "checkpoint.pt"
    ck.write_bytes(ck.read_bytes()[: ck.stat().st_size // 3])
    (d / "metrics.json").unlink()  # as if killed before its first metrics.json
    with pytest.raises(ConfigError) as e:
        fit(run, d, workdir)
    msg = str(e.value)
    assert msg.startswith(f"{ck}: truncated or corrupt") and "\n" not in msg and "delete it" in msg


def test_safe_load_defaults_and_the_reason_in_its_message(tmp_path):
    """On the CPU by default; a corrupt file's message carries torch's first line and the default fix."""
    from curriculab.engine.checkpoint import safe_load

    path = tmp_path / "x.pt"
    torch.save({"w": torch.arange(3)}, path)
    assert torch.equal(safe_load(path)["w"], torch.arange(3))
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(Exception) as raw:
        torch.load(path, weights_only=True)
    reason = str(raw.value).strip().splitlines()[0][:80]
    with pytest.raises(ConfigError) as e:
        safe_load(path)
    assert str(e.value) == f"{path}: truncated or corrupt ({reason}); delete it and run the command again"


def _params_file(tmp_path, table: dict | None = None, **top) -> str:
    import yaml

    block = table or {"seeds": [0], "run": {**RUN, "train": {"epochs": 1, "batch_size": 32}},
                      "columns": {"digits": {}}, "rows": {"baseline": {"methods": {"baseline": {}}}}}
    p = {"prepare": {"datasets": ["digits", "syndigits"]}, "tracking": {"enabled": False},
         "executor": {"workers": 1}, "tables": {"baseline": block}, **top}
    f = tmp_path / "params.yaml"
    f.write_text(yaml.safe_dump(p))
    return str(f)


@pytest.mark.parametrize("fault,expect", [("full", "no space left on the device"), ("readonly", "cannot write")])
def test_full_disk_and_read_only_runs_are_one_line(workdir, tmp_path, monkeypatch, capsys, fault, expect):
    import curriculab.data.prepared as prepared

    params = _params_file(tmp_path)
    monkeypatch.setattr(prepared, "tempfile", Disk(fault))
    assert main(["--params", params, "--workdir", str(workdir), "train", "baseline"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and expect in err and str(workdir / "runs" / "baseline") in err
    assert "run the command again" in err


def test_truncated_meta_json_is_one_line(workdir, tmp_path):
    import shutil

    from curriculab.data.prepared import dataset_dir

    data = tmp_path / "proj" / "data"
    shutil.copytree(workdir / "data", data)
    meta = dataset_dir(data, "digits") / "meta.json"
    meta.write_text(meta.read_text()[:40])
    with pytest.raises(ConfigError) as e:
        fit(RunConfig.model_validate(RUN), tmp_path / "proj" / "r", tmp_path / "proj")
    msg = str(e.value)
    assert msg.startswith(f"{meta}: truncated or corrupt") and "prepare" in msg and "\n" not in msg


def test_metrics_json_is_valid_json_whatever_the_numbers(tmp_path):
    from curriculab.data.prepared import atomic_write_json

    atomic_write_json(tmp_path / "m.json", {"a": float("nan"), "b": [float("inf"), 1.5], "c": {"d": -float("inf")}})
    text = (tmp_path / "m.json").read_text()
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in JSON")) == \
        {"a": None, "b": [None, 1.5], "c": {"d": None}}


def test_diverged_runs_are_named_and_never_in_a_mean(tmp_path):
    from curriculab.config import Params
    from curriculab.data.prepared import atomic_write_json
    from curriculab.tables.report import render_table
    from curriculab.tables.result import load_result
    table = {"seeds": [0, 1, 2], "rows": {"plain": {}}, "columns": {"digits": {"data": {"dataset": "digits"}}}}
    params = Params.model_validate({"prepare": {"datasets": ["digits"]}, "tables": {"test_diverged": table}})
    res = load_result("test.diverged", params, tmp_path)
    for run in res.runs:
        bad = run.seed == 2
        atomic_write_json(run.dir(tmp_path) / "metrics.json", {
            "status": "diverged" if bad else "done", "final": {"test_acc": 0.1139 if bad else [0.9, 0.92][run.seed]},
            "history": [{"epoch": 1, "train_loss": float("nan") if bad else 0.5}], "artifacts": [{}]})
    md, summary, _ = render_table(load_result("test.diverged", params, tmp_path))
    assert "| plain | 91.00 ± 1.41 (2) · 1 diverged |" in md
    assert "Runs finished: 2 of 3; 1 diverged" in md
    bad = res.runs[2]
    notes = md.split("## Notes")[1]
    assert "A note." in notes and f"plain / digits / seed 2 (run {bad.run_id}, epoch 1)" in notes
    assert summary.iloc[0]["n"] == 2 and summary.iloc[0]["mean"] == pytest.approx(91.0)  # in %, as the markdown


@pytest.mark.parametrize("where,text", [
    ("tables.baseline.run.train.optimizer.lr", "lr: .inf"),
    ("tables.baseline.rows.baseline.model.kwargs.scale", "kwargs: {scale: .nan}"),
])
def test_validation_rejects_non_finite_numbers(tmp_path, capsys, where, text):
    import yaml

    table = {"seeds": [0], "run": RUN, "columns": {"digits": {}}, "rows": {"baseline": {"model": {}}}}
    params = _params_file(tmp_path, table)
    p = yaml.safe_load(open(params))
    key, value = text.split(": ", 1)
    node = p
    for part in where.split(".")[:-1] if key == "lr" else where.split(".")[:-2]:
        node = node.setdefault(part, {})
    node[key] = "@@"
    open(params, "w").write(yaml.safe_dump(p).replace("'@@'", value))
    assert main(["validate", params]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {where}: expected a finite number") and "\n" not in err


def test_a_failing_aggregate_leaves_every_report_in_place(tmp_path):
    from curriculab.config import Params
    from curriculab.data.prepared import atomic_write_json
    from curriculab.tables.report import aggregate, load_result

    FAIL.clear()
    table = {"seeds": [0], "rows": {"plain": {}}, "columns": {"digits": {"data": {"dataset": "digits"}}}}
    params = Params.model_validate({"prepare": {"datasets": ["digits"]}, "tables": {"test_agg": table}})
    (run,) = load_result("test.agg", params, tmp_path).runs
    atomic_write_json(run.dir(tmp_path) / "metrics.json", {"status": "done", "final": {"test_acc": 0.5},
                                                           "history": [], "artifacts": []})
    reports = tmp_path / "reports"
    (reports / "tables").mkdir(parents=True)
    (reports / "tables" / "gone.md").write_text("a table no longer in params")
    aggregate(params, tmp_path, reports)
    files = {p.relative_to(reports): p.read_bytes() for p in reports.rglob("*") if p.is_file()}
    assert set(map(str, files)) == {"README.md", "metrics.json", "tables/test.agg.md", "tables/test.agg.csv",
                                    "figures/test.agg.png"}
    FAIL.append(1)
    with pytest.raises(RuntimeError, match="figure failed"):
        aggregate(params, tmp_path, reports)
    assert {p.relative_to(reports): p.read_bytes() for p in reports.rglob("*") if p.is_file()} == files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reports", "runs"]  # no staging folder left


def test_two_trainers_on_one_table_train_each_run_once(workdir, monkeypatch):
    import threading

    import curriculab.engine.loop as loop
    from curriculab.config import ExecutorParams, Params
    from curriculab.executor import BUSY, run_all
    from curriculab.tables.spec import expand_table, get_spec

    table = {"seeds": [0, 1], "run": {**RUN, "train": {"epochs": 1, "batch_size": 32}},
             "columns": {"digits": {}}, "rows": {"baseline": {}}}
    params = Params.model_validate({"prepare": {"datasets": ["digits"]}, "tables": {"baseline": table}})
    runs = expand_table(get_spec("baseline"), params)
    real, trained = loop.fit, []
    first_holds, second_done = threading.Event(), threading.Event()

    def fit(run, run_dir, *a, **k):
        trained.append(run_dir.name)
        if len(trained) == 1:  # the first trainer keeps the first run until the second has tried it
            first_holds.set()
            assert second_done.wait(60)
        return real(run, run_dir, *a, **k)

    monkeypatch.setattr(loop, "fit", fit)
    first: list = []
    t = threading.Thread(target=lambda: first.extend(run_all(runs, workdir, ExecutorParams(workers=1))))
    t.start()
    assert first_holds.wait(60)
    second = run_all(runs, workdir, ExecutorParams(workers=1))
    second_done.set()
    t.join(60)
    assert sorted(trained) == sorted(r.run_id for r in runs)  # each run trained exactly once
    assert second[0] == {"run_id": runs[0].run_id, "status": BUSY, "holder": os.getpid()}
    assert second[1]["status"] == "done" and [r["status"] for r in first] == ["done", "done"]
    assert not list((workdir / "runs" / "baseline").glob("*.lock"))  # released


def test_a_dead_holders_lock_is_taken_over(tmp_path):
    import subprocess
    import sys

    from curriculab.runlock import RunLock

    lock = tmp_path / "run.lock"
    code = f"from curriculab.runlock import RunLock; import os; RunLock({str(lock)!r}).acquire(); os._exit(0)"
    subprocess.run([sys.executable, "-c", code], check=True)  # dies holding it: the file stays
    assert lock.is_file()
    with RunLock(lock) as holder:
        assert holder is None and lock.read_text().strip() == str(os.getpid())
        assert RunLock(lock).acquire() == os.getpid()  # a second holder is refused, told who holds it
    assert not lock.exists()


def test_stage_processes_die_with_their_parent(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    child = ("from curriculab.runlock import die_with_parent; import time; die_with_parent(); "
             "print('ready', flush=True); time.sleep(120)")
    parent = (f"import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', {child!r}], stdout=sys.stdout); "
              "print(p.pid, flush=True); p.wait()")
    proc = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True)
    pid = int(proc.stdout.readline())
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        try:  # reaped by init in a container? a zombie counts as dead
            if open(f"/proc/{pid}/stat").read().split()[2] == "Z":
                break
        except OSError:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        pytest.fail("the child outlived its parent")


def test_an_unknown_table_is_named_as_typed(tmp_path, capsys):
    assert main(["--params", _params_file(tmp_path), "train", "../../x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: table: unknown table '../../x'") and "__" not in err


def test_mlflow_steps_are_the_epochs(workdir, tmp_path):
    import mlflow

    from curriculab.config import TrackingParams
    from curriculab.tracking import tracking_uri

    table = {"seeds": [0], "run": {**RUN, "train": {"epochs": 3, "batch_size": 64}}, "rows": {"baseline": {}}}
    params = _params_file(tmp_path, table, tracking={"enabled": True})
    assert main(["--params", params, "--workdir", str(workdir), "train", "baseline"]) == 0
    record = json.loads(next((workdir / "runs" / "baseline").glob("*/metrics.json")).read_text())
    mlflow.set_tracking_uri(tracking_uri(workdir, TrackingParams()))
    df = mlflow.search_runs(experiment_names=["baseline"])
    child = df[df["tags.run_id"] == record["run_id"]].iloc[0]["run_id"]
    hist = mlflow.MlflowClient().get_metric_history(child, "val_acc")
    assert sorted(m.step for m in hist) == [1, 2, 3]
    assert [m.value for m in sorted(hist, key=lambda m: m.step)] == [h["val_acc"] for h in record["history"]]


@pytest.mark.slow  # two processes importing MLflow
def test_two_trainers_log_each_run_once(workdir, tmp_path):
    import subprocess
    import sys

    import mlflow
    import yaml

    from curriculab.config import TrackingParams
    from curriculab.tracking import init_store, tracking_uri

    params = _params_file(tmp_path)
    p = yaml.safe_load(open(params))
    p["tracking"] = {"enabled": True}
    p["tables"]["baseline"]["seeds"] = [0, 1]
    open(params, "w").write(yaml.safe_dump(p))
    argv = ["--params", params, "--workdir", str(workdir), "train", "baseline"]
    p["tracking"]["enabled"] = False
    quiet = tmp_path / "quiet.yaml"
    quiet.write_text(yaml.safe_dump(p))
    assert main(["--params", str(quiet), "--workdir", str(workdir), "train", "baseline"]) == 0  # trained, not logged
    init_store(workdir, TrackingParams())
    cmd = [sys.executable, "-c", f"import sys; from curriculab.cli import main; sys.exit(main({argv!r}))"]
    env = {**os.environ, "CI": "1", "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(2)]
    outs = [proc.communicate(timeout=300)[0].decode() for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), outs
    mlflow.set_tracking_uri(tracking_uri(workdir, TrackingParams()))
    df = mlflow.search_runs(experiment_names=["baseline"])
    children = df[df["tags.run_id"].notna()]
    assert len(children) == 2 and children["tags.run_id"].nunique() == 2


def test_an_empty_params_file_says_so(tmp_path, capsys):
    (tmp_path / "params.yaml").write_text("# nothing here\n")
    assert main(["validate", str(tmp_path / "params.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {tmp_path / 'params.yaml'}: the file is empty") and "\n" not in err


def test_metrics_json_holds_no_wall_clock(workdir):
    run = RunConfig.model_validate(RUN)
    fit(run, workdir / "a", workdir)
    fit(run, workdir / "b", workdir)
    assert (workdir / "a" / "metrics.json").read_bytes() == (workdir / "b" / "metrics.json").read_bytes()
    timing = json.loads((workdir / "a" / "timing.json").read_text())
    assert len(timing["epoch_seconds"]) == 2 and timing["seconds"] == pytest.approx(sum(timing["epoch_seconds"]))


def test_pretrained_files_do_not_depend_on_the_machines_threads(prepared_root, tmp_path):
    from curriculab.config import Params
    from curriculab.methods import run_pretrain

    emb = {"model": {"name": "lenet", "width": 0.5}, "dim": 4, "clusters": 2, "m": 3, "b": 4, "iterations": 12,
           "refresh": 5, "lr": 1e-3}
    params = Params.model_validate({
        "prepare": {"datasets": ["digits"]}, "executor": {"threads": 1},
        "pretrain": {"spl_advise": {"datasets": ["digits"], "embedding": emb, "tsne_points": 60,
                                    "tsne_iterations": 250, "device": "cpu"}}})
    before, files = torch.get_num_threads(), []
    try:
        for threads in (2, 1):  # the machine's default thread count must not matter
            wd = tmp_path / f"t{threads}"
            (wd / "data").mkdir(parents=True)
            (wd / "data" / "prepared").symlink_to(prepared_root / "data" / "prepared")
            torch.set_num_threads(threads)
            run_pretrain("spl_advise", params, wd)
            d = wd / "data" / "pretrained" / "spl_advise" / "digits"
            files.append({p.name: p.read_bytes() for p in d.iterdir() if p.name != "timing.json"})
    finally:
        torch.set_num_threads(before)
    assert set(files[0]) == {"model.pt", "clusters.npz", "tsne.npz", "meta.json"}
    assert files[0] == files[1]
    assert "seconds" not in json.loads(files[0]["meta.json"])


class _BoomOnStart(Method):
    """Fails as its run starts training."""

    name = "boom_on_start"

    def on_train_start(self, state):
        raise RuntimeError("boom: this run fails by design")


def test_a_failed_run_is_named_in_one_line_and_the_others_finish(workdir, tmp_path, capsys):
    """The stage goes on with the other runs, prints the failed run's traceback, then exits 1 with one line
    naming it (row, column, seed) and its error."""
    import yaml

    table = {"seeds": [0, 1, 2], "run": {"model": {"name": "small_cnn", "width": 0.25},
                                       "train": {"epochs": 1, "batch_size": 32},
                                       "data": {"dataset": "digits", "subset_per_class": 10}},
             "rows": {"baseline": {}},
             "columns": {"ok": {"methods": {"baseline": {}}}, "bad": {"methods": {"boom_on_start": {}}}}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({
        "prepare": {"datasets": ["digits"]}, "tracking": {"enabled": False},
        "executor": {"workers": 1, "threads": 1}, "tables": {"baseline": table}}))
    code = main(["--params", str(tmp_path / "p.yaml"), "--workdir", str(workdir), "train", "baseline"])
    err = capsys.readouterr().err
    line = [x for x in err.splitlines() if x.startswith("error:")]
    assert code == 1 and len(line) == 1, err[-2000:]
    assert "baseline run" in line[0] and "(baseline, bad, seed 0)" in line[0] and "(and 2 more)" in line[0]
    assert "RuntimeError: boom: this run fails by design" in line[0] and "Traceback" in err
    done = [json.loads(p.read_text())["status"] for p in (workdir / "runs" / "baseline").glob("*/metrics.json")]
    assert done == ["done"] * 3  # the three runs of the good column


def test_a_failed_run_in_a_worker_process_is_named(workdir):
    """The worker-pool executor: a run that fails in its worker is named; the other run keeps its result."""
    from curriculab.config import ExecutorParams, Params, RunsFailed
    from curriculab.executor import run_all
    from curriculab.tables.spec import expand_table, get_spec

    table = {"seeds": [0, 1], "run": {"model": {"name": "small_cnn", "width": 0.25},
                                    "train": {"epochs": 1, "batch_size": 32},
                                    "data": {"dataset": "digits", "subset_per_class": 10}},
             "rows": {"baseline": {"methods": {"baseline": {}}}}}
    runs = expand_table(get_spec("baseline"), Params.model_validate({"prepare": {"datasets": ["digits"]},
                                                                     "tables": {"baseline": table}}))
    runs[1].config.train.batch_size = 0  # pickled into the worker as it is: the run divides by it there
    with pytest.raises(RunsFailed) as e:
        run_all(runs, workdir, ExecutorParams(workers=2, threads=1))
    msg = str(e.value)
    assert runs[1].run_id in msg and "seed 1" in msg and "ZeroDivisionError" in msg and len(msg.splitlines()) == 1
    assert json.loads((runs[0].dir(workdir) / "metrics.json").read_text())["status"] == "done"
