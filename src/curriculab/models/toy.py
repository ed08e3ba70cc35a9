"""The toy CNN of the Perfect Ordering experiment (thesis §2.2)."""

from __future__ import annotations

import torch
from torch import nn

from curriculab.models import register_model
from curriculab.models.layers import ch


class PlainBatchNorm2d(nn.BatchNorm2d):
    """nn.BatchNorm2d written with plain tensor ops (the same function and buffers; numbers equal to float
    rounding, the variance being computed in two passes): under `vmap` over thousands of stacked networks
    these batch well, where the fused batch_norm kernel does not."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            # two passes, mean then the mean square of the centred x (under vmap several times faster than var)
            mean = x.mean((0, 2, 3))
            centred = x - mean[:, None, None]
            var = (centred * centred).mean((0, 2, 3))
            n = x.numel() / x.shape[1]
            with torch.no_grad():
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
                self.running_var.mul_(1 - self.momentum).add_(self.momentum * var * (n / max(n - 1, 1)))
                self.num_batches_tracked.add_(1)
            scale = self.weight * torch.rsqrt(var + self.eps)
            return centred * scale[:, None, None] + self.bias[:, None, None]
        scale = self.weight * torch.rsqrt(self.running_var + self.eps)
        return x * scale[:, None, None] + (self.bias - self.running_mean * scale)[:, None, None]


@register_model
def basic_conv(in_channels: int, num_classes: int, width: float = 1.0) -> nn.Module:
    """conv 2×2 (16 × width) → ReLU → BN → conv 2×2 (32 × width) → ReLU → BN → global average pool → linear.

    The thesis says only "a small convolutional network"; this is the BasicConv of the authors' code
    (Tensor-Reloaded/Convergence), with a global pool in place of its fixed 26×26 pool so any image size works.
    """
    c1, c2 = ch(16, width), ch(32, width)
    return nn.Sequential(
        nn.Conv2d(in_channels, c1, 2), nn.ReLU(), PlainBatchNorm2d(c1),
        nn.Conv2d(c1, c2, 2), nn.ReLU(), PlainBatchNorm2d(c2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c2, num_classes),
    )
