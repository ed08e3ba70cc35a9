"""The method hooks: every curriculum is a plug-in on the one training loop (DESIGN.md)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import BaseModel
from torch import nn

from curriculab.config import Strict

if TYPE_CHECKING:
    from curriculab.config import RunConfig
    from curriculab.data.loader import DeviceData


@dataclass
class Batch:
    """One minibatch: inputs, hard labels (n,) or soft targets (n, classes), and dataset positions."""

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor


@dataclass
class MethodContext:
    """What a method may know when it is built, before the model exists."""

    run: RunConfig
    data: DeviceData
    device: torch.device
    run_dir: Any  # pathlib.Path of the run, for method artefacts
    workdir: Any  # pathlib.Path of the project root (prepared data, pretrained models)


@dataclass
class TrainState:
    """What a hook sees during training: the model, the optimisers and the position in training."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    data: DeviceData
    epoch: int = 0  # 0-based
    step: int = 0  # global optimiser steps so far
    steps_per_epoch: int = 0
    epochs: int = 0
    extra_optimizers: list[torch.optim.Optimizer] = field(default_factory=list)
    last_loss: float = float("nan")


class Method:
    """Base class: every hook defaults to plain training. Override only what the method changes."""

    name: ClassVar[str] = ""
    Params: ClassVar[type[BaseModel]] = Strict
    # Hooks where two methods of one run cannot both act; the others compose.
    EXCLUSIVE: ClassVar[tuple[str, ...]] = ("train_batches", "loss", "predict")

    def __init__(self, params: BaseModel, ctx: MethodContext):
        self.params = params
        self.ctx = ctx

    # -- model and optimisers
    def wrap_model(self, model: nn.Module) -> nn.Module:
        return model

    def optimizers(self, model: nn.Module) -> list[torch.optim.Optimizer]:
        """Extra optimisers stepped after the model's (e.g. data parameters' sparse SGD)."""
        return []

    # -- data
    def train_batches(self, epoch: int, state: TrainState) -> Iterator[Batch] | None:
        """The minibatches of one epoch; None means the default shuffled pass over the training set."""
        return None

    # -- objective and prediction
    def loss(self, outputs: torch.Tensor, batch: Batch, state: TrainState) -> torch.Tensor | None:
        """Per-sample losses (n,); None means the task's default loss."""
        return None

    def predict(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
        """Evaluation logits; None means model(x)."""
        return None

    # -- schedule
    def on_train_start(self, state: TrainState) -> None:
        """Called once the model and optimisers exist (also after a resume)."""

    def on_step_end(self, state: TrainState) -> None:
        pass

    def on_epoch_start(self, state: TrainState) -> None:
        pass

    def on_epoch_end(self, state: TrainState) -> None:
        pass

    def state_metrics(self) -> dict[str, float]:
        """Scalars logged every epoch (σ, selected fraction, ...)."""
        return {}

    def epoch_artifacts(self) -> dict[str, Any]:
        """JSON-able per-epoch records kept in metrics.json (e.g. per-class parameters for figures)."""
        return {}

    # -- resume
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    @classmethod
    def preflight(cls, params: BaseModel, run: RunConfig, workdir: Any) -> None:
        """Checks that need files on disk (e.g. a pretrained model), run for every unfinished run of a
        table before any of them trains, so a user error stops the stage before work is spent."""

    @classmethod
    def overrides(cls, hook: str) -> bool:
        return getattr(cls, hook) is not getattr(Method, hook)


def cross_entropy(outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy for hard labels or soft targets."""
    return F.cross_entropy(outputs.float(), y, reduction="none")
