"""DVC as its users drive it, on a micro profile: `dvc exp run -S` applies the change (shared defaults and
one table's keys), `dvc params diff` shows it, `dvc metrics show` prints the tables' numbers, and queued
experiments in DVC's temporary copies train only new runs and log to the project's MLflow."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
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
    assert 0 < mean <= 1 and "claims" in metrics["dp_t2b"]
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
