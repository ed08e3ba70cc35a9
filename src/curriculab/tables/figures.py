"""Figure helpers shared by table specs: every figure is a PNG with its data as CSV beside it."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


@cache
def pyplot():
    """matplotlib.pyplot on the file-only Agg backend, imported on the first figure (validating settings
    or training a run imports no plotting library)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, data: pd.DataFrame, out: Path) -> list[Path]:
    """Write `<out>.png` and `<out>.csv` (`out` is a figure id such as reports/figures/dp.f1)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    png, csv = out.parent / f"{out.name}.png", out.parent / f"{out.name}.csv"
    fig.savefig(png, dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    data.to_csv(csv, index=False)
    return [png, csv]


def is_accuracy(metric: str) -> bool:
    """Accuracies are shown in percent in every table, figure and CSV."""
    return metric.endswith("acc") or "_acc_" in metric


def panel_grid(n: int, width: float = 4.2, height: float = 3.2, max_cols: int = 3):
    """n panels on a grid of at most `max_cols` columns (unused cells removed): (figure, list of axes)."""
    cols = min(n, max_cols)
    rows = -(-n // cols)
    fig, grid = pyplot().subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    axes = list(grid.flat)
    for ax in axes[n:]:
        ax.remove()
    return fig, axes[:n]


def shared_legend(fig, ax, title: str = "") -> None:
    """One legend for every panel, below the title and above the panels (handles of `ax`)."""
    handles, labels = ax.get_legend_handles_labels()
    fig.tight_layout(rect=(0, 0, 1, 0.9 if title else 0.93))
    if handles:
        fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 6), fontsize=8, frameon=False,
                   bbox_to_anchor=(0.5, 0.95 if title else 0.99))
    if title:
        fig.suptitle(title, y=0.995)


def curves(result, key: str, ylabel: str, out: Path, x: str = "epoch", panels: str = "column",
           lines: str = "row", title: str = "") -> list[Path]:
    """Mean ± std over seeds of a per-epoch history value, one panel per column, one line per row."""
    hist = result.history()
    if hist.empty or key not in hist:
        return []
    g = hist.groupby([panels, lines, x])[key].agg(["mean", "std", "count"]).reset_index()
    if is_accuracy(key):  # one unit per metric everywhere: accuracies in percent, as in the tables
        g[["mean", "std"]] *= 100
        ylabel += " (%)"
    names = list(dict.fromkeys(hist[panels]))
    fig, axes = panel_grid(len(names))
    for ax, name in zip(axes, names):
        for line, d in g[g[panels] == name].groupby(lines, sort=False):
            ax.plot(d[x], d["mean"], label=str(line))
            ax.fill_between(d[x], d["mean"] - d["std"].fillna(0), d["mean"] + d["std"].fillna(0), alpha=0.2)
        ax.set_title(str(name))
        ax.set_xlabel(x)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    shared_legend(fig, axes[0], title)
    return save_figure(fig, g, out)
