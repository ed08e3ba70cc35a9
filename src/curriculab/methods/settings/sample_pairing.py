"""Settings of the SamplePairing comparator (methods/sample_pairing.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from curriculab.config import NonNegInt, PosInt
from curriculab.methods.settings import declare
from curriculab.methods.settings.phases import PHASED_HOOKS, Phase, SelectParams, check_budget

if TYPE_CHECKING:
    from curriculab.config import RunConfig


class SamplePairingParams(SelectParams):
    warmup: NonNegInt = 100  # epochs of the pairing phase trained without pairing (CIFAR: 100)
    on_epochs: PosInt = 8  # then pairing for this many epochs ...
    off_epochs: NonNegInt = 2  # ... and off for this many, repeatedly

    def check_run(self, run: RunConfig, path: str) -> None:
        super().check_run(run, path)
        check_budget([Phase("pairing", 2), Phase("clean")], run.train.epochs, path)


declare("sample_pairing", "curriculab.methods.sample_pairing:SamplePairing", SamplePairingParams,
        hooks=PHASED_HOOKS)
