"""Executor modes give identical metrics; runs are skipped when finished (MLflow: tests/test_tracking.py)."""

from __future__ import annotations

import pytest

from curriculab.config import ExecutorParams, Params
from curriculab.executor import is_finished, run_all
from curriculab.tables.spec import expand_table, get_spec

TABLE = {
    "seeds": [0, 1],
    "run": {"model": {"name": "small_cnn", "width": 0.25}, "train": {"epochs": 1, "batch_size": 32},
            "data": {"subset_per_class": 20}},
    "columns": {"digits": {"data": {"dataset": "digits"}}, "syndigits": {"data": {"dataset": "syndigits"}}},
    "rows": {"baseline": {"methods": {"baseline": {}}}},
}


@pytest.fixture
def params():
    return Params.model_validate({"prepare": {"datasets": ["digits", "syndigits"]}, "tables": {"baseline": TABLE}})


def _finals(records):
    return [{k: v for k, v in r["final"].items() if k != "seconds"} for r in records]


def test_parallel_equals_sequential_and_finished_runs_are_skipped(params, workdir, tmp_path):
    runs = expand_table(get_spec("baseline"), params)
    assert len(runs) == 4 and len({r.run_id for r in runs}) == 4
    seq = run_all(runs, workdir, ExecutorParams(workers=1))
    assert all(is_finished(r, workdir) for r in runs)
    (tmp_path / "par").mkdir()
    (tmp_path / "par" / "data").symlink_to(workdir / "data")
    par = run_all(runs, tmp_path / "par", ExecutorParams(workers=2))
    assert _finals(par) == _finals(seq)
    mtimes = [(r.dir(workdir) / "metrics.json").stat().st_mtime_ns for r in runs]
    again = run_all(runs, workdir, ExecutorParams(workers=1))
    assert [(r.dir(workdir) / "metrics.json").stat().st_mtime_ns for r in runs] == mtimes
    assert _finals(again) == _finals(seq)


def test_changed_settings_change_the_run_id(params):
    a = expand_table(get_spec("baseline"), params)
    params.tables["baseline"].rows["baseline"]["train"] = {"optimizer": {"lr": 0.01}}
    b = expand_table(get_spec("baseline"), params)
    assert not {r.run_id for r in a} & {r.run_id for r in b}


def test_run_id_hashes_method_defaults(params):
    from curriculab.methods import registry

    params.tables["baseline"].rows["baseline"] = {"methods": {"data_parameters": {"curriculum": "class"}}}
    run = expand_table(get_spec("baseline"), params)[0]
    dp = run.config.methods["data_parameters"]
    assert dp["weight_decay_mode"] == "all" and dp["class_init"] == 1.0  # defaults are part of the settings
    defaults = registry()["data_parameters"].Params().model_dump()
    assert set(dp) == set(defaults)
