"""mixup (Zhang, Cisse, Dauphin, Lopez-Paz, ICLR 2018), the comparator of the thesis' figure 3.6.

x̃ = λ·x_i + (1 − λ)·x_j and ỹ = λ·y_i + (1 − λ)·y_j (one-hot), λ ~ Beta(α, α), j a random permutation of
the batch, one λ per minibatch (the authors' CIFAR code); the loss is the cross-entropy against ỹ.
The paper's default for CIFAR-10/100 is α = 1 (ImageNet: 0.1-0.4). As in the thesis' comparison (its
Figure 3.6), the run ends with the same clean fine-tuning as CSA: a mixup phase, then a clean phase,
each until its plateau, with the phase rules of `methods/phases.py`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from curriculab.methods.base import Batch, MethodContext, TrainState
from curriculab.methods.phases import Phase, PhasedMethod
from curriculab.methods.settings.mixup import MixupParams


def mixup_batch(b: Batch, classes: int, lam: float, perm: torch.Tensor) -> Batch:
    """λ·(x, one-hot y) + (1 − λ)·the same of the permuted batch (Zhang et al. 2018, eq. 1)."""
    y = F.one_hot(b.y, classes).float()
    return Batch(lam * b.x + (1 - lam) * b.x[perm], lam * y + (1 - lam) * y[perm], b.index)


class Mixup(PhasedMethod):
    """A mixup phase, then clean fine-tuning."""

    name = "mixup"

    def __init__(self, params: MixupParams, ctx: MethodContext):
        super().__init__(params, ctx)
        self.rng = np.random.default_rng(ctx.run.seed)

    def phases(self) -> list[Phase]:
        return [Phase("mixup", 2), Phase("clean", 1)]

    def _mixed(self, state: TrainState) -> Iterator[Batch]:
        data = state.data
        for b in data.batches(self.ctx.run.train.batch_size):
            lam = float(self.rng.beta(self.params.alpha, self.params.alpha))
            yield mixup_batch(b, data.classes, lam, data.permutation(len(b.index)))

    def phase_batches(self, phase: Phase, epoch: int, state: TrainState) -> Iterator[Batch] | None:
        return self._mixed(state) if phase.label == "mixup" else None

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "rng": self.rng.bit_generator.state}

    def load_state_dict(self, s: dict[str, Any]) -> None:
        super().load_state_dict(s)
        self.rng.bit_generator.state = s["rng"]
