"""Settings shared by the phase-wise methods (methods/phases.py): when a phase ends, which checkpoint it keeps,
and the checks of the phases against the run's epoch budget."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from curriculab.config import ConfigError, PosInt
from curriculab.methods.settings import MethodParams

if TYPE_CHECKING:
    from curriculab.config import RunConfig

# the exclusive hooks every phase-wise method overrides (methods/phases.py)
PHASED_HOOKS = ("train_batches", "loss", "train_correct")


class SelectParams(MethodParams):
    """When a phase ends and which checkpoint it keeps."""

    patience: PosInt = 3  # epochs without a better selection metric before the phase ends
    select_on: Literal["val", "test"] = "val"  # test: the thesis' selection (a test-set leak)
    allow_test_selection: bool = False  # the flag that says a test-split selection is intended
    metric: Literal["acc", "loss"] = "acc"
    lr_reset: bool = True  # each phase restarts train.schedule from its first epoch
    reset_optimizer: bool = True  # restoring a checkpoint clears the optimiser state (momentum)

    def check_run(self, run: RunConfig, path: str) -> None:
        """`select_on: test` needs the explicit leak flag."""
        if self.select_on == "test" and not self.allow_test_selection:
            raise ConfigError(f"{path}.select_on: 'test' keeps checkpoints by test accuracy (the thesis' procedure, "
                              "a test-set leak); set allow_test_selection: true to reproduce it on purpose, or use "
                              "'val'")


@dataclass(frozen=True)
class Phase:
    """One phase: its label, its K for the logs (1 = clean data), a fixed length or None, and whether it restores."""

    label: str
    k: int = 1
    fixed: int | None = None  # epochs; None: until `patience` or the phase's share of the budget
    restore: bool = True


def check_budget(phases: list[Phase], epochs: int, path: str) -> None:
    """Every phase needs at least one epoch of train.epochs."""
    need = sum(p.fixed or 1 for p in phases)
    if need > epochs:
        raise ConfigError(f"{path}: {len(phases)} phases need at least {need} epochs but train.epochs is {epochs}; "
                          "train longer or use fewer phases")
