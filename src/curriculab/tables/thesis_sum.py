"""Sum Augmentation family (thesis ch. 3): thesis.t31, t32, f36, t34 (+ figure f34), t35, t36.

Every row is a phase-wise method (`csa`, `gcsa`, `mixup`, `sample_pairing`); the baseline is CSA with
the cascade [1] (the thesis' "K = 1" row), so every row ends with the same clean phase, early stop and
restore of its best checkpoint. The evaluate stage (`evaluate.<key>`) tests the weights each run ended
with: `test_err`, `l2_norm`, and for t35/t36 `ttsa_test_err`. Paper columns are keyed like the paper
profile's columns; `options.analogues` maps an offline column to the paper cell it stands in for, so
the thesis' number is quoted beside ours in a section of its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from curriculab.config import Strict
from curriculab.evaluate.settings.ttsa import KeptEvalParams
from curriculab.tables.figures import pyplot, save_figure
from curriculab.tables.spec import Claim, Section, TableSpec, register_table
from curriculab.tables.stats import check_claim
from curriculab.tables.thesis_chosen import GCSA, MIXING_BASELINES, SUM_AUGMENTATION, SUM_AUGMENTATION_FULL

if TYPE_CHECKING:
    import pandas as pd


class SumOptions(Strict):
    """`tables.<key>.options`: offline column → the paper column it stands in for (quoted beside ours)."""

    analogues: dict[str, str] = {}


def _cols(archs: list[str], sizes: list[str]) -> list[str]:
    return [f"{a}_{s}" for a in archs for s in sizes]


def _paper(rows: dict[str, list[float]], cols: list[str]) -> dict[str, dict[str, float]]:
    return {row: dict(zip(cols, vals, strict=True)) for row, vals in rows.items()}


def _vals(df: pd.DataFrame, row: str, col: str, metric: str) -> list[float]:
    if df.empty or metric not in df:
        return []
    return list(df[(df["row"] == row) & (df["column"] == col)][metric].dropna())


def _pct(v: float) -> str:
    return "–" if v != v else f"{v * 100:.2f}"


def _claim_line(found: list[dict], text: str, col: str, better: list[float], worse: list[float],
                scale: float = 100.0, higher_is_better: bool = False) -> str:
    """A claim's markdown row; its verdict is also appended to `found` (the section's Section claims)."""
    r = check_claim(better, worse, higher_is_better)
    found.append({"claim": text, "column": col, "verdict": r.verdict})
    p = "–" if r.p is None else f"{r.p:.3g}"
    diff = "–" if r.diff != r.diff else f"{r.diff * scale:.3g}"
    return f"| {text} | {col} | {diff} | {p} | {r.verdict} |"


CLAIM_HEAD = ["| claim | column | difference | p (Welch) | verdict |", "|---|---|---|---|---|"]


# --------------------------------------------------------------------------- sections shared by the tables


def selection_section(res) -> str:
    """Flags runs that kept checkpoints by test accuracy (the thesis' procedure)."""
    leaky = sorted({r.row for r in res.runs for m in r.config.methods.values()
                    if isinstance(m, dict) and m.get("select_on") == "test"})
    if not leaky:
        return ("## Selection\n\nEvery phase keeps its best checkpoint by **validation** accuracy "
                "(`select_on: val`); the thesis selects on test accuracy.")
    return ("## Selection — TEST-SET SELECTION\n\n**Rows " + ", ".join(leaky) + " keep their checkpoints by "
            "test accuracy (`select_on: test`, the thesis' procedure): their test errors are optimistic "
            "(a test-set leak), set on purpose with `allow_test_selection: true`.**")


def analogue_section(res) -> str:
    """Ours beside the thesis' number at the paper cell each offline column stands in for."""
    import pandas as pd

    amap, spec = res.options.analogues, res.spec
    if not amap or not spec.paper:
        return ""
    df = res.finals()
    lines = ["## Beside the thesis (quoted, not measured here)", "",
             "Our `test_err` (%) and the thesis' number at the paper cell the column stands in for "
             "(different data and scale: compare directions, not values).", "",
             "| row | column | ours | thesis (paper cell) |", "|---|---|---|---|"]
    for row in res.params.tables[spec.key].rows:
        for col, pcol in amap.items():
            paper = spec.paper.get(row, {}).get(pcol)
            v = pd.Series(_vals(df, row, col, "test_err"), dtype=float)
            ours = f"{_pct(v.mean())} ± {_pct(v.std())} ({len(v)})" if len(v) else "not run"
            lines.append(f"| {row} | {col} | {ours} | {'–' if paper is None else f'{paper:g}'} ({pcol}) |")
    return "\n".join(lines)


def _columns(res) -> list[str]:
    return list(res.params.tables[res.spec.key].columns)


def cascade_section(res) -> str:
    """t31/t32: the gain grows as data shrinks; K = 4 is the most consistent start; higher K → lower norm."""
    import pandas as pd

    df, cols, rows = res.finals(), _columns(res), list(res.params.tables[res.spec.key].rows)
    starts = [r for r in rows if r.startswith("csa_k")]
    lines = ["## The other claims of §3.7.1", "", *CLAIM_HEAD]
    found: list[dict] = []
    by_arch: dict[str, list[str]] = {}
    for col in cols:
        by_arch.setdefault(col.rsplit("_", 1)[0], []).append(col)
    for arch, group in by_arch.items():  # per-seed gains (baseline − CSA K=4) in the smallest vs largest subset
        if len(group) < 2 or "csa_k4" not in rows:
            continue
        small, large = group[0], group[-1]

        def gains(col):
            b = df[(df["row"] == "baseline") & (df["column"] == col)].set_index("seed")["test_err"] if len(df) else []
            c = df[(df["row"] == "csa_k4") & (df["column"] == col)].set_index("seed")["test_err"] if len(df) else []
            return list((pd.Series(b) - pd.Series(c)).dropna())

        lines.append(_claim_line(found, f"the gain of CSA (K=4) over the baseline is larger on {small} than on "
                                 f"{large}", arch, gains(small), gains(large), higher_is_better=True))
    for col in cols:
        for other in starts:
            if other != "csa_k4" and "csa_k4" in starts:
                lines.append(_claim_line(found, f"K=4 start beats the {other} start (K=4 the most consistent)", col,
                                         _vals(df, "csa_k4", col, "test_err"), _vals(df, other, col, "test_err")))
    if "csa_k8" in starts and "csa_k2" in starts:
        for col in cols:
            lines.append(_claim_line(found, "a higher start K (8) ends with a lower L2 norm than K=2 (norm units)",
                                     col, _vals(df, "csa_k8", col, "l2_norm"), _vals(df, "csa_k2", col, "l2_norm"),
                                     scale=1.0))
    return Section("\n".join(lines), found)


def reduction_section(res) -> str:
    """f36: error reduction over the baseline, (base − method) / base, per method and column."""
    import pandas as pd

    df, cols = res.finals(), _columns(res)
    rows = [r for r in res.params.tables[res.spec.key].rows if r != "baseline"]
    lines = ["## Error reduction over the baseline (%)", "", "| row | " + " | ".join(cols) + " |",
             "|---" * (len(cols) + 1) + "|"]
    for row in rows:
        cells = []
        for col in cols:
            b, m = pd.Series(_vals(df, "baseline", col, "test_err")), pd.Series(_vals(df, row, col, "test_err"))
            cells.append("–" if b.empty or m.empty else f"{(b.mean() - m.mean()) / b.mean() * 100:.1f}")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    lines += ["", "Thesis Figure 3.6 (CIFAR-10, WRN-28-10; quoted, not measured here): small data CSA 30.15% vs "
              "mixup 13.5%; full data CSA 33.54% vs mixup 22.86% error reduction."]
    return "\n".join(lines)


def reduction_figure(res, out: Path) -> list[Path]:
    import pandas as pd
    plt = pyplot()

    df, cols = res.finals(), _columns(res)
    if df.empty or "test_err" not in df:
        return []
    rows = [r for r in res.params.tables[res.spec.key].rows if r != "baseline"]
    data = []
    for col in cols:
        base = pd.Series(_vals(df, "baseline", col, "test_err")).mean()
        for row in rows:
            m = pd.Series(_vals(df, row, col, "test_err"))
            if not m.empty and base == base and base > 0:
                data.append({"column": col, "row": row, "reduction_pct": (base - m.mean()) / base * 100})
    if not data:
        return []
    d = pd.DataFrame(data)
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(cols), 3.4))
    width = 0.8 / max(1, len(rows))
    for i, row in enumerate(rows):
        sub = d[d["row"] == row].set_index("column").reindex(cols)
        ax.bar([j + i * width for j in range(len(cols))], sub["reduction_pct"], width, label=row)
    ax.set_xticks([j + width * (len(rows) - 1) / 2 for j in range(len(cols))], cols, fontsize=8)
    ax.set_ylabel("test error reduction over baseline (%)")
    ax.axhline(0, color="k", lw=0.6)
    ax.legend(fontsize=8)
    ax.set_title("thesis.f36: error reduction over the baseline (measured here)")
    return save_figure(fig, d, Path(out) / "thesis.f36")


def _max_jump(hist: pd.DataFrame) -> pd.DataFrame:
    """Per run: the largest one-epoch change of model_l2_norm."""
    h = hist.sort_values("epoch")
    g = h.groupby(["row", "column", "seed"])["model_l2_norm"]
    return g.apply(lambda s: s.diff().abs().max()).rename("jump").reset_index()


def spike_section(res) -> str:
    """t34: GCSA removes the norm spikes at the K switches (largest one-epoch jump), and beats CSA."""
    hist, cols = res.history(), _columns(res)
    lines = ["## Norm spikes (§3.7.2)", ""]
    found: list[dict] = []
    if hist.empty or "model_l2_norm" not in hist:
        return "\n".join(lines + ["No run logged `model_l2_norm` yet."])
    jumps = _max_jump(hist)
    lines += ["Largest one-epoch change of the model's L2 norm during training (norm units, lower is smoother).",
              "", *CLAIM_HEAD]
    pairs = [(g, f"csa_k{g.split('_k')[1]}") for g in res.params.tables[res.spec.key].rows if g.startswith("gcsa_k")]
    for col in cols:
        for g, c in pairs:
            if c in res.params.tables[res.spec.key].rows:
                lines.append(_claim_line(found, f"{g} has smaller norm jumps than {c}", col,
                                         _vals(jumps, g, col, "jump"), _vals(jumps, c, col, "jump"), scale=1.0))
    return Section("\n".join(lines), found)


def f34_figure(res, out: Path) -> list[Path]:
    """thesis.f34: GCC_2(t) and GCC_4(t) against t, and the L2 norm per epoch of CSA vs GCSA rows."""
    import pandas as pd

    from curriculab.methods.sum_augmentation import gcc
    plt = pyplot()

    ts = [i / 200 for i in range(201)]
    data = [{"panel": f"GCC_{n}", "t": t, "index": j, "weight": float(gcc(n, t)[j])}
            for n in (2, 4) for t in ts for j in range(n)]
    hist = res.history()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for ax, n in zip(axes[:2], (2, 4)):
        for j in range(n):
            ax.plot(ts, [float(gcc(n, t)[j]) for t in ts], label=f"coefficient {j + 1}")
        ax.set_xlabel("t")
        ax.set_ylabel("weight")
        ax.set_title(f"GCC_{n}(t), eqs. 3.1-3.6")
        ax.legend(fontsize=7)
    ax = axes[2]
    if not hist.empty and "model_l2_norm" in hist:
        col = _columns(res)[0]
        g = hist[hist["column"] == col].groupby(["row", "epoch"])["model_l2_norm"].mean().reset_index()
        for row, d in g.groupby("row", sort=False):
            if row.startswith(("csa", "gcsa")):
                ax.plot(d["epoch"], d["model_l2_norm"], label=row, ls="--" if row.startswith("csa") else "-")
                data += [{"panel": f"norm {col}", "row": row, "epoch": e, "model_l2_norm": v}
                         for e, v in zip(d["epoch"], d["model_l2_norm"])]
        ax.set_title(f"model L2 norm per epoch ({col}, mean over seeds)")
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    else:
        ax.set_title("model L2 norm: not logged")
    fig.suptitle("thesis.f34 (figs 3.4, 3.5, 3.7): GCC weights; L2 norm, CSA vs GCSA (measured here)", y=1.03)
    return save_figure(fig, pd.DataFrame(data), Path(out) / "thesis.f34")


def ttsa_section(res) -> str:
    """t35/t36: TTSA lowers the error of models whose last phase is K = 2 (same model, two predictions)."""
    df, cols = res.finals(), _columns(res)
    lines = ["## TTSA vs normal test, same models (§3.7.3)", "", *CLAIM_HEAD]
    found: list[dict] = []
    for row in res.params.tables[res.spec.key].rows:
        for col in cols:
            lines.append(_claim_line(found, f"TTSA lowers the error of {row}", col,
                                     _vals(df, row, col, "ttsa_test_err"), _vals(df, row, col, "test_err")))
    return Section("\n".join(lines), found)


# --------------------------------------------------------------------------- the tables

NOTES = ("Rows: `csa_k<K>` = CSA starting at K and halving down to 1 (Algorithm 2), `baseline` = CSA with the "
         "cascade [1] (the thesis' K = 1 row), so every row has the same clean last phase, early stop (`patience` "
         "epochs without a better validation accuracy) and restore of the phase's best checkpoint; "
         "`train.epochs` is the budget shared by the phases. The learning rate restarts from the schedule's "
         "first epoch at each phase (`lr_reset: true`) and each restore clears the momentum; `phase_lr`, "
         "`sa_k` and `sa_phase` are logged per epoch. Mixed batches: groups paired by position in the "
         "shuffled batch (the official code splits a random permutation: the same in distribution); "
         "the last, smaller batch of an epoch is mixed too, its m mod K leftover dropped (the official code "
         "skips incomplete batches); loss BCE ÷ K (`loss: official`: the mean BCE, no division); train "
         "accuracy top-K against the K labels. The thesis' printed GCSA batch formula divides "
         "by C[i]: a typesetting error; the weights multiply (official code). `test_err` is the evaluate "
         "stage's test error of the checkpoint the run ended with, `l2_norm` its norm. Batch size 100 with "
         "K = 8 (the thesis' setting) does not divide: the paper profile uses `uneven: drop` (official).")
CSA_CLAIMS = [Claim("CSA (start K=4) beats the baseline", "csa_k4", "baseline"),
              Claim("CSA (start K=8) beats the baseline", "csa_k8", "baseline"),
              Claim("CSA (start K=2) beats the baseline", "csa_k2", "baseline")]
CSA_SECTIONS = [selection_section, analogue_section, cascade_section]
_T31 = _cols(["wrn40_4", "wrn28_10"], ["100", "500", "5000"])
_T32 = _cols(["wrn40_4", "wrn28_10"], ["100", "500"])


def _spec(**kw) -> TableSpec:
    return register_table(TableSpec(source="thesis", metrics=kw.pop("metrics", ["test_err"]), higher_is_better=False,
                                    OptionsParams=SumOptions, evaluate="curriculab.evaluate.ttsa:evaluate_kept",
                                    EvalParams=KeptEvalParams, **kw))


_spec(id="thesis.t31", title="Cascading Sum Augmentation: test error (%) by start K vs the baseline (thesis Table 3.1)",
      paper=_paper({"csa_k8": [31.19, 13.51, 4.02, 29.34, 13.21, 3.28],
                    "csa_k4": [30.65, 13.29, 3.88, 30.36, 12.81, 3.11],
                    "csa_k2": [32.44, 14.88, 5.53, 30.99, 13.1, 3.44],
                    "baseline": [47.36, 20.15, 5.57, 43.47, 19.96, 4.68]}, _T31),
      paper_note="Thesis Table 3.1: CIFAR-10 test error (%), subsets of 100 / 500 / 5000 images per class, "
                 "WRN-40-4 and WRN-28-10, one run each, checkpoints selected on test accuracy.",
      claims=CSA_CLAIMS, sections=CSA_SECTIONS, notes=NOTES, chosen_here=SUM_AUGMENTATION)
_spec(id="thesis.t32", title="Cascading Sum Augmentation on a second dataset: test error (%) (thesis Table 3.2)",
      paper=_paper({"csa_k8": [35.3, 20.34, 35.01, 18.63], "csa_k4": [34.7, 19.85, 33.01, 18.09],
                    "csa_k2": [35.56, 20.17, 34.44, 18.17], "baseline": [43.2, 23.87, 41.72, 21.94]}, _T32),
      paper_note="Thesis Table 3.2: CIFAR-100 test error (%), 100 / 500 images per class, one run each.",
      claims=CSA_CLAIMS, sections=CSA_SECTIONS, notes=NOTES, chosen_here=SUM_AUGMENTATION)
_spec(id="thesis.f36", title="CSA (K=4) vs mixup vs SamplePairing: error reduction over the baseline (thesis Fig. 3.6)",
      claims=[Claim("CSA (K=4) beats mixup", "csa_k4", "mixup"),
              Claim("CSA (K=4) beats SamplePairing", "csa_k4", "sample_pairing"),
              Claim("CSA (K=4) beats the baseline", "csa_k4", "baseline")],
      sections=[selection_section, reduction_section], figures=[reduction_figure],
      chosen_here={**SUM_AUGMENTATION, **MIXING_BASELINES},
      notes=NOTES + " mixup (Zhang et al. 2018): λ ~ Beta(α, α), α = 1 (their CIFAR setting), one λ per batch, "
                    "cross-entropy on the mixed one-hot targets. SamplePairing (Inoue 2018): average with a random "
                    "training image, first image's label; on CIFAR it starts after 100 epochs, then 8 epochs on, 2 "
                    "off (the paper profile); offline these are scaled down (see params.yaml). Both run as a mixing "
                    "phase then the same clean phase as CSA.")
_spec(id="thesis.t34", title="Gradually Cascading Sum Augmentation: test error (%) by start K (thesis Table 3.4)",
      paper=_paper({"gcsa_k8": [3.89, 3.17], "gcsa_k4": [3.71, 2.95], "gcsa_k2": [5.25, 3.27],
                    "baseline": [5.57, 4.68]}, ["wrn40_4_5000", "wrn28_10_5000"]),
      paper_note="Thesis Table 3.4: CIFAR-10 (full) test error (%), one run each. CSA K=4 on the same data "
                 "(Table 3.1): 3.88 / 3.11.",
      claims=[Claim("GCSA (start K=4) beats the baseline", "gcsa_k4", "baseline"),
              Claim("GCSA beats CSA (start K=4)", "gcsa_k4", "csa_k4"),
              Claim("GCSA beats CSA (start K=8)", "gcsa_k8", "csa_k8")],
      sections=[selection_section, analogue_section, spike_section], figures=[f34_figure],
      chosen_here={**SUM_AUGMENTATION_FULL, **GCSA},
      notes=NOTES + " GCSA: weights GCC_n(t) (eqs. 3.1-3.6), t = epoch / cascade_epochs (Algorithm 3; "
                    "`t_update: step` is the official per-step increment), K = n − ⌊t(n−1)⌋ groups, loss ÷ K; "
                    "then clean fine-tuning with the same early stop and restore. Figure thesis.f34: GCC_2 and "
                    "GCC_4 against t, and the L2 norm per epoch of CSA vs GCSA (the thesis' figs 3.5 and 3.7). "
                    "Not reproduced from the official code (facts, no option): it recomputes eqs. 3.2-3.3 only when K "
                    "changes, so within a segment its weights differ from eq. 3.6 (n = 2: (1+t)/2 instead of "
                    "(1+t)/2 + t(1−t)/2), and it multiplies the learning rate by lr_gamma at every K change.")
_TTSA_NOTES = (NOTES + " TTSA (§3.6): C = 16 mixes λ/K·x + Σ_{j<K−1} 1/(Kλ)·r_j, λ = 1, K = 4, random images r_j from "
               "the training split (`pool: test` as the thesis' wording), prediction = mean softmax; one forward "
               "over C × batch. The cascades stop at K = 2 (as the thesis did for these tables); `test_err` is the "
               "plain prediction, `ttsa_test_err` TTSA, both on the same kept weights.")
_TTSA_PAPER = ["wrn40_4", "wrn40_4 ttsa_test_err", "wrn28_10", "wrn28_10 ttsa_test_err"]
_spec(id="thesis.t35", title="Test-Time Sum Augmentation: normal vs TTSA test error (%) (thesis Table 3.5)",
      metrics=["test_err", "ttsa_test_err"],
      paper=_paper({"8-4-2": [6.53, 6.32, 5.58, 5.11], "4-2": [6.91, 6.32, 5.35, 5.09],
                    "2": [6.19, 6.03, 5.74, 5.39]}, _TTSA_PAPER),
      paper_note="Thesis Table 3.5: CIFAR-10 (full) test error (%), normal test and TTSA (`ttsa_test_err` "
                 "columns), one run each.",
      sections=[selection_section, analogue_section, ttsa_section], notes=_TTSA_NOTES,
      chosen_here=SUM_AUGMENTATION_FULL)
_spec(id="thesis.t36", title="Test-Time Sum Augmentation on a second dataset (thesis Table 3.6)",
      metrics=["test_err", "ttsa_test_err"],
      paper=_paper({"8-4-2": [27.18, 24.06, 25.11, 20.25], "4-2": [27.22, 23.9, 24.42, 20.46],
                    "2": [27.19, 23.58, 24.32, 20.29]}, _TTSA_PAPER),
      paper_note="Thesis Table 3.6: CIFAR-100 (full) test error (%), normal test and TTSA (`ttsa_test_err` "
                 "columns), one run each.",
      sections=[selection_section, analogue_section, ttsa_section], notes=_TTSA_NOTES,
      chosen_here=SUM_AUGMENTATION_FULL)
