"""Seeded variants of a prepared dataset: per-class subsets, label noise, resizing, channel conversion."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def subset_per_class(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Positions of n items per class (all of a class that has fewer), seeded, in ascending order."""
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(np.flatnonzero(y == c))[:n] for c in np.unique(y)]
    return np.sort(np.concatenate(keep))


def sample(n_items: int, n: int, seed: int) -> np.ndarray:
    """Positions of a seeded uniform sample of n of n_items (all when fewer), in ascending order."""
    return np.sort(np.random.default_rng(seed).permutation(n_items)[:n])


def corrupt_labels(y: np.ndarray, rate: float, kind: str, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noisy labels and the mask of items chosen for corruption.

    uniform:       the paper (DP §4.2): ⌊N·p⌋ items drawn at random get a uniformly random class
                   (so about p/k of them keep their label by chance).
    permute_first: the official code: the labels of the first ⌊N·p⌋ items are permuted among themselves
                   (class counts kept).
    random:        every label uniformly random (the memorisation experiment); rate is ignored.
    """
    rng = np.random.default_rng(seed)
    y = y.copy()
    n = len(y)
    if kind == "random":
        return rng.integers(0, classes, n).astype(np.int64), np.ones(n, bool)
    m = int(np.floor(n * rate))
    chosen = np.zeros(n, bool)
    if m == 0:
        return y, chosen
    if kind == "uniform":
        idx = rng.choice(n, m, replace=False)
        y[idx] = rng.integers(0, classes, m)
    elif kind == "permute_first":
        idx = np.arange(m)
        y[idx] = y[idx][rng.permutation(m)]
    else:
        raise ValueError(f"unknown noise kind {kind!r}")
    chosen[idx] = True
    return y, chosen


def resize(x: torch.Tensor, size: int | None, channels: int | None) -> torch.Tensor:
    """uint8 (N, C, H, W) → the requested square size and channel count (so a domain pair shares a shape)."""
    if channels is not None and x.shape[1] != channels:
        if channels == 3:
            x = x.expand(-1, 3, -1, -1)
        else:
            x = x.float().mean(1, keepdim=True).round().to(torch.uint8)
    if size is not None and x.shape[-1] != size:
        mode = "area" if size < x.shape[-1] else "bilinear"
        extra = {"align_corners": False} if mode == "bilinear" else {}
        y = F.interpolate(x.float(), size=(size, size), mode=mode, **extra)
        x = y.round().clamp(0, 255).to(torch.uint8)
    return x.contiguous()
