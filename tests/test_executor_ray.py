"""The Ray executor on a local runtime: same metrics as the local executor, failures named, resume."""

from __future__ import annotations

import json
import sys

import pytest

from curriculab.config import ConfigError, ExecutorParams, Params
from curriculab.executor import run_all
from curriculab.tables.spec import expand_table, get_spec

TABLE = {
    "seeds": [0, 1],
    "run": {"model": {"name": "small_cnn", "width": 0.25}, "train": {"epochs": 2, "batch_size": 32},
            "data": {"dataset": "digits", "subset_per_class": 20}},
    "rows": {"baseline": {"methods": {"baseline": {}}}},
}
RAY = ExecutorParams(backend="ray")


def _runs():
    params = Params.model_validate({"prepare": {"datasets": ["digits"]}, "tables": {"baseline": TABLE}})
    return expand_table(get_spec("baseline"), params)


def _finals(records):
    return [{k: v for k, v in r["final"].items() if k != "seconds"} for r in records]


def _project(tmp_path, workdir, name):
    d = tmp_path / name
    d.mkdir()
    (d / "data").symlink_to(workdir / "data")
    return d


def test_ray_backend_without_ray_says_how_to_install_it(workdir, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ConfigError, match=r"pip install -e '\.\[ray\]'"):
        run_all(_runs(), workdir, RAY)


ray = pytest.importorskip("ray")


def test_a_table_with_nothing_to_train_starts_no_runtime(workdir, monkeypatch):
    runs = _runs()
    local = run_all(runs, workdir, ExecutorParams())
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("a Ray runtime was started"))
    assert _finals(run_all(runs, workdir, RAY)) == _finals(local)


@pytest.fixture(scope="module")
def ray_runtime():
    """One local Ray runtime for the module (a few seconds to start), shut down at its end."""
    import os

    os.environ.pop("RAY_ADDRESS", None)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_tasks_give_the_local_metrics_bit_for_bit(ray_runtime, workdir, tmp_path):
    runs = _runs()
    local = run_all(runs, workdir, ExecutorParams())
    remote = run_all(runs, _project(tmp_path, workdir, "ray"), RAY)
    assert [r["status"] for r in remote] == ["done", "done"]
    assert _finals(remote) == _finals(local)
    assert [r["history"] for r in remote] == [r["history"] for r in local]


def test_a_failing_task_names_its_run_and_the_others_keep_their_results(ray_runtime, workdir):
    runs = _runs()
    bad = runs[1]
    # the task's process imports the run's settings afresh: make one run's settings fail there
    bad.config.train.batch_size = 0
    with pytest.raises(RuntimeError) as e:
        run_all(runs, workdir, RAY)
    msg = str(e.value)
    assert bad.run_id in msg and "seed 1" in msg and "baseline" in msg
    assert "ZeroDivisionError" in msg and len(msg.splitlines()) == 1
    assert json.loads((runs[0].dir(workdir) / "metrics.json").read_text())["status"] == "done"


def test_an_interrupted_table_resumes_from_its_checkpoints(ray_runtime, workdir, tmp_path, monkeypatch):
    from curriculab.engine import loop

    runs = _runs()
    real = loop.test_epoch

    class Killed(Exception):
        pass

    def killed_in_epoch_2(run, state, *a):
        if state.epoch == 1:
            raise Killed
        return real(run, state, *a)

    monkeypatch.setattr(loop, "test_epoch", killed_in_epoch_2)
    with pytest.raises(RuntimeError, match="Killed"):  # every run dies in its second epoch (epoch 1 saved)
        run_all(runs, workdir, ExecutorParams())
    monkeypatch.setattr(loop, "test_epoch", real)
    part = json.loads((runs[0].dir(workdir) / "metrics.json").read_text())
    assert part["status"] == "running" and len(part["history"]) == 1
    resumed = run_all(runs, workdir, RAY)
    assert [r["status"] for r in resumed] == ["done", "done"]
    assert resumed[0]["history"][0] == part["history"][0]
    straight = run_all(runs, _project(tmp_path, workdir, "straight"), ExecutorParams())  # never interrupted
    assert _finals(straight) == _finals(resumed)


def test_train_stage_on_ray_prints_the_local_per_run_lines(ray_runtime, workdir, tmp_path, capsys):
    import yaml

    from curriculab.cli import main

    def train(project, backend):
        f = tmp_path / f"{backend}.yaml"
        f.write_text(yaml.safe_dump({"prepare": {"datasets": ["digits"]}, "tracking": {"enabled": False},
                                     "executor": {"backend": backend}, "tables": {"baseline": TABLE}}))
        assert main(["--params", str(f), "--workdir", str(project), "train", "baseline"]) == 0
        out = capsys.readouterr().out.splitlines()
        lines = [line for line in out if line.startswith("baseline [")]
        return sorted(line.split("] ", 1)[1].rsplit(" (", 1)[0] for line in lines), out  # no order, no seconds

    ray_lines, out = train(_project(tmp_path, workdir, "ray"), "ray")
    assert "executor: ray" in out[0] and out[-1] == "baseline: done; 2 run(s) trained"
    local_lines, _ = train(_project(tmp_path, workdir, "local"), "local")
    assert len(ray_lines) == 2 and ray_lines == local_lines  # row | column | seed: metric, without the seconds
