"""Claim testing: difference of means and Welch's t-test; Holm's correction; the under-training check; the
one place that turns those into a verdict and sorts verdicts into the index's four kinds."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05
NO_VARIANCE = "not testable (no variance)"
UNDER_TRAINED = "inconclusive: under-trained"
DEPENDS = "depends on epoch selection"
KINDS = ("reproduced", "not reproduced", "inconclusive", "not testable")


@dataclass
class ClaimResult:
    diff: float  # mean(better) - mean(worse), sign-adjusted so > 0 supports the claim
    p: float | None
    n: tuple[int, int]
    verdict: str


def check_claim(better: list[float], worse: list[float], higher_is_better: bool = True) -> ClaimResult:
    """Does `better` beat `worse`? Welch's t-test (two-sided) when both have n ≥ 3.

    Both sides without spread: equal means are "no gain"; different means have no test at all (Welch's
    statistic is undefined, not infinite), so the verdict is "not testable (no variance)" with p None.
    """
    from scipy import stats

    b, w = np.asarray(better, float), np.asarray(worse, float)
    n = (len(b), len(w))
    if not len(b) or not len(w):
        return ClaimResult(math.nan, None, n, "not run")
    diff = float(b.mean() - w.mean()) * (1 if higher_is_better else -1)
    if min(n) < 3:
        return ClaimResult(diff, None, n, "untested (n < 3)")
    if np.ptp(b) == 0 and np.ptp(w) == 0:  # every value equal (np.std of equal floats can be 1e-16)
        return ClaimResult(diff, 1.0, n, "not reproduced (no gain)") if diff == 0 else \
            ClaimResult(diff, None, n, NO_VARIANCE)
    p = float(stats.ttest_ind(b, w, equal_var=False).pvalue)
    if diff > 0 and p < ALPHA:
        verdict = "reproduced"
    elif diff < 0 and p < ALPHA:
        verdict = "not reproduced (significantly worse)"
    elif diff > 0:
        verdict = "not reproduced (better, not significant)"
    else:
        verdict = "not reproduced (no gain)"
    return ClaimResult(diff, p, n, verdict)


def holm(ps: list[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values over one family (None: no test, not counted in the family)."""
    idx = sorted((i for i, p in enumerate(ps) if p is not None), key=lambda i: ps[i])
    m, out, running = len(idx), [None] * len(ps), 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * ps[i]))
        out[i] = running
    return out


def still_improving(curve: list[float], higher_is_better: bool = True, rel_tol: float = 0.01) -> bool | None:
    """Was a validation curve (one value per epoch) still improving over its last 25% of epochs?

    With E epochs, the last quarter is the last q = ⌈E/4⌉ epochs. "Improving" means the best value within
    the last quarter beats the best value before it by more than `rel_tol` (1%) of that earlier best's
    magnitude, in the metric's better direction (e.g. val accuracy 0.77 → 0.91 at the last epoch of 4 is
    improving; 0.905 → 0.908 is not). None when the curve has fewer than 2 finite epochs (nothing to
    compare).
    """
    v = [float(x) for x in curve if x is not None and math.isfinite(float(x))]
    if len(v) < 2:
        return None
    q = math.ceil(len(v) / 4)
    pick = max if higher_is_better else min
    before, last = pick(v[:-q]), pick(v[-q:])
    gain = (last - before) * (1 if higher_is_better else -1)
    return gain > rel_tol * abs(before)


def verdict(final: ClaimResult, selected: ClaimResult | None, under_trained: bool) -> str:
    """The claim's verdict from both epoch choices (final, validation-selected) and the under-training check.

    "reproduced" only when both choices reproduce it (or only the final exists); one reproducing and the
    other not is "depends on epoch selection". A "not reproduced" on a side still improving at the end
    becomes "inconclusive: under-trained".
    """
    v = final.verdict
    if selected is not None and (v == "reproduced") != (selected.verdict == "reproduced") and \
            kind(selected.verdict) != "not testable" and kind(v) != "not testable":
        v = DEPENDS
    if under_trained and v.startswith("not reproduced"):
        v = f"{UNDER_TRAINED} (was: {v})"
    return v


def kind(v: str) -> str:
    """One of KINDS for any verdict string: a failed sanity check ("unreliable (…)") is inconclusive; a
    missing run, n < 3 or no variance is not testable."""
    if v == "reproduced":
        return "reproduced"
    if v.startswith("not reproduced"):
        return "not reproduced"
    if v.startswith(("inconclusive", DEPENDS, "unreliable")):
        return "inconclusive"
    return "not testable"
