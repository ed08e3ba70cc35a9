"""Trustworthy verdicts (issue 13): no-variance claims, both epoch choices, under-training, Holm, the index."""

from __future__ import annotations

import pandas as pd
import pytest

from curriculab.config import Params, table_key
from curriculab.data.prepared import atomic_write_json
from curriculab.project import load_params
from curriculab.tables.report import render_table, write_index
from curriculab.tables.result import load_result
from curriculab.tables.spec import (
    QUOTED,
    Claim,
    TableSpec,
    expand_table,
    get_spec,
    paper_key,
    register_table,
    table_ids,
)
from curriculab.tables.stats import check_claim, holm, kind, still_improving
from tests.conftest import ROOT

SPEC = register_table(TableSpec(
    id="test.verdicts", title="verdicts test", source="harness", metrics=["test_acc", "test_acc_at_best_val"],
    claims=[Claim("good beats bad", "good", "bad"), Claim("bad beats good", "bad", "good")]))


def test_no_variance_with_different_means_is_not_testable():
    r = check_claim([0.9, 0.9, 0.9], [0.8, 0.8, 0.8])
    assert r.verdict == "not testable (no variance)" and r.p is None and kind(r.verdict) == "not testable"
    assert check_claim([0.9] * 3, [0.9] * 3).verdict == "not reproduced (no gain)"


def test_still_improving_is_the_last_quarter_against_the_best_before_it():
    assert still_improving([0.14, 0.42, 0.77, 0.91])  # issue 13's plain syndigits ResNet
    assert not still_improving([0.5, 0.9, 0.905, 0.903, 0.908])
    assert still_improving([2.0, 1.5, 1.0, 0.5], higher_is_better=False)
    assert still_improving([0.5]) is None


def test_holm():
    assert holm([0.01, None, 0.04, 0.03]) == pytest.approx([0.03, None, 0.06, 0.06])


def _table(tmp_path, runs):
    """runs: (row, column) → per seed (final test_acc, test_acc at best val, val curve)."""
    rows = {"good": {"methods": {"baseline": {}}}, "bad": {"methods": {"baseline": {}}, "train": {"epochs": 2}}}
    table = {"seeds": [0, 1, 2], "rows": rows,
             "columns": {c: {"data": {"dataset": c}} for c in ("digits", "syndigits")}}
    params = Params.model_validate({"prepare": {"datasets": ["digits", "syndigits"]},
                                    "tables": {"test_verdicts": table}})
    res = load_result("test.verdicts", params, tmp_path)
    for run in res.runs:
        final, selected, curve = runs[(run.row, run.column)][run.seed]
        best = max(range(len(curve)), key=lambda i: curve[i]) + 1
        hist = [{"epoch": e, "val_acc": v, "test_acc": selected if e == best else final}
                for e, v in enumerate(curve, 1)]
        atomic_write_json(run.dir(tmp_path) / "metrics.json", {"status": "done", "history": hist, "artifacts": [],
                          "final": {"test_acc": final, "test_acc_at_best_val": selected, "best_val_epoch": best}})
    return load_result("test.verdicts", params, tmp_path)


FLAT = [0.5, 0.9, 0.91, 0.91]  # converged
RISING = [0.1, 0.4, 0.7, 0.9]  # still improving at the end


def test_verdict_needs_both_epoch_choices_and_flags_under_training(tmp_path):
    seeds = [0.0, 0.01, 0.02]
    runs = {
        # digits: good beats bad at the final epoch only (selected epochs tie) → depends on epoch selection
        ("good", "digits"): [(0.9 + s, 0.8 + s, FLAT) for s in seeds],
        ("bad", "digits"): [(0.7 + s, 0.8 + s, FLAT[:3] + [0.9]) for s in seeds],
        # syndigits: good loses at both, but bad is still improving → under-trained
        ("good", "syndigits"): [(0.5 + s, 0.5 + s, FLAT) for s in seeds],
        ("bad", "syndigits"): [(0.9 + s, 0.9 + s, RISING) for s in seeds],
    }
    md, _, claims = render_table(_table(tmp_path, runs))
    c = {(x["claim"], x["column"]): x for x in claims}
    d = c[("good beats bad", "digits")]
    assert d["verdict"] == "depends on epoch selection"
    assert d["diff"] == pytest.approx(0.2) and d["diff_selected"] == pytest.approx(0.0)
    assert c[("bad beats good", "digits")]["verdict"].startswith("not reproduced")
    s = c[("good beats bad", "syndigits")]
    assert s["verdict"].startswith("inconclusive: under-trained") and s["still_improving"] == ["bad"]
    assert c[("bad beats good", "syndigits")]["verdict"] == "reproduced"  # a reproduced claim stays so
    ps = [x["p"] for x in claims]
    assert [x["p_holm"] for x in claims] == pytest.approx(holm(ps))
    assert "| Holm p |" in md and "depends on epoch selection" in md and "20.00 | " in md


def test_index_counts_each_kind_of_verdict(tmp_path):
    entries = [{"id": "x", "title": "t", "done": 3, "runs": 3, "figures": [], "verdicts": [
        "reproduced", "not reproduced (no gain)", "depends on epoch selection",
        "inconclusive: under-trained (was: not reproduced (significantly worse))", "not testable (no variance)",
        "not run", "untested (n < 3)", "unreliable (reproduced)"]}]
    params = Params.model_validate({})
    write_index(entries, params, tmp_path)
    text = (tmp_path / "README.md").read_text()
    assert "| reproduced | not reproduced | inconclusive | not testable |" in text
    assert "| [x](tables/x.md) | t | 3 / 3 | 1 | 1 | 3 | 3 | – |" in text


def test_dp_f4_claim_tests_the_plotted_top_share_against_its_highest_possible_value():
    from curriculab.tables.dp import f4_claim

    # 36% corrupt: the top 40% can hold at most 90% corrupt; 86% is 95.6% of that. The share above every
    # clean item is 0 (a clean item tied at the clamp): no bearing on the verdict.
    stats = {"dp_top_corrupt_share": [0.5, 0.86], "dp_corrupt_fraction": [0.36, 0.36],
             "dp_corrupt_above_all_clean": [0.0, 0.0], "dp_inst_auroc": [0.9, 0.99]}
    g = pd.DataFrame([{"column": "digits", "stat": k, "epoch": e, "mean": v}
                      for k, vals in stats.items() for e, v in enumerate(vals, 1)])
    c = f4_claim(g, epoch=2, share=0.95, top=0.4).iloc[0]
    assert c["verdict"] == "reproduced" and c["first_epoch_reaching_share"] == 2
    assert c["highest_possible"] == pytest.approx(0.9) and c["share_of_highest"] == pytest.approx(0.86 / 0.9)
    assert c["auroc_at_epoch"] == pytest.approx(0.99) and c["share_above_all_clean"] == 0.0
    low = g.assign(mean=g["mean"].where(g["stat"] != "dp_top_corrupt_share", 0.8))
    assert f4_claim(low, epoch=2, share=0.95, top=0.4).iloc[0]["verdict"] == "not reproduced"


def test_dp_t1_claims_only_in_the_columns_standing_in_for_where_the_paper_made_them(tmp_path):
    params = load_params(ROOT / "params.yaml")
    res = load_result("dp.t1", params, tmp_path)  # no runs: every tested claim is "not run"
    md, _, claims = render_table(res)
    tested = {(c["claim"], c["column"]) for c in claims if c["column"] != "–"}
    assert tested == {("DCL (class + instance) beats the baseline", c) for c in ("digits", "fashion_mnist")}
    untested = [c for c in claims if c["column"] == "–"]
    assert len(untested) == 3 and all(c["verdict"].startswith("not testable (made on ") for c in untested)
    assert "digits → cifar100, fashion_mnist → cifar100" in md


ATTACKS = ("clean", "fgsm", "bim", "mim", "pgd")  # adversarial sections: paper row "<row> · <classifier>"


def test_every_quoted_paper_number_lands_in_a_cell_of_the_paper_profile():
    """Each (row, key) of a spec's `paper` is a cell of that table in profiles/paper.yaml: a row and a
    paper_key (column, or "<column> <metric>" for a metric other than the headline), or an adversarial
    section's (row · classifier, attack) cell, unless marked QUOTED (no run stands for it)."""
    params = load_params(ROOT / "profiles" / "paper.yaml")
    quoting = {table_key(i) for i in table_ids() if get_spec(i).paper and get_spec(i).source != "harness"}
    assert quoting <= set(params.tables)  # every table quoting the paper has a block in the paper profile
    lost = []
    for key, t in params.tables.items():
        spec = get_spec(key)
        for row, vals in spec.paper.items():
            for k in vals:
                col, _, metric = k.partition(" ")
                cell = row in t.rows and col in t.columns and paper_key(spec.metrics, col, metric or
                                                                       spec.metrics[0]) == k
                adversarial = row.partition(" · ")[0] in t.rows and " · " in row and k in ATTACKS
                if not (cell or adversarial or QUOTED in row or QUOTED in k):
                    lost.append(f"{spec.id}: {row} / {k}")
    assert not lost


def test_paper_profile_differences_are_fixed_or_stated():
    """CBS's VGG-16 has no BatchNorm and cbs.t6 trains [58]'s network on binarised MNIST in the paper profile; the
    other differences are in the table notes."""
    params = load_params(ROOT / "profiles" / "paper.yaml")
    vggs = [r for key in params.tables if key.startswith("cbs_") for r in expand_table(get_spec(key), params)
            if r.config.model.name == "vgg16"]
    assert vggs and all(r.config.model.kwargs.get("bn") is False for r in vggs)
    assert "train + extra" in get_spec("spl.t1").notes
    assert "2 hidden layers of 500" in get_spec("cbs.t3").notes
    t6 = expand_table(get_spec("cbs.t6"), params)  # [58]'s network on binary MNIST, as the paper
    assert {r.config.model.name for r in t6} == {"wae"}
    assert {r.config.data.dataset for r in t6} == {"binarized_mnist", "celeba"}


def test_dp_t2_figure4_verdict_is_counted_with_the_table_claims(tmp_path):
    params = load_params(ROOT / "params.yaml")
    res = load_result("dp.t2", params, tmp_path)
    for run in res.runs:
        if run.row != "instance":
            continue
        f4 = [{"dp_f4": {"dp_top_corrupt_share": share, "dp_corrupt_fraction": 0.36, "dp_inst_auroc": 0.99,
                         "dp_corrupt_above_all_clean": 0.0}} for share in (0.5, 0.88)]
        hist = [{"epoch": e, "val_acc": 0.9, "test_acc": 0.9} for e in (1, 2)]
        atomic_write_json(run.dir(tmp_path) / "metrics.json", {"status": "done", "history": hist, "artifacts": f4,
                          "final": {"test_acc": 0.9, "test_acc_at_best_val": 0.9, "best_val_epoch": 1}})
    md, _, claims = render_table(load_result("dp.t2", params, tmp_path))
    f4 = [c for c in claims if c["claim"].startswith("corrupt share of the top 40%")]
    assert [c["column"] for c in f4] == ["digits", "fashion_mnist"]
    assert all(c["verdict"] == "reproduced" for c in f4)  # 0.88 / 0.9 ≥ 95%, by epoch 2 ≤ 20
    assert "| 88.0% | 90.0% | 97.8% |" in md


def test_thesis_section_claims_join_the_table_claims(tmp_path):
    from tests.test_thesis_sum_tables import ROWS
    from tests.test_thesis_sum_tables import _table as thesis_table

    _, _, claims = render_table(thesis_table(tmp_path, "thesis.t31", ROWS))
    texts = {c["claim"] for c in claims}
    assert "CSA (start K=4) beats the baseline" in texts  # the spec's claim
    assert any(t.startswith("the gain of CSA (K=4) over the baseline is larger on") for t in texts)  # a section's
