"""SPL-ADVisE (Thangarasa & Taylor, BMVC 2018): a Magnet-loss embedding CNN gives clusters; the student
selects easy and diverse samples per cluster (SPLD rule, eq. 2 / Algorithm 2).

Two stages:

- `pretrain` (Algorithm 1): an embedding CNN trained with the stochastic Magnet loss (eq. 1) on
  neighbourhood minibatches drawn from a per-class K-means++ cluster index refreshed every R iterations.
  It writes, per dataset, under data/pretrained/spl_advise/<dataset>/: the model, the final cluster of every
  training sample (indexed by position in the prepared arrays), t-SNE snapshots (figure spl.f2) and a
  hash of (embedding settings, dataset, dataset checksum).
- the student method `spl_advise` owns `train_batches`: each epoch it computes every training sample's
  cross-entropy under the current model, selects with `spld_select` (or the official code's rule, or
  uniformly at random) and fills the epoch with the selection so every row makes the same number of updates.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator, model_validator

from curriculab.config import (
    ConfigError,
    ModelCfg,
    NonNegFloat,
    NonNegInt,
    PosFloat,
    PosInt,
    Strict,
    deep_merge,
    stable_hash,
    validate,
)
from curriculab.data.prepared import read_meta
from curriculab.methods.base import Batch, Method, MethodContext, TrainState, cross_entropy

Variance = Literal["rippel", "squared"]
Pace = Annotated[float, Field(gt=0, allow_inf_nan=False)]
PRETRAIN_HINT = "run `dvc repro pretrain@spl_advise` (or `curriculab pretrain spl_advise`)"


# --------------------------------------------------------------------------- Magnet loss (eq. 1)


def magnet_loss(r: torch.Tensor, cluster: torch.Tensor, cls: torch.Tensor, alpha: float,
                variance: Variance = "rippel", reduction: Literal["mean", "none"] = "mean",
                eps: float = 1e-8) -> torch.Tensor:
    """Stochastic Magnet loss, eq. (1): mean over samples of
    max(0, −log(exp(−‖r−μ_own‖²/2σ² − α) / Σ_{μ: C(μ)≠C(r)} exp(−‖r−μ‖²/2σ²))).

    `cluster` labels each sample's cluster slot in the batch (any ints), `cls` its class; μ_m is the batch
    mean of slot m. σ² = (1/(n−1)) Σ‖r − μ_own‖² (Rippel et al. 2016, `variance="rippel"`); `"squared"`
    uses that quantity squared, as the SPL-ADVisE text (σ = variance, then 1/2σ²) and its official code do.
    Computed as a log-sum-exp; σ² is floored at `eps`, so tight clusters give finite values. A sample with no
    cluster of another class in the batch has loss 0 (the ratio is +∞ before the hinge).
    """
    if variance not in ("rippel", "squared"):
        raise ValueError(f"variance must be 'rippel' or 'squared', got {variance!r}")
    if r.dtype in (torch.float16, torch.bfloat16):
        r = r.float()
    n = r.shape[0]
    slots, inv = torch.unique(cluster, return_inverse=True)
    m = len(slots)
    counts = torch.bincount(inv, minlength=m).to(r.dtype)
    means = torch.zeros(m, r.shape[1], dtype=r.dtype, device=r.device).index_add(0, inv, r) / counts[:, None]
    slot_cls = torch.empty(m, dtype=cls.dtype, device=cls.device).scatter_(0, inv, cls)
    if bool((slot_cls[inv] != cls).any()):
        raise ValueError("magnet_loss: every cluster slot must hold samples of one class")
    d2 = (r[:, None, :] - means[None]).pow(2).sum(-1)  # (n, m) squared distances to every batch cluster mean
    own = d2.gather(1, inv[:, None]).squeeze(1)
    var = own.sum() / max(n - 1, 1)
    if variance == "squared":
        var = var * var
    var = var.clamp_min(eps)
    other = slot_cls[None, :] != cls[:, None]
    has = other.any(1)
    logits = (-d2 / (2 * var)).masked_fill(~other, float("-inf"))
    logits = torch.where(has[:, None], logits, torch.zeros_like(logits))  # keeps the log-sum-exp finite
    per = F.relu(own / (2 * var) + alpha + torch.logsumexp(logits, 1))
    per = torch.where(has, per, torch.zeros_like(per))
    return per.mean() if reduction == "mean" else per


# --------------------------------------------------------------------------- cluster index (Algorithm 1)


def kmeans_per_class(features: np.ndarray, labels: np.ndarray, k: int, classes: int, seed: int,
                     what: str = "clusters") -> tuple[np.ndarray, np.ndarray]:
    """Per class, K clusters by k-means++ (scikit-learn; §3.1): cluster id class·K + k, and the C·K centroids.

    `features` may be uint8 (raw pixels); rows are converted to float one class at a time. Centroids of
    classes with no samples are NaN (never sampled).
    """
    from sklearn.cluster import KMeans

    feats = features.reshape(len(features), -1)
    assign = np.full(len(labels), -1, np.int64)
    centroids = np.full((classes * k, feats.shape[1]), np.nan, np.float32)
    for c in range(classes):  # one k-means per class (C is small); no loop over samples
        mask = labels == c
        n_c = int(mask.sum())
        if n_c == 0:
            continue
        if n_c < k:
            raise ConfigError(f"{what}: class {c} has {n_c} samples, fewer than the {k} clusters asked per "
                              "class; lower the number of clusters per class")
        x = feats[mask].astype(np.float32)
        km = KMeans(n_clusters=k, init="k-means++", n_init=1, random_state=seed + c).fit(x)
        assign[mask] = c * k + km.labels_
        centroids[c * k:(c + 1) * k] = km.cluster_centers_
    return assign, centroids


class ClusterIndex:
    """The cluster index of Algorithm 1 and its neighbourhood sampler (Rippel et al. 2016 §3.3)."""

    def __init__(self, labels: np.ndarray, classes: int, k: int, m: int, b: int, rng: np.random.Generator,
                 seed: int = 0):
        self.labels, self.classes, self.k, self.m, self.b = labels, classes, k, m, b
        self.rng, self.seed = rng, seed
        self.n_clusters = classes * k
        self.cluster_class = np.repeat(np.arange(classes), k)
        self.example_loss = np.zeros(len(labels))
        self.has_loss = np.zeros(len(labels), bool)
        self.refreshes = 0
        self.assign = np.zeros(len(labels), np.int64)
        self.centroids = np.zeros((self.n_clusters, 1), np.float32)

    def refresh(self, reps: np.ndarray) -> None:
        """Re-cluster the index from the current representations (Algorithm 1, steps 1-2)."""
        self.set_clusters(*kmeans_per_class(reps, self.labels, self.k, self.classes,
                                            self.seed + 7919 * self.refreshes))
        self.refreshes += 1

    def set_clusters(self, assign: np.ndarray, centroids: np.ndarray) -> None:
        self.assign, self.centroids = assign, centroids
        self.sizes = np.bincount(assign, minlength=self.n_clusters)
        self.order = np.argsort(assign, kind="stable")  # cluster c: order[starts[c]:starts[c] + sizes[c]]
        self.starts = np.cumsum(self.sizes) - self.sizes

    def update_losses(self, idx: np.ndarray, losses: np.ndarray) -> None:
        """Store the latest Magnet loss of each sampled example."""
        self.example_loss[idx] = losses
        self.has_loss[idx] = True

    def seed_probs(self) -> np.ndarray:
        """p(seed cluster) ∝ the cluster's mean example loss; uniform before any loss exists.

        A non-empty cluster with no measured example yet takes the mean of the measured clusters, so it stays
        reachable (the official code gives it 0 and can never sample it).
        """
        valid = self.sizes > 0
        cnt = np.bincount(self.assign, weights=self.has_loss.astype(float), minlength=self.n_clusters)
        tot = np.bincount(self.assign, weights=self.example_loss * self.has_loss, minlength=self.n_clusters)
        measured = cnt > 0
        if not measured.any():
            w = valid.astype(float)
        else:
            mean = np.where(measured, tot / np.maximum(cnt, 1), 0.0)
            w = np.where(measured, mean, mean[measured].mean()) * valid
        if w.sum() <= 0:
            w = valid.astype(float)
        return w / w.sum()

    def impostors(self, seed: int) -> np.ndarray:
        """The M−1 clusters of other classes whose centroids are nearest the seed's, nearest first."""
        d = ((self.centroids - self.centroids[seed]) ** 2).sum(1)
        same = self.cluster_class == self.cluster_class[seed]
        d = np.where(np.isnan(d) | (self.sizes == 0) | same, np.inf, d)
        out = np.argsort(d, kind="stable")[:self.m - 1]
        if not np.isfinite(d[out]).all():
            raise ConfigError(f"m: {self.m} clusters per minibatch need {self.m - 1} non-empty impostor "
                              "clusters of other classes, fewer exist; lower m")
        return out

    def sample(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One neighbourhood minibatch: (example positions, cluster slot, class, the M clusters).

        Seed cluster ~ seed_probs, then its M−1 nearest impostors, then B examples per cluster uniformly
        (with replacement only when the cluster has fewer than B).
        """
        seed = int(self.rng.choice(self.n_clusters, p=self.seed_probs()))
        clusters = np.concatenate([[seed], self.impostors(seed)])
        sizes, b = self.sizes, self.b
        idx = np.concatenate([  # a loop over the M clusters of one batch
            self.order[self.starts[c] + self.rng.choice(sizes[c], b, replace=bool(sizes[c] < b))]
            for c in clusters])
        slot = np.repeat(np.arange(len(clusters)), self.b)
        return idx, slot, self.cluster_class[clusters][slot], clusters


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


# --------------------------------------------------------------------------- settings


class EmbeddingCfg(Strict):
    """The embedding CNN and its Magnet-loss training (Algorithm 1); the student carries the same block."""

    model: ModelCfg = ModelCfg(name="lenet")  # its output size (num_classes) is the embedding dimension
    dim: PosInt = 16  # embedding dimension (the official code: 2)
    clusters: PosInt = 8  # K clusters per class
    m: Annotated[int, Field(ge=2)] = 8  # M clusters per minibatch: the seed and M−1 impostors
    b: PosInt = 8  # B samples per cluster (minibatch M·B)
    alpha: Annotated[float, Field(allow_inf_nan=False)] = 1.0  # separation margin α
    refresh: PosInt = 100  # R: re-cluster every R iterations
    lr: PosFloat = 1e-4  # Adam
    weight_decay: NonNegFloat = 0.0
    iterations: PosInt = 1000  # E
    variance: Variance = "rippel"
    seed: NonNegInt = 0
    subset_per_class: PosInt | None = None  # examples per class in the index while training (None: all)
    per_dataset: dict[str, dict[str, Any]] = {}  # dataset → overrides of the keys above

    @field_validator("model")
    @classmethod
    def _model(cls, v: ModelCfg) -> ModelCfg:
        from curriculab.models import check_model

        check_model(v.name, v.kwargs, "model")
        return v

    @model_validator(mode="after")
    def _overrides(self) -> EmbeddingCfg:
        for ds in self.per_dataset:
            self.resolve(ds)
        return self

    def resolve(self, dataset: str) -> EmbeddingCfg:
        """The settings used for `dataset`: the block with its `per_dataset` overrides applied."""
        over = self.per_dataset.get(dataset, {})
        if "per_dataset" in over:
            raise ConfigError(f"per_dataset.{dataset}.per_dataset: overrides cannot nest")
        base = self.model_dump(mode="json", exclude={"per_dataset"})
        return validate(EmbeddingCfg, deep_merge(base, over), prefix=f"per_dataset.{dataset}")

    def digest(self, dataset: str, checksum: str) -> str:
        """Hash of (settings for `dataset`, the dataset, its checksum): a checkpoint is current iff equal."""
        settings = self.resolve(dataset).model_dump(mode="json")
        return stable_hash({"settings": settings, "dataset": dataset, "checksum": checksum}, n=16)


class PretrainParams(Strict):
    """`pretrain.spl_advise`: which datasets get an embedding, its settings (shared with the student by a YAML
    anchor), and how the stage runs (not part of the embedding's hash, nor of the student's run id)."""

    datasets: Annotated[list[str], Field(min_length=1)]
    embedding: EmbeddingCfg = EmbeddingCfg()
    eval_batch_size: PosInt = 256  # forward passes of the refreshes and of the final assignment
    tsne_points: PosInt = 400  # points in each t-SNE snapshot (figure spl.f2)
    tsne_iterations: Annotated[int, Field(ge=250)] = 500
    device: Literal["auto", "cpu", "cuda"] = "auto"


class SPLAdviseParams(Strict):
    """The student (Algorithm 2)."""

    selection: Literal["spld", "official", "random"] = "spld"
    clusters: Literal["embedding", "pixels"] = "embedding"  # SPL-ADVisE / SPLD (k-means on raw pixels)
    k: PosInt = 8  # clusters per class when `clusters: pixels`
    start_fraction: Annotated[float, Field(gt=0, le=1)] = 0.8  # share admitted in the first paced epoch
    gamma: NonNegFloat = 1.0  # γ/λ in the first paced epoch
    beta1: Pace = 0.1  # pace: admitted share ×(1+β1) per epoch (official: K ×(1+β1))
    beta2: Pace = 0.1  # pace: γ/λ ×(1+β2) per epoch
    official_k: PosInt = 500  # K0 of `selection: official` (samples per cluster)
    fill: Literal["repeat", "none"] = "repeat"  # repeat: each epoch has n_train samples (same updates)
    loss_batch_size: PosInt = 500
    embedding: EmbeddingCfg | None = None  # must equal pretrain.spl_advise.embedding (YAML anchor)

    @model_validator(mode="after")
    def _needs_embedding(self) -> SPLAdviseParams:
        if self.selection != "random" and self.clusters == "embedding" and self.embedding is None:
            raise ValueError("embedding: required with clusters 'embedding'; give it the same block as "
                             "pretrain.spl_advise.embedding (a YAML anchor)")
        return self


# --------------------------------------------------------------------------- paths and checks


def pretrain_dir(workdir: Path, dataset: str) -> Path:
    return Path(workdir) / "data" / "pretrained" / "spl_advise" / dataset


def load_embedding_clusters(workdir: Path, emb: EmbeddingCfg, dataset: str, checksum: str) -> np.ndarray:
    """The pretrain stage's cluster of every prepared position, after checking its hash is current."""
    d = pretrain_dir(workdir, dataset)
    meta_path, npz = d / "meta.json", d / "clusters.npz"
    if not meta_path.is_file() or not npz.is_file():
        raise ConfigError(f"methods.spl_advise: embedding checkpoint missing: {meta_path} does not exist; "
                          f"{PRETRAIN_HINT} with {dataset!r} in pretrain.spl_advise.datasets")
    saved = json.loads(meta_path.read_text()).get("hash")
    want = emb.digest(dataset, checksum)
    if saved != want:
        raise ConfigError(f"methods.spl_advise: embedding checkpoint stale: {d} was trained with other "
                          f"settings or data (hash {saved} ≠ {want}); make methods.spl_advise.embedding "
                          f"equal pretrain.spl_advise.embedding and {PRETRAIN_HINT}")
    with np.load(npz) as z:
        return z["assign"]


# --------------------------------------------------------------------------- the student


class SPLAdvise(Method):
    """Self-paced selection by easiness (per-sample loss) and diversity (clusters), Algorithm 2."""

    name = "spl_advise"
    Params = SPLAdviseParams
    PretrainParams = PretrainParams

    @classmethod
    def preflight(cls, params: SPLAdviseParams, run, workdir) -> None:
        """A missing or stale embedding stops the stage before any run of the table trains."""
        if params.selection != "random" and params.clusters == "embedding":
            checksum = read_meta(Path(workdir) / "data", run.data.dataset)["checksum"]
            load_embedding_clusters(Path(workdir), params.embedding, run.data.dataset, checksum)

    def __init__(self, params: SPLAdviseParams, ctx: MethodContext):
        super().__init__(params, ctx)
        data = ctx.data
        self.clusters: torch.Tensor | None = None
        self.metrics: dict[str, float] = {}
        if params.selection == "random":
            return
        if params.clusters == "embedding":
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

    @torch.no_grad()
    def sample_losses(self, state: TrainState) -> torch.Tensor:
        """Cross-entropy of every training sample under the current model (eval mode, no augmentation)."""
        model, data, run = state.model, state.data, self.ctx.run
        was = model.training
        model.eval()
        out = torch.empty(data.n_train, device=data.device)
        bs = self.params.loss_batch_size
        amp = data.device.type == "cuda" and run.train.bf16
        for i in range(0, data.n_train, bs):
            x = data.to_input(data.train_x[i:i + bs], augment=False)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                logits = model(x)
            out[i:i + bs] = cross_entropy(logits, data.train_y[i:i + bs])
        model.train(was)
        return out

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
            losses = self.sample_losses(state)
            ratio = p.gamma * (1 + p.beta2) ** (epoch - 1)
            lam, gam = pace_thresholds(losses, self.clusters, fraction, ratio)
            mask = spld_select(losses.double(), self.clusters, lam, gam)
            if not bool(mask.any()):  # all losses tied: nothing is strictly below λ
                mask = torch.ones_like(mask)
            self.metrics = {"spl_lambda": lam, "spl_gamma": gam, "spl_target_fraction": fraction}
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
        sel = self.select(epoch, state)
        bs = self.ctx.run.train.batch_size
        if sel is None:
            return state.data.batches(bs)
        return state.data.batches(bs, indices=self.epoch_indices(sel, state))

    def state_metrics(self) -> dict[str, float]:
        return dict(self.metrics)

    def state_dict(self) -> dict[str, Any]:
        return {"metrics": self.metrics}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.metrics = dict(state.get("metrics", {}))

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


class _Clock:
    """Exclusive wall and CPU seconds per named section (time in a nested section is not its parent's).
    The section "loop" is reported as "train": the Magnet-loss iterations without the refreshes in them."""

    def __init__(self):
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.stack: list[list] = []
        self.start = (time.perf_counter(), time.process_time())
        self.name = ""

    def __call__(self, name: str) -> _Clock:
        self.name = name
        return self

    def __enter__(self) -> None:
        self.stack.append([self.name, time.perf_counter(), time.process_time(), 0.0, 0.0])

    def __exit__(self, *exc) -> None:
        name, w0, c0, child_w, child_c = self.stack.pop()
        dw, dc = time.perf_counter() - w0, time.process_time() - c0
        self.wall[name] = self.wall.get(name, 0.0) + dw - child_w
        self.cpu[name] = self.cpu.get(name, 0.0) + dc - child_c
        if self.stack:
            self.stack[-1][3] += dw
            self.stack[-1][4] += dc

    def report(self) -> dict[str, dict[str, float]]:
        return {key: {**{("train" if k == "loop" else k): v for k, v in d.items()}, "total": now - t0}
                for key, d, now, t0 in (("seconds", self.wall, time.perf_counter(), self.start[0]),
                                        ("cpu_seconds", self.cpu, time.process_time(), self.start[1]))}


def _embed(model: torch.nn.Module, data, positions: torch.Tensor, bs: int) -> np.ndarray:
    """Representations of the training items at `positions` (eval mode, batched)."""
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(positions), bs):
            idx = positions[i:i + bs]
            out.append(model(data.to_input(data.train_x[idx], augment=False)).float().cpu())
    model.train()
    return torch.cat(out).numpy()


def pretrain_embedding(pp: PretrainParams, dataset: str, workdir: Path) -> str:
    """Algorithm 1 for one dataset; writes model.pt, clusters.npz, tsne.npz and meta.json (last)."""
    from sklearn.manifold import TSNE

    from curriculab.config import DataCfg, RunConfig
    from curriculab.data.derive import subset_per_class
    from curriculab.data.loader import DeviceData
    from curriculab.data.prepared import atomic_write_bytes, atomic_write_json, read_meta
    from curriculab.engine.devices import resolve_device, seed_everything
    from curriculab.models import create_model

    cfg = pp.embedding.resolve(dataset)
    key = "pretrain.spl_advise.embedding"
    out = pretrain_dir(workdir, dataset)
    meta = read_meta(Path(workdir) / "data", dataset)
    digest = pp.embedding.digest(dataset, meta["checksum"])
    figure = {"tsne_points": pp.tsne_points, "tsne_iterations": pp.tsne_iterations}
    old = json.loads((out / "meta.json").read_text()) if (out / "meta.json").is_file() else {}
    if old.get("hash") == digest and old.get("figure") == figure and (out / "tsne.npz").is_file():
        return f"up to date ({digest})"
    classes = meta["classes"]
    if cfg.m - 1 > (classes - 1) * cfg.clusters:
        raise ConfigError(f"{key}.m: {cfg.m} clusters per minibatch need {cfg.m - 1} impostor clusters of "
                          f"other classes, but {dataset!r} has only ({classes}−1)·{cfg.clusters} = "
                          f"{(classes - 1) * cfg.clusters}; lower m or raise clusters")
    clock = _Clock()
    seed_everything(cfg.seed)
    device = resolve_device(pp.device)
    data = DeviceData(RunConfig(seed=cfg.seed, data=DataCfg(dataset=dataset)), Path(workdir) / "data", device)
    labels = data.train_y.cpu().numpy()
    pos = (subset_per_class(labels, cfg.subset_per_class, cfg.seed) if cfg.subset_per_class
           else np.arange(len(labels)))
    pos_t = torch.as_tensor(pos, device=device)
    rng = np.random.default_rng(cfg.seed)
    model = create_model(cfg.model.name, data.in_channels, cfg.dim, cfg.model.width, **cfg.model.kwargs)
    model = model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    index = ClusterIndex(labels[pos], classes, cfg.clusters, cfg.m, cfg.b, rng, cfg.seed)
    tsne_pos = pos_t[torch.as_tensor(np.sort(rng.permutation(len(pos))[:pp.tsne_points]), device=device)]
    mid = cfg.iterations // 2

    def snapshot() -> np.ndarray:
        with clock("snapshots"):
            return _embed(model, data, tsne_pos, pp.eval_batch_size)

    def refresh() -> None:
        with clock("refresh"):
            index.refresh(_embed(model, data, pos_t, pp.eval_batch_size))

    snaps = {0: snapshot()}
    refresh()
    curve, window = [], []
    with clock("loop"):
        for it in range(1, cfg.iterations + 1):
            idx, slot, cls_, _ = index.sample()
            x = data.to_input(data.train_x[pos_t[torch.as_tensor(idx, device=device)]], augment=False)
            slot_t, cls_t = torch.as_tensor(slot, device=device), torch.as_tensor(cls_, device=device)
            per = magnet_loss(model(x), slot_t, cls_t, cfg.alpha, cfg.variance, reduction="none")
            loss = per.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            index.update_losses(idx, per.detach().cpu().numpy())
            window.append(float(loss.detach()))
            if it % cfg.refresh == 0 or it == cfg.iterations:
                curve.append({"iteration": it, "loss": float(np.mean(window))})
                window = []
            if it == mid:
                snaps[mid] = snapshot()
            if it % cfg.refresh == 0 and it < cfg.iterations:
                refresh()
    snaps[cfg.iterations] = snapshot()

    with clock("final"):  # the final index: every training item of the prepared split, clustered per class
        reps = _embed(model, data, torch.arange(data.n_train, device=device), pp.eval_batch_size)
        assign_train, centroids = kmeans_per_class(reps, labels, cfg.clusters, classes, cfg.seed + 1,
                                                   what=f"{key}.clusters")
        assign = np.full(int(sum(meta["sizes"].values())), -1, np.int64)
        assign[data.train_pos] = assign_train

    with clock("tsne"):
        pts = len(tsne_pos)
        perplexity = float(min(30.0, max(2.0, (pts - 1) / 3)))
        coords = np.stack([TSNE(2, perplexity=perplexity, init="pca", max_iter=pp.tsne_iterations,
                                random_state=cfg.seed).fit_transform(snaps[s])
                           for s in sorted(snaps)]) if pts > 3 else np.zeros((len(snaps), pts, 2))
    timing = clock.report()

    out.mkdir(parents=True, exist_ok=True)
    (out / "meta.json").unlink(missing_ok=True)  # invalid until everything below is written
    import io

    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "settings": cfg.model_dump(mode="json"), "hash": digest,
                "in_channels": data.in_channels}, buf)
    atomic_write_bytes(out / "model.pt", buf.getvalue())
    buf = io.BytesIO()
    np.savez(buf, assign=assign, centroids=centroids, index_positions=data.train_pos[pos])
    atomic_write_bytes(out / "clusters.npz", buf.getvalue())
    buf = io.BytesIO()
    np.savez(buf, coords=coords.astype(np.float32), labels=labels[tsne_pos.cpu().numpy()],
             iterations=np.array(sorted(snaps)), positions=data.train_pos[tsne_pos.cpu().numpy()])
    atomic_write_bytes(out / "tsne.npz", buf.getvalue())
    atomic_write_json(out / "meta.json", {
        "hash": digest, "figure": figure, "dataset": dataset, "checksum": meta["checksum"],
        "settings": cfg.model_dump(mode="json"),
        "index_size": int(len(pos)), "train_size": int(data.n_train), "refreshes": index.refreshes,
        "loss_curve": curve, **timing, "device": str(device)})
    sec = timing["cpu_seconds"]
    share = sec["refresh"] / max(sec["refresh"] + sec["train"], 1e-9)
    return (f"{cfg.iterations} iterations, {index.refreshes} cluster refreshes ({share:.1%} of the training "
            f"CPU time), loss {curve[0]['loss']:.3f} → {curve[-1]['loss']:.3f}, "
            f"{timing['seconds']['total']:.1f}s")
