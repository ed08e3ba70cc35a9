"""The architecture registry: `create_model(name, in_channels, num_classes, width=1.0, **kw)`.

Every model builds its convolutions as named submodules (nested ones included), so a method can
find each one with `model.named_modules()` and put a layer after it (see methods/cbs.py).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
from torch import nn

from curriculab.config import ConfigError, suggest
from curriculab.registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: the function's name is the model's name in params (`model.name`)."""
    return MODELS.register(fn.__name__, fn)


def model_names() -> list[str]:
    return MODELS.names()


def takes_image_size(name: str) -> bool:
    """Whether the model's shape depends on the input side (`image_size`, e.g. a VAE's decoder)."""
    return "image_size" in inspect.signature(MODELS.get(name)).parameters


def check_model(name: str, kwargs: dict, path: str = "model") -> None:
    """Unknown model names and unknown keyword arguments are ConfigErrors naming the key."""
    fn = MODELS.get(name, f"{path}.name")
    sig = inspect.signature(fn)
    allowed = [p for p in sig.parameters if p not in ("in_channels", "num_classes", "width")]
    for k in kwargs:
        if k not in allowed:
            raise ConfigError(f"{path}.kwargs.{k}: model {name!r} takes no argument {k!r}{suggest(k, allowed)}")


def create_model(name: str, in_channels: int, num_classes: int, width: float = 1.0,
                 image_size: int | None = None, **kw) -> nn.Module:
    """Build a registered architecture; `width` multiplies every channel count. `image_size` (the input
    side) reaches only models that take it, unless the settings give it explicitly."""
    check_model(name, kw)
    if image_size is not None and takes_image_size(name):
        kw.setdefault("image_size", image_size)
    return MODELS.get(name)(in_channels=in_channels, num_classes=num_classes, width=width, **kw)


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
