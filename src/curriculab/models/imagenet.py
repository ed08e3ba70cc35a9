"""torchvision's ImageNet architectures, untrained, at their standard 224 px shapes: what CBS Tables 2 and 3
train on full ImageNet (the paper's VGG-16 [51], without BatchNorm and with three FC layers, and ResNet-18), and
the ImageNet versions of Table 1's ResNeXt-50 (32×4d) and Wide-ResNet-50-2.

`model: {name: torchvision_imagenet, kwargs: {arch: resnet18}}`; `arch` is any classification model of
torchvision.models. CBS finds their convs by name like any other model's (a ResNet's 1×1 `downsample` convs are
its shortcut convs).
"""

from __future__ import annotations

from torch import nn

from curriculab.config import ConfigError
from curriculab.models import register_model

USED = ("resnet18", "vgg16", "resnext50_32x4d", "wide_resnet50_2")  # the paper profile's


@register_model
def torchvision_imagenet(in_channels: int, num_classes: int, width: float = 1.0, arch: str = "resnet18"
                         ) -> nn.Module:
    import torchvision.models as tvm

    names = tvm.list_models(module=tvm)
    if arch not in names:
        raise ConfigError(f"model.kwargs.arch: {arch!r} is not a torchvision classification model "
                          f"(e.g. {', '.join(USED)})")
    if in_channels != 3 or width != 1.0:
        raise ConfigError(f"model torchvision_imagenet ({arch}) takes RGB images at width 1.0, not "
                          f"{in_channels} channel(s) at width {width}")
    return tvm.get_model(arch, weights=None, num_classes=num_classes)
