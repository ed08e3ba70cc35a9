"""The training loop: determinism, hooks, schedules, resume after a kill, composition rules."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager

import pytest
import torch
import yaml

from curriculab.config import ConfigError, OptimizerParams, RunConfig, ScheduleParams
from curriculab.engine.loop import fit
from curriculab.engine.optim import Schedule
from curriculab.methods import check_methods
from curriculab.methods.base import Method
from tests.conftest import ROOT

RUN = {"data": {"dataset": "digits", "subset_per_class": 30}, "model": {"name": "small_cnn", "width": 0.25},
       "train": {"epochs": 2, "batch_size": 32}}


def test_same_run_twice_is_identical(workdir):
    run = RunConfig.model_validate(RUN)
    a = fit(run, workdir / "a", workdir)
    b = fit(run, workdir / "b", workdir)
    strip = [{k: v for k, v in h.items() if k != "time"} for h in a["history"]]
    assert strip == [{k: v for k, v in h.items() if k != "time"} for h in b["history"]]
    assert a["status"] == "done" and a["final"]["epochs"] == 2
    assert json.loads((workdir / "a" / "metrics.json").read_text())["final"]["test_acc"] == a["final"]["test_acc"]
    c = fit(RunConfig.model_validate({**RUN, "seed": 1}), workdir / "c", workdir)
    assert c["history"][-1]["train_loss"] != a["history"][-1]["train_loss"]


def test_training_learns(workdir):
    run = RunConfig.model_validate({**RUN, "data": {"dataset": "digits"}, "train": {"epochs": 3, "batch_size": 32}})
    rec = fit(run, workdir / "r", workdir)
    assert rec["final"]["test_acc"] > 0.8  # far above chance (0.1) on digits


def test_best_val_selection_never_uses_test(workdir):
    from curriculab.engine.loop import summarize
    from curriculab.engine.tasks import Task

    hist = [{"epoch": 1, "val_acc": 0.5, "test_acc": 0.9, "train_acc": 0, "time": 0},
            {"epoch": 2, "val_acc": 0.7, "test_acc": 0.6, "train_acc": 0, "time": 0},
            {"epoch": 3, "val_acc": 0.6, "test_acc": 0.8, "train_acc": 0, "time": 0}]
    s = summarize(hist, Task(None))
    assert s["best_val_epoch"] == 2 and s["test_acc_at_best_val"] == 0.6 and s["test_acc"] == 0.8
    assert s["test_acc_best_epoch_oracle"] == 0.9


def test_best_val_selection_of_a_lower_is_better_metric_takes_the_lowest():
    """A task whose primary metric is a loss (the VAE's NLL): the best epoch has the lowest validation value."""
    from types import SimpleNamespace

    from curriculab.engine.loop import summarize

    hist = [{"epoch": e + 1, "val_nll": v, "test_nll": t, "train_acc": 0} for e, (v, t) in
            enumerate([(3.0, 30.0), (1.0, 12.0), (2.0, 10.0), (1.0, 11.0)])]
    s = summarize(hist, SimpleNamespace(primary="nll", higher_is_better=False))
    assert s["best_val_epoch"] == 2 and s["test_nll_at_best_val"] == 12.0  # ties: the earlier epoch
    assert s["test_nll_best_epoch_oracle"] == 10.0 and s["test_nll"] == 11.0


@pytest.mark.parametrize("name,expect", [
    ("multistep", [1, 1, 0.1, 0.1, 0.01]), ("step", [1, 1, 0.1, 0.1, 0.01]), ("constant", [1] * 5),
    ("cosine", [1.0, 0.9045, 0.6545, 0.3455, 0.0955])])
def test_schedules(name, expect):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    s = Schedule(opt, ScheduleParams(name=name, milestones=[2, 4], step_size=2, gamma=0.1), epochs=5)
    assert [round(s.set_epoch(e), 4) for e in range(5)] == pytest.approx(expect, abs=1e-4)


def test_plateau_schedule():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    s = Schedule(opt, ScheduleParams(name="plateau", patience=2, gamma=0.5), epochs=10)
    for loss in [1.0, 0.9, 0.95, 0.95]:
        s.observe(loss)
    assert s.set_epoch(4) == 0.5
    s.observe(0.9)  # equal to the best: not an improvement, and the count starts again after a reduction
    assert s.set_epoch(5) == 0.5
    s.observe(0.95)
    assert s.set_epoch(6) == 0.25 and s.state_dict() == {"best": 0.9, "bad": 0, "plateau_scale": 0.25}


def test_warmup_and_param_groups_scale_each_group_from_its_own_lr():
    """Linear warm-up over `warmup_epochs` (epoch e: (e + 1) / warmup) times the schedule; each parameter group
    keeps its own base learning rate (e.g. a method's extra group), and set_epoch returns the first group's."""
    opt = torch.optim.SGD([{"params": [torch.zeros(1, requires_grad=True)], "lr": 1.0},
                           {"params": [torch.zeros(1, requires_grad=True)], "lr": 0.2}], lr=1.0)
    s = Schedule(opt, ScheduleParams(name="multistep", milestones=[3], gamma=0.1, warmup_epochs=4), epochs=6)
    lrs = [(s.set_epoch(e), [g["lr"] for g in opt.param_groups]) for e in range(6)]
    expect = [0.25, 0.5, 0.75, 0.1, 0.1, 0.1]
    assert [a for a, _ in lrs] == pytest.approx(expect)
    assert [g for _, g in lrs] == [pytest.approx([f, 0.2 * f]) for f in expect]


def test_hooks_are_called_and_exclusive_hooks_conflict(workdir):
    calls = []

    class Spy(Method):
        name = "spy_for_test"

        def on_epoch_end(self, state):
            calls.append(("epoch", state.epoch, state.step))

        def loss(self, outputs, batch, state):
            calls.append("loss")
            return torch.nn.functional.cross_entropy(outputs, batch.y, reduction="none")

        def state_metrics(self):
            return {"spy": 1.5}

    class Other(Method):
        name = "other_for_test"

        def loss(self, outputs, batch, state):
            return None

    from curriculab.methods.base import METHODS
    from curriculab.methods.settings import METHOD_SETTINGS

    try:
        run = RunConfig.model_validate({**RUN, "methods": {"spy_for_test": {}}})
        rec = fit(run, workdir / "spy", workdir)
        steps = rec["history"][0]["step"]
        assert ("epoch", 0, steps) in calls and ("epoch", 1, 2 * steps) in calls
        assert calls.count("loss") == 2 * steps
        assert rec["history"][0]["spy"] == 1.5
        with pytest.raises(ConfigError, match="both define the loss hook"):
            check_methods({"spy_for_test": {}, "other_for_test": {}}, "methods")
    finally:
        for name in ("spy_for_test", "other_for_test"):
            METHODS.remove(name)
            METHOD_SETTINGS.remove(name)


def test_optimizers():
    from curriculab.engine.optim import build_optimizer

    p = [torch.zeros(1, requires_grad=True)]
    sgd = build_optimizer(p, OptimizerParams(name="sgd", lr=0.1, nesterov=True, momentum=0.8, weight_decay=5e-4))
    assert isinstance(sgd, torch.optim.SGD)
    assert {k: sgd.defaults[k] for k in ("lr", "momentum", "nesterov", "weight_decay")} == {
        "lr": 0.1, "momentum": 0.8, "nesterov": True, "weight_decay": 5e-4}
    plain = build_optimizer(p, OptimizerParams(name="sgd", lr=0.1, nesterov=True, momentum=0.0))
    assert plain.defaults["nesterov"] is False  # Nesterov without momentum is plain SGD (torch refuses it)
    adam = build_optimizer(p, OptimizerParams(name="adam", lr=1e-3, betas=[0.5, 0.9], weight_decay=1e-4))
    assert isinstance(adam, torch.optim.Adam)
    assert (adam.defaults["lr"], tuple(adam.defaults["betas"]), adam.defaults["weight_decay"]) == (1e-3, (0.5, 0.9),
                                                                                                   1e-4)


def _table_params(tmp_path, epochs: int) -> str:
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["tracking"] = {"enabled": False}
    p["executor"] = {"workers": 1, "threads": 1}
    p["prepare"]["datasets"] = ["digits", "syndigits"]
    p["tables"] = {"baseline": {
        "seeds": [0, 1], "run": {"model": {"name": "small_cnn", "width": 1.0},
                                 "train": {"epochs": epochs, "batch_size": 16}},
        "columns": {"digits": {"data": {"dataset": "digits"}}}, "rows": {"baseline": {"methods": {"baseline": {}}}}}}
    p["evaluate"], p["pretrain"] = {}, {}
    f = tmp_path / "params.yaml"
    f.write_text(yaml.safe_dump(p))
    return str(f)


def test_killed_run_resumes_and_finished_runs_are_untouched(workdir, tmp_path):
    params = _table_params(tmp_path, epochs=6)
    cmd = [sys.executable, "-m", "curriculab", "--params", params, "--workdir", str(workdir), "train", "baseline"]
    env = {**os.environ, "CI": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    runs_dir = workdir / "runs" / "baseline"

    def records():
        out = []
        for d in sorted(runs_dir.glob("*/metrics.json")) if runs_dir.is_dir() else []:
            try:
                out.append((d, json.loads(d.read_text())))
            except json.JSONDecodeError:
                pass
        return out

    deadline = time.time() + 120
    while time.time() < deadline:  # wait until the first run is done and the second is half way
        recs = records()
        done = [r for r in recs if r[1]["status"] == "done"]
        running = [r for r in recs if r[1]["status"] == "running" and len(r[1]["history"]) >= 2]
        if done and running:
            break
        if proc.poll() is not None:
            pytest.fail("training finished before it could be interrupted: " + proc.stderr.read().decode()[-300:])
        time.sleep(0.02)
    else:
        proc.kill()
        pytest.fail("timed out waiting for the first run")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (done_path, done_rec), = [r for r in records() if r[1]["status"] == "done"]
    (part_path, part_rec), = [r for r in records() if r[1]["status"] == "running"]
    before = (done_path.stat().st_mtime_ns, (done_path.parent / "checkpoint.pt").stat().st_mtime_ns)
    killed_at = len(part_rec["history"])
    assert 0 < killed_at < 6

    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "1 already finished, 1 to train" in r.stdout
    assert (done_path.stat().st_mtime_ns, (done_path.parent / "checkpoint.pt").stat().st_mtime_ns) == before
    resumed = json.loads(part_path.read_text())
    assert resumed["status"] == "done" and len(resumed["history"]) == 6
    assert resumed["history"][:killed_at - 1] == part_rec["history"][:killed_at - 1]

    # resuming gives exactly what an uninterrupted run gives
    from curriculab.project import load_params
    from curriculab.tables.spec import expand_table, get_spec

    run = next(r for r in expand_table(get_spec("baseline"), load_params(params)) if r.run_id == part_path.parent.name)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the executor runs it (executor.threads)
    try:
        fresh = fit(run.config, tmp_path / "fresh", workdir)
    finally:
        torch.set_num_threads(threads)
    assert [h["val_loss"] for h in fresh["history"]] == [h["val_loss"] for h in resumed["history"]]


# --------------------------------------------------------------------------- the engine contract of Method


class _StopAfterFirstEpoch(Method):
    name = "stop_after_first_epoch_for_test"

    def on_eval_end(self, state, metrics):
        assert "val_acc" in metrics and "test_acc" in metrics
        state.request_stop()


_DECLARED: dict = {}  # the settings `registered` puts back


@contextmanager
def registered(cls):
    """`cls` and its settings in the method registries for one test. A test class defined at module level
    registers once, at import; removing it afterwards must not break a second run of the test in the same
    process (mutmut)."""
    from curriculab.methods.base import METHODS
    from curriculab.methods.settings import METHOD_SETTINGS

    if cls.name not in _DECLARED:  # declared when its class was defined
        _DECLARED[cls.name] = METHOD_SETTINGS.get(cls.name)
    METHOD_SETTINGS.register(cls.name, _DECLARED[cls.name])
    METHODS.register(cls.name, cls)
    try:
        yield
    finally:
        METHODS.remove(cls.name)
        METHOD_SETTINGS.remove(cls.name)


def test_early_stop_ends_the_run_done_and_resume_keeps_it(workdir, micro):
    with registered(_StopAfterFirstEpoch):
        rec = micro.fit(run_dir=workdir / "stop", train={"epochs": 4},
                        methods={"stop_after_first_epoch_for_test": {}})
        assert rec["status"] == "done" and rec["final"]["stopped_epoch"] == 1 and len(rec["history"]) == 1
        assert json.loads((workdir / "stop" / "metrics.json").read_text()) == rec
        again = micro.fit(run_dir=workdir / "stop", train={"epochs": 4},
                          methods={"stop_after_first_epoch_for_test": {}})  # resume: nothing more to train
        assert again == rec


def _state(micro, momentum: float = 0.9):
    from curriculab.engine.optim import build_optimizer
    from curriculab.methods.base import TrainState

    data, _, model = micro.build(train={"optimizer": {"momentum": momentum}})
    opt = build_optimizer(model.parameters(), micro.run().train.optimizer)
    return TrainState(model=model, optimizer=opt, data=data)


def _sgd_step(state):
    batch = next(state.data.batches(16))
    state.model.train()
    loss = torch.nn.functional.cross_entropy(state.model(batch.x), batch.y)
    state.optimizer.zero_grad()
    loss.backward()
    state.optimizer.step()


def test_restore_weights_loads_exactly_and_may_reset_the_optimizer(micro):
    state = _state(micro)
    kept = {k: v.clone() for k, v in state.model.state_dict().items()}
    _sgd_step(state)
    assert any(not torch.equal(v, kept[k]) for k, v in state.model.state_dict().items())
    state.restore_weights(kept, reset_optimizer=False)
    assert all(torch.equal(v, kept[k]) for k, v in state.model.state_dict().items())
    assert state.optimizer.state  # momentum kept
    state.restore_weights(kept, reset_optimizer=True)
    assert not state.optimizer.state


def test_preserved_restores_weights_momentum_bn_buffers_and_rng_bit_exactly(micro):
    state = _state(micro)
    _sgd_step(state)  # momentum buffers exist
    before = {k: v.clone() for k, v in state.model.state_dict().items()}
    momentum = [state.optimizer.state[p]["momentum_buffer"].clone() for p in state.model.parameters()]
    assert any("running_mean" in k for k in before)
    rng = (torch.get_rng_state(), state.data.gen.get_state())
    with state.preserved():
        _sgd_step(state)  # a real step: weights, momentum and BN running statistics all move
        moved = state.model.state_dict()
        assert any(not torch.equal(moved[k], v) for k, v in before.items() if "running_mean" in k)
        torch.rand(3)
    assert all(torch.equal(v, before[k]) for k, v in state.model.state_dict().items())
    assert all(torch.equal(state.optimizer.state[p]["momentum_buffer"], m)
               for p, m in zip(state.model.parameters(), momentum, strict=True))
    assert torch.equal(torch.get_rng_state(), rng[0]) and torch.equal(state.data.gen.get_state(), rng[1])


def test_every_epoch_row_has_the_model_l2_norm(micro, workdir):
    rec = micro.fit(run_dir=workdir / "norm")
    assert all(h["model_l2_norm"] > 0 for h in rec["history"])
    model = torch.load(workdir / "norm" / "checkpoint.pt", weights_only=False)["model"]
    params = [v for k, v in model.items() if "running" not in k and "num_batches" not in k]
    want = float(torch.sqrt(sum((p.double() ** 2).sum() for p in params)))
    assert rec["history"][-1]["model_l2_norm"] == pytest.approx(want, rel=1e-12)


class _NanFromSecondEpoch(Method):
    name = "nan_from_second_epoch_for_test"

    def loss(self, outputs, batch, state):
        per = torch.nn.functional.cross_entropy(outputs, batch.y, reduction="none")
        return per * float("nan") if state.epoch >= 1 else per


def test_a_non_finite_loss_stops_the_run_as_diverged(micro, workdir):
    from curriculab.engine.records import is_done

    def strict(text):
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"metrics.json holds {c}"))

    with registered(_NanFromSecondEpoch):
        over = {"train": {"epochs": 4}, "methods": {"nan_from_second_epoch_for_test": {}}}
        rec = micro.fit(run_dir=workdir / "nan", **over)
        assert rec["status"] == "diverged" and not is_done(rec)
        assert len(rec["history"]) == 2 and rec["final"]["diverged_epoch"] == 2
        saved = strict((workdir / "nan" / "metrics.json").read_text())
        assert saved["history"][1]["train_loss"] is None and saved["status"] == "diverged"
        again = micro.fit(run_dir=workdir / "nan", **over)  # resuming does not train a diverged run again
        assert len(again["history"]) == 2 and again["status"] == "diverged"


class _Killed(Exception):
    pass


def _kill_in_epoch(monkeypatch, epoch: int):
    """Make the loop raise in `epoch` (0-based) before that epoch is evaluated or saved."""
    from curriculab.engine import loop

    real = loop.test_epoch

    def killing_test_epoch(run, state, *a):
        if state.epoch == epoch:
            raise _Killed
        return real(run, state, *a)

    monkeypatch.setattr(loop, "test_epoch", killing_test_epoch)


def test_resume_rewrites_metrics_from_the_checkpoint(micro, workdir, monkeypatch):
    d = workdir / "lag"
    _kill_in_epoch(monkeypatch, 1)
    with pytest.raises(_Killed):
        micro.fit(run_dir=d)
    saved = json.loads((d / "metrics.json").read_text())
    assert len(saved["history"]) == 1
    # a kill between the checkpoint and the metrics file: the file is one epoch behind
    (d / "metrics.json").write_text(json.dumps({**saved, "history": [], "artifacts": []}))
    with pytest.raises(_Killed):
        micro.fit(run_dir=d)  # resumes, then is killed again in the same epoch
    assert json.loads((d / "metrics.json").read_text()) == saved


def test_rng_states_survive_any_map_location(micro, workdir, monkeypatch):
    from curriculab.engine.checkpoint import load_checkpoint

    _kill_in_epoch(monkeypatch, 1)
    with pytest.raises(_Killed):
        micro.fit(run_dir=workdir / "rng")
    path = workdir / "rng" / "checkpoint.pt"
    state = _state(micro)
    state.set_rng_states(load_checkpoint(path, torch.device("cpu"))["rng"])
    want = (torch.get_rng_state(), state.data.gen.get_state())
    torch.manual_seed(123)
    state.set_rng_states(load_checkpoint(path, torch.device("meta"))["rng"])  # weights on another device
    assert torch.equal(torch.get_rng_state(), want[0]) and torch.equal(state.data.gen.get_state(), want[1])


def test_determinism_does_not_fill_uninitialised_memory():
    from curriculab.engine.devices import seed_everything

    seed_everything(0)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.utils.deterministic.fill_uninitialized_memory is False


def test_records_status_and_timing_files(tmp_path):
    """A run has ended when done or diverged, and is finished only when done; timing.json gives each epoch's
    seconds (None where missing), and an unreadable or short file pads with None instead of failing."""
    from curriculab.engine.records import has_ended, is_done, new_record, read_timing, write_timing

    rec = new_record("abc", {"table": "t"})
    assert rec == {"run_id": "abc", "table": "t", "status": "running", "history": [], "artifacts": [], "final": {}}
    assert [(is_done(r), has_ended(r)) for r in (None, {}, rec, {"status": "done"}, {"status": "diverged"})] == [
        (False, False), (False, False), (False, False), (True, True), (False, True)]
    assert read_timing(tmp_path, 2) == [None, None]  # no file
    write_timing(tmp_path, [1.5, None, 2.0])
    assert json.loads((tmp_path / "timing.json").read_text()) == {"epoch_seconds": [1.5, None, 2.0], "seconds": 3.5}
    assert read_timing(tmp_path, 2) == [1.5, None] and read_timing(tmp_path, 5) == [1.5, None, 2.0, None, None]
    (tmp_path / "timing.json").write_text('{"epoch_seconds": [1.0')  # truncated by a kill
    assert read_timing(tmp_path, 2) == [None, None]
    (tmp_path / "timing.json").write_text('{"seconds": 3}')
    assert read_timing(tmp_path, 1) == [None]


def test_loading_a_run_that_has_no_checkpoint_says_to_train_it_first(micro):
    from curriculab.config import ConfigError
    from curriculab.engine.loop import load_trained

    with pytest.raises(ConfigError, match=r"run_x: no checkpoint; train the run first \(train.checkpoint must be"):
        load_trained(micro.run(), micro.workdir / "run_x", micro.workdir, "cpu")
