"""SPL-ADVisE (Thangarasa & Taylor, BMVC 2018): a Magnet-loss embedding CNN gives clusters; the student
selects easy and diverse samples per cluster (SPLD rule, eq. 2 / Algorithm 2).

Two stages:

- `pretrain` (Algorithm 1, methods/spl_embedding.py): the embedding CNN and its final clusters per dataset.
- the student method `spl_advise` owns `train_batches`: each epoch it takes every training sample's
  cross-entropy (`losses: fresh`, Algorithm 2 step 10: a pass over the training set under the current model;
  `losses: last_epoch`: the values recorded in the `loss` hook during the previous epoch's steps), selects
  with `spld_select` (or the official code's rule, or uniformly at random) and fills the epoch with the
  selection so every row makes the same number of updates. Its clusters come from the embedding, either
  frozen at the pretrain stage's (`clusters: frozen`, the official code) or refreshed while the student
  trains (`clusters: adaptive`, Algorithm 2 step 2: the embedding continues its Magnet-loss training every
  R student steps and every training item is re-clustered), or from k-means on pixels (`pixels`, SPLD).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from curriculab.config import ConfigError
from curriculab.data.prepared import read_meta
from curriculab.methods.base import Batch, Method, MethodContext, TrainState, cross_entropy
from curriculab.methods.magnet import ClusterIndex, kmeans_per_class, magnet_step
from curriculab.methods.settings.spl_advise import PretrainParams, SPLAdviseParams
from curriculab.methods.spl_embedding import (
    PRETRAIN_HINT,
    EmbeddingParams,
    embed,
    load_embedding_clusters,
    load_embedding_model,
    pretrain_dir,
    pretrain_embedding,
)

# --------------------------------------------------------------------------- selection (Algorithm 2)


def cluster_ranks(values: torch.Tensor, clusters: torch.Tensor) -> torch.Tensor:
    """1-based rank of every item by ascending value within its cluster (ties by position); vectorised."""
    n = len(values)
    order = torch.argsort(values, stable=True)
    order = order[torch.argsort(clusters[order], stable=True)]
    _, counts = torch.unique_consecutive(clusters[order], return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    ranked = torch.arange(1, n + 1, device=values.device) - torch.repeat_interleave(starts, counts)
    ranks = torch.empty_like(ranked)
    ranks[order] = ranked
    return ranks


def diversity_weight(ranks: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """1/(√i + √(i−1)) for rank i ≥ 1 (Algorithm 2, step 11)."""
    i = ranks.to(dtype)
    return 1.0 / (i.sqrt() + (i - 1).sqrt())


def spld_select(losses: torch.Tensor, clusters: torch.Tensor, lam: float, gamma: float) -> torch.Tensor:
    """Algorithm 2, steps 7-12: within each cluster rank by ascending loss (i from 1);
    select when loss < λ + γ/(√i + √(i−1))."""
    dtype = losses.dtype if losses.is_floating_point() else torch.float32
    w = diversity_weight(cluster_ranks(losses, clusters), dtype)
    return losses < lam + gamma * w


def official_select(clusters: torch.Tensor, k: int) -> torch.Tensor:
    """The official code's rule: the first k samples of every cluster by dataset index (losses ignored)."""
    return cluster_ranks(torch.arange(len(clusters), device=clusters.device), clusters) <= k


def pace_thresholds(losses: torch.Tensor, clusters: torch.Tensor, fraction: float,
                    ratio: float) -> tuple[float, float]:
    """λ and γ from the ranked losses: γ = ratio·λ and λ such that `spld_select` admits ⌈fraction·n⌉ samples
    (ties aside). With γ = ratio·λ, loss < λ + γ·w_i ⇔ loss/(1 + ratio·w_i) < λ, so λ is a quantile of that
    diversity-adjusted score."""
    n = len(losses)
    score = losses.double() / (1 + ratio * diversity_weight(cluster_ranks(losses, clusters), torch.float64))
    s = torch.sort(score).values
    k = min(n, max(1, math.ceil(fraction * n)))
    if k < n:
        lam = float((s[k - 1] + s[k]) / 2)
    else:
        top = float(s[-1])
        lam = top + max(abs(top) * 1e-6, 1e-12)
    return lam, ratio * lam


def official_k(k0: int, growth: float, epoch: int) -> int:
    """The official code's per-cluster K at `epoch` (0-based; epoch 0 uses all data): K0, then ×(1+growth)."""
    k = k0
    for _ in range(max(0, epoch - 1)):
        k = int(round(k * (1 + growth)))
    return k


# --------------------------------------------------------------------------- the adaptive embedding


class _Embedder:
    """`clusters: adaptive`: the pretrained embedding CNN trained on with the Magnet loss (Algorithm 1) on the
    student's training items, starting from the pretrained clusters, model and Adam state; each refresh runs
    some Magnet-loss iterations, then re-clusters every training item per class (k-means++ in the new space)."""

    def __init__(self, emb: EmbeddingParams, ctx: MethodContext, assign: np.ndarray):
        data, cfg = ctx.data, emb.resolve(ctx.data.name)
        self.cfg, self.data = cfg, data
        self.model, self.opt, centroids = load_embedding_model(ctx.workdir, emb, data.name, data.checksum,
                                                               data.device)
        self.labels = data.train_y.cpu().numpy()
        self.seed = ctx.run.seed
        self.index = ClusterIndex(self.labels, data.classes, cfg.clusters, cfg.m, cfg.b,
                                  np.random.default_rng(ctx.run.seed), ctx.run.seed)
        self.index.set_clusters(np.asarray(assign, np.int64), centroids)
        self.refreshes = 0

    def embed_all(self) -> np.ndarray:
        return embed(self.model, self.data, torch.arange(self.data.n_train, device=self.data.device), 500)

    def refresh(self, steps: int) -> np.ndarray:
        """`steps` Magnet-loss iterations, then the new cluster of every training item."""
        cfg = self.cfg
        self.model.train()
        with torch.enable_grad():
            for _ in range(steps):
                magnet_step(self.model, self.opt, self.index, self.data, cfg.alpha, cfg.variance)
        self.refreshes += 1
        assign, centroids = kmeans_per_class(self.embed_all(), self.labels, cfg.clusters, self.data.classes,
                                             self.seed + 7919 * self.refreshes, what="embedding.clusters")
        self.index.set_clusters(assign, centroids)
        return assign

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                "assign": torch.as_tensor(self.index.assign), "centroids": torch.as_tensor(self.index.centroids),
                "example_loss": torch.as_tensor(self.index.example_loss),
                "has_loss": torch.as_tensor(self.index.has_loss), "refreshes": self.refreshes,
                "rng": json.dumps(self.index.rng.bit_generator.state)}

    def load_state_dict(self, st: dict[str, Any]) -> None:
        self.model.load_state_dict(st["model"])
        self.opt.load_state_dict(st["optimizer"])
        self.index.set_clusters(st["assign"].cpu().numpy(), st["centroids"].cpu().numpy())
        self.index.example_loss = st["example_loss"].cpu().numpy().copy()
        self.index.has_loss = st["has_loss"].cpu().numpy().copy()
        self.refreshes = int(st["refreshes"])
        self.index.rng.bit_generator.state = json.loads(st["rng"])


# --------------------------------------------------------------------------- the student


class SPLAdvise(Method):
    """Self-paced selection by easiness (per-sample loss) and diversity (clusters), Algorithm 2."""

    name = "spl_advise"
    # The default clusters come from the pretrain stage; the contract tests use per-class k-means on pixels
    # (the embedding path is tested with a tiny pretrained embedding in tests/test_spl_advise.py).
    contract_params = {"clusters": "pixels", "k": 2}
    # Under DDP every rank computes the fresh losses of the whole training set (identical weights) and the
    # selection, and rank 0's selection is broadcast, so every rank draws its slices from the same epoch.
    ddp = True

    @classmethod
    def ddp_refusal(cls, params: SPLAdviseParams) -> str | None:
        if params.selection == "spld" and params.losses == "last_epoch":
            return "losses: last_epoch records only each rank's own samples; use losses: fresh under DDP"
        if params.selection != "random" and params.clusters == "adaptive":
            return "clusters: adaptive trains an embedding on each rank; use frozen or pixels under DDP"
        return None

    @classmethod
    def preflight(cls, params: SPLAdviseParams, run, workdir) -> None:
        """A missing or stale embedding stops the stage before any run of the table trains."""
        if params.selection != "random" and params.uses_embedding:
            checksum = read_meta(Path(workdir) / "data", run.data.dataset)["checksum"]
            load_embedding_clusters(Path(workdir), params.embedding, run.data.dataset, checksum)

    def __init__(self, params: SPLAdviseParams, ctx: MethodContext):
        super().__init__(params, ctx)
        data = ctx.data
        self.clusters: torch.Tensor | None = None
        self.metrics: dict[str, float] = {}
        # `losses: last_epoch`: the latest training loss of every sample (NaN: never seen)
        self.recorded = torch.full((data.n_train,), float("nan"), device=data.device)
        self.embedder: _Embedder | None = None
        if params.selection == "random":
            return
        if params.uses_embedding:
            assign = load_embedding_clusters(ctx.workdir, params.embedding, data.name, data.checksum)
            cl = assign[data.train_pos]
            if (cl < 0).any():
                where = pretrain_dir(ctx.workdir, data.name)
                raise ConfigError(f"methods.spl_advise: {where} has no cluster for some training items; "
                                  f"{PRETRAIN_HINT}")
        else:
            cl, _ = kmeans_per_class(data.train_x.cpu().numpy(), data.train_y.cpu().numpy(), params.k,
                                     data.classes, ctx.run.seed, what="methods.spl_advise.k")
        self.clusters = torch.as_tensor(cl, device=data.device)
        if params.clusters == "adaptive":
            self.embedder = _Embedder(params.embedding, ctx, cl)

    def on_step_end(self, state: TrainState) -> None:
        """`clusters: adaptive`: every R student steps, continue the embedding's training and re-cluster."""
        if self.embedder is not None and state.step % self.params.refresh_every == 0:
            self.clusters = torch.as_tensor(self.embedder.refresh(self.params.embedding_steps),
                                            device=state.data.device)

    @torch.no_grad()
    def sample_losses(self, state: TrainState) -> torch.Tensor:
        """Cross-entropy of every training sample under the current model (eval mode, no augmentation), in
        float32 even under `train.bf16`: bf16 logits would tie many of the losses this ranks."""
        model, data = state.model, state.data
        was = model.training
        model.eval()
        out = torch.empty(data.n_train, device=data.device)
        bs = self.params.loss_batch_size
        for i in range(0, data.n_train, bs):
            x = data.to_input(data.train_x[i:i + bs], augment=False)
            with torch.autocast(data.device.type, enabled=False):
                out[i:i + bs] = cross_entropy(model(x), data.train_y[i:i + bs])
        model.train(was)
        return out

    def loss(self, outputs: torch.Tensor, batch: Batch, state: TrainState) -> torch.Tensor | None:
        """The default cross-entropy; under `losses: last_epoch` each sample's value is also recorded."""
        if self.params.losses != "last_epoch" or self.params.selection != "spld":
            return None
        per = cross_entropy(outputs, batch.y)
        self.recorded[batch.index] = per.detach()
        return per

    def epoch_losses(self, state: TrainState) -> torch.Tensor:
        """The losses the selection ranks: fresh (a pass over the training set) or the recorded ones (a
        sample never seen, e.g. after resuming an older checkpoint, gets a fresh value)."""
        if self.params.losses == "fresh":
            return self.sample_losses(state)
        missing = torch.isnan(self.recorded)
        if bool(missing.any()):
            self.recorded[missing] = self.sample_losses(state)[missing]
        return self.recorded.clone()

    def select(self, epoch: int, state: TrainState) -> torch.Tensor | None:
        """The epoch's selected positions (None: all); records the pace in `self.metrics`."""
        p, n = self.params, state.data.n_train
        if p.selection == "random" or epoch == 0:
            self.metrics = {"spl_selected_fraction": 1.0}
            return None
        if p.selection == "official":
            k = official_k(p.official_k, p.beta1, epoch)
            mask = official_select(self.clusters, k)
            self.metrics = {"spl_k": float(k)}
        else:
            fraction = min(1.0, p.start_fraction * (1 + p.beta1) ** (epoch - 1))
            if fraction >= 1.0:  # the pace admits everything: no loss pass needed
                self.metrics = {"spl_selected_fraction": 1.0, "spl_target_fraction": 1.0}
                return None
            losses = self.epoch_losses(state)
            ratio = p.gamma * (1 + p.beta2) ** (epoch - 1)
            lam, gam = pace_thresholds(losses, self.clusters, fraction, ratio)
            mask = spld_select(losses.double(), self.clusters, lam, gam)
            if not bool(mask.any()):  # all losses tied: nothing is strictly below λ
                mask = torch.ones_like(mask)
            self.metrics = {"spl_lambda": lam, "spl_gamma": gam, "spl_target_fraction": fraction}
        if self.embedder is not None:
            self.metrics["spl_embedding_refreshes"] = float(self.embedder.refreshes)
        sel = torch.nonzero(mask).squeeze(1)
        self.metrics["spl_selected_fraction"] = len(sel) / n
        self.metrics["spl_clusters_used"] = float(len(torch.unique(self.clusters[sel])))
        return sel

    def epoch_indices(self, sel: torch.Tensor, state: TrainState) -> torch.Tensor:
        """`fill: repeat`: the selection repeated (equal counts ±1) to n_train samples, so each epoch has
        the same number of updates as random sampling; `fill: none`: the selection once (official code)."""
        data, n, s = state.data, state.data.n_train, len(sel)
        if self.params.fill == "none" or s == n:
            return sel
        reps = n // s
        return torch.cat([sel.repeat(reps), sel[data.permutation(s)[:n - reps * s]]])

    def train_batches(self, epoch: int, state: TrainState) -> Iterator[Batch]:
        sel = state.group.selection(self.select(epoch, state), state.data.n_train, state.data.device)
        bs = self.ctx.run.train.batch_size
        if sel is None:
            return state.data.batches(bs)
        return state.data.batches(bs, indices=self.epoch_indices(sel, state))

    def state_metrics(self) -> dict[str, float]:
        return dict(self.metrics)

    def state_dict(self) -> dict[str, Any]:
        out = {"metrics": self.metrics, "recorded": self.recorded.cpu()}
        if self.clusters is not None:
            out["clusters"] = self.clusters.cpu()
        if self.embedder is not None:
            out["embedder"] = self.embedder.state_dict()
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.metrics = dict(state.get("metrics", {}))
        if "recorded" in state and len(state["recorded"]) == len(self.recorded):
            self.recorded = state["recorded"].to(self.recorded.device)
        if self.clusters is not None and "clusters" in state:
            self.clusters = state["clusters"].to(self.clusters.device)
        if self.embedder is not None and "embedder" in state:
            self.embedder.load_state_dict(state["embedder"])

    # ----------------------------------------------------------------------- pretrain stage

    @classmethod
    def pretrain(cls, pp: PretrainParams, params, workdir: Path) -> None:
        """Train the embedding CNN of every listed dataset (skipping those whose checkpoint is current)."""
        for i, ds in enumerate(pp.datasets):
            if ds not in params.prepare.datasets:
                raise ConfigError(f"pretrain.spl_advise.datasets.{i}: dataset {ds!r} is not in "
                                  "prepare.datasets; add it there")
        for ds in pp.datasets:
            info = pretrain_embedding(pp, ds, Path(workdir))
            print(f"pretrain spl_advise {ds}: {info}", flush=True)


