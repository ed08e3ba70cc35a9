"""Perfect Ordering Approximation (thesis §2.3-2.4): learning items, a scoring mechanism, a strategy, a data loader.

- Learning item: a batch (of a random split of the epoch) or a sample.
- Scoring mechanism: the loss; or the loss delta of one trial SGD step, measured on the same batch or on a
  static external batch, absolute (prev − new) or relative ((prev − new) / prev, §2.4.2).
- Strategy: ordering (sort ascending or descending, take the first, remove it) or sampling with
  replacement weighted by score or inverse score.
- Data loader: rescores after every optimiser step, over K learning items drawn at random.

The Multi-Attempt Loss Orderer (MALO, §2.4.1) is loss + ordering ascending; the Max Loss Delta Orderer
(MLD, §2.4.2) is loss_delta + ordering descending. All K candidates are scored at once: forward passes
and trial steps are vmapped over the K candidates from the live weights, optimiser state (momentum,
Nesterov, weight decay) and BatchNorm buffers, which are never written (engine/batched.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch.func import functional_call, vmap

from curriculab.config import ConfigError
from curriculab.engine.batched import trial_steps, vmap_net
from curriculab.methods.base import Batch, Method, TrainState
from curriculab.methods.settings.poa import PoaParams


class Poa(Method):
    """The POA data loader as the `train_batches` hook: each step scores K candidates with the live model."""

    name = "poa"
    # the engine contract's micro run (60 items, batch 32): sample items, MLD trial steps on every candidate
    contract_params = {"item": "sample", "scoring": "loss_delta", "order": "descending", "k": 32}

    def __init__(self, params: PoaParams, ctx):
        super().__init__(params, ctx)
        self.p: PoaParams = params
        self.bs = ctx.run.train.batch_size
        self.items = params.items(ctx.data.n_train, self.bs)
        if params.k != "all" and params.k > self.items:
            raise ConfigError(f"methods.poa.k: K = {params.k} is more than the {self.items} learning items")
        self.external: tuple[torch.Tensor, torch.Tensor] | None = None
        self.scored = 0  # candidates scored this epoch
        self.score_sum = 0.0  # of the chosen items' scores
        self._net = None  # (live model, its copy for vmapped calls)

    # -- the data loader
    def on_epoch_start(self, state: TrainState) -> None:
        self.scored, self.score_sum = 0, 0.0
        if self.p.scoring == "loss_delta" and self.p.target == "external":
            x, y = self.ctx.data.val if self.p.external == "val" else self.ctx.data.test
            idx = torch.randperm(len(y), generator=self.ctx.data.gen, device=y.device)[: self.p.external_size]
            self.external = (self.ctx.data.to_input(x[idx], augment=False), y[idx])

    def train_batches(self, epoch: int, state: TrainState) -> Iterator[Batch]:
        return self._sampling(state) if self.p.strategy == "sampling" else self._ordering(state)

    def _k(self, available: int) -> int:
        return available if self.p.k == "all" else min(self.p.k, available)

    def _draw(self, n: int, k: int) -> torch.Tensor:
        return self.ctx.data.permutation(n)[:k]

    def _ordering(self, state: TrainState) -> Iterator[Batch]:
        data = self.ctx.data
        if self.p.item == "batch":
            pool = list(data.permutation().split(self.bs))  # a random split into batches; the last may be short
            remaining = data.permutation()
            while len(pool) if self.p.candidates == "split" else len(remaining):
                if self.p.candidates == "resample":
                    take = min(self.bs, len(remaining))
                    k = self._k(max(1, len(remaining) // self.bs))
                    cand = torch.stack([remaining[data.permutation(len(remaining))[:take]] for _ in range(k)])
                    best = self._choose(state, cand, take=1)[0]
                    chosen = cand[best]
                    remaining = remaining[~torch.isin(remaining, chosen)]
                    yield self._batch(chosen)
                    continue
                full = [i for i, b in enumerate(pool) if len(b) == self.bs]
                if not full:  # a short last batch is trained unscored
                    yield self._batch(pool.pop())
                    continue
                pick = [full[i] for i in self._draw(len(full), self._k(len(full))).tolist()]
                best = self._choose(state, torch.stack([pool[i] for i in pick]), take=1)[0]
                yield self._batch(pool.pop(pick[best]))
        else:
            pool = data.permutation()
            while len(pool):
                k = self._k(len(pool))
                cand = pool[self._draw(len(pool), k)]
                chosen = cand[self._choose(state, cand[:, None], take=min(self.bs, k))]
                pool = pool[~torch.isin(pool, chosen)]
                yield self._batch(chosen)

    def _sampling(self, state: TrainState) -> Iterator[Batch]:
        data = self.ctx.data
        for _ in range(data.n_train // self.bs):  # an "epoch" of a sampler: n_train / batch_size steps
            if self.p.item == "batch":
                k = self._k(self.items)
                cand = torch.stack([data.permutation()[: self.bs] for _ in range(k)])
                yield self._batch(cand[self._choose(state, cand, take=1)[0]])
            else:
                k = self._k(data.n_train)
                cand = self._draw(data.n_train, k)
                yield self._batch(cand[self._choose(state, cand[:, None], take=self.bs)])

    def _batch(self, idx: torch.Tensor) -> Batch:
        data = self.ctx.data
        return Batch(data.to_input(data.train_x[idx], augment=True), data.train_y[idx], idx)

    # -- the strategy
    def _choose(self, state: TrainState, cand: torch.Tensor, take: int) -> torch.Tensor:
        """Positions of the chosen candidates (cand: (K, items per candidate) training indices)."""
        if len(cand) == 1:
            return torch.zeros(take, dtype=torch.long, device=cand.device)
        data = self.ctx.data
        x = data.to_input(data.train_x[cand.flatten()], augment=False).view(*cand.shape, *data.train_x.shape[1:])
        scores = self.score(state, x, data.train_y[cand])
        self.scored += len(cand)
        if self.p.strategy == "ordering":
            order = torch.argsort(scores, descending=self.p.order == "descending", stable=True)
            chosen = order[:take]
        else:
            w = scores.clamp_min(1e-12) if self.p.weighting == "score" else 1 / scores.clamp_min(1e-12)
            chosen = torch.multinomial(w / w.sum(), take, replacement=True, generator=data.gen)
        self.score_sum += scores[chosen].mean().item()
        return chosen

    # -- the scoring mechanism
    def score(self, state: TrainState, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Scores of K learning items x: (K, b, C, H, W), y: (K, b); never writes the model or optimiser."""
        model = _plain(state.model)
        if self._net is None or self._net[0] is not model:
            self._net = (model, vmap_net(model))
        train = self.p.score_mode == "train"
        if self.p.scoring == "loss":
            return candidate_losses(model, x, y, train, self._net[1])
        return loss_deltas(model, state.optimizer, x, y, self.external if self.p.target == "external" else None,
                           self.p.relative, train, self._net[1])

    def state_metrics(self) -> dict[str, float]:
        return {"poa_scored": float(self.scored), "poa_chosen_score": self.score_sum}


def _plain(model):
    return getattr(model, "_orig_mod", model)  # torch.compile wraps the module


def _losses_fn(model):
    def f(params, buffers, x, y):
        return F.cross_entropy(functional_call(model, (params, buffers), (x,)), y)

    return f


def _expand(tensors: dict, k: int) -> dict:
    return {n: v.detach().unsqueeze(0).repeat(k, *[1] * v.ndim) for n, v in tensors.items()}


def _state(model) -> tuple[dict, dict]:
    return ({n: v.detach() for n, v in model.named_parameters()},
            {n: v.detach().clone() for n, v in model.named_buffers()})  # copies: train-mode BN writes its buffers


@torch.no_grad()
def candidate_losses(model, x: torch.Tensor, y: torch.Tensor, train_mode: bool, net=None) -> torch.Tensor:
    """Mean loss of each candidate x[k] (K, b, ...): vmapped forwards of `net` (default `model`) with the model's
    weights; in train mode BatchNorm uses each candidate's batch statistics on copies of the buffers. Samples
    (b = 1) are scored as one batch of the K candidates."""
    net = model if net is None else net
    was = net.training
    net.train(train_mode)
    params, bufs = _state(model)
    if x.shape[1] == 1:
        losses = F.cross_entropy(functional_call(net, (params, bufs), (x[:, 0],)), y[:, 0], reduction="none")
    else:
        losses = vmap(_losses_fn(net), in_dims=(None, 0, 0, 0))(params, _expand(bufs, len(x)), x, y)
    net.train(was)
    return losses


def _after_losses(net, x, y, external):
    def after(new_p, bufs):
        f = _losses_fn(net)
        if external is None:
            return vmap(f)(new_p, bufs, x, y)
        return vmap(f, in_dims=(0, 0, None, None))(new_p, bufs, *external)

    return after


def loss_deltas(model, opt, x: torch.Tensor, y: torch.Tensor, external: tuple | None, relative: bool,
                train_mode: bool, net=None) -> torch.Tensor:
    """Loss drop of one trial SGD step on each candidate x[k], on the same batch or on `external` (§2.4.2)."""
    net = model if net is None else net
    prev, new = trial_steps(model, opt, x, y, _after_losses(net, x, y, external), train_mode, net)
    if external is not None:  # the loss of the current weights on the external batch (one forward)
        was = net.training
        net.train(train_mode)
        with torch.no_grad():
            prev = _losses_fn(net)(*_state(model), *external).expand(len(x))
        net.train(was)
    delta = prev - new
    return delta / prev if relative else delta
