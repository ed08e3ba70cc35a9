"""Data Parameters (Saxena, Tuzel & DeCoste, NeurIPS 2019): learnable per-class / per-instance temperatures.

Sample i's logits are divided by its own σ*_i before the softmax cross-entropy (§2, eqs. (1)-(5)):
σ*_i = σ^class_{y_i} (class curriculum), σ^inst_i (instance) or their sum (joint). The parameters live in
log space (σ = exp(p), §3.1), each group has its own learning rate and momentum buffers in a `SparseSGD`,
whose absent items keep their value and momentum buffer, and at evaluation the logits are not scaled (the
default `predict`).

Paper vs official code (apple/ml-data-parameters), both selectable here:
- weight decay on log σ: `all` (default) = the paper's ℓ2 on the whole vector (§3.1); `minibatch` = the
  official `0.5·wd·Σ p²` over the minibatch entries, one term per occurrence;
- the official code clamps log σ to [log 1/20, log 20] after every step (default; `clamp: null` turns it off).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from curriculab.config import NonNegFloat, PosFloat, Strict
from curriculab.methods.base import Batch, Method, MethodContext, TrainState

Sigma = Annotated[float, Field(gt=0)]


def data_parameter_loss(logits: torch.Tensor, target: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-sample CE of logits / σ*_i: every logit of sample i is divided by its own σ*_i (eqs. (1), (3))."""
    return F.cross_entropy(logits.float() / sigma.float().unsqueeze(1), target, reduction="none")


class SparseSGD(torch.optim.Optimizer):
    """SGD (momentum, optional Nesterov) in which an entry whose gradient is exactly zero is absent (§3.1).

    An absent entry keeps its value and its momentum buffer bit for bit, as in the official SparseSGD, so
    dense gradients from indexing (zeros for the items not in the minibatch) work. `weight_decay` here
    acts only on present entries (the mask is taken from the raw gradient); the `DataParameters` method
    puts its weight decay in the loss instead and leaves this at 0.
    """

    def __init__(self, params: Iterable[torch.Tensor] | Iterable[dict], lr: float, momentum: float = 0.9,
                 dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False):
        if lr < 0:
            raise ValueError(f"SparseSGD: lr must be >= 0, got {lr}")
        if not 0 <= momentum < 1:
            raise ValueError(f"SparseSGD: momentum must be in [0, 1), got {momentum}")
        if weight_decay < 0:
            raise ValueError(f"SparseSGD: weight_decay must be >= 0, got {weight_decay}")
        if nesterov and (momentum == 0 or dampening != 0):
            raise ValueError("SparseSGD: nesterov needs momentum > 0 and dampening 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, mom, damp, wd = group["lr"], group["momentum"], group["dampening"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("SparseSGD takes dense gradients (absent entries are exact zeros)")
                g = p.grad
                present = g != 0
                keep = present.to(p.dtype)  # 1 for present entries, 0 for absent ones
                d = g.addcmul(p, keep, value=wd) if wd else g  # absent entries of d stay exactly 0
                if mom:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:  # first step: buffer = gradient, as torch.optim.SGD (absent ones stay 0)
                        buf = state["momentum_buffer"] = d.clone()
                    else:  # absent: buf + 0 = buf exactly; present: momentum·buf + (1 - dampening)·d
                        buf.addcmul_(keep, buf, value=mom - 1).add_(d, alpha=1 - damp)
                    d = d.add(buf, alpha=mom) if group["nesterov"] else buf
                p.addcmul_(keep, d, value=-lr)  # absent: p + 0 = p exactly
        return loss


class DataParameters(Method):
    """Class / instance / joint curriculum over learnable temperatures σ (§2.1-2.2, §3.1)."""

    name = "data_parameters"

    class Params(Strict):
        curriculum: Literal["class", "instance", "joint"] = "class"  # σ*_i = σ^class_y, σ^inst_i, or the sum
        class_init: PosFloat = 1.0  # initial σ^class (§3.1: 1)
        class_lr: NonNegFloat = 0.1  # §3.1: 0.1
        class_weight_decay: NonNegFloat = 5e-4  # on log σ; §3.1: 5e-4 (CIFAR), 1e-4 (ImageNet)
        inst_init: PosFloat | None = None  # initial σ^inst; null: 1 (instance) or 0.001 (joint), as in §3.1
        inst_lr: NonNegFloat = 0.2  # §3.4: 0.2 (noisy CIFAR); 0.8 ImageNet
        inst_weight_decay: NonNegFloat = 0.0  # official noisy CIFAR: 0; ImageNet 1e-8
        momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
        weight_decay_mode: Literal["all", "minibatch"] = "all"  # paper (ℓ2 on the vector) vs official code
        clamp: Annotated[list[Sigma], Field(min_length=2, max_length=2)] | None = [0.05, 20.0]  # σ; null: off
        top_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.4  # Fig. 4 right: top share ranked by σ^inst

        @field_validator("clamp")
        @classmethod
        def _ordered(cls, v: list[float] | None) -> list[float] | None:
            if v is not None and v[0] >= v[1]:
                raise ValueError(f"low {v[0]:g} must be below high {v[1]:g} (e.g. [0.05, 20]; null: off)")
            return v

    def __init__(self, params: Params, ctx: MethodContext):
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
        self._stats: dict[str, float] = {}
        self._class_sigma: list[float] = []

    # -- optimiser: one SparseSGD, one parameter group (own lr, own momentum buffers) per data-parameter group
    def optimizers(self, model: nn.Module) -> list[torch.optim.Optimizer]:
        """Stepped by the engine after the model's optimiser; its lrs stay constant (official code)."""
        p, groups = self.params, []
        if self.use_class:
            groups.append({"params": [self.class_log], "lr": p.class_lr})
        if self.use_inst:
            groups.append({"params": [self.inst_log], "lr": p.inst_lr})
        return [SparseSGD(groups, lr=groups[0]["lr"], momentum=p.momentum)]

    # -- objective
    def groups(self, cls: torch.Tensor, idx: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor, float]]:
        """The active groups as (whole log σ vector, its minibatch entries, weight decay)."""
        p, out = self.params, []
        if self.use_class:
            out.append((self.class_log, self.class_log.index_select(0, cls), p.class_weight_decay))
        if self.use_inst:
            out.append((self.inst_log, self.inst_log.index_select(0, idx), p.inst_weight_decay))
        return out

    def sigma(self, cls: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """σ*_i for a minibatch: σ^class_{y_i}, σ^inst_i, or their sum (§2.2)."""
        parts = [mb.exp() for _, mb, _ in self.groups(cls, index)]
        return parts[0] if len(parts) == 1 else parts[0] + parts[1]

    def loss(self, outputs: torch.Tensor, batch: Batch, state: TrainState) -> torch.Tensor:
        """CE(z_i / σ*_i) per sample (eq. (1)) plus weight-decay terms on log σ (their batch mean)."""
        y = batch.y
        cls = y if y.ndim == 1 else y.argmax(1)
        n, groups = len(batch.index), self.groups(cls, batch.index)
        sigma = groups[0][1].exp() if len(groups) == 1 else groups[0][1].exp() + groups[1][1].exp()
        per = data_parameter_loss(outputs, y, sigma)
        for whole, mb, wd in groups:
            if wd == 0:
                continue
            if self.params.weight_decay_mode == "minibatch":  # official: 0.5·wd·Σ_batch p² per occurrence
                per = per.addcmul(mb, mb, value=0.5 * wd * n)
            else:  # paper: 0.5·wd·‖p‖² over the whole vector
                per = per + 0.5 * wd * whole.square().sum()
        return per

    # -- after every step: project log σ into the clamp range (official code)
    @torch.no_grad()
    def clamp_(self) -> None:
        if self.bounds is None:
            return
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
