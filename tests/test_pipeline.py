"""End to end: `dvc repro` on a micro profile in a temporary copy of the project."""

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
    # cifar10 is not on this machine (no download, an empty torchvision root): its table is reported as not run
    "prepare": {"datasets": ["digits", "cifar10"], "download": False, "torchvision_root": "no-torchvision-data"},
    "executor": {"workers": 2, "threads": 1},  # the default path: spawned workers import the stage module
    "defaults": {},  # tracked by the stages (a block they `use`)
    "pretrain": {},
    "evaluate": {},
    "tables": {"baseline": {
        "seeds": [0, 1, 2],
        "run": {"model": {"name": "small_cnn", "width": 0.25}, "train": {"epochs": 1, "batch_size": 64},
                "data": {"subset_per_class": 30}},
        "columns": {"digits": {"data": {"dataset": "digits"}}},
        "rows": {"baseline": {"methods": {"baseline": {}}}},
    }, "dp_t2b": {  # a second table, to show that editing one table re-runs that table alone
        "seeds": [0],
        "run": {"model": {"name": "small_cnn", "width": 0.25}, "train": {"epochs": 1, "batch_size": 64},
                "data": {"dataset": "digits", "subset_per_class": 30, "noise": {"rate": 0.2}}},
        "columns": {"digits_noise20": {}},
        "rows": {"baseline": {"methods": {"baseline": {}}},
                 "instance": {"methods": {"data_parameters": {"curriculum": "instance"}}}},
    }, "cbs_t1": {
        "seeds": [0],
        "run": {"model": {"name": "small_cnn", "width": 0.25}, "train": {"epochs": 1, "batch_size": 64}},
        "columns": {"cifar10": {"data": {"dataset": "cifar10"}}},
        "rows": {"baseline": {"methods": {"baseline": {}}}},
    }},
}


def _dvc(project: Path, *args: str) -> str:
    venv_bin = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": venv_bin + os.pathsep + os.environ["PATH"], "CI": "1"}
    r = subprocess.run([str(Path(venv_bin) / "dvc"), *args], cwd=project, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return r.stdout + r.stderr


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = copy_project(tmp_path_factory.mktemp("e2e"))
    (root / "params.yaml").write_text(yaml.safe_dump(MICRO))
    shutil.copytree(ROOT / "src", root / "src")  # dvc.yaml may list source folders as deps
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    _dvc(root, "init", "-q")
    return root


def test_repro_builds_reports_then_is_a_no_op_then_reruns_only_what_changed(project):
    out = _dvc(project, "repro")
    assert "Running stage 'prepare@digits'" in out and "Running stage 'train@baseline'" in out
    # one missing dataset stops nothing: its table is reported as not run, saying what is missing
    assert "Running stage 'prepare@cifar10'" in out and "cbs.t1: not run: dataset 'cifar10' is not available" in out
    assert "**Not run:** dataset 'cifar10' is not available" in (project / "reports/tables/cbs.t1.md").read_text()
    index = (project / "reports" / "README.md").read_text()
    assert "| not run (data missing) |" in index and "| 3 / 3 |" in index
    assert "Running stage 'train@dp_t2b'" in out and (project / "reports" / "tables" / "dp.t2b.md").is_file()
    md = (project / "reports" / "tables" / "baseline.md").read_text()
    assert "Profile: **micro**" in md and "Runs finished: 3 of 3" in md
    assert " (3) |" in md  # mean ± std over 3 seeds
    assert (project / "reports" / "README.md").is_file()
    assert (project / "mlflow.db").is_file()
    shown = _dvc(project, "metrics", "show")  # reports/metrics.json, declared as a DVC metric
    mean = json.loads((project / "reports" / "metrics.json").read_text())["baseline"]["cells"]["baseline"]["digits"]
    assert "baseline.cells.baseline.digits.test_acc" in shown and f"{mean['test_acc']:.5f}".rstrip("0") in shown

    again = _dvc(project, "repro")
    assert "Running stage" not in again

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["tables"]["baseline"]["seeds"] = [0, 1, 2, 3]
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    third = _dvc(project, "repro")
    assert "Running stage 'train@baseline'" in third and "Running stage 'prepare@" not in third
    assert "Running stage 'train@dp_t2b'" not in third
    assert "3 already finished, 1 to train" in third
    assert "Runs finished: 4 of 4" in (project / "reports" / "tables" / "baseline.md").read_text()


def _tree(root: Path) -> dict:
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_repro_rebuilds_corrupt_or_missing_prepared_files(project):
    _dvc(project, "repro")
    f = project / "data" / "prepared" / "digits" / "arrays.npz"
    good = f.read_bytes()
    raw = bytearray(good)
    raw[len(raw) // 2] ^= 0xFF
    f.write_bytes(bytes(raw))
    out = _dvc(project, "repro")
    assert "Running stage 'prepare@digits'" in out and "Running stage 'train@" not in out  # same bytes again
    assert f.read_bytes() == good
    f.unlink()
    out = _dvc(project, "repro")
    assert f.read_bytes() == good and "Running stage 'train@" not in out


def test_a_failed_repro_never_removes_reports(project):
    _dvc(project, "repro")
    reports = project / "reports"
    before = _tree(reports)
    text = (project / "params.yaml").read_text()
    (project / "params.yaml").write_text(text + "executer: {workers: 1}\n")  # a misspelt block no stage reads
    bin_ = Path(sys.executable).parent
    env = {**os.environ, "PATH": str(bin_) + os.pathsep + os.environ["PATH"], "CI": "1"}
    r = subprocess.run([str(bin_ / "dvc"), "repro"], cwd=project, env=env, capture_output=True, text=True)
    assert r.returncode != 0 and "executer: unknown key; did you mean 'executor'" in r.stdout + r.stderr
    (project / "params.yaml").write_text(text)
    csv = reports / "tables" / "dp.t2b.csv"  # aggregate itself fails: a report it cannot replace
    csv.unlink()
    (csv / "x").mkdir(parents=True)
    r = subprocess.run([str(bin_ / "dvc"), "repro"], cwd=project, env=env, capture_output=True, text=True)
    assert r.returncode != 0 and "Running stage 'aggregate'" in r.stdout
    shutil.rmtree(csv)
    after = _tree(reports)
    assert {k: v for k, v in before.items() if k.name != "dp.t2b.csv"}.items() <= after.items()
