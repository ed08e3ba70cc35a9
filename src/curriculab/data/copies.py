"""Derived copies of a prepared dataset (e.g. blurred ones), made once by `prepare`.

A copy has the same shape and item order as its dataset, so batch index i is the same item in
every copy. Makers register by kind; their settings are validated by the maker's Params model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel

from curriculab.config import ConfigError, validate
from curriculab.registry import Registry


@dataclass
class CopyMaker:
    kind: str
    Params: type[BaseModel]
    make: Callable[[np.ndarray, BaseModel], dict[str, np.ndarray]]  # images → {copy name: images}


COPY_MAKERS: Registry[CopyMaker] = Registry("copy kind")


def register_copy(kind: str, params: type[BaseModel]):
    """Decorator for `fn(x_uint8 (N, C, H, W), params) -> {copy_name: x_uint8 of the same shape}`."""

    def deco(fn):
        COPY_MAKERS.register(kind, CopyMaker(kind, params, fn))
        return fn

    return deco


def check_copies(copies: dict[str, dict]) -> dict[str, tuple[CopyMaker, BaseModel]]:
    """Validate `prepare.copies`: each entry names a registered `kind` and that maker's settings."""
    out = {}
    for name, block in copies.items():
        block = dict(block or {})
        kind = block.pop("kind", None)
        if kind is None:
            raise ConfigError(f"prepare.copies.{name}.kind: required key is missing")
        maker = COPY_MAKERS.get(kind, f"prepare.copies.{name}.kind")
        out[name] = (maker, validate(maker.Params, block, prefix=f"prepare.copies.{name}"))
    return out
