"""Building blocks shared by the architectures (and by methods that wrap a model, e.g. methods/cbs.py)."""

from __future__ import annotations

import torch
from torch import nn


class InputTransform(nn.Module):
    """A model that filters its input before an inner model (e.g. a blur of the image): forward = net(transform(x)).
    Evaluations that call the inner model's own methods (a VAE's encode) apply `transform` first.
    Subclasses set `self.net`."""

    net: nn.Module

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def forward(self, x: torch.Tensor, *args, **kwargs):
        return self.net(self.transform(x), *args, **kwargs)


def ch(c: int, width: float) -> int:
    """A channel count scaled by the width multiplier (at least 1)."""
    return max(1, int(round(c * width)))
