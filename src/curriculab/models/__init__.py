"""The architecture registry: `create_model(name, in_channels, num_classes, width=1.0, **kw)`.

Every model builds its convolutions as named submodules (nested ones included), so a method can
find each one with `model.named_modules()` and put a layer after it (see methods/cbs.py).

Checking settings (`check_model`, `takes_image_size`, `model_names`) reads the torch-free declarations of
models/settings.py; `create_model` imports the implementations.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING

from curriculab.config import ConfigError, suggest
from curriculab.models.settings import COMMON, MODEL_SETTINGS, ModelSettings, declare_model
from curriculab.registry import Registry, ref_of

if TYPE_CHECKING:
    from torch import nn

MODELS: Registry[Callable[..., nn.Module]] = Registry("model", ("curriculab.models",))  # the builders


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: the function's name is the model's name in params (`model.name`). A model declared in
    models/settings.py must match its declaration (else an error when its module is imported); another one is
    declared from its signature."""
    found = ModelSettings(fn.__name__, ref_of(fn),
                          tuple(p for p in inspect.signature(fn).parameters if p not in COMMON))
    if fn.__name__ not in MODEL_SETTINGS:
        declare_model(found.name, found.impl, found.kwargs)
    elif (declared := MODEL_SETTINGS.get(fn.__name__)) != found:
        raise TypeError(f"model {fn.__name__!r}: {found.impl} takes {found.kwargs}, but models/settings.py "
                        f"declares {declared.impl} taking {declared.kwargs}")
    return MODELS.register(fn.__name__, fn)


def model_names() -> list[str]:
    return MODEL_SETTINGS.names()


def takes_image_size(name: str) -> bool:
    """Whether the model's shape depends on the input side (`image_size`, e.g. a VAE's decoder)."""
    return MODEL_SETTINGS.get(name).takes_image_size


def check_model(name: str, kwargs: dict, path: str = "model") -> None:
    """Unknown model names and unknown keyword arguments are ConfigErrors naming the key."""
    allowed = list(MODEL_SETTINGS.get(name, f"{path}.name").kwargs)
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
