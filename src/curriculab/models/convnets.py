"""Plain convolutional classifiers: a small CNN, LeNet and VGG-16."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from curriculab.config import ConfigError
from curriculab.models import register_model
from curriculab.models.layers import ch


class MaybePool(nn.Module):
    """2×2 max-pool that is skipped once the feature map is a single pixel (small offline images)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(x, 2) if min(x.shape[-2:]) >= 2 else x


class ConvBlock(nn.Sequential):
    """conv → [bn] → relu; the conv is `.conv` so methods can address it."""

    def __init__(self, cin: int, cout: int, bn: bool = True, k: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=k // 2, bias=not bn)
        if bn:
            self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)


def _window_matrix(n_in: int, n_out: int, like: torch.Tensor) -> torch.Tensor:
    """(n_out, n_in): row i averages nn.AdaptiveAvgPool2d's window i, [⌊i·n_in/n_out⌋, ⌈(i+1)·n_in/n_out⌉)."""
    i = torch.arange(n_out, device=like.device)
    start, end = (i * n_in) // n_out, ((i + 1) * n_in + n_out - 1) // n_out
    j = torch.arange(n_in, device=like.device)
    inside = (j[None] >= start[:, None]) & (j[None] < end[:, None])
    return inside.to(like.dtype) / (end - start)[:, None].to(like.dtype)


class AveragePoolTo(nn.Module):
    """Adaptive average pooling to size×size as two fixed window matrices: the windows of
    nn.AdaptiveAvgPool2d, with a deterministic backward on CUDA (the adaptive pool's is not)."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = _window_matrix(x.shape[-2], self.size, x)
        cols = _window_matrix(x.shape[-1], self.size, x)
        return rows @ x @ cols.T

    def extra_repr(self) -> str:
        return f"size={self.size}"


@register_model
def small_cnn(in_channels: int, num_classes: int, width: float = 1.0) -> nn.Module:
    """Three conv blocks (32, 64, 128 channels × width) with pooling, global average pool, linear."""
    c = [ch(32, width), ch(64, width), ch(128, width)]
    return nn.Sequential(
        ConvBlock(in_channels, c[0]), MaybePool(),
        ConvBlock(c[0], c[1]), MaybePool(),
        ConvBlock(c[1], c[2]),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c[2], num_classes),
    )


@register_model
def lenet(in_channels: int, num_classes: int, width: float = 1.0) -> nn.Module:
    """LeNet-5 (6, 16 channels × width; 120-84 hidden), padded so it accepts 8×8 inputs too."""
    c1, c2 = ch(6, width), ch(16, width)
    return nn.Sequential(
        nn.Conv2d(in_channels, c1, 5, padding=2), nn.ReLU(), MaybePool(),
        nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU(), MaybePool(),
        AveragePoolTo(5), nn.Flatten(),
        nn.Linear(c2 * 25, ch(120, width)), nn.ReLU(), nn.Linear(ch(120, width), ch(84, width)), nn.ReLU(),
        nn.Linear(ch(84, width), num_classes),
    )


VGG16 = [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]]


class VGG(nn.Module):
    """VGG-16 for small images: 13 convs (`blocks.<b>.conv<k>.conv`, k from 1), global average pooling, then one
    linear classifier (`head: linear`, CIFAR style) or Simonyan & Zisserman's three fully connected layers
    (`head: fc3`: 4096, 4096 with ReLU and dropout 0.5, then the classes; [51], as the CBS official code)."""

    def __init__(self, in_channels: int, num_classes: int, width: float, bn: bool, head: str = "linear"):
        super().__init__()
        self.blocks = nn.ModuleList()
        cin = in_channels
        for spec in VGG16:
            block = nn.Sequential()
            for k, c in enumerate(spec, 1):
                block.add_module(f"conv{k}", ConvBlock(cin, ch(c, width), bn=bn))
                cin = ch(c, width)
            block.add_module("pool", MaybePool())
            self.blocks.append(block)
        self.pool = nn.AdaptiveAvgPool2d(1)
        if head == "linear":
            self.fc = nn.Linear(cin, num_classes)
        elif head == "fc3":
            hidden = ch(4096, width)
            self.fc = nn.Sequential(nn.Linear(cin, hidden), nn.ReLU(), nn.Dropout(0.5), nn.Linear(hidden, hidden),
                                    nn.ReLU(), nn.Dropout(0.5), nn.Linear(hidden, num_classes))
        else:
            raise ConfigError(f"model.kwargs.head: {head!r} is not a VGG head (linear, fc3)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for b in self.blocks:
            x = b(x)
        return self.fc(torch.flatten(self.pool(x), 1))


@register_model
def vgg16(in_channels: int, num_classes: int, width: float = 1.0, bn: bool = True, head: str = "linear"
          ) -> nn.Module:
    """VGG-16 with BatchNorm and one linear classifier; `bn: false, head: fc3` is the paper's [51] (no BatchNorm,
    three fully connected layers)."""
    return VGG(in_channels, num_classes, width, bn, head)
