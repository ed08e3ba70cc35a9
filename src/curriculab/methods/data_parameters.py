"""Data Parameters (Saxena, Tuzel & DeCoste, NeurIPS 2019): learnable per-class / per-instance temperatures.

Sample i's logits are divided by its own σ*_i before the softmax cross-entropy (§2, eqs. (1)-(5)):
σ*_i = σ^class_{y_i} (class curriculum), σ^inst_i (instance) or their sum (joint). The parameters live in
log space (σ = exp(p), §3.1), each group has its own learning rate and momentum buffers in a `SparseSGD`,
and at evaluation the logits are not scaled (the default `predict`). §3.1: "When a class or instance is not
present in a mini-batch, we do not update the momentum buffer": presence is read from the batch (its class
labels and sample indices), never from the gradient, and an absent class or instance keeps its value and
momentum buffer bit for bit under both weight-decay modes.

Paper vs official code (apple/ml-data-parameters), both selectable here:
- weight decay on log σ: `all` (default) = the paper's ℓ2 ‖log σ‖², acting through the gradient of the
  present entries only (d = ∂CE/∂p + wd·p in the sparse step, once per present entry); it is not part of
  the loss, so the logged train loss is the σ-scaled CE alone. `minibatch` = the official
  `0.5·wd·Σ p²` over the minibatch entries, one term per occurrence, in the loss (and the logged loss);
- the official code clamps log σ to [log 1/20, log 20] after every step (default; `clamp: null` turns it off).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from curriculab.engine.parallel import Single
from curriculab.engine.parallel import group as rank_group
from curriculab.methods.base import Batch, Method, MethodContext, TrainState
from curriculab.methods.settings.data_parameters import DataParametersParams


def data_parameter_loss(logits: torch.Tensor, target: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-sample CE of logits / σ*_i: every logit of sample i is divided by its own σ*_i (eqs. (1), (3)).

    The reference form; `DataParameters.loss` computes the same value as logits · (1/σ*_i)."""
    return F.cross_entropy(logits.float() / sigma.float().unsqueeze(1), target, reduction="none")


class SparseSGD(torch.optim.Optimizer):
    """SGD (momentum, optional Nesterov) that updates only the entries present in the minibatch (§3.1).

    Presence comes from the batch, never from the gradient: before each `step`, `present(p, index)` names
    the rows of p the minibatch used (class labels or sample indices; repeats allowed). Only those rows
    are read and written, in a handful of indexed ops: an absent row keeps its value and its momentum
    buffer bit for bit, whatever its gradient, and `weight_decay` (d = grad + wd·p) reaches present rows
    only. A parameter with a gradient but no presence for the step is an error. `bounds` (lo, hi), per
    group: the updated rows are clamped into [lo, hi] in the same step.
    """

    def __init__(self, params: Iterable[torch.Tensor] | Iterable[dict], lr: float, momentum: float = 0.9,
                 dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False,
                 bounds: tuple[float, float] | None = None, group: Single | None = None):
        if lr < 0:
            raise ValueError(f"SparseSGD: lr must be >= 0, got {lr}")
        if not 0 <= momentum < 1:
            raise ValueError(f"SparseSGD: momentum must be in [0, 1), got {momentum}")
        if weight_decay < 0:
            raise ValueError(f"SparseSGD: weight_decay must be >= 0, got {weight_decay}")
        if nesterov and (momentum == 0 or dampening != 0):
            raise ValueError("SparseSGD: nesterov needs momentum > 0 and dampening 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov, bounds=bounds))
        self._present: dict[torch.Tensor, torch.Tensor] = {}
        self.group = group or Single()  # under DDP: gradients averaged over the ranks before the step

    def zero_grad(self, set_to_none: bool = True) -> None:
        """As torch's, without its per-call bookkeeping (this runs every step on a few small tensors)."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    if set_to_none:
                        p.grad = None
                    else:
                        p.grad.detach_().zero_()

    def present(self, p: torch.Tensor, index: torch.Tensor) -> None:
        """The rows of `p` in this step's minibatch (a 1-D index tensor on p's device; repeats allowed)."""
        self._present[p] = index

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        present, self._present = self._present, {}
        for group in self.param_groups:
            lr, mom, damp, wd = group["lr"], group["momentum"], group["dampening"], group["weight_decay"]
            for p in group["params"]:
                idx = present.get(p)
                if p.grad is None:
                    continue
                if idx is None:
                    raise RuntimeError("SparseSGD: no rows marked present for this step; call "
                                       "present(p, index) with the minibatch's rows before step()")
                if p.grad.is_sparse:
                    raise RuntimeError("SparseSGD takes dense gradients")
                self.group.average_(p.grad)
                # a repeated row reads the same values, so its copies write the same result
                rows = p.index_select(0, idx)
                d = p.grad.index_select(0, idx)
                if wd:
                    d.add_(rows, alpha=wd)
                if mom:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:  # first step: buffer = d for the present rows, as torch.optim.SGD
                        buf = state["momentum_buffer"] = torch.zeros_like(p)
                        b = d
                    elif damp == 0 and not group["nesterov"]:  # the usual case, one op: d + momentum·buf
                        b = d.add_(buf.index_select(0, idx), alpha=mom)
                    else:
                        b = buf.index_select(0, idx).mul_(mom).add_(d, alpha=1 - damp)
                    buf.index_copy_(0, idx, b)
                    d = d.add_(b, alpha=mom) if group["nesterov"] else b
                rows.sub_(d, alpha=lr)
                if group.get("bounds") is not None:
                    rows.clamp_(*group["bounds"])
                p.index_copy_(0, idx, rows)
        return loss

    step.hooked = True  # type: ignore[attr-defined]  # skip torch's per-step profiling wrapper (no step hooks)


class DataParameters(Method):
    """Class / instance / joint curriculum over learnable temperatures σ (§2.1-2.2, §3.1)."""

    name = "data_parameters"
    # Under DDP σ is indexed by global sample id on every rank: presence is the union of the ranks' slices
    # and the σ gradients are averaged over the ranks, so every copy takes the one-process step.
    ddp = True

    def __init__(self, params: DataParametersParams, ctx: MethodContext):
        super().__init__(params, ctx)
        p, data = params, ctx.data
        self.use_class = p.curriculum in ("class", "joint")
        self.use_inst = p.curriculum in ("instance", "joint")
        inst_init = p.inst_init if p.inst_init is not None else (1e-3 if p.curriculum == "joint" else 1.0)

        def log_param(n: int, init: float) -> torch.Tensor:
            return torch.full((n,), math.log(init), device=ctx.device, requires_grad=True)

        self.class_log = log_param(data.classes, p.class_init) if self.use_class else None
        self.inst_log = log_param(data.n_train, inst_init) if self.use_inst else None
        self.bounds = (math.log(p.clamp[0]), math.log(p.clamp[1])) if p.clamp is not None else None
        self._opt: SparseSGD | None = None
        self._clamped = False  # whole vectors clamped once (then the optimiser clamps the rows it updates)
        self._stats: dict[str, float] = {}
        self._class_sigma: list[float] = []
        self.group = rank_group()  # this process's DDP rank, or the one process

    # -- optimiser: one SparseSGD, one parameter group (own lr, own momentum buffers) per data-parameter group
    def optimizers(self, model: nn.Module) -> list[torch.optim.Optimizer]:
        """Stepped by the engine after the model's optimiser; its lrs stay constant (official code).

        With `weight_decay_mode: all` the paper's ℓ2 is this optimiser's weight decay, applied to the
        present entries through their gradient (d = ∂CE/∂p + wd·p); with `minibatch` it is in the loss.
        """
        p, groups = self.params, []
        wd = p.weight_decay_mode == "all"
        if self.use_class:
            groups.append({"params": [self.class_log], "lr": p.class_lr,
                           "weight_decay": p.class_weight_decay if wd else 0.0})
        if self.use_inst:
            groups.append({"params": [self.inst_log], "lr": p.inst_lr,
                           "weight_decay": p.inst_weight_decay if wd else 0.0})
        self._opt = SparseSGD(groups, lr=groups[0]["lr"], momentum=p.momentum, bounds=self.bounds,
                              group=self.group)
        return [self._opt]

    # -- objective
    def groups(self, cls: torch.Tensor, idx: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor, float]]:
        """The active groups as (whole log σ vector, the minibatch's rows of it, weight decay)."""
        p, out = self.params, []
        if self.use_class:
            out.append((self.class_log, cls, p.class_weight_decay))
        if self.use_inst:
            out.append((self.inst_log, idx, p.inst_weight_decay))
        return out

    def loss(self, outputs: torch.Tensor, batch: Batch, state: TrainState) -> torch.Tensor:
        """CE(z_i / σ*_i) per sample (eq. (1)); with `weight_decay_mode: minibatch` plus the official
        0.5·wd·p² per minibatch occurrence. Marks the batch's classes and samples present for the step.

        With `all` (the default) the paper's ℓ2 on log σ acts in the optimiser step on the present entries
        (see `optimizers`), so the logged train loss is the σ-scaled CE alone, without the ℓ2 term."""
        y = batch.y
        cls = y if y.ndim == 1 else y.argmax(1)
        groups = self.groups(cls, batch.index)
        mbs = [whole.index_select(0, rows) for whole, rows, _ in groups]
        # 1/σ* multiplied in (cheaper to differentiate than a division): exp(-log σ*), with
        # log σ* = p, or log(σ^class + σ^inst) = logaddexp(p^class, p^inst) for joint
        inv = (mbs[0] if len(mbs) == 1 else torch.logaddexp(mbs[0], mbs[1])).neg().exp()
        out = outputs if outputs.dtype == torch.float32 else outputs.float()
        per = F.cross_entropy(out * inv.unsqueeze(1), y, reduction="none")
        if self.params.weight_decay_mode == "minibatch":  # official: 0.5·wd·Σ_batch p² per occurrence
            n = self.group.batch_size(len(batch.index))
            for (_, _, wd), mb in zip(groups, mbs, strict=True):
                if wd:
                    per = per.addcmul(mb, mb, value=0.5 * wd * n)
        if self._opt is not None:
            for whole, rows, _ in groups:
                self._opt.present(whole, self.group.union(rows, len(whole)))
        return per

    # -- after every step: project log σ into the clamp range (official code)
    @torch.no_grad()
    def clamp_(self) -> None:
        """The whole vectors into the clamp range. After the first step only the present rows can leave
        it, and the optimiser clamps those in its step, so later steps skip this pass."""
        if self.bounds is None or self._clamped:
            return
        self._clamped = self._opt is not None
        for log in (self.class_log, self.inst_log):
            if log is not None:
                log.clamp_(*self.bounds)

    def on_step_end(self, state: TrainState) -> None:
        self.clamp_()

    # -- statistics, once per epoch, computed on the device
    @torch.no_grad()
    def instance_stats(self, corrupt: torch.Tensor) -> dict[str, torch.Tensor]:
        """σ^inst of clean vs corrupt items (Fig. 4): means, stds, top-share, above-all-clean share, AUROC."""
        s = self.inst_log.exp()
        clean = ~corrupt
        k = max(1, round(self.params.top_fraction * len(s)))
        top = torch.topk(s, k).indices
        _, inverse, counts = torch.unique(s, return_inverse=True, return_counts=True)
        ranks = (counts.cumsum(0) - (counts - 1) / 2).double()[inverse]  # 1-based, ties get their mean rank
        nc, nn_ = corrupt.sum().double(), clean.sum().double()
        auc = (ranks[corrupt].sum() - nc * (nc + 1) / 2) / (nc * nn_)
        return {"dp_inst_sigma_clean_mean": s[clean].mean(), "dp_inst_sigma_clean_std": s[clean].std(),
                "dp_inst_sigma_corrupt_mean": s[corrupt].mean(),
                "dp_inst_sigma_corrupt_std": s[corrupt].std(),
                "dp_top_corrupt_share": corrupt[top].float().mean(),
                "dp_corrupt_above_all_clean": (s[corrupt] > s[clean].max()).float().mean(),
                "dp_inst_auroc": auc, "dp_corrupt_fraction": corrupt.float().mean()}

    @torch.no_grad()
    def on_epoch_end(self, state: TrainState) -> None:
        stats: dict[str, torch.Tensor] = {}
        if self.use_class:
            s = self.class_log.exp()
            stats.update(dp_class_sigma_mean=s.mean(), dp_class_sigma_std=s.std())
        if self.use_inst:
            s = self.inst_log.exp()
            stats.update(dp_inst_sigma_mean=s.mean(), dp_inst_sigma_std=s.std())
            corrupt = getattr(self.ctx.data, "corrupt", None)
            if corrupt is not None and bool(corrupt.any()) and bool((~corrupt).any()):
                stats.update(self.instance_stats(corrupt))
        keys = list(stats)
        values = torch.stack([v.double() for v in stats.values()]).tolist() if stats else []
        self._stats = dict(zip(keys, values, strict=True))
        self._class_sigma = self.class_log.exp().tolist() if self.use_class else []

    def state_metrics(self) -> dict[str, float]:
        return dict(self._stats)

    def epoch_artifacts(self) -> dict[str, Any]:
        """Per epoch: the class σ vector (Fig. 1) and the clean/corrupt σ^inst statistics (Fig. 4)."""
        out: dict[str, Any] = {}
        if self._class_sigma:
            out["dp_class_sigma"] = [round(v, 6) for v in self._class_sigma]
        f4 = {k: v for k, v in self._stats.items() if k.startswith(("dp_inst_sigma_c", "dp_top", "dp_corrupt",
                                                                    "dp_inst_auroc"))}
        if f4:
            out["dp_f4"] = f4
        return out

    # -- resume (the engine saves the optimisers' momentum buffers)
    def state_dict(self) -> dict[str, Any]:
        return {"class_log": None if self.class_log is None else self.class_log.detach().cpu().clone(),
                "inst_log": None if self.inst_log is None else self.inst_log.detach().cpu().clone()}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in ("class_log", "inst_log"):
            mine, saved = getattr(self, name), state.get(name)
            if (mine is None) != (saved is None) or (mine is not None and mine.shape != saved.shape):
                raise ValueError(f"data_parameters: checkpoint {name} does not match this run")
            if mine is not None:
                mine.copy_(saved.to(mine.device))
        self._clamped = False
