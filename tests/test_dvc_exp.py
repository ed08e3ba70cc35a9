"""DVC as its users drive it, on a micro profile: `dvc exp run -S` applies the change (shared defaults and
one table's keys), `dvc params diff` shows it, `dvc metrics show` prints the tables' numbers, and queued
experiments in DVC's temporary copies train only new runs and log to the project's MLflow."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, copy_project

MICRO = {
    "profile": "micro",
    "description": "test profile: digits only, one epoch",
    "prepare": {"datasets": ["digits"]},
    "executor": {"workers": 1, "threads": 1},
    "defaults": {"train": {"epochs": 1, "batch_size": 64, "optimizer": {"name": "sgd", "lr": 0.05}},
                 "digits": {"dataset": "digits", "subset_per_class": 20}},
    "pretrain": {},
    "evaluate": {},
    "tables": {"baseline": {
        "seeds": [0, 1],
        "run": {"model": {"name": "small_cnn", "width": 0.25}, "train": {"use": "train"}, "data": {"use": "digits"}},
        "columns": {"digits": {}},
        "rows": {"baseline": {"methods": {"baseline": {}}}},
    }, "dp_t2b": {
        "seeds": [0],
        "run": {"model": {"name": "small_cnn", "width": 0.25}, "train": {"use": "train"},
                "data": {"use": "digits", "noise": {"rate": 0.2}}},
        "columns": {"digits_noise20": {}},
        "rows": {"baseline": {"methods": {"baseline": {}}},
                 "instance": {"methods": {"data_parameters": {"curriculum": "instance", "inst_lr": 1.0}}}},
    }},
}


def run(project: Path, *args: str, env: dict | None = None) -> str:
    venv_bin = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": venv_bin + os.pathsep + os.environ["PATH"], "CI": "1",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", **(env or {})}
    env.pop("CURRICULAB_STORE", None)
    exe = str(Path(venv_bin) / args[0]) if (Path(venv_bin) / args[0]).exists() else args[0]
    r = subprocess.run([exe, *args[1:]], cwd=project, env=env, capture_output=True, text=True)
    assert r.returncode == 0, " ".join(args) + "\n" + r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout + r.stderr


def make_project(root: Path, params: dict) -> Path:
    copy_project(root)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copytree(ROOT / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__"))  # dvc.yaml deps
    (root / ".gitignore").write_text("/data/\n/runs/\n/mlflow.db\n/mlruns/\n")
    run(root, "git", "init", "-q")
    run(root, "dvc", "init", "-q")
    run(root, "git", "add", "-A")
    run(root, "git", "commit", "-qm", "micro")
    return root


def resolved(project: Path, key: str) -> list[dict]:
    """The settings each finished run of a table really used (its config.yaml)."""
    return [yaml.safe_load(p.read_text())["config"] for p in sorted((project / "runs" / key).glob("*/config.yaml"))]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return make_project(tmp_path_factory.mktemp("exp"), MICRO)


@pytest.mark.slow  # three `dvc exp run`s: 1.5 min on an idle 2-core machine, 4.5 min on a busy one
def test_exp_run_metrics_then_set_param_on_a_shared_default_and_on_one_table(project):
    run(project, "dvc", "exp", "run", "-n", "base")
    metrics = json.loads((project / "reports" / "metrics.json").read_text())
    mean = metrics["baseline"]["cells"]["baseline"]["digits"]["test_acc"]
    assert 0 < mean <= 100 and "claims" in metrics["dp_t2b"]
    shown = run(project, "dvc", "metrics", "show")
    assert "baseline.cells.baseline.digits.test_acc" in shown and f"{mean:.5f}".rstrip("0") in shown
    assert {c["train"]["epochs"] for c in resolved(project, "baseline")} == {1}

    out = run(project, "dvc", "exp", "run", "-n", "epochs2", "-S", "defaults.train.epochs=2")
    assert "Running stage 'train@baseline'" in out and "Running stage 'train@dp_t2b'" in out
    for key, n in (("baseline", 2), ("dp_t2b", 2)):
        cfgs = [c for c in resolved(project, key) if c["train"]["epochs"] == 2]
        assert len(cfgs) == n  # every run of both tables, trained again with the new value
    diff = run(project, "dvc", "params", "diff")
    assert "defaults.train.epochs" in diff and "2" in diff

    out = run(project, "dvc", "exp", "run", "-n", "instlr", "-S",
              "tables.dp_t2b.rows.instance.methods.data_parameters.inst_lr=5.0")
    assert "Running stage 'train@dp_t2b'" in out and "Running stage 'train@baseline'" not in out
    assert "1 already finished, 1 to train" in out
    lrs = [c["methods"]["data_parameters"]["inst_lr"] for c in resolved(project, "dp_t2b")
           if "data_parameters" in c["methods"]]
    assert 5.0 in lrs
    table = run(project, "dvc", "exp", "show", "--csv")
    assert "instlr" in table and "epochs2" in table and "baseline.cells.baseline.digits.test_acc" in table


@pytest.mark.slow  # two queued experiments through DVC's worker: about 2 min on an idle 2-core machine
def test_queued_experiments_train_only_new_runs_and_log_to_the_project_mlflow(tmp_path):
    (tmp_path / "q").mkdir()
    project = make_project(tmp_path / "q", MICRO)
    run(project, "dvc", "exp", "run", "-n", "base")
    run(project, "git", "add", "-A")
    run(project, "git", "commit", "-qm", "baseline results")
    finished = {p.parent.name: p.stat().st_mtime_ns for p in (project / "runs" / "baseline").glob("*/metrics.json")}
    assert len(finished) == 2
    run(project, "dvc", "exp", "run", "--queue", "-n", "seed2", "-S", "tables.baseline.seeds=[0,1,2]")
    run(project, "dvc", "exp", "run", "--queue", "-n", "seed3", "-S", "tables.baseline.seeds=[0,1,3]")
    run(project, "dvc", "queue", "start", "-j", "1")
    deadline = time.time() + 900
    while time.time() < deadline:
        status = run(project, "dvc", "queue", "status")
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(5)
    assert "Failed" not in status, status + run(project, "dvc", "queue", "logs", "seed2")
    now = {p.parent.name: p.stat().st_mtime_ns for p in (project / "runs" / "baseline").glob("*/metrics.json")}
    assert len(now) == 4 and all(now[k] == v for k, v in finished.items())  # only the new seeds trained
    seeds = sorted(yaml.safe_load((project / "runs" / "baseline" / k / "config.yaml").read_text())["labels"]["seed"]
                   for k in now)
    assert seeds == [0, 1, 2, 3]
    table = run(project, "dvc", "exp", "show", "--csv")
    for name in ("seed2", "seed3"):
        line = next(ln for ln in table.splitlines() if ln.startswith(name + ","))
        assert "0." in line  # its metrics
    from curriculab.tracking import client

    c = client(f"sqlite:///{project / 'mlflow.db'}")
    exp = c.get_experiment_by_name("baseline")
    kids = [r for r in c.search_runs([exp.experiment_id]) if r.data.tags.get("kind") == "run"]
    assert sorted(r.data.tags["seed"] for r in kids) == ["0", "1", "2", "3"]
    assert {r.data.tags.get("dvc_exp_name") for r in kids if r.data.tags["seed"] in "23"} == {"seed2", "seed3"}
