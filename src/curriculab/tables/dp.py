"""Data Parameters (Saxena et al., NeurIPS 2019): Tables 1-2, 20%/80% noise, Figs. 1 and 4, random labels.

Figures hang off the tables whose runs they read: dp.f1 (class-σ trajectories) off dp.t1, dp.f4 (instance σ of
clean vs corrupt items) off dp.t2, and dp.rand's train-accuracy curves off dp.rand.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
from pydantic import Field

from curriculab.config import NonNegInt, PosInt, Strict
from curriculab.methods.settings.data_parameters import DataParametersParams
from curriculab.tables.dp_chosen import DP_RAND_CHOSEN, DP_T1_CHOSEN, DP_T2_CHOSEN
from curriculab.tables.figures import curves, pyplot, save_figure
from curriculab.tables.spec import FULL_SPLIT, QUOTED, Claim, Section, TableSpec, register_table
from curriculab.tables.sweep import sweep_spec

if TYPE_CHECKING:
    import pandas as pd

METHOD = "data_parameters"
SWEEP_NOTE = (" Offline profile: the instance learning rate (`inst_lr` 30) differs from the paper's 0.2 (noisy "
              "CIFAR, §3.4); the sweep table dp.sweep picked it on the validation split (40% uniform noise, "
              "digits). The paper profile uses 0.2.")



# --------------------------------------------------------------------------- dp.f1


class T1Params(Strict):
    """dp.f1: the row whose class parameters are drawn, and which classes (default: `f1_count` seeded)."""

    f1_row: str = "class"
    f1_classes: list[NonNegInt] | None = None
    f1_count: PosInt = 4
    f1_seed: NonNegInt = 0
    # table column → the paper column it stands in for (claims are tested only where the paper made them)
    analogues: dict[str, str] = {"digits": "cifar100", "fashion_mnist": "cifar100"}


def _init(run, key: str, default: float) -> float:
    """The initial σ of a run's data parameters (for the epoch-0 point of a trajectory)."""
    params = DataParametersParams.model_validate(run.config.methods.get(METHOD, {}))
    value = getattr(params, key)
    return default if value is None else value


def fig_f1(res, out: Path) -> list[Path]:
    """Fig. 1 (left): class parameters of 4 random classes per epoch, mean ± std over seeds."""
    import pandas as pd
    plt = pyplot()

    o = res.options
    rows = []
    for run, arts in res.artifacts():
        if run.row != o.f1_row or not arts or "dp_class_sigma" not in arts[-1]:
            continue
        k = len(arts[-1]["dp_class_sigma"])
        init = _init(run, "class_init", 1.0)
        rows += [{"column": run.column, "seed": run.seed, "epoch": 0, "class": c, "sigma": init}
                 for c in range(k)]
        rows += [{"column": run.column, "seed": run.seed, "epoch": e, "class": c, "sigma": v}
                 for e, a in enumerate(arts, 1) for c, v in enumerate(a.get("dp_class_sigma", []))]
    if not rows:
        return []
    df = pd.DataFrame(rows)
    cols = list(dict.fromkeys(df["column"]))
    picked = []
    for col in cols:
        k = int(df[df["column"] == col]["class"].max()) + 1
        rng = np.random.default_rng(o.f1_seed)
        chosen = o.f1_classes or sorted(rng.choice(k, min(o.f1_count, k), replace=False))
        picked.append(df[(df["column"] == col) & df["class"].isin([c for c in chosen if c < k])])
    g = (pd.concat(picked).groupby(["column", "class", "epoch"])["sigma"].agg(["mean", "std", "count"])
         .reset_index())
    fig, axes = plt.subplots(1, len(cols), figsize=(4.4 * len(cols), 3.3), squeeze=False)
    for ax, col in zip(axes[0], cols, strict=True):
        for c, d in g[g["column"] == col].groupby("class"):
            ax.plot(d["epoch"], d["mean"], marker=".", label=f"class {c}")
            sd = d["std"].fillna(0)
            ax.fill_between(d["epoch"], d["mean"] - sd, d["mean"] + sd, alpha=0.2)
        ax.set_title(str(col))
        ax.set_xlabel("epoch")
        ax.set_ylabel(r"class parameter $\sigma^{\mathrm{class}}$")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    n = int(g["count"].max())
    fig.suptitle(f"dp.f1: class-parameter trajectories ({o.f1_row} curriculum), mean ± std over {n} seeds",
                 y=1.03)
    return save_figure(fig, g, out / "dp.f1")


# --------------------------------------------------------------------------- dp.f4


class T2Params(Strict):
    """dp.f4: the row whose instance parameters are drawn, and the paper's claim (≥ 95% by epoch 20)."""

    f4_row: str = "instance"
    claim_epoch: PosInt = 20
    claim_share: Annotated[float, Field(gt=0, le=1)] = 0.95


F4_KEYS = ["dp_inst_sigma_clean_mean", "dp_inst_sigma_clean_std", "dp_inst_sigma_corrupt_mean",
           "dp_inst_sigma_corrupt_std", "dp_top_corrupt_share", "dp_corrupt_above_all_clean", "dp_inst_auroc",
           "dp_corrupt_fraction"]


def f4_claim(g: pd.DataFrame, epoch: int, share: float, top: float) -> pd.DataFrame:
    """Per column: the §3.4 claim on the quantity Fig. 4 (right) plots, the corrupt share of the top `top`
    fraction by σ, against its highest possible value min(1, corrupt fraction / top): reproduced when the
    ratio reaches `share` within `epoch` epochs (then ≥ `share` of the corrupt items rank in the top). The
    AUROC and the share of corrupt items above every clean one (0 once the clamp ties one clean item at
    σ = 20) are kept beside it."""
    import pandas as pd

    out = []
    for col, d in g.groupby("column", sort=False):
        m = d.pivot(index="epoch", columns="stat", values="mean")
        at = min(epoch, int(m.index.max()))
        best = (m["dp_corrupt_fraction"] / top).clip(upper=1.0)
        ratio = m["dp_top_corrupt_share"] / best
        hit = ratio[ratio >= share]
        if len(hit) and hit.index.min() <= epoch:
            verdict = "reproduced"
        elif m.index.max() < epoch:
            verdict = f"inconclusive: runs end at epoch {int(m.index.max())}, before epoch {epoch}"
        else:
            verdict = "not reproduced"
        out.append({"column": col, "claim": f"corrupt share of the top {top:.0%} by σ reaches {share:.0%} of its "
                                            f"highest possible value by epoch {epoch}",
                    "read_at_epoch": at, "top_share": m["dp_top_corrupt_share"].loc[at],
                    "highest_possible": best.loc[at], "share_of_highest": ratio.loc[at],
                    "first_epoch_reaching_share": int(hit.index.min()) if len(hit) else None,
                    "max_share_of_highest": ratio.max(), "max_at_epoch": int(ratio.idxmax()),
                    "auroc_at_epoch": m["dp_inst_auroc"].loc[at],
                    "share_above_all_clean": m["dp_corrupt_above_all_clean"].loc[at], "verdict": verdict})
    return pd.DataFrame(out)


def _top_fraction(res) -> float:
    """The `top_fraction` (Fig. 4 right's 40%) of the f4 row's data parameters."""
    row = res.options.f4_row
    cfg = next((r.config for r in res.runs if r.row == row), None)
    return DataParametersParams.model_validate(cfg.methods.get(METHOD, {}) if cfg else {}).top_fraction


def f4_frame(res) -> pd.DataFrame | None:
    """Per (column, statistic, epoch): mean, std and count over seeds of the f4 statistics."""
    import pandas as pd

    o = res.options
    rows = [{"column": run.column, "seed": run.seed, "epoch": e, "stat": k, "value": a["dp_f4"][k]}
            for run, arts in res.artifacts() if run.row == o.f4_row
            for e, a in enumerate(arts, 1) if "dp_f4" in a for k in F4_KEYS if k in a["dp_f4"]]
    if not rows:
        return None
    return pd.DataFrame(rows).groupby(["column", "stat", "epoch"])["value"].agg(["mean", "std", "count"]).reset_index()


def f4_section(res) -> str:
    """The §3.4 claim as a markdown table in dp.t2's report, measured on the f4 curves."""
    import pandas as pd

    g = f4_frame(res)
    if g is None:
        return ""
    o, top = res.options, _top_fraction(res)
    c = f4_claim(g, o.claim_epoch, o.claim_share, top)
    lines = [f"## Figure 4 claim: within {o.claim_epoch} epochs {o.claim_share:.0%} of noisy samples rank above "
             "all clean ones (measured on the curves of dp.f4, mean over seeds)", "",
             f"Tested on the quantity Fig. 4 (right) plots: the corrupt share of the top {top:.0%} by σ, as a share "
             f"of its highest possible value min(1, corrupt fraction / {top:g}). AUROC and the share of corrupt "
             "items above every clean one are shown beside it.", "",
             f"| column | read at epoch | corrupt share of top {top:.0%} | highest possible | share of highest | "
             "first epoch reaching it | max (epoch) | AUROC | above all clean | verdict |", "|---" * 10 + "|"]
    for r in c.itertuples():
        first = "never" if r.first_epoch_reaching_share is None or pd.isna(r.first_epoch_reaching_share) \
            else int(r.first_epoch_reaching_share)
        lines.append(f"| {r.column} | {r.read_at_epoch} | {r.top_share:.1%} | {r.highest_possible:.1%} | "
                     f"{r.share_of_highest:.1%} | {first} | {r.max_share_of_highest:.1%} ({r.max_at_epoch}) | "
                     f"{r.auroc_at_epoch:.3f} | {r.share_above_all_clean:.1%} | {r.verdict} |")
    return Section("\n".join(lines), [{"claim": r.claim, "column": r.column, "verdict": r.verdict}
                                      for r in c.itertuples()])


def fig_f4(res, out: Path) -> list[Path]:
    """Fig. 4: mean instance σ of clean vs corrupt items per epoch; corrupt share of the top 40% by σ."""
    plt = pyplot()
    o = res.options
    g = f4_frame(res)
    if g is None:
        return []
    cols = list(dict.fromkeys(g["column"]))
    top = _top_fraction(res)
    claim = f4_claim(g, o.claim_epoch, o.claim_share, top)
    fig, axes = plt.subplots(len(cols), 2, figsize=(9.5, 3.2 * len(cols)), squeeze=False)
    for (ax1, ax2), col in zip(axes, cols, strict=True):
        d = g[g["column"] == col]

        def stat(name, d=d):
            return d[d["stat"] == name].sort_values("epoch")

        for kind, colour in (("clean", "tab:blue"), ("corrupt", "tab:red")):
            m, s = stat(f"dp_inst_sigma_{kind}_mean"), stat(f"dp_inst_sigma_{kind}_std")
            ax1.plot(m["epoch"], m["mean"], color=colour, label=f"{kind} (mean σ; band: spread of σ)")
            ax1.fill_between(m["epoch"], m["mean"] - s["mean"].values, m["mean"] + s["mean"].values,
                             color=colour, alpha=0.15)
        ax1.set_yscale("log")
        ax1.set_title(f"{col}: instance parameters")
        ax1.set_xlabel("epoch")
        ax1.set_ylabel(r"$\sigma^{\mathrm{inst}}$")
        ax1.legend(fontsize=7)
        ax1.grid(alpha=0.3)
        for name, label in (("dp_top_corrupt_share", f"corrupt share of the top {top:.0%} by σ"),
                            ("dp_corrupt_above_all_clean", "corrupt items above every clean item"),
                            ("dp_inst_auroc", "AUROC of σ for corrupt")):
            m = stat(name)
            ax2.plot(m["epoch"], m["mean"], label=label)
            sd = m["std"].fillna(0)
            ax2.fill_between(m["epoch"], (m["mean"] - sd).clip(0, 1), (m["mean"] + sd).clip(0, 1), alpha=0.2)
        frac = stat("dp_corrupt_fraction")["mean"]
        if len(frac):
            ax2.axhline(min(1.0, float(frac.iloc[-1]) / top), ls="--", color="grey", lw=0.8,
                        label="highest possible top share")
        c = claim[claim["column"] == col].iloc[0]
        ax2.set_title(f"{col}: top share {c['share_of_highest']:.0%} of its highest possible at epoch "
                      f"{c['read_at_epoch']}, max {c['max_share_of_highest']:.0%} (epoch {c['max_at_epoch']})\n"
                      f"paper: ≥ {o.claim_share:.0%} by epoch {o.claim_epoch}", fontsize=9)
        ax2.set_ylim(0, 1.02)
        ax2.set_xlabel("epoch")
        ax2.set_ylabel("share")
        ax2.legend(fontsize=7)
        ax2.grid(alpha=0.3)
    n = int(g["count"].max())
    fig.suptitle(f"dp.f4: instance parameters of clean vs corrupt items ({o.f4_row} row, "
                 f"mean ± std over {n} seeds)")
    fig.tight_layout()
    files = save_figure(fig, g, out / "dp.f4")
    claim_csv = out / "dp.f4.claim.csv"
    claim.to_csv(claim_csv, index=False)
    return files + [claim_csv]


def fig_rand(res, out: Path) -> list[Path]:
    """dp.rand: train accuracy on all-random labels per epoch, one line per row (mean ± std over seeds)."""
    return curves(res, "train_acc", "train accuracy (random labels)", out / "dp.rand",
                  title="dp.rand: memorising random labels, mean ± std over seeds (lower = resists)")


# --------------------------------------------------------------------------- the tables


IMAGENET, WEBVISION = "imagenet", "webvision"  # the paper profile's columns (the offline profile quotes them)
register_table(TableSpec(
    id="dp.t1",
    title="Data parameters on clean data: baseline vs class / instance / joint curriculum (Table 1)",
    source="dp",
    metrics=["test_acc", "test_acc_at_best_val"],
    paper={"baseline": {"cifar100": 80.1, IMAGENET: 70.3, WEBVISION: 66.3},
           "class": {IMAGENET: 70.8},
           "instance": {WEBVISION: 67.1},
           "joint": {"cifar100": 80.8, IMAGENET: 71.0, WEBVISION: 67.5}},
    paper_note="Top-1 %, mean ± 0.1-0.2 over 3 runs. CIFAR100: WRN-28-10; ImageNet and WebVision: ResNet-18. "
               "The paper's DCL rows mark which parameters were learnt: class+instance = `joint`, class only "
               "= `class`, instance only = `instance`. Its ImageNet rows are baseline, class and joint; its WebVision "
               "rows baseline, instance and joint.",
    claims=[Claim("DCL (class + instance) beats the baseline", "joint", "baseline"),
            Claim("the class curriculum beats the baseline (ImageNet)", "class", "baseline",
                  columns=("imagenet",)),
            Claim("the instance curriculum beats the baseline (WebVision)", "instance", "baseline",
                  columns=("webvision",)),
            Claim("joint beats class only (ImageNet: 71.0 vs 70.8)", "joint", "class", columns=("imagenet",))],
    OptionsParams=T1Params,
    figures=[fig_f1],
    notes="Logits are divided by σ* only in training; evaluation uses the plain logits (§2.2). Weight decay on "
          "log σ is the paper's ℓ2 (`weight_decay_mode: all`), acting through the gradient of the classes "
          "and instances present in the minibatch only: an absent one keeps its value and momentum buffer "
          "(§3.1); the logged train loss leaves the ℓ2 out (the official code's minibatch-entries form, in "
          "the loss, is `minibatch`). As in the official code: log σ clamped to "
          "[log 1/20, log 20] after every step, data-parameter learning rates "
          "constant (only the model's lr follows the schedule). Joint curriculum: class σ 1 + instance σ "
          "0.001 (§3.1), which the clamp lifts to 0.05 after the first step, as in the official code. dp.f1 "
          "(class-σ trajectories of 4 seeded random classes, mean ± std over seeds) is drawn from the `class`"
          " row (option `f1_row`). Claims are tested only in the columns standing in for those where the paper "
          "made them (option `analogues`): the offline digits and fashion_mnist stand in for CIFAR100 (small, "
          "clean, WRN-28-10 in the paper), so only the DCL-beats-baseline claim (made on all three datasets) is "
          "tested there; the class-only and joint-vs-class claims (ImageNet) and the instance claim (WebVision, "
          "web-scale noisy labels) have no stand-in here and are listed as not testable. Paper profile: "
          "WRN-28-10 with the WideResNet paper's schedule, as §3.3 says (200 epochs, Nesterov, ×0.2 at "
          "60/120/160); the official code's 120 epochs ÷10 at 80/100 is `dp_official_train`. ImageNet (the "
          "`imagefolder` source) and WebVision 1.0 (the `webvision` source: its Google and Flickr training lists, 2.4M "
          "web-labelled images, and its 50,000 labelled validation images as the test set) at 224 px, streamed "
          "from the image files, with torchvision's ResNet-18 trained as the pytorch/examples script the paper "
          "cites (100 epochs, ÷10 at 30/60/90, batch 256, wd 1e-4); data parameters with wd 1e-4 and instance "
          "lr 0.8 (§3.3, and §3.4 for WebVision: the same); each runs only the paper's rows of its dataset "
          "(`cells`); they keep the 10,000-image validation holdout (0.8% of ImageNet). " + FULL_SPLIT,
    chosen_here=DP_T1_CHOSEN,
))

register_table(TableSpec(
    id="dp.t2",
    title="40% uniform label noise: baseline, DCL (instance curriculum), oracle on the clean 60% (Table 2)",
    source="dp",
    metrics=["test_acc", "test_acc_at_best_val"],
    paper={"baseline": {"cifar10": 67.97, "cifar100": 50.66},
           "instance": {"cifar10": 91.10, "cifar100": 70.93},
           "oracle": {"cifar10": 94.24, "cifar100": 74.18},
           f"MentorNet DD [17] {QUOTED}; uses extra clean data": {"cifar10": 88.7, "cifar100": 67.5},
           f"Robust Weighting [26] {QUOTED}; uses extra clean data": {"cifar10": 86.92, "cifar100": 61.34},
           f"Reed Hard [26] {QUOTED}": {"cifar10": 69.66, "cifar100": 51.34},
           f"S-Model [26] {QUOTED}": {"cifar10": 70.64, "cifar100": 49.10},
           f"MentorNet PD [17] {QUOTED}": {"cifar10": 76.6, "cifar100": 56.9}},
    paper_note="Top-1 %, WRN-28-10, read at epoch 84 (chosen by cross-validation in the paper). The baseline,"
               " Reed Hard, S-Model and Robust Weighting rows are the numbers of [26] (Ren et al. 2018); "
               "MentorNet rows are from [17] (Jiang et al. 2018). Only baseline, instance (DCL) and oracle "
               "are run by curriculab.",
    claims=[Claim("DCL (instance) beats the baseline under 40% noise", "instance", "baseline"),
            Claim("the oracle trained on the clean 60% stays above DCL (paper gap: 3 points)", "oracle",
                  "instance")],
    OptionsParams=T2Params,
    figures=[fig_f4],
    sections=[f4_section],
    notes="Noise `uniform` (the paper): ⌊N·p⌋ items drawn at random get a uniformly random class, so about "
          "p/k of them keep their label; `permute_first` (the official code) permutes the labels of the first"
          " ⌊N·p⌋ items among themselves. Clean-vs-corrupt statistics use the items whose label really "
          "differs. The oracle trains on the items not chosen for corruption. dp.f4 (from the `instance` row)"
          " shows the mean instance σ of clean and corrupt items, the corrupt share of the top 40% by σ and "
          "the share of corrupt items whose σ exceeds every clean item's. The paper's claim (\"within 20 epochs "
          "95% of noisy instances rank above all clean ones\") is tested on the quantity its Fig. 4 (right) "
          "plots, the corrupt share of the top 40% by σ, against the highest value it can take (min(1, corrupt "
          "fraction / 0.4): ≥ 95% of it means ≥ 95% of the corrupt items are in the top 40%); in the section "
          "above, in its panel titles and in `figures/dp.f4.claim.csv` (read at epoch 20, or at the last epoch "
          "when a run is shorter). The share above every clean item is no test of it: the clamp at σ = 20 "
          "creates ties, and a single clean item at the clamp makes it 0. The AUROC is the tie-robust view of "
          "the same ranking." + SWEEP_NOTE + " " + FULL_SPLIT,
    chosen_here=DP_T2_CHOSEN,
))

register_table(TableSpec(
    id="dp.t2b",
    title="20% and 80% uniform label noise: baseline vs DCL (instance curriculum) (supplement)",
    source="dp",
    metrics=["test_acc", "test_acc_at_best_val"],
    paper={"instance": {"cifar100_noise20": 75.0, "cifar100_noise80": 35.0}},
    paper_note="CIFAR100, WRN-28-10. DCL numbers from the official repository's README (about 75% at 20% "
               "noise, 35% at 80%); the supplement states DCL beats MentorNet PD by 3 and 22 points at these "
               "noise levels.",
    claims=[Claim("DCL (instance) beats the baseline", "instance", "baseline")],
    notes="The sweep was run at 40% noise only; the same value is used at 20% and 80%." + SWEEP_NOTE + " "
          + FULL_SPLIT,
    chosen_here=DP_T2_CHOSEN,
))

register_table(TableSpec(
    id="dp.rand",
    title="All labels random: train accuracy of baseline vs DCL (§3.5)",
    source="dp",
    metrics=["train_acc", "test_acc"],
    higher_is_better=False,
    paper_note="The paper shows curves only (VGG-16 on CIFAR100 with all labels random): the baseline "
               "memorises the training set, DCL does not.",
    claims=[Claim("DCL (class curriculum) resists memorising random labels: lower final train accuracy",
                  "class", "baseline"),
            Claim("DCL (instance curriculum) resists memorising random labels: lower final train accuracy",
                  "instance", "baseline")],
    figures=[fig_rand],
    notes="`train_acc` is the accuracy on the (random) training labels over the last epoch, measured during "
          "training. Lower is better here: it means the curriculum did not memorise. The paper explains the "
          "effect by the class parameters (all classes are misclassified, so every class σ grows and the "
          "gradients shrink, eq. (4)); the `class` row is that curriculum, the `instance` row is shown beside"
          " it. As in Zhang et al.'s memorisation setup, which the paper replicates: no augmentation and no "
          "weight decay (the schedule, not given in the paper, is the profile's CIFAR / offline one). "
          "Curves: figures/dp.rand.png." + SWEEP_NOTE + " " + FULL_SPLIT,
    chosen_here=DP_RAND_CHOSEN,
))

register_table(sweep_spec(
    id="dp.sweep",
    title="Sweep: the instance learning rate on the validation split (40% uniform noise, digits)",
    source="dp",
    notes="§3.1: the learning rate and weight decay of the instance parameters \"is set by using the "
          "validation set\". Rows are the grid (the paper's 0.2 and ImageNet's 0.8 among them), trained as "
          "dp.t2's `instance` row; the choice is the best mean last-epoch validation accuracy. The test "
          "column is for information only. dp.t2, dp.t2b and dp.rand use the chosen value (30 when this "
          "sweep was added: mean last-epoch validation accuracy over 2 seeds 0.2: 75.3, 0.8: 75.0, 2: 79.4, "
          "10: 93.6, 30: 95.8, 100: 95.0; 10, 30 and 100 are within seed noise of each other).",
))
