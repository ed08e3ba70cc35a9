"""Training in phases with early stopping and restore: CSA's cascade (thesis Algorithm 2), GCSA's clean
fine-tuning, and the mixup / SamplePairing comparators, which end with the same clean fine-tuning.

A phase trains until its selection metric has not improved for `patience` epochs, or until its share
of the epoch budget is spent; then the best checkpoint of the phase is restored (the weights are kept
in this method's `state_dict`, so a resumed run restores them too) and the next phase starts from it.
The last phase ends the run (`state.request_stop()`). `train.epochs` is the total budget: a phase may
use at most (epochs left − epochs of later fixed phases) ÷ (phases left), so every phase gets its turn
and an early stop hands its unused epochs to the phases after it.

Selection is on the validation split by default. The thesis selects (and keeps checkpoints) on test
accuracy: `select_on: test` reproduces that, only with `allow_test_selection: true`, and the table
reports flag it. The learning rate: with `lr_reset: true` (the default) each phase restarts the
`train.schedule` from its first epoch over the phase's share of the budget, as a new training run from
the kept checkpoint would (the official code chains phases as separate runs with `load_model`);
`lr_reset: false` leaves the run's schedule running across phases. `reset_optimizer` clears the
optimiser's momentum at each restore.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from curriculab.engine.optim import Schedule
from curriculab.methods.base import Batch, Method, MethodContext, TrainState
from curriculab.methods.settings.phases import Phase, SelectParams


def weights_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the model's parameters and buffers (a compiled model's original module)."""
    model = getattr(model, "_orig_mod", model)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class _DummyOpt(torch.optim.SGD):
    def __init__(self):
        super().__init__([torch.zeros(1, requires_grad=True)], lr=1.0)


class PhasedMethod(Method):
    """Base of the phase-wise methods; a subclass gives `phases()` and the batches / loss of a mixing phase."""

    def phases(self) -> list[Phase]:
        raise NotImplementedError

    def phase_batches(self, phase: Phase, epoch: int, state: TrainState) -> Iterator[Batch] | None:
        """The minibatches of an epoch in this phase; None: clean shuffled minibatches."""
        return None

    def phase_loss(self, phase: Phase, outputs: torch.Tensor, batch: Batch) -> torch.Tensor | None:
        """Per-sample loss in this phase; None: the task's default loss."""
        return None

    def phase_correct(self, phase: Phase, outputs: torch.Tensor, batch: Batch,
                      state: TrainState) -> torch.Tensor | None:
        return None

    def __init__(self, params: SelectParams, ctx: MethodContext):
        super().__init__(params, ctx)
        params.check_run(ctx.run, f"methods.{self.name}")
        self.plan = self.phases()
        self.epochs = ctx.run.train.epochs
        self.key = f"{params.select_on}_{params.metric}"
        self.sign = 1.0 if params.metric == "acc" else -1.0
        self.i, self.start, self.epoch_phase = 0, 0, 0
        self.best, self.best_epoch, self.bad = -float("inf"), -1, 0
        self.kept: dict[str, torch.Tensor] | None = None
        self.lr = ctx.run.train.optimizer.lr
        self.cap = self._cap()
        self.sched = self._schedule()

    # -- the budget and the per-phase schedule
    def _cap(self) -> int:
        """Most epochs the current phase may use."""
        phase, later = self.plan[self.i], self.plan[self.i + 1:]
        if phase.fixed:
            return phase.fixed
        left = self.epochs - self.start - sum(p.fixed for p in later if p.fixed)
        return max(1, left // (1 + sum(1 for p in later if not p.fixed)))

    def _schedule(self) -> Schedule:
        return Schedule(_DummyOpt(), self.ctx.run.train.schedule, self.cap)

    @property
    def phase(self) -> Phase:
        return self.plan[self.i]

    # -- hooks
    def on_epoch_start(self, state: TrainState) -> None:
        self.epoch_phase = self.i
        if self.params.lr_reset:
            self.lr = self.ctx.run.train.optimizer.lr * self.sched.factor(state.epoch - self.start)
            for g in state.optimizer.param_groups:
                g["lr"] = self.lr
        else:
            self.lr = state.optimizer.param_groups[0]["lr"]

    def train_batches(self, epoch: int, state: TrainState) -> Iterator[Batch] | None:
        return self.phase_batches(self.phase, epoch, state)

    def loss(self, outputs: torch.Tensor, batch: Batch, state: TrainState) -> torch.Tensor | None:
        return self.phase_loss(self.phase, outputs, batch)

    def train_correct(self, outputs: torch.Tensor, batch: Batch, state: TrainState) -> torch.Tensor | None:
        return self.phase_correct(self.phase, outputs, batch, state)

    def on_eval_end(self, state: TrainState, metrics: dict) -> None:
        """Keep the phase's best weights; at the phase's end restore them, then switch phase or stop."""
        epoch, phase, p = state.epoch, self.phase, self.params
        value = self.sign * float(metrics[self.key])
        if value > self.best:
            self.best, self.best_epoch, self.bad = value, epoch, 0
            if phase.restore:
                self.kept = weights_of(state.model)
        else:
            self.bad += 1
        if self.params.lr_reset and "val_loss" in metrics:
            self.sched.observe(metrics["val_loss"])
        used = epoch - self.start + 1
        out_of_budget = epoch + 1 >= self.epochs
        if phase.fixed:
            done = used >= phase.fixed
        else:
            done = self.bad >= p.patience or used >= self.cap
        if not (done or out_of_budget):
            return
        if phase.restore and self.kept is not None:
            state.restore_weights(self.kept, p.reset_optimizer)
        if self.i + 1 == len(self.plan) or out_of_budget:
            state.request_stop()
            return
        self.i, self.start = self.i + 1, epoch + 1
        self.best, self.best_epoch, self.bad, self.kept = -float("inf"), -1, 0, None
        self.cap = self._cap()
        self.sched = self._schedule()

    def state_metrics(self) -> dict[str, float]:
        return {"sa_phase": float(self.epoch_phase), "sa_k": float(self.plan[self.epoch_phase].k),
                "phase_lr": float(self.lr)}

    # -- resume
    def state_dict(self) -> dict[str, Any]:
        return {"i": self.i, "start": self.start, "cap": self.cap, "best": self.best, "best_epoch": self.best_epoch,
                "bad": self.bad, "kept": self.kept, "sched": self.sched.state_dict(), "lr": self.lr,
                "epoch_phase": self.epoch_phase}

    def load_state_dict(self, s: dict[str, Any]) -> None:
        self.i, self.start, self.cap, self.best = s["i"], s["start"], s["cap"], s["best"]
        self.best_epoch, self.bad, self.kept, self.lr = s["best_epoch"], s["bad"], s["kept"], s["lr"]
        self.epoch_phase = s["epoch_phase"]
        self.sched = self._schedule()
        self.sched.load_state_dict(s["sched"])
