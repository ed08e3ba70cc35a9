"""Figures a reader can read: panels on a grid with one shared legend, accuracy in percent (as in the
tables), a class legend on spl.f2, math labels rendered by mathtext."""

from __future__ import annotations

import pandas as pd

from curriculab.tables import figures


class _Result:
    def __init__(self, hist):
        self._hist = hist

    def history(self):
        return self._hist


def test_curves_grid_shared_legend_and_percent(tmp_path, monkeypatch):
    cols = [f"col{i}" for i in range(6)]
    hist = pd.DataFrame([{"row": r, "column": c, "seed": s, "epoch": e, "val_acc": 0.5 + 0.01 * e}
                         for r in ("baseline", "cbs") for c in cols for s in (0, 1) for e in (1, 2, 3)])
    seen = {}

    def capture(fig, data, out):
        seen["fig"], seen["data"] = fig, data
        return []

    monkeypatch.setattr(figures, "save_figure", capture)
    figures.curves(_Result(hist), "val_acc", "validation accuracy", tmp_path / "x", title="t")
    fig, data = seen["fig"], seen["data"]
    axes = fig.get_axes()
    assert len(axes) == 6 and len({round(a.get_position().y0, 3) for a in axes}) == 2  # 2 rows × 3
    assert len(fig.legends) == 1 and not [a for a in axes if a.get_legend() is not None]
    assert axes[0].get_ylabel() == "validation accuracy (%)" and data["mean"].max() > 50


def test_math_labels_use_mathtext():
    import inspect

    from curriculab.tables import cbs, dp

    for mod in (cbs, dp):
        src = inspect.getsource(mod)
        assert "σ^inst" not in src and 'set_ylabel("σ' not in src
