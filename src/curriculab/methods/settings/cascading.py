"""Settings of CSA and GCSA (methods/cascading.py, thesis §3.4-3.5)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator

from curriculab.config import ConfigError, PosInt
from curriculab.methods.settings import declare
from curriculab.methods.settings.phases import PHASED_HOOKS, Phase, SelectParams, check_budget
from curriculab.methods.settings.sum_augmentation import Uneven, check_k

if TYPE_CHECKING:
    from curriculab.config import RunConfig


class CSAParams(SelectParams):
    cascade: list[PosInt] = Field(default=[4, 2, 1], min_length=1)  # strictly decreasing K
    loss: Literal["thesis", "official"] = "thesis"  # BCE ÷ K | the official code's mean BCE
    uneven: Uneven = "error"

    @field_validator("cascade")
    @classmethod
    def _decreasing(cls, v: list[int]) -> list[int]:
        if any(b >= a for a, b in zip(v, v[1:], strict=False)):
            raise ValueError(f"the cascade's K values must be strictly decreasing, e.g. [8, 4, 2, 1], got {v}")
        return v

    def check_run(self, run: RunConfig, path: str) -> None:
        super().check_run(run, path)
        check_k(self.cascade, run.train.batch_size, self.uneven, f"{path}.cascade")
        check_budget([Phase("", k) for k in self.cascade], run.train.epochs, f"{path}.cascade")


class GCSAParams(SelectParams):
    start: PosInt = 4  # n, the initial K
    cascade_epochs: PosInt = 4  # Algorithm 3's nr_epochs: t reaches 1 at their end
    t_update: Literal["epoch", "step"] = "epoch"  # step: the official code's per-step increment
    loss: Literal["thesis", "official"] = "thesis"
    uneven: Uneven = "error"

    def check_run(self, run: RunConfig, path: str) -> None:
        super().check_run(run, path)
        check_k(list(range(self.start, 1, -1)), run.train.batch_size, self.uneven, f"{path}.start")
        if self.cascade_epochs >= run.train.epochs:
            raise ConfigError(f"{path}.cascade_epochs: {self.cascade_epochs} leaves no clean fine-tuning epoch of "
                              f"train.epochs {run.train.epochs}; lower it or train longer")


IMPL = "curriculab.methods.cascading"
declare("csa", f"{IMPL}:CascadingSumAugmentation", CSAParams, hooks=PHASED_HOOKS)
declare("gcsa", f"{IMPL}:GraduallyCascadingSumAugmentation", GCSAParams, hooks=PHASED_HOOKS)
