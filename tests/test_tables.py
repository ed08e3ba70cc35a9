"""Table reports: cells, the paper column, claims with Welch's t-test, missing runs shown as such."""

from __future__ import annotations

import pytest

from curriculab.config import Params
from curriculab.data.prepared import atomic_write_json
from curriculab.registry import load_object
from curriculab.tables.report import render_table
from curriculab.tables.result import load_result
from curriculab.tables.spec import TABLES, Claim, TableSpec, register_table
from curriculab.tables.stats import check_claim


def test_claim_verdicts():
    assert check_claim([0.9, 0.91, 0.92], [0.8, 0.81, 0.82]).verdict == "reproduced"
    worse = check_claim([0.7, 0.71, 0.72], [0.8, 0.81, 0.82])
    assert worse.verdict.startswith("not reproduced") and worse.diff < 0
    noisy = check_claim([0.95, 0.5, 0.7], [0.69, 0.7, 0.71])
    assert noisy.verdict == "not reproduced (better, not significant)" and noisy.p > 0.05
    assert check_claim([0.9, 0.91], [0.8, 0.81]).verdict == "untested (n < 3)"
    assert check_claim([0.9], []).verdict == "not run"
    lower = check_claim([1.0, 1.1, 1.2], [2.0, 2.1, 2.2], higher_is_better=False)
    assert lower.verdict == "reproduced" and lower.diff == pytest.approx(1.0)
    from scipy import stats

    r = check_claim([0.9, 0.91, 0.95, 0.93], [0.8, 0.86, 0.82])
    assert r.p == pytest.approx(stats.ttest_ind([0.9, 0.91, 0.95, 0.93], [0.8, 0.86, 0.82], equal_var=False).pvalue)


def test_every_runner_and_evaluate_step_names_a_function():
    """`runner` and `evaluate` are "module:function" references, imported only when a run or evaluation needs them."""
    refs = [ref for _, spec in TABLES.items() for ref in (spec.runner, spec.evaluate) if ref is not None]
    assert any(spec.runner for _, spec in TABLES.items()) and any(spec.evaluate for _, spec in TABLES.items())
    for ref in refs:
        assert callable(load_object(ref)), ref


SPEC = register_table(TableSpec(
    id="test.report", title="report test", source="harness", metrics=["test_acc"],
    paper={"good": {"digits": 95.0, "CIFAR10": 90.0}}, claims=[Claim("good beats bad", "good", "bad")]))


def test_render_with_paper_numbers_claims_and_missing_runs(tmp_path):
    table = {"seeds": [0, 1, 2], "rows": {"good": {"methods": {"baseline": {}}},
                                          "bad": {"methods": {"baseline": {}}, "train": {"epochs": 2}}},
             "columns": {"digits": {"data": {"dataset": "digits"}}, "syndigits": {"data": {"dataset": "syndigits"}}}}
    params = Params.model_validate({"prepare": {"datasets": ["digits", "syndigits"]}, "tables": {"test_report": table}})
    res = load_result("test.report", params, tmp_path)
    accs = {("good", "digits"): [0.91, 0.92, 0.93], ("bad", "digits"): [0.81, 0.82, 0.83]}
    for run in res.runs:
        vals = accs.get((run.row, run.column))
        if vals:
            atomic_write_json(run.dir(tmp_path) / "metrics.json", {
                "status": "done", "final": {"test_acc": vals[run.seed]}, "history": [], "artifacts": []})
    res = load_result("test.report", params, tmp_path)
    md, summary, claims = render_table(res)
    assert "| good | 92.00 ± 1.00 (3) · paper 95 | not run |" in md
    assert "Runs finished: 6 of 12" in md
    assert "quoted, not measured here" in md and "| good | 95 | 90 |" in md
    by_col = {c["column"]: c for c in claims}
    assert by_col["digits"]["verdict"] == "reproduced" and by_col["digits"]["diff"] == pytest.approx(0.1)
    assert by_col["syndigits"]["verdict"] == "not run"
    row = summary[(summary.row == "good") & (summary.column == "digits")].iloc[0]
    assert row["mean"] == pytest.approx(92.0) and row["unit"] == "%" and row["n"] == 3 and row["paper"] == 95.0


def test_cells_run_only_the_listed_rows_of_a_column_with_their_overrides(tmp_path):
    """`cells`: a column listed there runs only its listed rows, each with its override merged last; the others
    show as no cell of the table, not as missing runs; a cell naming no row or column is refused."""
    from curriculab.config import ConfigError
    from curriculab.tables.spec import expand_table

    table = {"seeds": [0], "rows": {"good": {"train": {"epochs": 3}}, "bad": {"train": {"epochs": 2}}},
             "columns": {"digits": {"data": {"dataset": "digits"}}, "syndigits": {"data": {"dataset": "syndigits"}}},
             "cells": {"syndigits": {"good": {"train": {"epochs": 5, "batch_size": 7}}}}}
    params = Params.model_validate({"prepare": {"datasets": ["digits", "syndigits"]}, "tables": {"test_report": table}})
    runs = {(r.row, r.column): r.config.train for r in expand_table(SPEC, params)}
    assert set(runs) == {("good", "digits"), ("bad", "digits"), ("good", "syndigits")}
    assert (runs["good", "syndigits"].epochs, runs["good", "syndigits"].batch_size) == (5, 7)
    assert runs["good", "digits"].epochs == 3
    md, _, _ = render_table(load_result("test.report", params, tmp_path))
    assert "| bad | not run | — (not a cell: `cells`) |" in md
    for cells, err in (({"cifar": {"good": {}}}, "tables.test_report.cells.cifar: not a column"),
                       ({"digits": {"ugly": {}}}, "tables.test_report.cells.digits.ugly: not a row")):
        bad = Params.model_validate({"prepare": {"datasets": ["digits", "syndigits"]},
                                     "tables": {"test_report": {**table, "cells": cells}}})
        with pytest.raises(ConfigError, match=err):
            expand_table(SPEC, bad)


def test_sweep_table_chooses_on_validation_only():
    """The `sweep` kind: the row with the best mean last-epoch validation score, test never consulted."""
    from types import SimpleNamespace

    from curriculab.tables.sweep import choose, sweep_section

    def hist(vals, tests):
        return [{"epoch": i + 1, "val_acc": v, "test_acc": t} for i, (v, t) in enumerate(zip(vals, tests))]

    class Res:
        runs = [SimpleNamespace(row=r, column="digits", seed=s) for r in ("lr_1", "lr_10") for s in (0, 1)]

        def history(self):
            import pandas as pd

            recs = {("lr_1", 0): hist([0.5, 0.8], [0.99, 0.99]), ("lr_1", 1): hist([0.6, 0.7], [0.99, 0.99]),
                    ("lr_10", 0): hist([0.9, 0.85], [0.1, 0.1]), ("lr_10", 1): hist([0.7, 0.8], [0.1, 0.1])}
            return pd.DataFrame([{"row": r, "column": "digits", "seed": s, **h}
                                 for (r, s), hs in recs.items() for h in hs])

    assert choose(Res()) == {"digits": ("lr_10", pytest.approx(0.825))}
    assert choose(Res(), by="best_val") == {"digits": ("lr_10", pytest.approx(0.85))}
    text = sweep_section(Res())
    assert "chosen `lr_10`" in text and "| digits | lr_1 | 75.00 | 75.00 | 2 |" in text
