"""Derived copies of a prepared dataset (e.g. blurred ones), made once by `prepare`.

A copy has the same shape and item order as its dataset, so batch index i is the same item in
every copy. Makers register by kind; their settings are validated by the maker's Params model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel

from curriculab.config import ConfigError, validate
from curriculab.registry import Registry, load_object


@dataclass(frozen=True)
class CopyMaker:
    kind: str
    Params: type[BaseModel]
    impl: str  # "package.module:function": fn(x_uint8 (N, C, H, W), params) -> {copy name: x_uint8, same shape}

    def make(self, x: np.ndarray, params: BaseModel) -> dict[str, np.ndarray]:
        """images → {copy name: images}, the implementation imported on first use."""
        return load_object(self.impl)(x, params)


# Declared with the torch-free settings of the method that trains on them (methods/settings/).
COPY_MAKERS: Registry[CopyMaker] = Registry("copy kind", ("curriculab.methods.settings",))


def declare_copy(kind: str, params: type[BaseModel], impl: str) -> CopyMaker:
    """Register a copy kind: its settings and the function that makes its copies."""
    return COPY_MAKERS.register(kind, CopyMaker(kind, params, impl))


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
