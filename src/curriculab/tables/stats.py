"""Claim testing: difference of means and Welch's t-test."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05


@dataclass
class ClaimResult:
    diff: float  # mean(better) - mean(worse), sign-adjusted so > 0 supports the claim
    p: float | None
    n: tuple[int, int]
    verdict: str


def check_claim(better: list[float], worse: list[float], higher_is_better: bool = True) -> ClaimResult:
    """Does `better` beat `worse`? Welch's t-test (two-sided) when both have n ≥ 3."""
    b, w = np.asarray(better, float), np.asarray(worse, float)
    n = (len(b), len(w))
    if not len(b) or not len(w):
        return ClaimResult(math.nan, None, n, "not run")
    diff = float(b.mean() - w.mean()) * (1 if higher_is_better else -1)
    p = None
    if min(n) >= 3:
        if np.std(b) == 0 and np.std(w) == 0:
            p = 1.0 if diff == 0 else 0.0
        else:
            p = float(stats.ttest_ind(b, w, equal_var=False).pvalue)
    if p is None:
        verdict = "untested (n < 3)"
    elif diff > 0 and p < ALPHA:
        verdict = "reproduced"
    elif diff < 0 and p < ALPHA:
        verdict = "not reproduced (significantly worse)"
    elif diff > 0:
        verdict = "not reproduced (better, not significant)"
    else:
        verdict = "not reproduced (no gain)"
    return ClaimResult(diff, p, n, verdict)
