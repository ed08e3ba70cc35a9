"""Figure helpers shared by table specs: every figure is a PNG with its data as CSV beside it."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def save_figure(fig, data: pd.DataFrame, out: Path) -> list[Path]:
    """Write `<out>.png` and `<out>.csv` (`out` is a figure id such as reports/figures/dp.f1)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    png, csv = out.parent / f"{out.name}.png", out.parent / f"{out.name}.csv"
    fig.savefig(png, dpi=110, bbox_inches="tight")
    plt.close(fig)
    data.to_csv(csv, index=False)
    return [png, csv]


def curves(result, key: str, ylabel: str, out: Path, x: str = "epoch", panels: str = "column",
           lines: str = "row", title: str = "") -> list[Path]:
    """Mean ± std over seeds of a per-epoch history value, one panel per column, one line per row."""
    hist = result.history()
    if hist.empty or key not in hist:
        return []
    g = hist.groupby([panels, lines, x])[key].agg(["mean", "std", "count"]).reset_index()
    names = list(dict.fromkeys(hist[panels]))
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        for line, d in g[g[panels] == name].groupby(lines, sort=False):
            ax.plot(d[x], d["mean"], label=str(line))
            ax.fill_between(d[x], d["mean"] - d["std"].fillna(0), d["mean"] + d["std"].fillna(0), alpha=0.2)
        ax.set_title(str(name))
        ax.set_xlabel(x)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8)
    if title:
        fig.suptitle(title, y=1.04)
    return save_figure(fig, g, out)
