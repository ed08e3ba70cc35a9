"""Derived copies of a prepared dataset (e.g. blurred ones), made once by `prepare`.

A copy has the same shape and item order as its dataset, so batch index i is the same item in
every copy. Makers register by kind; their settings are validated by the maker's Params model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel

from curriculab.config import ConfigError, check_name, validate


@dataclass
class CopyMaker:
    kind: str
    Params: type[BaseModel]
    make: Callable[[np.ndarray, BaseModel], dict[str, np.ndarray]]  # images → {copy name: images}


COPY_MAKERS: dict[str, CopyMaker] = {}


def register_copy(kind: str, params: type[BaseModel]):
    """Decorator for `fn(x_uint8 (N, C, H, W), params) -> {copy_name: x_uint8 of the same shape}`."""

    def deco(fn):
        COPY_MAKERS[kind] = CopyMaker(kind, params, fn)
        return fn

    return deco


def check_copies(copies: dict[str, dict]) -> dict[str, tuple[CopyMaker, BaseModel]]:
    """Validate `prepare.copies`: each entry names a registered `kind` and that maker's settings."""
    from curriculab.methods import registry

    registry()  # methods register their copy makers on import
    out = {}
    for name, block in copies.items():
        block = dict(block or {})
        kind = block.pop("kind", None)
        if kind is None:
            raise ConfigError(f"prepare.copies.{name}.kind: required key is missing")
        check_name("copy kind", kind, COPY_MAKERS, f"prepare.copies.{name}.kind")
        maker = COPY_MAKERS[kind]
        out[name] = (maker, validate(maker.Params, block, prefix=f"prepare.copies.{name}"))
    return out
