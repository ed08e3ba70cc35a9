"""Progressive Sharpening (Trivedi 2021): ps.t1 (baseline vs box sharpening vs Gaussian curriculum), ps.f1."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
from pydantic import Field

from curriculab.config import ConfigError, Strict
from curriculab.data.prepared import load_copy, load_prepared, read_meta
from curriculab.methods.settings.progressive_sharpening import ProgressiveSharpeningParams
from curriculab.tables.figures import curves, pyplot, save_figure
from curriculab.tables.spec import Claim, TableSpec, register_table


class PsParams(Strict):
    """`tables.ps_t1.options`: what ps.f1 shows."""

    figure_samples: Annotated[int, Field(ge=1, le=10)] = 3  # samples per dataset: one of each class 0..n-1


def _copy_columns(result) -> dict[str, list[tuple[str, str, float, str]]]:
    """dataset → [(copy name, kind, kernel size or σ, padding)] used by the table's rows, sharpest first."""
    out: dict[str, list[tuple[str, str, float, str]]] = {}
    for run in result.runs:
        block = run.config.methods.get("progressive_sharpening")
        if block is None:
            continue
        p = ProgressiveSharpeningParams.model_validate(block)
        kind = "box" if p.box is not None else "gaussian"
        cols = out.setdefault(run.config.data.dataset, [])
        for name, value in p.copies.levels():
            if name not in [c[0] for c in cols]:
                cols.append((name, kind, value, p.copies.padding))
    return out


def _label(kind: str, value: float) -> str:
    return f"box n={value:g}" if kind == "box" else f"Gaussian σ={value:g}"


def ps_f1(result, out_dir: Path) -> list[Path]:
    """ps.f1: a few training samples and their prepared blurred copies, per dataset, kernels labelled."""
    import pandas as pd
    plt = pyplot()

    columns = _copy_columns(result)
    if not columns:
        return []
    root = Path(result.workdir) / result.params.prepare.root
    n = result.options.figure_samples
    width = 1 + max(len(c) for c in columns.values())
    fig = plt.figure(figsize=(1.2 * width, (1.15 * n + 0.4) * len(columns)))
    subfigs = np.atleast_1d(fig.subfigures(len(columns), 1))
    rows = []
    for sub, (dataset, cols) in zip(subfigs, columns.items(), strict=True):
        sub.suptitle(dataset, fontsize=10)
        axes = sub.subplots(n, width, squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        try:
            prep = load_prepared(root, dataset)
        except ConfigError:
            axes[0][0].set_title("not prepared", fontsize=7)
            continue
        train = prep.splits["train"]
        ys = prep.y[train]
        picks = [int(train[np.flatnonzero(ys == c)[0]]) for c in range(n) if (ys == c).any()]
        meta = read_meta(root, dataset)
        panels = [("original", "original", float("nan"), "", prep.x)]
        for name, kind, value, pad in cols:
            try:
                panels.append((name, kind, value, pad, load_copy(root, dataset, name)))
            except ConfigError:
                panels.append((name, kind, value, pad, None))
        for j, (name, kind, value, pad, images) in enumerate(panels):
            title = "original" if kind == "original" else _label(kind, value)
            axes[0][j].set_title(title if images is not None else f"{title}\nnot prepared", fontsize=7)
            for i, pos in enumerate(picks):
                if images is None:
                    continue
                img = images[pos].transpose(1, 2, 0)
                axes[i][j].imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=255)
                rows.append({"dataset": dataset, "sample_row": i, "position": pos, "label": int(prep.y[pos]),
                             "panel_column": j, "copy": name, "kind": kind,
                             "kernel_size": value if kind == "box" else None,
                             "sigma": value if kind == "gaussian" else None, "padding": pad,
                             "mean_pixel": float(images[pos].mean()),
                             "checksum": meta["copies"].get(name, {}).get("checksum", meta["checksum"])[:12]})
    fig.suptitle("ps.f1: training samples and their prepared blurred copies (sharpest → most blurred)",
                 fontsize=10, y=1.02)
    return save_figure(fig, pd.DataFrame(rows), Path(out_dir) / "ps.f1")


def ps_curves(result, out_dir: Path) -> list[Path]:
    """ps.t1.curves: validation accuracy per epoch, mean ± std over seeds, one panel per dataset."""
    return curves(result, "val_acc", "validation accuracy (mean ± std over seeds)",
                  Path(out_dir) / "ps.t1.curves")


register_table(TableSpec(
    id="ps.t1",
    title="Progressive sharpening vs plain training vs a Gaussian image curriculum "
          "(the paper reports no numbers)",
    source="ps",
    metrics=["test_acc", "test_acc_at_best_val"],
    claims=[Claim("progressive sharpening beats the baseline", "progressive_sharpening", "baseline")],
    OptionsParams=PsParams,
    figures=[ps_f1, ps_curves],
    notes="The source (Trivedi 2021) publishes no results table and no code: there is no paper number "
          "to compare with, only its claim that training on box-blurred copies (kernel_N = J_N / N², most "
          "blurred first, then sharper every few epochs, ending on the original) beats plain training. "
          "Rows: `baseline` (plain training), `progressive_sharpening` (box copies), `gaussian_curriculum` "
          "(the same schedule over Gaussian copies of decreasing σ, matched in variance to the box sizes: "
          "σ² ≈ (n² − 1)/12). The copies are made once by `prepare` (`prepare.copies`); each copy's name "
          "carries its padding mode (default `replicate`). The kernel size (or σ) of each epoch is logged "
          "as `ps_kernel_size` / `ps_sigma` in every run's history. `test_acc` is the final epoch; "
          "`test_acc_at_best_val` selects the epoch on the validation split. ps.f1 shows the prepared "
          "copies; ps.t1.curves the validation curves.",
    chosen_here={
        "data.dataset": "MNIST (the paper's figure) and CIFAR-10 (the paper names no benchmark; chosen here)",
        "seed": "0-4, 5 seeds (not stated; chosen here)",
        "model.name": "ResNet-18 (not stated; chosen here)",
        "train.epochs": "30 (not stated; chosen here)",
        "train.batch_size": "128 (not stated; chosen here)",
        "train.optimizer.name": "SGD, momentum 0.9 (not stated; chosen here)",
        "train.optimizer.lr": "0.1 (not stated; chosen here)",
        "train.optimizer.nesterov": "Nesterov (not stated; chosen here)",
        "train.optimizer.weight_decay": "5e-4 (not stated; chosen here)",
        "train.schedule.name": "cosine (not stated; chosen here)",
        "data.augment.crop_pad": "CIFAR-10 crop pad 4, none on MNIST (not stated; chosen here)",
        "data.augment.flip": "CIFAR-10 horizontal flip, none on MNIST (not stated; chosen here)",
        "data.augment.normalize": "input normalisation (not stated; chosen here)",
        "methods.progressive_sharpening.box.sizes": "N = 5, 4, 3, 2 then the original (the figure's kernels; "
                                                    "K not stated for training)",
        "methods.progressive_sharpening.every": "4 epochs per copy (\"every few epochs\"; chosen here)",
        "methods.progressive_sharpening.box.padding": "replicate at the border (not stated; chosen here)",
    },
))
