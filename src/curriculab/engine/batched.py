"""Many copies of one architecture trained at once: stacked parameters, `torch.func.functional_call` + `vmap`.

A batch of models is a `Stack`: every parameter, buffer and momentum buffer with a leading model
dimension. `sgd_step` is torch.optim.SGD's update (weight decay, momentum, Nesterov, dampening 0)
written for stacked tensors, so a stacked trajectory equals the same runs made one model at a time.
Perfect Ordering trains its networks this way; the POA trial steps use `trial_steps`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, grad_and_value, vmap

Tensors = dict[str, torch.Tensor]


@dataclass(frozen=True)
class SGDConfig:
    """The hyper-parameters of torch.optim.SGD that `sgd_step` reproduces (dampening 0)."""

    lr: float
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0

    @classmethod
    def of(cls, opt: torch.optim.Optimizer) -> SGDConfig:
        """The settings of a torch.optim.SGD with one parameter group."""
        if not isinstance(opt, torch.optim.SGD) or len(opt.param_groups) != 1:
            raise TypeError("batched trial steps need a torch.optim.SGD with one parameter group")
        g = opt.param_groups[0]
        if g.get("dampening", 0):
            raise TypeError("batched trial steps assume SGD dampening 0")
        return cls(g["lr"], g["momentum"], g["nesterov"], g["weight_decay"])


@dataclass
class Stack:
    """N models of one architecture: parameters, buffers (BatchNorm statistics) and momentum buffers."""

    params: Tensors
    buffers: Tensors
    momentum: Tensors

    @property
    def n(self) -> int:
        return next(iter(self.params.values())).shape[0]

    @classmethod
    def of(cls, model: nn.Module, n: int) -> Stack:
        """n copies of `model`'s current state, momentum zero."""
        p = {k: v.detach().unsqueeze(0).repeat(n, *[1] * v.ndim) for k, v in model.named_parameters()}
        b = {k: v.detach().unsqueeze(0).repeat(n, *[1] * v.ndim) for k, v in model.named_buffers()}
        return cls(p, b, {k: torch.zeros_like(v) for k, v in p.items()})

    def select(self, idx: torch.Tensor) -> Stack:
        """The models at `idx` (copies)."""
        return Stack(*({k: v[idx].clone() for k, v in d.items()} for d in (self.params, self.buffers, self.momentum)))

    def chunks(self, size: int):
        for i in range(0, self.n, size):
            yield i, self.select(torch.arange(i, min(i + size, self.n), device=self._device))

    @property
    def _device(self) -> torch.device:
        return next(iter(self.params.values())).device

    def load_into(self, model: nn.Module, i: int) -> None:
        """Copy model i's parameters and buffers into `model` (for checks and bench references)."""
        with torch.no_grad():
            for k, v in model.named_parameters():
                v.copy_(self.params[k][i])
            for k, v in model.named_buffers():
                v.copy_(self.buffers[k][i])


def sgd_step(params: Tensors, grads: Tensors, momentum: Tensors, cfg: SGDConfig) -> tuple[Tensors, Tensors]:
    """torch.optim.SGD's update: g += wd·p; buf = μ·buf + g; g = g + μ·buf (Nesterov) or buf; p -= lr·g.

    A zero momentum buffer gives the same numbers as torch's first step (buf = g).
    """
    new_p, new_m = {}, {}
    for k, p in params.items():
        g = grads[k]
        if cfg.weight_decay:
            g = g + cfg.weight_decay * p
        if cfg.momentum:
            buf = momentum[k] * cfg.momentum + g
            new_m[k] = buf
            g = g + cfg.momentum * buf if cfg.nesterov else buf
        else:
            new_m[k] = momentum[k]
        new_p[k] = p - cfg.lr * g
    return new_p, new_m


def _loss_fn(model: nn.Module) -> Callable:
    def loss(params: Tensors, buffers: Tensors, x: torch.Tensor, y: torch.Tensor):
        return F.cross_entropy(functional_call(model, (params, buffers), (x,)), y)

    return loss


def train_step(model: nn.Module, stack: Stack, x: torch.Tensor, y: torch.Tensor, cfg: SGDConfig) -> Stack:
    """One SGD step of every model of the stack on its own batch x[i], y[i] (train mode: BatchNorm updates
    a copy of each model's running statistics, as nn.BatchNorm2d does)."""
    model.train()
    buffers = {k: v.clone() for k, v in stack.buffers.items()}  # updated in place by batch_norm
    g = vmap(grad(_loss_fn(model)))(stack.params, buffers, x, y)
    p, m = sgd_step(stack.params, g, stack.momentum, cfg)
    return Stack(p, buffers, m)


@torch.no_grad()
def evaluate(model: nn.Module, stack: Stack, x: torch.Tensor, y: torch.Tensor,
             batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy and accuracy of every model (eval mode) on one shared set: two (N,) tensors."""
    model.eval()

    def f(params, buffers, xb):
        return functional_call(model, (params, buffers), (xb,))

    loss = torch.zeros(stack.n, device=x.device)
    correct = torch.zeros(stack.n, device=x.device)
    for i in range(0, len(y), batch_size):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        out = vmap(f, in_dims=(0, 0, None))(stack.params, stack.buffers, xb)  # (N, b, classes)
        loss += F.cross_entropy(out.flatten(0, 1), yb.repeat(stack.n), reduction="none").view(stack.n, -1).sum(1)
        correct += (out.argmax(-1) == yb).sum(1)
    model.train()
    return loss / len(y), correct / len(y)


def vmap_net(model: nn.Module) -> nn.Module:
    """A copy of `model` for functional calls under vmap: every nn.BatchNorm2d computes with plain tensor ops
    (PlainBatchNorm2d: same numbers, same parameter and buffer names), which vmap batches far better."""
    from curriculab.models.toy import PlainBatchNorm2d

    net = copy.deepcopy(model)
    for m in net.modules():
        if type(m) is nn.BatchNorm2d:
            m.__class__ = PlainBatchNorm2d
    return net


def model_state(model: nn.Module, opt: torch.optim.Optimizer) -> tuple[Tensors, Tensors, Tensors]:
    """The live model's parameters, buffers and SGD momentum buffers (zeros before the first step), unbatched."""
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}
    mom = {}
    for k, v in model.named_parameters():
        buf = opt.state.get(v, {}).get("momentum_buffer")
        mom[k] = torch.zeros_like(v) if buf is None else buf.detach()
    return params, buffers, mom


def trial_steps(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                after: Callable[[Tensors, Tensors], torch.Tensor], train_mode: bool = True,
                net: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """K trial SGD steps from the live model and optimiser state, one per candidate batch x[k], y[k] (K, b, ...).

    Returns each candidate's loss before its step and `after(params, buffers)` of the K stepped copies
    (stacked), e.g. their new losses. The live model, its buffers and the optimiser are never written
    (each copy gets its own buffers). `net` (default: `model`) is the module called, e.g. `vmap_net(model)`.
    """
    params, buffers, mom = model_state(model, opt)
    cfg = SGDConfig.of(opt)
    net = model if net is None else net
    was = net.training
    net.train(train_mode)
    k = len(x)
    bufs = {n: v.unsqueeze(0).repeat(k, *[1] * v.ndim) for n, v in buffers.items()}
    g, prev = vmap(grad_and_value(_loss_fn(net)), in_dims=(None, 0, 0, 0))(params, bufs, x, y)
    stepped = {n: params[n].unsqueeze(0) for n in params}
    new_p, _ = sgd_step(stepped, g, {n: mom[n].unsqueeze(0) for n in mom}, cfg)
    with torch.no_grad():
        out = after(new_p, bufs)
    net.train(was)
    return prev.detach(), out
