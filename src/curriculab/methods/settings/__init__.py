"""What each method declares without torch: its params schema, its pretrain schema, the exclusive hooks it
claims and where its implementation lives. Checking a params file (`curriculab validate`, the run ids) reads
only these; a run imports the implementation when it builds the method.

Each module here holds the settings of the method module of the same name in `curriculab.methods`. The
implementing `Method` subclass takes its `Params` / `PretrainParams` from its declaration, and defining the
class checks that the declaration matches it (methods/base.py), so the two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel

from curriculab.config import Strict
from curriculab.registry import Registry, module_of

if TYPE_CHECKING:
    from curriculab.config import RunConfig

# Hooks where two methods of one run cannot both act; the others compose.
EXCLUSIVE: tuple[str, ...] = ("train_batches", "loss", "predict", "train_correct")


class MethodParams(Strict):
    """Base of a method's params: `check_run` checks them against the whole resolved run."""

    def check_run(self, run: RunConfig, path: str) -> None:
        """Checks that need the run (e.g. a schedule against train.epochs); raise ConfigError at `path`."""


@dataclass(frozen=True)
class MethodSettings:
    name: str  # the key in a run's `methods` block
    impl: str  # "package.module:Class" of the Method subclass, imported when a run builds it
    Params: type[BaseModel] = MethodParams  # validates `methods.<name>`
    PretrainParams: type[BaseModel] | None = None  # validates `pretrain.<name>`; None: no pretrain stage
    hooks: frozenset[str] = frozenset()  # the EXCLUSIVE hooks the class overrides

    @property
    def module(self) -> str:
        return module_of(self.impl)


METHOD_SETTINGS: Registry[MethodSettings] = Registry("method", ("curriculab.methods.settings",))


def declare(name: str, impl: str, Params: type[BaseModel] = MethodParams,  # noqa: N803 (the attribute's name)
            PretrainParams: type[BaseModel] | None = None, hooks: tuple[str, ...] = ()) -> MethodSettings:  # noqa: N803
    """Register a method's settings (called by the modules of this package)."""
    unknown = set(hooks) - set(EXCLUSIVE)
    if unknown:
        raise ValueError(f"method {name!r}: {sorted(unknown)} are not exclusive hooks {EXCLUSIVE}")
    return METHOD_SETTINGS.register(name, MethodSettings(name, impl, Params, PretrainParams, frozenset(hooks)))
