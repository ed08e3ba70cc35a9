"""Tasks: what the model's output means, the default loss, and per-epoch evaluation.

Classification is built in; other tasks (e.g. in curriculab.evaluate) subclass `Task`. What a task declares
without torch (name, `task_params` schema, primary metric, where the class lives) is in engine/task_settings.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from pydantic import BaseModel
from torch import nn

from curriculab.engine.task_settings import CLASSIFICATION, TASKS, TaskSettings
from curriculab.methods.base import Batch, cross_entropy
from curriculab.registry import load_object, ref_of


def get_task(name: str, params: dict) -> Task:
    settings = TASKS.get(name)
    return load_object(settings.impl)(settings.Params.model_validate(params))


class _Declared:
    """A class attribute read from the class's declaration (`settings`)."""

    def __init__(self, field: str):
        self.field = field

    def __get__(self, obj, cls=None):
        return getattr(cls.settings, self.field)


class Task:
    """Classification: logits, cross-entropy, accuracy (top-1 and top-5)."""

    settings: ClassVar[TaskSettings] = CLASSIFICATION  # a subclass names its own (declared where its impl is)
    name = _Declared("name")
    Params = _Declared("Params")  # validates `task_params`
    primary = _Declared("primary")  # the metric tables report by default
    higher_is_better = _Declared("higher_is_better")

    def __init_subclass__(cls, **kwargs):
        """A subclass with its own `settings` must be the class they name (so `get_task` builds it)."""
        super().__init_subclass__(**kwargs)
        if "settings" in cls.__dict__ and cls.settings.impl != ref_of(cls):
            raise TypeError(f"task {cls.settings.name!r} is declared at {cls.settings.impl}, not {ref_of(cls)}")

    def __init__(self, params: BaseModel):
        self.params = params

    def loss(self, outputs: Any, batch: Batch) -> torch.Tensor:
        """Per-sample training loss."""
        return cross_entropy(outputs, batch.y)

    def logits(self, outputs: Any) -> torch.Tensor:
        return outputs

    def correct(self, outputs: Any, y: torch.Tensor) -> torch.Tensor:
        """Number of correct top-1 predictions (soft targets compare against their arg-max)."""
        target = y.argmax(1) if y.ndim == 2 else y
        return (self.logits(outputs).argmax(1) == target).sum()

    @torch.no_grad()
    def evaluate(self, predict: Callable[[torch.Tensor], Any], batches) -> dict[str, float]:
        """Loss, top-1 and top-5 accuracy over (x, y) batches; sums stay on the device until the end."""
        tot, n = None, 0
        for x, y in batches:
            out = self.logits(predict(x)).float()
            k = min(5, out.shape[1])
            top = out.topk(k, 1).indices
            part = torch.stack([
                torch.nn.functional.cross_entropy(out, y, reduction="sum"),
                (top[:, 0] == y).sum().float(),
                (top == y[:, None]).any(1).sum().float(),
            ])
            tot = part if tot is None else tot + part
            n += len(y)  # counted on the host: one device read per evaluation, at the end
        loss, c1, c5 = tot.tolist()
        return {"loss": loss / n, "acc": c1 / n, "top5": c5 / n}

    def final_metrics(self, model: nn.Module, data, predict, run) -> dict[str, float]:
        """Extra metrics computed once at the end of training (e.g. a VAE's NLL); none by default."""
        return {}
