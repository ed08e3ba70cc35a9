"""The `sweep` kind of table: a small grid trained and scored on the validation split, and the choice.

A hyper-parameter that curriculab sets differently from its paper (e.g. the offline profile's instance
learning rate) is picked by such a table: its rows are the grid (each row a partial run config, as any
table's), its metric is the validation score of the task's primary metric, and a section names the row
with the best mean over seeds in each column. The tables that use the picked value name the sweep in
their notes. The test split is shown beside it for information only; it never enters the choice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from curriculab.tables.spec import TableSpec

if TYPE_CHECKING:
    import pandas as pd


def _best_val(res) -> pd.DataFrame:
    """Per finished run: the final and the best-over-epochs validation score (primary metric)."""
    import pandas as pd

    hist = res.history()
    if hist.empty:
        return pd.DataFrame()
    key = "val_acc" if "val_acc" in hist else next(c for c in hist.columns if c.startswith("val_"))
    best = hist.groupby(["row", "column", "seed"])[key].max().rename("best_val").reset_index()
    last = hist.groupby(["row", "column", "seed"])[key].last().rename("last_val").reset_index()
    return best.merge(last, on=["row", "column", "seed"])


def choose(res, by: str = "last_val") -> dict[str, tuple[str, float]]:
    """Column → (chosen row, its mean validation score): the best mean over seeds of `by`."""
    df = _best_val(res)
    if df.empty:
        return {}
    means = df.groupby(["column", "row"])[by].mean().reset_index()
    out = {}
    for col, part in means.groupby("column", sort=False):
        top = part.loc[part[by].idxmax()]
        out[str(col)] = (str(top["row"]), float(top[by]))
    return out


def sweep_section(res) -> str:
    """Markdown: the grid's validation scores and the row chosen in each column."""
    df = _best_val(res)
    if df.empty:
        return "## Sweep choice\n\nNo finished runs yet: nothing chosen."
    rows = list(dict.fromkeys(r.row for r in res.runs))
    lines = ["## Sweep choice (validation split only)", "",
             "| column | row | last-epoch val (mean) | best-epoch val (mean) | seeds |", "|---|---|---|---|---|"]
    for (col, row), part in sorted(df.groupby(["column", "row"]), key=lambda kv: (kv[0][0], rows.index(kv[0][1]))):
        lines.append(f"| {col} | {row} | {100 * part['last_val'].mean():.2f} | "
                     f"{100 * part['best_val'].mean():.2f} | {len(part)} |")
    lines.append("")
    for col, (row, score) in choose(res).items():
        lines.append(f"- **{col}: chosen `{row}`** (mean last-epoch validation accuracy {100 * score:.2f}).")
    return "\n".join(lines)


def sweep_spec(id: str, title: str, source: str, notes: str, **kw: Any) -> TableSpec:
    """A `sweep` table: validation metrics, no claims, the choice as a section."""
    return TableSpec(id=id, title=title, source=source, metrics=["val_acc", "test_acc"], claims=[],
                     sections=[sweep_section, *kw.pop("sections", [])], notes=notes, **kw)
