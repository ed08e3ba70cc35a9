"""Cascading (CSA, thesis §3.4, Algorithm 2) and Gradually Cascading Sum Augmentation (GCSA, §3.5, Algorithm 3).

CSA: train with Sum Augmentation at K until the selection metric plateaus (`patience`), restore the
phase's best checkpoint, continue at the next K of `cascade` (the thesis halves K down to 1). A
cascade that stops at K = 2 gives the TTSA models of tables 3.5-3.6. K = 1 is clean training with the
task's cross-entropy (the official code leaves sum augmentation off there). The phase rules (budget,
selection, restore, learning rate) are in `methods/phases.py`.

GCSA: mix `start` = n groups with the weights GCC_n(t) (eqs. 3.1-3.6), t from 0 to 1 over
`cascade_epochs`: per epoch (Algorithm 3: t = epoch / cascade_epochs) or, with `t_update: step`, per
optimiser step (the official code: t += 1 / (epochs · steps per epoch)). At t the batch has
K = n − ⌊t(n−1)⌋ groups (those with a non-zero weight) and the loss divides by that K. Then clean
fine-tuning until the selection metric plateaus or the budget ends, restoring its best checkpoint.
With `uneven: error` (the default) every K of the cascade must divide the batch size; `uneven: drop`
drops the m mod K leftover samples of a batch, as the official code does.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from curriculab.methods.base import Batch, MethodContext, TrainState
from curriculab.methods.phases import Phase, PhasedMethod
from curriculab.methods.settings.cascading import GCSAParams
from curriculab.methods.sum_augmentation import (
    active_groups,
    gcc,
    mixed_batches,
    sum_bce,
    sum_mix,
    topk_correct,
)


class CascadingSumAugmentation(PhasedMethod):
    """CSA: one phase per K of `cascade`, each until its plateau, restoring the phase's best checkpoint."""

    name = "csa"
    contract_params = {"cascade": [2, 1], "patience": 1}

    def phases(self) -> list[Phase]:
        return [Phase(f"K={k}", k) for k in self.params.cascade]

    def phase_batches(self, phase: Phase, epoch: int, state: TrainState) -> Iterator[Batch] | None:
        return mixed_batches(state.data, self.ctx.run.train.batch_size, phase.k) if phase.k > 1 else None

    def phase_loss(self, phase: Phase, outputs: torch.Tensor, batch: Batch) -> torch.Tensor | None:
        return sum_bce(outputs, batch.y, phase.k, self.params.loss) if phase.k > 1 else None

    def phase_correct(self, phase, outputs, batch, state):
        if phase.k == 1:
            return None
        return topk_correct(outputs, state.data.train_y[batch.index].reshape(phase.k, -1))


class GraduallyCascadingSumAugmentation(PhasedMethod):
    """GCSA: weights GCC_n(t), t: 0 → 1 over `cascade_epochs`, then clean fine-tuning with restore."""

    name = "gcsa"
    contract_params = {"start": 2, "cascade_epochs": 1}

    def __init__(self, params: GCSAParams, ctx: MethodContext):
        self.t = 0.0
        super().__init__(params, ctx)

    def phases(self) -> list[Phase]:
        return [Phase("gradual", self.params.start, fixed=self.params.cascade_epochs, restore=False),
                Phase("clean", 1)]

    def t_at(self, epoch: int, step: int = 0, steps: int = 1) -> float:
        """t for the `step`-th of `steps` batches of `epoch` (from 0): Algorithm 3, or per step (official)."""
        e = self.params.cascade_epochs
        if epoch >= e:
            return 1.0
        if self.params.t_update == "epoch":
            return epoch / e
        return (epoch * steps + step) / (e * steps)

    def _gradual(self, epoch: int, state: TrainState) -> Iterator[Batch]:
        n, bs, data = self.params.start, self.ctx.run.train.batch_size, state.data
        steps = -(-data.n_train // bs)
        for i, b in enumerate(data.batches(bs)):
            self.t = self.t_at(epoch, i, steps)
            k = active_groups(n, self.t)
            used = (len(b.index) // k) * k
            if used == 0:
                continue
            w = gcc(n, self.t)[:k].float()
            x, y = sum_mix(b.x[:used], F.one_hot(b.y[:used], data.classes).float(), k, w)
            yield Batch(x, y, b.index[:used])

    def phase_batches(self, phase: Phase, epoch: int, state: TrainState) -> Iterator[Batch] | None:
        if phase.label != "gradual":
            self.t = 1.0
            return None
        return self._gradual(epoch - self.start, state)

    def _k(self, batch: Batch) -> int:
        return len(batch.index) // len(batch.x)

    def phase_loss(self, phase: Phase, outputs: torch.Tensor, batch: Batch) -> torch.Tensor | None:
        k = self._k(batch)
        return sum_bce(outputs, batch.y, k, self.params.loss) if k > 1 else None

    def phase_correct(self, phase, outputs, batch, state):
        k = self._k(batch)
        return topk_correct(outputs, state.data.train_y[batch.index].reshape(k, -1)) if k > 1 else None

    def state_metrics(self) -> dict[str, float]:
        n, t = self.params.start, 1.0 if self.plan[self.epoch_phase].label == "clean" else self.t
        return {**super().state_metrics(), "sa_t": t, "sa_k": n - t * (n - 1)}
