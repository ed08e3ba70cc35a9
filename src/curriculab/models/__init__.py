"""The architecture registry: `create_model(name, in_channels, num_classes, width=1.0, **kw)`.

Every model builds its convolutions as named submodules (nested ones included), so a method can
find each one with `model.named_modules()` and put a layer after it (see methods/cbs.py).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable
from functools import cache

from torch import nn

from curriculab.config import ConfigError, suggest

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: the function's name is the model's name in params (`model.name`)."""
    _MODELS[fn.__name__] = fn
    return fn


@cache
def _discover() -> None:
    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")


def model_names() -> list[str]:
    _discover()
    return sorted(_MODELS)


def check_model(name: str, kwargs: dict, path: str = "model") -> None:
    """Unknown model names and unknown keyword arguments are ConfigErrors naming the key."""
    _discover()
    if name not in _MODELS:
        raise ConfigError(f"{path}.name: unknown model {name!r}{suggest(name, _MODELS)}")
    sig = inspect.signature(_MODELS[name])
    allowed = [p for p in sig.parameters if p not in ("in_channels", "num_classes", "width")]
    for k in kwargs:
        if k not in allowed:
            raise ConfigError(f"{path}.kwargs.{k}: model {name!r} takes no argument {k!r}{suggest(k, allowed)}")


def create_model(name: str, in_channels: int, num_classes: int, width: float = 1.0, **kw) -> nn.Module:
    """Build a registered architecture; `width` multiplies every channel count."""
    check_model(name, kw)
    return _MODELS[name](in_channels=in_channels, num_classes=num_classes, width=width, **kw)


def ch(c: int, width: float) -> int:
    """A channel count scaled by the width multiplier (at least 1)."""
    return max(1, int(round(c * width)))
