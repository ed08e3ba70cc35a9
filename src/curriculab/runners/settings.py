"""Settings of the runners (`run.runner` of their tables), without torch: checking a params file reads these;
a run imports the runner."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field

from curriculab.config import ConfigError, RunConfig, Strict


class PerfectOrderingParams(Strict):
    """`run.runner` of a Perfect Ordering table; batch size, epochs and SGD come from `run.train`."""

    classes: Annotated[list[int], Field(min_length=2)] = [0, 1]
    per_class: Annotated[int, Field(ge=1)] = 24  # training images of each class
    clusters: Annotated[int, Field(ge=1)] = 12  # k of the k-means that picks the next epoch's start networks
    pick: Literal["nearest", "first"] = "nearest"  # first = the authors' code: lowest index in each cluster
    extremes: bool = False  # the authors' code also restarts from the min- and max-loss networks
    test: Literal["rest", "split"] = "rest"  # rest: every other image of the classes; split: the test split's
    test_limit: Annotated[int, Field(ge=1)] | None = None  # the first N test images (paper: 2048)
    chunk: Annotated[int, Field(ge=1)] = 2048  # networks trained at once (memory)
    eval_batch_size: Annotated[int, Field(ge=1)] = 512

    def check_run(self, run: RunConfig, path: str) -> None:
        """Cross-checks against `run.train` and the optimiser (one-line errors)."""
        n, bs = self.per_class * len(self.classes), run.train.batch_size
        if n % bs:
            raise ConfigError(f"{path}.train.batch_size: {bs} does not divide the Perfect Ordering training set "
                              f"({self.per_class} × {len(self.classes)} classes = {n} images)")
        if n // bs > 8:
            raise ConfigError(f"{path}.train.batch_size: {n // bs} batches give {math.factorial(n // bs)} orders per "
                              "start network; use at most 8 batches")
        orders = math.factorial(n // bs)
        if self.clusters > orders:
            raise ConfigError(f"{path}.runner.clusters: {self.clusters} k-means clusters but only {orders} networks "
                              "per epoch; use at most that many")
        if run.train.optimizer.name != "sgd":
            raise ConfigError(f"{path}.train.optimizer.name: Perfect Ordering trains with sgd")
        if len(set(self.classes)) != len(self.classes):
            raise ConfigError(f"{path}.runner.classes: repeated class in {self.classes}")
