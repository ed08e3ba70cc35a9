"""params.yaml validation: one-line messages naming the key path, close matches, every stage's inputs."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import yaml

from curriculab.config import ConfigError
from curriculab.project import load_params
from curriculab.settings_file import load_yaml
from tests.conftest import ROOT

BASE = load_yaml(ROOT / "params.yaml")


def _check(tmp_path, mutate) -> str:
    p = copy.deepcopy(BASE)
    mutate(p)
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(p))
    with pytest.raises(ConfigError) as e:
        load_params(f)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_default_params_and_paper_profile_are_valid():
    assert load_params(ROOT / "params.yaml").profile == "offline"
    assert load_params(ROOT / "profiles" / "paper.yaml").profile == "paper"


def test_misspelt_key_names_path_and_close_match(tmp_path):
    msg = _check(tmp_path, lambda p: p["tables"]["baseline"]["run"]["train"].__setitem__("epoch", 3))
    assert msg.startswith("tables.baseline.run.train.epoch: unknown key")
    assert "did you mean 'epochs'" in msg


def test_wrong_type(tmp_path):
    msg = _check(tmp_path, lambda p: p["tables"]["baseline"]["run"]["train"].__setitem__("batch_size", "64"))
    assert msg.startswith("tables.baseline.run.train.batch_size: expected an integer")


def test_negative_epochs(tmp_path):
    msg = _check(tmp_path, lambda p: p["tables"]["baseline"]["run"]["train"].__setitem__("epochs", -2))
    assert msg == "tables.baseline.run.train.epochs: input should be greater than or equal to 1 (got -2)"


@pytest.mark.parametrize("where,value,kind", [
    (("rows", "baseline", "methods"), {"baselin": {}}, "method"),
    (("run", "model", "name"), "resnet19", "model"),
    (("columns", "digits", "data", "dataset"), "digitz", "dataset"),
])
def test_unknown_names(tmp_path, where, value, kind):
    def mutate(p):
        node = p["tables"]["baseline"]
        for k in where[:-1]:
            node = node[k]
        node[where[-1]] = value

    msg = _check(tmp_path, mutate)
    assert f"unknown {kind}" in msg and "did you mean" in msg
    assert msg.startswith("tables.baseline." + ".".join(where[:2]))


def test_error_points_at_the_row_that_wrote_it(tmp_path):
    msg = _check(tmp_path, lambda p: p["tables"]["baseline"]["rows"]["baseline"].__setitem__(
        "train", {"optimizer": {"lr": -0.1}}))
    assert msg.startswith("tables.baseline.rows.baseline.train.optimizer.lr:")


def test_unknown_prepare_dataset(tmp_path):
    msg = _check(tmp_path, lambda p: p["prepare"].__setitem__("datasets", ["digits", "cifar"]))
    assert msg.startswith("prepare.datasets.1: unknown dataset 'cifar'")


def test_yaml12_floats(tmp_path):
    f = tmp_path / "f.yaml"
    f.write_text("a: 5e-4\nb: 1.0e+3\nc: '5e-4'\n")
    assert load_yaml(f) == {"a": 5e-4, "b": 1000.0, "c": "5e-4"}


def test_cli_validate_exit_codes(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "curriculab", "validate", str(ROOT / "params.yaml")],
                        capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0 and "valid" in ok.stdout
    bad = copy.deepcopy(BASE)
    bad["executr"] = {}
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(bad))
    r = subprocess.run([sys.executable, "-m", "curriculab", "validate", str(f)], capture_output=True, text=True,
                       cwd=ROOT)
    assert r.returncode == 2
    assert r.stderr.strip() == "error: executr: unknown key; did you mean 'executor'?"
    assert "Traceback" not in r.stderr


def test_cli_validate_reads_the_file_given_by_params(tmp_path):
    """`curriculab --params X validate` checks X (it used to check params.yaml whatever --params said)."""
    bad = copy.deepcopy(BASE)
    bad["executr"] = {}
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(bad))
    r = subprocess.run([sys.executable, "-m", "curriculab", "--params", str(f), "validate"], capture_output=True,
                       text=True, cwd=ROOT)
    assert r.returncode == 2 and "executr: unknown key" in r.stderr
    paper = subprocess.run([sys.executable, "-m", "curriculab", "--params", "profiles/paper.yaml", "validate"],
                           capture_output=True, text=True, cwd=ROOT)
    assert paper.returncode == 0 and "profile 'paper'" in paper.stdout


def test_noise_settings_that_cannot_mean_anything_are_rejected():
    from curriculab.config import RunConfig, validate

    with pytest.raises(ConfigError, match="data.noise: rate does not apply to kind 'random'"):
        validate(RunConfig, {"data": {"noise": {"kind": "random", "rate": 0.4}}})
    with pytest.raises(ConfigError, match="data.noise: oracle .* rate > 0"):
        validate(RunConfig, {"data": {"noise": {"oracle": True}}})


def test_saved_run_config_loads_back():
    from curriculab.config import RunConfig

    cfg = RunConfig.model_validate({"train": {"optimizer": {"name": "adam", "betas": [0.5, 0.9]}}})
    again = RunConfig.model_validate(yaml.safe_load(yaml.safe_dump(cfg.model_dump(mode="json"))))
    assert again == cfg


def test_prepare_root_other_than_data_is_refused_with_the_reason(tmp_path):
    msg = _check(tmp_path, lambda p: p["prepare"].__setitem__("root", "elsewhere"))
    assert msg.startswith("prepare.root: must be 'data'") and "symlink" in msg and "'elsewhere'" in msg
