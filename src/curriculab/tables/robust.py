"""Adversarial robustness: the section every table with an `adversarial` evaluate block gets, and robust.methods
(each method's trained models against the baseline trained in the same table).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from curriculab.evaluate.settings.adversarial import ITERATIVE, AdversarialParams, read_results, selected
from curriculab.tables.spec import Claim, TableSpec, register_table

if TYPE_CHECKING:
    import pandas as pd

DEFAULTS = ("Attacks (torchattacks 3.5.1) perturb raw [0, 1] pixels, the run's normalisation being the first layer "
            "of the attacked model; L∞ ε = 8/255, 10 iterations, PGD step 2/255 without random start, BIM / MIM "
            "step ε / 10, MIM decay 1: the settings of the thesis' official robustness script (the thesis "
            "itself gives no attack settings). The final model, eval mode. A test image counts as robust only "
            "if it is classified correctly both clean and attacked.")
TRUST = ("A `predict` hook that is a test-time defence is attacked two ways: *transfer* (the adversarial images "
         "of the network alone, classified through the defence) and *adaptive* (the attack runs through the "
         "defence, each gradient the mean over `eot_samples` independent draws of it: Expectation over "
         "Transformation, Athalye, Carlini & Wagner 2018). **The adaptive number is the one to trust**: a "
         "transfer attack never sees the defence, so it can overstate it (Athalye et al. 2018).")


def attack_label(attack: str) -> str:
    return {"mim": "MIM"}.get(attack, attack.upper())


def variants(results: list[dict], attacks: list[str]) -> list[tuple[str, str, dict[str, str]]]:
    """(label, kind, {column: metric key}) for the network and each defence found in the results."""
    out = [("network", "network", {"clean": "adv_clean_acc", **{a: f"adv_{a}_acc" for a in attacks}})]
    defences = sorted({k[len("adv_"):-len("_clean_acc")] for r in results for k in r
                       if k.endswith("_clean_acc") and k != "adv_clean_acc"})
    for d in defences:
        for mode in ("transfer", "adaptive"):
            out.append((f"+ {d} ({mode})", mode, {"clean": f"adv_{d}_clean_acc",
                                                  **{a: f"adv_{d}_{mode}_{a}_acc" for a in attacks}}))
    return out


def _checks(p: AdversarialParams, runs, results: dict[str, dict]) -> tuple[list[str], bool]:
    """The sanity checks' lines and whether every one passed (one not run counts as failed)."""
    first = next((results[r.run_id] for r in selected(runs, p) if r.run_id in results), None)
    sanity = (first or {}).get("_sanity")
    if sanity is None:
        return ["- Not run: no adversarial results yet (run `dvc repro`)."], False
    mark = {True: "passed", False: "**FAILED**"}
    zero = sanity["eps0"]
    ok0 = all(z["ok"] for z in zero.values())
    sweep = ", ".join(f"ε {s['eps'] * 255:g}/255: {s['robust'] * 100:.2f}" for s in sanity["sweep"])
    pairs = [(r, results[r.run_id]) for r in selected(runs, p) if r.run_id in results]
    weaker = [f"{r.row} | {r.column} | seed {r.seed}" for r, m in pairs if "adv_pgd_acc" in m and
              "adv_fgsm_acc" in m and m["adv_pgd_acc"] > m["adv_fgsm_acc"] + p.tolerance]
    pg = sanity["pgd_vs_fgsm"]
    pgd_ok = sanity["pgd_no_weaker"] and not weaker
    bounds = [b for _, m in pairs for b in m.get("_bounds", {}).values()]
    bad = [b for b in bounds if not b["ok"]]
    bounds_ok = not bad and sanity["sweep_bounds_ok"]
    worst = max((b["linf"] / b["eps"] for b in bounds if b["eps"] > 0), default=0.0)
    lines = [
        f"- ε = 0 gives robust accuracy = clean accuracy ({(first or {}).get('adv_images')} images of the first "
        f"run, every attack; the images unchanged): {mark[ok0]}"
        + ("" if ok0 else " (" + "; ".join(f"{n}: {z['robust'] * 100:.2f} vs {z['clean'] * 100:.2f}"
                                          for n, z in zero.items() if not z["ok"]) + ")"),
        f"- Accuracy does not increase with ε (PGD on the first run; {sweep}): {mark[sanity['monotone']]}",
        f"- PGD is no weaker than FGSM (first run: PGD {pg['pgd'] * 100:.2f} vs FGSM {pg['fgsm'] * 100:.2f}; and "
        f"every run attacked with both): {mark[pgd_ok]}" + (f" (weaker on {', '.join(weaker)})" if weaker else ""),
        f"- Every adversarial image lies within ε in L∞ of its image and inside [0, 1] ({len(bounds)} attack "
        f"runs; largest L∞ / ε = {worst:.4f}): {mark[bounds_ok]}" + (f" ({len(bad)} out of bounds)" if bad else ""),
    ]
    return lines, ok0 and sanity["monotone"] and pgd_ok and bounds_ok


def adversarial_section(res, cell: Callable[[pd.Series], str]) -> tuple[str, bool] | None:
    """The table's adversarial results (robust accuracy per attack, per row and column, for the network and
    for each defence) and its sanity checks; None when the table has no adversarial block.

    `cell` formats a cell's values (the report's `mean ± std (n)`). The bool is False when a sanity check
    failed or did not run: the table's verdicts are then unreliable."""
    import pandas as pd

    block = res.params.evaluate.get(res.spec.key, {}).get("adversarial")
    if block is None:
        return None
    p = AdversarialParams.model_validate(block)
    attacks = list(p.attacks)
    results = read_results(res.workdir, res.spec.key, [r.run_id for r in res.runs])
    runs = selected(res.runs, p)
    kinds = variants(list(results.values()), attacks)
    lines = ["## Adversarial robustness (evaluate stage), robust accuracy (%) — measured here, mean ± std (n)", "",
             DEFAULTS + (f" Images: the first {p.limit} of each run's test split (all of it where it is smaller)."
                         if p.limit else " Images: each run's whole test split.") + (
                 f" Adaptive attacks average {p.eot_samples} draws of the defence per gradient." if len(kinds) > 1
                 else ""), ""]
    settings = p.resolved()
    lines.append("Settings here: " + "; ".join(
        f"{attack_label(a)} ε {s.eps * 255:g}/255" + (f", {s.steps} steps of {s.step * 255:g}/255"
                                                 + (", random start" if s.random_start else "")
                                                 if a in ITERATIVE else "") for a, s in settings.items()) + ".")
    lines.append("")
    if len(kinds) > 1:
        lines += [TRUST, ""]
    header = ["clean"] + attacks
    for col in dict.fromkeys(r.column for r in runs):
        lines += [f"### {col}", "", "| row | classifier | " + " | ".join(attack_label(h) if h != "clean" else h
                                                                       for h in header) + " |",
                  "|---" * (len(header) + 2) + "|"]
        for row in dict.fromkeys(r.row for r in runs):
            recs = [results[r.run_id] for r in runs if r.row == row and r.column == col and r.run_id in results]
            for label, kind, keys in kinds:
                if kind != "network" and not any(keys["clean"] in m for m in recs):
                    continue
                quoted = res.spec.paper.get(f"{row} · {label}", {})
                cells = []
                for h in header:
                    text = cell(pd.Series([m[keys[h]] for m in recs if keys[h] in m], dtype=float))
                    cells.append(text + (f" · thesis {quoted[h]:g}" if h in quoted else ""))
                name = label + (" ← trust" if kind == "adaptive" else "")
                lines.append(f"| {row} | {name} | " + " | ".join(cells) + " |")
        lines.append("")
    checks, reliable = _checks(p, res.runs, results)
    lines += ["### Sanity checks (Carlini et al. 2019, 'On evaluating adversarial robustness')", "", *checks, ""]
    if not reliable:
        lines += ["**A sanity check failed or did not run: every verdict of this table is marked unreliable.**", ""]
    return "\n".join(lines), reliable


# --------------------------------------------------------------------------- robust.methods

_METHOD_ROWS = {"cbs": "CBS", "dp_class": "data parameters (class, clean labels)",
                "spl_advise": "SPL-ADVisE", "progressive_sharpening": "progressive sharpening",
                "csa_k4": "CSA (start K = 4)", "gcsa_k4": "GCSA (start K = 4)", "mixup": "mixup"}
_CLAIMS = [Claim(f"{label} is more robust than the baseline ({attack_label(a)})", row, "baseline",
                 metric=f"adv_{a}_acc") for a in ("pgd", "fgsm") for row, label in _METHOD_ROWS.items()]
_CLAIMS += [Claim(f"data parameters (instance, 40% noisy labels) is more robust than the noisy baseline "
                  f"({attack_label(a)})", "dp_instance_noisy", "baseline_noisy", metric=f"adv_{a}_acc")
            for a in ("pgd", "fgsm")]

register_table(TableSpec(
    id="robust.methods",
    title="Adversarial robustness of each method's trained models: FGSM and PGD robust accuracy (beyond the papers)",
    source="harness",
    metrics=["adv_pgd_acc", "adv_fgsm_acc", "adv_clean_acc", "test_acc"],
    claims=_CLAIMS,
    notes="Each row is a method with its main offline settings, trained in this table on the same datasets, "
          "architecture, epochs and seeds as the baseline row, so each method is compared with the baseline "
          "trained here (the noisy-label data-parameters row with the baseline trained on the same noisy "
          "labels). The claims ask whether a method is more robust than that baseline; no paper makes them. "
          "`adv_clean_acc` is the clean accuracy on the attacked images, `test_acc` on the whole test split. "
          "The attack settings are in the adversarial section above.",
))
