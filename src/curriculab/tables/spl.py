"""SPL-ADVisE (Thangarasa & Taylor, BMVC 2018): Table 1 (spl.t1), the t-SNE of the embedding (spl.f2,
Figure 2) and test accuracy against minibatch updates (spl.f3, Figure 3)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from curriculab.tables.figures import curves, plt, save_figure
from curriculab.tables.spec import Claim, TableSpec, register_table

STAGES = ("start", "middle", "end")


def _embedding_runs(result) -> dict[str, object]:
    """dataset → the EmbeddingCfg that the table's SPL-ADVisE runs expect (first such run per dataset)."""
    from curriculab.methods.spl_advise import SPLAdviseParams

    out: dict[str, object] = {}
    for run in result.runs:
        block = run.config.methods.get("spl_advise")
        if block is None:
            continue
        p = SPLAdviseParams.model_validate(block)
        if p.selection != "random" and p.clusters == "embedding":
            out.setdefault(run.config.data.dataset, p.embedding)
    return out


def tsne_figure(result, out: Path) -> list[Path]:
    """spl.f2: t-SNE of the embedding at the start, middle and end of its training, coloured by class.

    Drawn from runs/pretrain/spl_advise/<dataset>/tsne.npz (written by the pretrain stage); a snapshot
    whose hash differs from the settings the table's runs expect is titled "stale".
    """
    from curriculab.data.prepared import read_meta
    from curriculab.methods.spl_advise import pretrain_dir

    panels = []
    for ds, emb in _embedding_runs(result).items():
        d = pretrain_dir(result.workdir, ds)
        if not (d / "tsne.npz").is_file() or not (d / "meta.json").is_file():
            continue
        meta = json.loads((d / "meta.json").read_text())
        try:
            current = meta.get("hash") == emb.digest(ds, read_meta(Path(result.workdir) / "data", ds)["checksum"])
        except Exception:  # dataset not prepared here: cannot tell
            current = False
        with np.load(d / "tsne.npz") as z:
            panels.append((ds, current, z["coords"], z["labels"], z["iterations"]))
    if not panels:
        return []
    fig, axes = plt.subplots(len(panels), 3, figsize=(10.5, 3.4 * len(panels)), squeeze=False)
    rows = []
    for r, (ds, current, coords, labels, its) in enumerate(panels):
        for s in range(coords.shape[0]):
            ax = axes[r][s]
            ax.scatter(coords[s, :, 0], coords[s, :, 1], c=labels, cmap="tab10" if labels.max() < 10 else "tab20",
                       s=5, alpha=0.8, linewidths=0)
            ax.set_title(f"{ds}: {STAGES[s] if s < 3 else s} (iteration {int(its[s])})"
                         + ("" if current else " — stale"), fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            rows.append(pd.DataFrame({"dataset": ds, "stage": STAGES[s] if s < 3 else str(s),
                                      "iteration": int(its[s]), "x": coords[s, :, 0], "y": coords[s, :, 1],
                                      "label": labels, "current": current}))
    fig.suptitle("spl.f2: t-SNE of the Magnet-loss embedding during its training (colour = class)")
    return save_figure(fig, pd.concat(rows, ignore_index=True), out / "spl.f2")


def accuracy_vs_updates(result, out: Path) -> list[Path]:
    """spl.f3: test accuracy against minibatch updates, mean ± std over seeds, one panel per dataset."""
    return curves(result, "test_acc", "test accuracy", out / "spl.f3", x="step",
                  title="spl.f3: test accuracy vs minibatch updates (mean ± std over seeds)")


register_table(TableSpec(
    id="spl.t1",
    title="SPL-ADVisE against SPLD and random sampling: test accuracy (paper Table 1)",
    source="spl",
    metrics=["test_acc", "test_acc_at_best_val"],
    paper={
        "SPL-ADVisE": {"fashion_mnist": 94.12, "svhn": 97.68, "cifar10": 95.48, "cifar100": 79.17},
        "SPLD": {"fashion_mnist": 93.17, "svhn": 97.38, "cifar10": 94.31, "cifar100": 75.36},
        "Random": {"fashion_mnist": 92.77, "svhn": 97.41, "cifar10": 93.26, "cifar100": 74.42},
    },
    paper_note="Paper Table 1: test accuracy (%), mean over 5 runs; students ResNet-18 (FashionMNIST, CIFAR-10), "
               "WRN-16-8 (SVHN, train+extra, no augmentation), WRN-28-10 (CIFAR-100, no augmentation); embedding "
               "CNN LeNet (FashionMNIST) or VGG-16 (others). The paper does not say whether it reports the final "
               "or the best epoch.",
    claims=[Claim("SPL-ADVisE beats SPLD", "SPL-ADVisE", "SPLD"),
            Claim("SPL-ADVisE beats random sampling", "SPL-ADVisE", "Random")],
    figures=[accuracy_vs_updates, tsne_figure],
    notes="All three rows are the same student (`spl_advise`) with the same schedule and the same number of "
          "minibatch updates: a paced epoch repeats its selected samples (equal counts ±1) up to the size of the "
          "training set (`fill: repeat`). SPL-ADVisE clusters come from the Magnet-loss embedding of the "
          "`pretrain@spl_advise` stage; SPLD clusters from per-class k-means++ on raw pixels; Random is a plain "
          "uniform shuffle. The first epoch uses all data; then λ, γ are set each epoch from the ranked losses "
          "(λ admits a target share that grows ×(1+β1), γ/λ grows ×(1+β2)). `test_acc` is the final epoch, "
          "`test_acc_at_best_val` the test accuracy at the best validation epoch. spl.f2 is drawn from the "
          "pretrain stage's t-SNE snapshots; spl.f3 plots test accuracy against minibatch updates.",
))
