"""The Sum Augmentation tables: claims measured in sections (subset gain, K = 4, norm, spikes, TTSA), f34, f36."""

from __future__ import annotations

import pytest

from curriculab.config import Params
from curriculab.data.prepared import atomic_write_json
from curriculab.tables.report import render_table
from curriculab.tables.result import load_result

ROWS = {r: {"methods": {"csa": {"cascade": c}}} for r, c in
        [("csa_k8", [8, 4, 2, 1]), ("csa_k4", [4, 2, 1]), ("csa_k2", [2, 1]), ("baseline", [1])]}
COLS = {"wrn_50": {"data": {"dataset": "digits", "subset_per_class": 5}},
        "wrn_150": {"data": {"dataset": "digits", "subset_per_class": 15}}}
# test error per (row, column): CSA K=4 gains 10 points on the small subset and 2 on the large one
ERR = {("baseline", "wrn_50"): 0.30, ("csa_k4", "wrn_50"): 0.20, ("csa_k8", "wrn_50"): 0.25,
       ("csa_k2", "wrn_50"): 0.26, ("baseline", "wrn_150"): 0.10,
       ("csa_k4", "wrn_150"): 0.08, ("csa_k8", "wrn_150"): 0.09, ("csa_k2", "wrn_150"): 0.095}
NORM = {"csa_k8": 10.0, "csa_k4": 11.0, "csa_k2": 12.0, "baseline": 13.0}


def _table(tmp_path, table_id: str, rows: dict, extra: dict | None = None):
    key = table_id.replace(".", "_")
    block = {"seeds": [0, 1, 2], "run": {"train": {"epochs": 4, "batch_size": 16}}, "rows": rows, "columns": COLS,
             **(extra or {})}
    params = Params.model_validate({"prepare": {"datasets": ["digits"]}, "tables": {key: block}})
    res = load_result(table_id, params, tmp_path)
    for run in res.runs:
        noise = 0.002 * run.seed
        spike = 3.0 if run.row.startswith("csa") else 0.0  # CSA's norm jumps at epoch 3
        hist = [{"epoch": e + 1, "model_l2_norm": NORM.get(run.row, 10.0) + (spike if e == 2 else 0) + noise}
                for e in range(4)]
        atomic_write_json(run.dir(tmp_path) / "metrics.json", {"status": "done", "final": {"epochs": 4},
                                                              "history": hist, "artifacts": [{}] * 4})
        ev = {"test_err": ERR.get((run.row, run.column), 0.2) + noise, "l2_norm": NORM.get(run.row, 10.0) + noise,
              "ttsa_test_err": ERR.get((run.row, run.column), 0.2) - 0.05 + noise}
        atomic_write_json(tmp_path / "runs" / "eval" / key / f"{run.run_id}.json", ev)
    return load_result(table_id, params, tmp_path)


def test_t31_claims_and_sections(tmp_path):
    res = _table(tmp_path, "thesis.t31", ROWS)
    md, _, claims = render_table(res)
    k4 = {c["column"]: c for c in claims if c["claim"] == "CSA (start K=4) beats the baseline"}
    assert k4["wrn_50"]["diff"] == pytest.approx(0.10) and k4["wrn_50"]["verdict"] == "reproduced"
    # the gain (baseline − K=4) is 8 points larger on the smaller subset
    assert "| the gain of CSA (K=4) over the baseline is larger on wrn_50 than on wrn_150 | wrn | 8 |" in md
    assert "| a higher start K (8) ends with a lower L2 norm than K=2 (norm units) | wrn_50 | 2 |" in md
    assert "validation** accuracy" in md and "· paper" not in md  # offline columns are not paper columns


def test_t34_spikes_f34_and_test_selection_flag(tmp_path):
    rows = {"gcsa_k4": {"methods": {"gcsa": {"start": 4, "cascade_epochs": 2, "uneven": "drop"}}},
            "csa_k4": {"methods": {"csa": {"cascade": [4, 2, 1], "select_on": "test", "allow_test_selection": True}}},
            "baseline": ROWS["baseline"]}
    res = _table(tmp_path, "thesis.t34", rows)
    md, _, _ = render_table(res)
    # CSA's norm jumps by 3 at epoch 3, GCSA's never moves: the jump difference is 3 norm units
    assert "| gcsa_k4 has smaller norm jumps than csa_k4 | wrn_50 | 3 |" in md
    assert "TEST-SET SELECTION" in md and "csa_k4" in md.split("TEST-SET SELECTION")[1].split("\n")[2]
    from curriculab.tables.thesis_sum import f34_figure

    files = f34_figure(res, tmp_path / "fig")
    assert [f.name for f in files] == ["thesis.f34.png", "thesis.f34.csv"]


def test_t35_ttsa_section_and_f36_reduction(tmp_path):
    res = _table(tmp_path, "thesis.t35", {"2": {"methods": {"csa": {"cascade": [2]}}}})
    md, _, _ = render_table(res)
    assert "| TTSA lowers the error of 2 | wrn_50 | 5 |" in md
    rows = {"baseline": ROWS["baseline"], "csa_k4": ROWS["csa_k4"], "mixup": {"methods": {"mixup": {}}}}
    res = _table(tmp_path / "f36", "thesis.f36", rows)
    md, _, _ = render_table(res)
    assert "| csa_k4 | 33.1 | 19.6 |" in md  # (0.302 − 0.202) / 0.302 and (0.102 − 0.082) / 0.102 (seed noise)
