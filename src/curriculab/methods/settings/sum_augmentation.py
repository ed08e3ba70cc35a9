"""Settings of Sum Augmentation and Test-Time Sum Augmentation (methods/sum_augmentation.py, thesis §3.3, §3.6)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from curriculab.config import ConfigError, PosInt
from curriculab.methods.settings import MethodParams, declare

if TYPE_CHECKING:
    from curriculab.config import RunConfig

Uneven = Literal["error", "drop"]


def check_k(ks: list[int], batch_size: int, uneven: str, path: str) -> None:
    """Each K must be >= 1 and divide the batch size (§3.3), unless `uneven: drop` (the official code)."""
    for k in ks:
        if k < 1:
            raise ConfigError(f"{path}: K must be >= 1, got {k}")
        if uneven == "error" and batch_size % k:
            raise ConfigError(f"{path}: K = {k} does not divide train.batch_size {batch_size} (the thesis mixes "
                              f"⌊m/K⌋ samples from K groups of equal size); pick a batch size divisible by "
                              f"{k}, or set uneven: drop to drop the m mod K leftover samples as the official code")
        if k > batch_size:
            raise ConfigError(f"{path}: K = {k} is larger than train.batch_size {batch_size}")


class SumAugmentationParams(MethodParams):
    k: PosInt = 4
    loss: Literal["thesis", "official"] = "thesis"  # BCE ÷ K | the official code's mean BCE
    uneven: Uneven = "error"  # drop: the official code drops the m mod K leftover samples

    def check_run(self, run: RunConfig, path: str) -> None:
        check_k([self.k], run.train.batch_size, self.uneven, f"{path}.k")


class TTSAParams(MethodParams):
    """Test-Time Sum Augmentation (§3.6); the thesis used λ = 1, K = 4, C = 16."""

    lam: Annotated[float, Field(gt=0)] = 1.0
    k: PosInt = 4
    c: PosInt = 16
    pool: Literal["train", "test"] = "train"  # where the random images come from (`test`: the thesis' wording)
    seed: int = 0  # added to the run's seed


IMPL = "curriculab.methods.sum_augmentation"
declare("sum_augmentation", f"{IMPL}:SumAugmentation", SumAugmentationParams,
        hooks=("train_batches", "loss", "train_correct"))
declare("ttsa", f"{IMPL}:TestTimeSumAugmentation", TTSAParams, hooks=("predict",))
