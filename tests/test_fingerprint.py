"""The run id includes a fingerprint of the code each run executes: a change to one method's module
retrains exactly that method's runs; comments and docstrings change nothing; DVC sees the same files."""

from __future__ import annotations

import shutil

import yaml

from curriculab import fingerprint
from curriculab.config import Params
from curriculab.registry import module_of
from curriculab.tables.spec import TABLES, expand_table, get_spec
from tests.conftest import ROOT

TABLE = {"seeds": [0], "run": {"model": {"name": "small_cnn", "width": 0.25}, "data": {"dataset": "digits"}},
         "columns": {"digits": {}},
         "rows": {"plain": {"methods": {"baseline": {}}}, "cbs": {"methods": {"cbs": {}}},
                  "dp": {"methods": {"data_parameters": {"curriculum": "class"}}}}}


def _ids(monkeypatch, root, tables=None) -> dict[str, str]:
    """row → run id of every run of `tables` (default: TABLE as cbs_t7), the code fingerprinted under `root`."""
    monkeypatch.setattr(fingerprint, "PACKAGE", root)
    tables = tables or {"cbs_t7": TABLE}
    params = Params.model_validate({"prepare": {"datasets": ["digits"]}, "tables": tables})
    return {r.row: r.run_id for t in tables for r in expand_table(get_spec(t), params)}


def _copy(tmp_path, name, edit, file="methods/cbs.py") -> object:
    """A copy of the package with `edit` applied to `file`."""
    root = tmp_path / name / "curriculab"
    shutil.copytree(fingerprint.HERE, root, ignore=shutil.ignore_patterns("__pycache__"))
    path = root / file
    path.write_text(edit(path.read_text()))
    return root


def _changed(s: str) -> str:
    return s + "\nCHANGED = 1\n"


def test_a_change_to_cbs_retrains_cbs_runs_only_and_comments_retrain_nothing(tmp_path, monkeypatch):
    before = _ids(monkeypatch, fingerprint.HERE)
    cosmetic = _copy(tmp_path, "cosmetic", lambda s: s.replace('"""', '"""Edited. ', 1) + "\n# a comment\n")
    assert _ids(monkeypatch, cosmetic) == before
    changed = _copy(tmp_path, "changed", _changed)
    after = _ids(monkeypatch, changed)
    assert after["cbs"] != before["cbs"]
    assert after["plain"] == before["plain"] and after["dp"] == before["dp"]


def test_a_change_to_a_tables_runner_retrains_that_tables_runs_only(tmp_path, monkeypatch):
    """A table with its own runner (thesis.t21's Perfect Ordering) names its runs by the runner's code too."""
    po = {"seeds": [0], "run": {"model": {"name": "basic_conv", "width": 0.25}, "data": {"dataset": "digits"},
                                "train": {"epochs": 2, "batch_size": 8}, "runner": {"per_class": 24}},
          "rows": {"po": {"methods": {"baseline": {}}}}, "columns": {"digits": {}}}

    tables = {"cbs_t7": TABLE, "thesis_t21": po}
    before = _ids(monkeypatch, fingerprint.HERE, tables)
    after = _ids(monkeypatch, _copy(tmp_path, "changed", _changed, "runners/perfect_ordering.py"), tables)
    assert after["po"] != before["po"]
    assert all(after[row] == before[row] for row in before if row != "po")


def test_a_change_to_a_tasks_code_retrains_that_tasks_runs_only(tmp_path, monkeypatch):
    """A run trains with its task's loss and metrics (the VAE's are in evaluate/vae.py, outside the engine): its
    id covers that code too, so a fix to the VAE's loss retrains cbs.t6."""
    vae = {"task": "vae", "model": {"name": "vae"}, "methods": {"baseline": {}}}

    tables = {"cbs_t7": {**TABLE, "rows": {**TABLE["rows"], "vae": vae}}}
    before = _ids(monkeypatch, fingerprint.HERE, tables)
    after = _ids(monkeypatch, _copy(tmp_path, "changed", _changed, "evaluate/vae.py"), tables)
    assert after["vae"] != before["vae"]
    assert all(after[row] == before[row] for row in before if row != "vae")


def test_train_stages_depend_on_every_fingerprinted_file():
    deps = [d for d in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["train"]["do"]["deps"]
            if d.startswith("src/")]
    from curriculab.methods import registry

    # the package's methods (test modules define methods of their own, registered while they are collected)
    ours = [name for name, cls in registry().items() if cls.__module__.startswith("curriculab.")]
    runners = {module_of(spec.runner) for _, spec in TABLES.items() if spec.runner is not None}
    assert runners  # the thesis ordering tables train with their own runner
    from curriculab.engine.task_settings import TASKS

    tasks = {s.module for _, s in TASKS.items()}
    assert "curriculab.evaluate.vae" in tasks  # cbs.t6 trains with the VAE task
    for f in fingerprint.code_files(ours, modules=runners | tasks):
        assert any(f"src/curriculab/{f}" == d or f"src/curriculab/{f}".startswith(d + "/") for d in deps), f


def test_aggregate_depends_on_the_code_that_renders_reports_and_verdicts():
    deps = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["aggregate"]["deps"]
    assert "src/curriculab/tables" in deps  # a change to how a claim is judged re-renders every report


EVALUATE_MODULES = ("curriculab.evaluate.transfer", "curriculab.evaluate.ttsa", "curriculab.evaluate.adversarial")


def test_evaluate_results_are_keyed_by_the_code_that_computed_them(tmp_path, monkeypatch):
    """A change to an evaluate module gives its cached results a new key (they were keyed by options and
    data only, so `dvc repro` after a fix to the attack code kept the old numbers)."""
    from curriculab.fingerprint import evaluation_key

    before = {m: fingerprint.module_fingerprint(m) for m in EVALUATE_MODULES}
    root = tmp_path / "changed" / "curriculab"
    shutil.copytree(fingerprint.HERE, root, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "evaluate" / "ttsa.py").write_text((root / "evaluate" / "ttsa.py").read_text() + "\nX = 1\n")
    (root / "evaluate" / "ttsa.py").write_text((root / "evaluate" / "ttsa.py").read_text() + "# a comment\n")
    after = {m: fingerprint.module_fingerprint(m, root) for m in EVALUATE_MODULES}
    assert after["curriculab.evaluate.ttsa"] != before["curriculab.evaluate.ttsa"]
    assert after["curriculab.evaluate.transfer"] == before["curriculab.evaluate.transfer"]
    assert after["curriculab.evaluate.adversarial"] == before["curriculab.evaluate.adversarial"]
    bookkeeping = {"executor.py", "tracking.py", "store.py"}  # where results go, not how they are computed
    assert not bookkeeping & set(fingerprint.module_files("curriculab.evaluate.adversarial"))
    monkeypatch.setattr(fingerprint, "PACKAGE", root)
    for m in ("curriculab.evaluate.ttsa", "curriculab.evaluate.adversarial"):
        assert evaluation_key({}, "c", m, sanity=False)["code"] == after[m]


def test_evaluate_stages_depend_on_the_code_they_run():
    deps = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["evaluate"]["do"]["deps"]
    for m in EVALUATE_MODULES:
        for f in fingerprint.module_files(m):
            assert any(f"src/curriculab/{f}" == d or f"src/curriculab/{f}".startswith(d + "/") for d in deps), f
