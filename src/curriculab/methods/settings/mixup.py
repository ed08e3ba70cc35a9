"""Settings of the mixup comparator (methods/mixup.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from curriculab.methods.settings import declare
from curriculab.methods.settings.phases import PHASED_HOOKS, Phase, SelectParams, check_budget

if TYPE_CHECKING:
    from curriculab.config import RunConfig


class MixupParams(SelectParams):
    alpha: Annotated[float, Field(gt=0)] = 1.0  # Beta(α, α); the paper's CIFAR setting

    def check_run(self, run: RunConfig, path: str) -> None:
        super().check_run(run, path)
        check_budget([Phase("mixup", 2), Phase("clean")], run.train.epochs, path)


declare("mixup", "curriculab.methods.mixup:Mixup", MixupParams, hooks=PHASED_HOOKS)
