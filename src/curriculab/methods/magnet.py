"""The stochastic Magnet loss (Rippel et al. 2016; SPL-ADVisE eq. 1) and its per-class k-means cluster index
with the neighbourhood sampler (SPL-ADVisE Algorithm 1)."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from curriculab.config import ConfigError
from curriculab.methods.settings.spl_advise import Variance

# --------------------------------------------------------------------------- Magnet loss (eq. 1)


def magnet_loss(r: torch.Tensor, cluster: torch.Tensor, cls: torch.Tensor, alpha: float,
                variance: Variance = "rippel", reduction: Literal["mean", "none"] = "mean",
                eps: float = 1e-8, slots: int | None = None) -> torch.Tensor:
    """Stochastic Magnet loss, eq. (1): mean over samples of
    max(0, −log(exp(−‖r−μ_own‖²/2σ² − α) / Σ_{μ: C(μ)≠C(r)} exp(−‖r−μ‖²/2σ²))).

    `cluster` labels each sample's cluster slot in the batch (any ints), `cls` its class; μ_m is the batch
    mean of slot m. σ² = (1/(n−1)) Σ‖r − μ_own‖² (Rippel et al. 2016, `variance="rippel"`); `"squared"`
    uses that quantity squared, as the SPL-ADVisE text (σ = variance, then 1/2σ²) and its official code do.
    Computed as a log-sum-exp; σ² is floored at `eps`, so tight clusters give finite values. A sample with no
    cluster of another class in the batch has loss 0 (the ratio is +∞ before the hinge).

    `slots`: the caller's promise that `cluster` holds 0 … slots−1, each slot of one class (the sampler's
    batches). The slots are then not recomputed and the classes not checked: no device sync.
    """
    if variance not in ("rippel", "squared"):
        raise ValueError(f"variance must be 'rippel' or 'squared', got {variance!r}")
    if r.dtype in (torch.float16, torch.bfloat16):
        r = r.float()
    n = r.shape[0]
    if slots is None:
        uniq, inv = torch.unique(cluster, return_inverse=True)
        m = len(uniq)
    else:
        inv, m = cluster, slots
    # slot membership as a matrix: sums by matmul are deterministic on CUDA (bincount / index_add are not)
    member = (inv[:, None] == torch.arange(m, device=r.device)).to(r.dtype)  # (n, m)
    counts = member.sum(0)
    means = (member.T @ r) / counts[:, None]
    slot_cls = ((member.T @ cls.to(r.dtype)) / counts).round().to(cls.dtype)  # mixed: some sample differs
    if slots is None and bool((slot_cls[inv] != cls).any()):
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


def magnet_step(model: torch.nn.Module, opt: torch.optim.Optimizer, index: ClusterIndex, data, alpha: float,
                variance: Variance, rows: np.ndarray | None = None) -> np.ndarray:
    """One Magnet-loss iteration on a neighbourhood minibatch of `index` (Algorithm 1); returns the
    per-sample losses, which the index keeps for its cluster losses. `rows` maps index positions to rows of
    `data`'s training set (all rows when None). One upload and one read per iteration."""
    idx, slot, cls_, clusters = index.sample()
    batch = torch.as_tensor(np.stack([idx if rows is None else rows[idx], slot, cls_]), device=data.device)
    x = data.to_input(data.train_x[batch[0]], augment=False)
    per = magnet_loss(model(x), batch[1], batch[2], alpha, variance, reduction="none", slots=len(clusters))
    opt.zero_grad(set_to_none=True)
    per.mean().backward()
    opt.step()
    losses = per.detach().cpu().numpy()
    index.update_losses(idx, losses)
    return losses
