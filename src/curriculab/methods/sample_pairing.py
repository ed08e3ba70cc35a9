"""SamplePairing (Inoue 2018, arXiv:1801.02929), the other comparator of the thesis' figure 3.6.

Each training image (after the usual crop / flip) is averaged with another image drawn at random from
the training set (itself augmented), and keeps the first image's label. Inoue's CIFAR schedule: train
without it first (100 epochs), then enable it intermittently (8 epochs on, 2 off), and finish without
it; those are the defaults here (`warmup`, `on_epochs`, `off_epochs`). As in the thesis' comparison, the run ends with
the same clean fine-tuning as CSA: a pairing phase (warm-up included), then a clean phase, each until
its plateau, with the phase rules of `methods/phases.py`.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from curriculab.methods.base import Batch, TrainState
from curriculab.methods.phases import Phase, PhasedMethod


def pair_batch(b: Batch, partner: torch.Tensor) -> Batch:
    """(x + partner) / 2, the first image's label (Inoue 2018, §2)."""
    return Batch((b.x + partner) / 2, b.y, b.index)


class SamplePairing(PhasedMethod):
    """A pairing phase (warm-up, then on/off intermittently), then clean fine-tuning."""

    name = "sample_pairing"
    contract_params = {"warmup": 0}

    def phases(self) -> list[Phase]:
        return [Phase("pairing", 2), Phase("clean", 1)]

    def pairing_on(self, epoch_in_phase: int) -> bool:
        p = self.params
        r = epoch_in_phase - p.warmup
        return r >= 0 and r % (p.on_epochs + p.off_epochs) < p.on_epochs

    def _paired(self, state: TrainState) -> Iterator[Batch]:
        data = state.data
        for b in data.batches(self.ctx.run.train.batch_size):
            other = torch.randint(0, data.n_train, (len(b.index),), generator=data.gen, device=data.device)
            yield pair_batch(b, data.to_input(data.train_x[other], augment=True))

    def phase_batches(self, phase: Phase, epoch: int, state: TrainState) -> Iterator[Batch] | None:
        self.on = phase.label == "pairing" and self.pairing_on(epoch - self.start)
        return self._paired(state) if self.on else None

    def state_metrics(self) -> dict[str, float]:
        return {**super().state_metrics(), "sp_on": float(getattr(self, "on", False))}
