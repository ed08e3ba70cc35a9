"""Residual networks with a CIFAR stem: ResNet-18, Wide-ResNet, PreAct-ResNet, ResNeXt, wide bottleneck ResNet-50.

Shortcut projections are 1×1 convs named `shortcut.0` so that methods can tell them apart.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from curriculab.models import register_model
from curriculab.models.layers import ch


def _shortcut(cin: int, cout: int, stride: int, bn: bool = True) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    layers = [nn.Conv2d(cin, cout, 1, stride, bias=False)]
    return nn.Sequential(*layers, nn.BatchNorm2d(cout)) if bn else nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """conv3×3 → bn → relu → conv3×3 → bn, plus shortcut, relu (ResNet-18)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = _shortcut(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class Bottleneck(nn.Module):
    """1×1 → grouped 3×3 → 1×1 (ResNeXt when groups > 1; wide when the inner width is doubled)."""

    def __init__(self, cin: int, inner: int, cout: int, stride: int, groups: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, inner, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(inner)
        self.conv2 = nn.Conv2d(inner, inner, 3, stride, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(inner)
        self.conv3 = nn.Conv2d(inner, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.shortcut = _shortcut(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return F.relu(self.bn3(self.conv3(out)) + self.shortcut(x))


class PreActBlock(nn.Module):
    """bn → relu → conv3×3 → bn → relu → [dropout] → conv3×3, plus shortcut (WRN, PreAct-ResNet)."""

    def __init__(self, cin: int, cout: int, stride: int, dropout: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.shortcut = (nn.Identity() if stride == 1 and cin == cout
                         else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = F.relu(self.bn1(x))
        sc = self.shortcut(o) if not isinstance(self.shortcut, nn.Identity) else x
        out = self.conv1(o)
        out = self.conv2(self.dropout(F.relu(self.bn2(out))))
        return out + sc


class ResNet(nn.Module):
    """Stem conv3×3 (stride 1, no max-pool) → stages → [bn-relu] → global pool → linear."""

    def __init__(self, in_channels: int, num_classes: int, stem: int, stages: list[nn.Sequential],
                 out: int, preact: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, stem, 3, 1, 1, bias=False)
        self.bn1 = nn.Identity() if preact else nn.BatchNorm2d(stem)
        self.stages = nn.Sequential(*stages)
        self.bn_out = nn.BatchNorm2d(out) if preact else nn.Identity()
        self.fc = nn.Linear(out, num_classes)
        self.preact = preact

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = x if self.preact else F.relu(self.bn1(x))
        x = self.stages(x)
        if self.preact:
            x = F.relu(self.bn_out(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def _stage(make, cin: int, cout: int, n: int, stride: int) -> nn.Sequential:
    return nn.Sequential(*[make(cin if i == 0 else cout, cout, stride if i == 0 else 1) for i in range(n)])


@register_model
def resnet18(in_channels: int, num_classes: int, width: float = 1.0) -> nn.Module:
    """ResNet-18 (He et al.) with the CIFAR stem; channels 64-128-256-512 × width."""
    c = [ch(v, width) for v in (64, 128, 256, 512)]
    stages, cin = [], c[0]
    for i, cout in enumerate(c):
        stages.append(_stage(BasicBlock, cin, cout, 2, 1 if i == 0 else 2))
        cin = cout
    return ResNet(in_channels, num_classes, c[0], stages, c[-1])


@register_model
def wrn(in_channels: int, num_classes: int, width: float = 1.0, depth: int = 28, widen: int = 10,
        dropout: float = 0.0) -> nn.Module:
    """Wide-ResNet-depth-widen (Zagoruyko & Komodakis), pre-activation blocks; depth = 6n + 4."""
    if (depth - 4) % 6:
        raise ValueError(f"wrn depth must be 6n+4 (e.g. 16, 28, 40), got {depth}")
    n = (depth - 4) // 6
    c = [ch(16, width)] + [ch(16 * widen * 2**i, width) for i in range(3)]
    stages, cin = [], c[0]
    for i, cout in enumerate(c[1:]):
        stages.append(_stage(lambda a, b, s: PreActBlock(a, b, s, dropout), cin, cout, n, 1 if i == 0 else 2))
        cin = cout
    return ResNet(in_channels, num_classes, c[0], stages, c[-1], preact=True)


@register_model
def preact_resnet(in_channels: int, num_classes: int, width: float = 1.0, depth: int = 56) -> nn.Module:
    """PreAct-ResNet (He et al. 2016) for CIFAR: 3 stages of 16-32-64 channels × width; depth = 6n + 2."""
    if (depth - 2) % 6:
        raise ValueError(f"preact_resnet depth must be 6n+2 (e.g. 20, 56, 110), got {depth}")
    n = (depth - 2) // 6
    c = [ch(v, width) for v in (16, 32, 64)]
    stages, cin = [], c[0]
    for i, cout in enumerate(c):
        stages.append(_stage(PreActBlock, cin, cout, n, 1 if i == 0 else 2))
        cin = cout
    return ResNet(in_channels, num_classes, c[0], stages, c[-1], preact=True)


def _bottleneck_net(in_channels, num_classes, width, blocks, groups, group_width, stem=64, base=256):
    stages, cin = [], ch(stem, width)
    for i, n in enumerate(blocks):
        inner = ch(groups * group_width * 2**i, width)
        inner = max(groups, inner - inner % groups)
        cout = ch(base * 2**i, width)
        stages.append(_stage(lambda a, b, s, inner=inner: Bottleneck(a, inner, b, s, groups), cin, cout, n,
                             1 if i == 0 else 2))
        cin = cout
    return ResNet(in_channels, num_classes, ch(stem, width), stages, cin)


@register_model
def resnext(in_channels: int, num_classes: int, width: float = 1.0, depth: int = 29, cardinality: int = 8,
            group_width: int = 64) -> nn.Module:
    """CIFAR ResNeXt-depth (Xie et al.): 3 stages of bottlenecks, depth = 9n + 2 (29 → 3 blocks each)."""
    if (depth - 2) % 9:
        raise ValueError(f"resnext depth must be 9n+2 (e.g. 29), got {depth}")
    n = (depth - 2) // 9
    return _bottleneck_net(in_channels, num_classes, width, [n] * 3, cardinality, group_width)


@register_model
def resnext50(in_channels: int, num_classes: int, width: float = 1.0, cardinality: int = 32,
              group_width: int = 4) -> nn.Module:
    """ResNeXt-50 (32×4d), CIFAR stem, as in the CBS paper's table 1."""
    return _bottleneck_net(in_channels, num_classes, width, [3, 4, 6, 3], cardinality, group_width)


@register_model
def wide_resnet50(in_channels: int, num_classes: int, width: float = 1.0) -> nn.Module:
    """Wide ResNet-50-2 (bottleneck inner width doubled), CIFAR stem, as in the CBS paper's table 1."""
    return _bottleneck_net(in_channels, num_classes, width, [3, 4, 6, 3], 1, 128)
