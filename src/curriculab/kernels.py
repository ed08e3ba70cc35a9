"""Fixed 2-D smoothing kernels and depthwise filtering, shared by CBS and progressive sharpening."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gaussian_kernel(sigma: float, size: int = 3) -> torch.Tensor:
    """size×size 2-D Gaussian with std σ, normalised to sum 1 (CBS §2.2).

    Finite for every σ ≥ 0: as σ → 0 it tends to a centred delta, and σ = 0 returns exactly that
    (the official code divides by σ and gives NaN there).
    """
    if size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be odd and >= 1, got {size}")
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    r = torch.arange(size, dtype=torch.float64) - size // 2
    d2 = r[:, None] ** 2 + r[None, :] ** 2
    if sigma == 0:
        return (d2 == 0).to(torch.float32)
    logits = -d2 / (2 * sigma**2)
    k = torch.exp(logits - logits.max())  # the centre is 1, so the sum never underflows to 0
    return (k / k.sum()).to(torch.float32)


def box_kernel(n: int) -> torch.Tensor:
    """J_n / n²: the n×n mean filter (progressive sharpening §3); n = 1 is the identity."""
    if n < 1:
        raise ValueError(f"box kernel size must be >= 1, got {n}")
    return torch.full((n, n), 1.0 / (n * n))


def depthwise(x: torch.Tensor, kernel: torch.Tensor, padding_mode: str = "zeros") -> torch.Tensor:
    """Filter every channel of (N, C, H, W) with the same 2-D kernel, keeping H and W.

    `padding_mode` is 'zeros' (as CBS's official code), 'reflect' or 'replicate'. Even kernel sizes
    pad one more pixel at the bottom/right.
    """
    c = x.shape[1]
    kh, kw = kernel.shape
    w = kernel.to(x.dtype).to(x.device).expand(c, 1, kh, kw)
    pad = ((kw - 1) // 2, kw // 2, (kh - 1) // 2, kh // 2)
    if padding_mode == "zeros":
        x = F.pad(x, pad)
    else:
        x = F.pad(x, pad, mode=padding_mode)
    return F.conv2d(x, w, groups=c)
