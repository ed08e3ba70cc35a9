"""Aggregation: every run's metrics.json → reports/tables/<id>.md and .csv, figures, and reports/README.md."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from curriculab.config import Params, table_key
from curriculab.data.prepared import missing_datasets
from curriculab.engine.records import is_done
from curriculab.tables.result import TableResult, load_result
from curriculab.tables.spec import RunSpec, paper_key, runs_cell
from curriculab.tables.stats import KINDS, check_claim, holm, kind, still_improving, verdict

if TYPE_CHECKING:
    import pandas as pd

PAPER_TITLES = {
    "cbs": "Curriculum by Smoothing (Sinha, Garg, Larochelle, NeurIPS 2020)",
    "dp": "Data Parameters (Saxena, Tuzel, DeCoste, NeurIPS 2019)",
    "spl": "SPL-ADVisE (Thangarasa & Taylor, BMVC 2018)",
    "ps": "Optimisation with Progressive Sharpening (Trivedi 2021)",
    "thesis": "Deep Learning Training Procedure Augmentations (Simionescu, MSc 2020)",
    "harness": "curriculab's own check of the harness (no paper)",
}


def _fmt(v: float, percent: bool) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v * 100:.2f}" if percent else f"{v:.4g}"


def _cell(vals: pd.Series, percent: bool) -> str:
    if vals.empty:
        return "not run"
    sd = vals.std(ddof=1) if len(vals) > 1 else float("nan")
    return f"{_fmt(vals.mean(), percent)} ± {_fmt(sd, percent)} ({len(vals)})"


def _header(res: TableResult) -> list[str]:
    p, t, spec = res.params, res.params.tables[res.spec.key], res.spec
    cfgs = [r.config for r in res.runs]
    done = sum(1 for rec in res.records if is_done(rec))
    n = len(res.diverged())
    ds = sorted({c.data.dataset for c in cfgs})
    arch = sorted({f"{c.model.name} (width {c.model.width:g})" for c in cfgs})
    epochs = sorted({c.train.epochs for c in cfgs})
    methods = sorted({"+".join(c.methods) for c in cfgs})
    return [
        f"# {spec.id}: {spec.title}",
        "",
        f"- Source: {PAPER_TITLES.get(spec.source, spec.source)}",
        f"- Profile: **{p.profile}**" + (f" ({p.description})" if p.description else ""),
        f"- What these runs used: datasets {', '.join(ds)}; architectures {', '.join(arch)}; "
        f"epochs {', '.join(map(str, epochs))}; seeds {t.seeds}; methods {', '.join(methods)}",
        f"- Runs finished: {done} of {len(res.runs)}" + (f"; {n} diverged (see the notes)" if n else ""),
        "",
    ]


def render_table(res: TableResult) -> tuple[str, pd.DataFrame, list[dict]]:
    """Markdown, the CSV summary (row, column, metric, mean, std, n, paper) and the claim results."""
    import pandas as pd

    from curriculab.tables.robust import adversarial_section

    spec, t = res.spec, res.params.tables[res.spec.key]
    df = res.finals()
    diverged = res.diverged()
    lines = _header(res)
    adversarial = adversarial_section(res, lambda v: _cell(v, True))  # (markdown, reliable) if attacked
    reliable = adversarial is None or adversarial[1]
    summary = []
    for metric in spec.metrics:
        lines += [f"## {metric}" + (" (%)" if spec.percent else "") + " — measured here, mean ± std (n)", ""]
        cols = list(t.columns)
        lines += ["| row | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for row in t.rows:
            cells = []
            for col in cols:
                vals = df[(df["row"] == row) & (df["column"] == col)][metric].dropna() if metric in df else pd.Series()
                paper = spec.paper.get(row, {}).get(paper_key(spec.metrics, col, metric))
                cell = _cell(vals, spec.percent) if runs_cell(t, row, col) else "— (not a cell: `cells`)"
                gone = sum(1 for r, _ in diverged if r.row == row and r.column == col)
                if gone:
                    cell = f"{gone} diverged" if vals.empty else f"{cell} · {gone} diverged"
                if paper is not None:
                    cell += f" · paper {paper:g}"
                cells.append(cell)
                scale = 100 if spec.percent else 1  # the markdown's unit, in the CSV and metrics.json too
                summary.append({"row": row, "column": col, "metric": metric,
                                "mean": vals.mean() * scale if len(vals) else None,
                                "std": vals.std(ddof=1) * scale if len(vals) > 1 else None, "n": len(vals),
                                "unit": "%" if spec.percent else "",
                                "paper": paper})
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
        lines.append("")
    if claims := claim_results(res, df, reliable):
        lines += _claims_markdown(res, claims)
    claims = list(claims)
    if spec.paper:
        pcols = list(dict.fromkeys(c for v in spec.paper.values() for c in v))
        lines += ["## The paper's reported numbers (quoted, not measured here)", "",
                  "| row | " + " | ".join(pcols) + " |", "|---" * (len(pcols) + 1) + "|"]
        for row, vals in spec.paper.items():
            lines.append(f"| {row} | " + " | ".join(f"{vals[c]:g}" if c in vals else "" for c in pcols) + " |")
        lines.append("")
        if spec.paper_note:
            lines += [spec.paper_note, ""]
    if adversarial is not None:
        lines += [adversarial[0].rstrip(), ""]
    for section in spec.sections:
        text = section(res)
        if text:
            lines += [text.rstrip(), ""]
            claims += getattr(text, "claims", [])
    if spec.all_notes or diverged:
        lines += ["## Notes", ""] + ([spec.all_notes, ""] if spec.all_notes else []) + _diverged_note(diverged)
    return "\n".join(lines), pd.DataFrame(summary), claims


def _epoch_choices(df: pd.DataFrame, sel: pd.DataFrame, metric: str):
    """Where a claim's metric is read: (frame, key) at the final epoch, and at the validation-selected epoch
    (the run's `<metric>_at_best_val`, else its per-epoch value at `best_val_epoch`; None if it has neither)."""
    base = metric.removesuffix("_at_best_val")
    if f"{base}_at_best_val" in df:
        return (df, base), (df, f"{base}_at_best_val")
    return (df, base), ((sel, base) if base in sel else None)


def claim_results(res: TableResult, df: pd.DataFrame, reliable: bool = True) -> list[dict]:
    """Every claim of the table, per column where the paper made it: tested at the final and at the
    validation-selected epoch, Holm-corrected over the table's claims (one family per epoch choice),
    checked for under-training, and given one verdict (stats.verdict)."""
    spec, t = res.spec, res.params.tables[res.spec.key]
    if not spec.claims:
        return []
    sel, curves = res.selected(), res.val_curves()
    analogues = getattr(res.options, "analogues", None) or {}
    out = []
    for claim in spec.claims:
        if claim.better not in t.rows or claim.worse not in t.rows:
            continue
        metric = claim.metric or spec.metrics[0]
        cols = [c for c in t.columns if not claim.columns or analogues.get(c, c) in claim.columns]
        if not cols:
            out.append({"claim": claim.text, "column": "–", "metric": metric, "diff": math.nan, "p": None,
                        "verdict": f"not testable (made on {', '.join(claim.columns)} only; no column here "
                                   "stands in for it)"})
            continue
        final_at, selected_at = _epoch_choices(df, sel, metric)
        for col in cols:
            def vals(at, row, col=col):
                frame, key = at
                if not len(frame) or key not in frame:
                    return []
                return list(frame[(frame["row"] == row) & (frame["column"] == col)][key].dropna())

            def test(at, claim=claim, vals=vals):
                return None if at is None else check_claim(vals(at, claim.better), vals(at, claim.worse),
                                                           spec.higher_is_better)

            fin, chosen = test(final_at), test(selected_at)
            improving = [row for row in (claim.better, claim.worse)
                         if (row, col) in curves and still_improving(*curves[(row, col)])]
            v = verdict(fin, chosen, bool(improving))
            out.append({"claim": claim.text, "column": col, "metric": metric, "diff": fin.diff, "p": fin.p,
                        "diff_selected": chosen.diff if chosen else math.nan,
                        "p_selected": chosen.p if chosen else None, "still_improving": improving,
                        "verdict": v if reliable else f"unreliable ({v})"})
    for key in ("p", "p_selected"):
        for c, h in zip(out, holm([c.get(key) for c in out]), strict=True):
            c[f"{key}_holm"] = h
    return out


def _claims_markdown(res: TableResult, claims: list[dict]) -> list[str]:
    spec, cols = res.spec, res.params.tables[res.spec.key].columns
    analogues = {k: v for k, v in (getattr(res.options, "analogues", None) or {}).items() if k in cols and k != v}

    def p(v):
        return "–" if v is None else f"{v:.3g}"

    lines = ["## Claims", "", "Difference of means (claimed-better minus other, in the metric's units; positive "
             "supports the claim) and Welch's t-test (two-sided, both sides n ≥ 3), at the **final** epoch and at "
             "the epoch **selected** on validation (`best_val_epoch`); Holm p: Holm's correction over this "
             f"table's {len(claims)} claim tests (per epoch choice). Verdicts use the raw p: one whose Holm p is "
             "≥ 0.05 does not survive the correction. 'reproduced' needs both epoch choices to agree, else "
             "'depends on epoch selection'. *Still improving*: sides whose mean validation curve gained more "
             "than 1% over its best before the last 25% of epochs; a 'not reproduced' there reads "
             "'inconclusive: under-trained'. A selected value is '–' where the metric is measured once, on the "
             "final model (evaluate-stage metrics)."]
    if analogues:
        lines += ["", "Columns stand in for the paper's: " + ", ".join(f"{k} → {v}" for k, v in analogues.items())
                  + "; a claim is tested only in the columns standing in for those where the paper made it."]
    lines += ["", "| claim | column | metric | final: difference | p | Holm p | selected: difference | p | Holm p "
              "| still improving | verdict |", "|---" * 11 + "|"]
    for c in claims:
        lines.append(f"| {c['claim']} | {c['column']} | {c['metric']} | {_fmt(c['diff'], spec.percent)} | "
                     f"{p(c['p'])} | {p(c['p_holm'])} | {_fmt(c.get('diff_selected'), spec.percent)} | "
                     f"{p(c.get('p_selected'))} | {p(c['p_selected_holm'])} | "
                     f"{', '.join(c.get('still_improving', [])) or '–'} | {c['verdict']} |")
    return lines + [""]


def _diverged_note(diverged: list[tuple[RunSpec, dict]]) -> list[str]:
    if not diverged:
        return []
    runs = "; ".join(f"{r.row} / {r.column} / seed {r.seed} (run {r.run_id}, epoch {len(rec.get('history', []))})"
                     for r, rec in diverged)
    return [f"Diverged (the training loss became NaN or infinite; these runs are in no mean, std or claim): "
            f"{runs}.", ""]


def write_table(res: TableResult, reports: Path) -> dict:
    """Write the table's .md and .csv and its figures; return an index entry."""
    missing = missing_datasets(res.workdir / res.params.prepare.root, {r.config.data.dataset for r in res.runs})
    if missing:
        return write_not_run(res, reports, "; ".join(missing.values()))
    md, summary, claims = render_table(res)
    out = Path(reports) / "tables"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{res.spec.id}.md").write_text(md)
    summary.to_csv(out / f"{res.spec.id}.csv", index=False)
    figs = []
    for fig in res.spec.figures:
        figs += [p for p in fig(res, Path(reports) / "figures") if Path(p).suffix == ".png"]
    verdicts = [c["verdict"] for c in claims]
    return {"id": res.spec.id, "title": res.spec.title,
            "done": sum(1 for r in res.records if is_done(r)), "runs": len(res.runs),
            "verdicts": verdicts, "figures": [Path(f).name for f in figs], "metrics": _metrics(summary, claims)}


def write_not_run(res: TableResult, reports: Path, reason: str) -> dict:
    """The report of a table whose data `prepare` could not get: what is missing and how to provide it."""
    import pandas as pd

    lines = _header(res) + [f"**Not run:** {reason}. Nothing of this table was measured.", ""]
    out = Path(reports) / "tables"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{res.spec.id}.md").write_text("\n".join(lines))
    pd.DataFrame(columns=["row", "column", "metric", "mean"]).to_csv(out / f"{res.spec.id}.csv", index=False)
    return {"id": res.spec.id, "title": res.spec.title, "done": 0, "runs": len(res.runs), "not_run": reason,
            "verdicts": [], "figures": [], "metrics": {"cells": {}, "claims": {}}}


def _finite(v) -> float | None:
    return float(v) if v is not None and math.isfinite(float(v)) else None


def _metrics(summary: pd.DataFrame, claims: list[dict]) -> dict:
    """The table's entry of reports/metrics.json: row → column → metric → mean (the markdown's cells,
    in its units: percent where the table shows percent), and each claim's verdict per column, from
    the same results the markdown shows."""
    cells: dict = {}
    for c in summary.to_dict("records"):
        cells.setdefault(c["row"], {}).setdefault(c["column"], {})[c["metric"]] = _finite(c["mean"])
    order = list(dict.fromkeys(c["claim"] for c in claims))
    verdicts: dict = {}
    for c in claims:
        entry = verdicts.setdefault(f"claim{order.index(c['claim']) + 1}", {"text": c["claim"], "verdicts": {}})
        entry["verdicts"][c["column"]] = c["verdict"]
    return {"cells": cells, "claims": verdicts}


def write_index(entries: list[dict], params: Params, reports: Path) -> None:
    lines = ["# Reports", "", f"Profile: **{params.profile}**. Generated by `dvc repro` (stage `aggregate`); "
             "every number below was measured by the runs under `runs/`, the papers' numbers are quoted "
             "beside them and labelled as such.", "",
             "Claim verdicts per table (one per claim and column; see each table's Claims section): reproduced "
             "(at both the final and the validation-selected epoch), not reproduced, inconclusive (depends on "
             "epoch selection, under-trained, or a failed sanity check), not testable (not run, n < 3, no "
             "variance, or no column where the paper made the claim).", "",
             "| table | title | runs finished | " + " | ".join(KINDS) + " | figures |",
             "|---" * (len(KINDS) + 4) + "|"]
    for e in entries:
        counts = [str(sum(kind(v) == k for v in e["verdicts"])) if e["verdicts"] else "–" for k in KINDS]
        figs = ", ".join(f"[{f}](figures/{f})" for f in e["figures"]) or "–"
        done = "not run (data missing)" if e.get("not_run") else f"{e['done']} / {e['runs']}"
        lines.append(f"| [{e['id']}](tables/{e['id']}.md) | {e['title']} | {done} | "
                     + " | ".join(counts) + f" | {figs} |")
    Path(reports).mkdir(parents=True, exist_ok=True)
    (Path(reports) / "README.md").write_text("\n".join(lines) + "\n")


def aggregate(params: Params, workdir: Path, reports: Path) -> list[dict]:
    """Every table in params → its report files; then the index.

    Everything is written to a temporary folder first; only when all of it is there are the files moved
    into `reports` one by one (each move atomic) and files of tables no longer listed removed. A failure
    leaves `reports` exactly as it was.
    """
    from curriculab.tables.spec import table_ids

    keys = {table_key(t): t for t in table_ids()}
    reports = Path(reports)
    reports.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=reports.parent, prefix=f".{reports.name}."))
    try:
        entries = [write_table(load_result(keys[k], params, workdir), staging) for k in params.tables]
        write_index(entries, params, staging)
        metrics = {table_key(e["id"]): e["metrics"] for e in entries}
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=1, allow_nan=False) + "\n")
        _publish(staging, reports)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return entries


def _publish(staging: Path, reports: Path) -> None:
    """Move every file of `staging` over its counterpart in `reports`, then drop files that are not new."""
    new = {p.relative_to(staging) for p in staging.rglob("*") if p.is_file()}
    for rel in sorted(new):
        (reports / rel).parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / rel, reports / rel)
    for p in sorted(reports.rglob("*"), reverse=True):
        if p.is_file() and p.relative_to(reports) not in new:
            p.unlink()
        elif p.is_dir() and not any(p.iterdir()):
            p.rmdir()
