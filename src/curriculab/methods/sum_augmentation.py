"""Sum Augmentation (Simionescu 2020, thesis ch. 3): mix K training images into one, and its test-time form.

- `sum_mix`: §3.3, batch_new[i] = Σ_j w_j · batch[i + j·⌊m/K⌋], targets the same weighted sum of one-hots
  (w_j = 1/K: the class counts / K). The batch is already a random permutation of the training set, so
  pairing groups by position is a random grouping; the official code splits a random permutation of
  the batch instead, which is the same in distribution. The thesis prints the GCSA batch formula with a
  division by C[i]: a typesetting error; the official code multiplies by the weights, which sum to 1.
- `gcc`: the Gradually Cascading Coefficients, eqs. (3.1)-(3.6).
- `sum_bce`: the thesis' loss, binary cross-entropy divided by K (`loss: official`: the official code's
  `binary_cross_entropy_with_logits` mean-reduced, no division).
- `ttsa_mix` / `ttsa_predict`: Test-Time Sum Augmentation (§3.6), one forward over C × batch.

The methods that train with these (SA, CSA, GCSA) are here and in `methods/cascading.py`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from curriculab.methods.base import Batch, Method, MethodContext, TrainState
from curriculab.methods.settings.sum_augmentation import SumAugmentationParams, TTSAParams, check_k

__all__ = ["sum_mix", "gcc", "sum_bce", "topk_correct", "ttsa_mix", "ttsa_predict",
           "TTSAParams", "SumAugmentation", "TestTimeSumAugmentation", "check_k"]


# --------------------------------------------------------------------------- the functions


def sum_mix(x: torch.Tensor, targets: torch.Tensor, k: int,
            weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """m samples → m // k: x_new[i] = Σ_j w_j · x[i + j·(m//k)], targets likewise (§3.3; w_j = 1/k by default)."""
    if k < 1:
        raise ValueError(f"sum_mix: k must be >= 1, got {k}")
    g = x.shape[0] // k
    if g == 0:
        raise ValueError(f"sum_mix: a batch of {x.shape[0]} cannot make groups of k = {k}")
    w = torch.full((k,), 1.0 / k) if weights is None else torch.as_tensor(weights)[:k]
    xs = x[: g * k].reshape(k, g, *x.shape[1:])
    ts = targets[: g * k].reshape(k, g, *targets.shape[1:])
    x_new = torch.tensordot(w.to(x.device, x.dtype), xs, dims=1)
    t_new = torch.tensordot(w.to(targets.device, torch.float32), ts.float(), dims=1)
    return x_new, t_new


def gcc(n: int, t: float) -> torch.Tensor:
    """GCC_n(t), eqs. (3.1)-(3.6): n weights summing to 1, (1/n, …) at t = 0 → (1, 0, …) at t = 1; float64."""
    if n < 1:
        raise ValueError(f"gcc: n must be >= 1, got {n}")
    t = float(t)
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"gcc: t must lie in [0, 1], got {t}")
    out = torch.zeros(n, dtype=torch.float64)
    if n == 1 or t >= 1.0:  # t = 1: eq. 3.2's denominator (n-k-1) is 0; the limit is (1, 0, …, 0)
        out[0] = 1.0
        return out
    k = min(math.floor(t * (n - 1)), n - 2)  # (3.1); the min guards rounding just below t = 1
    a = n - k - 1  # the "main" coefficients
    centroid = 1 / (n - k) + (t * (n - 1) - k) / ((n - k) * a)  # (3.2)
    remainder = 1 - centroid * a  # (3.3)
    eps = remainder * (t - k / (n - 1)) / (n - 1)  # (3.4)
    out[:a] = centroid + eps / a  # (3.6)
    out[a] = remainder - eps
    return out


def active_groups(n: int, t: float) -> int:
    """K = n - k at t (eq. 3.1): the groups with a non-zero weight (the last one is being reduced)."""
    return 1 if t >= 1.0 else n - min(math.floor(t * (n - 1)), n - 2)


def sum_bce(outputs: torch.Tensor, targets: torch.Tensor, k: float, mode: str = "thesis") -> torch.Tensor:
    """Per-sample BCE-with-logits against the mixed targets, mean over classes; ÷ K for the thesis (§3.3)."""
    per = F.binary_cross_entropy_with_logits(outputs.float(), targets, reduction="none").mean(1)
    return per / k if mode == "thesis" else per


def topk_correct(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Of the K labels (K, g) of each mixed sample, how many are among its top-K predictions (official code)."""
    k, _ = labels.shape
    counts = F.one_hot(labels.T, outputs.shape[1]).sum(1).float()  # (g, classes)
    top = outputs.detach().float().topk(min(k, outputs.shape[1]), 1).indices
    hit = torch.zeros_like(counts).scatter_(1, top, 1.0)
    return torch.minimum(hit, counts).sum()


def ttsa_mix(x: torch.Tensor, randoms: torch.Tensor, lam: float = 1.0) -> torch.Tensor:
    """§3.6: Aug = λ/K · x + Σ_{j<K-1} 1/(Kλ) · r_j for each of C draws; randoms (C, K-1, b, …) → (C·b, …)."""
    c, km1 = randoms.shape[:2]
    k = km1 + 1
    mixed = (lam / k) * x.unsqueeze(0) + randoms.sum(1) / (k * lam)
    return mixed.reshape(c * x.shape[0], *x.shape[1:])


def ttsa_predict(model: nn.Module, x: torch.Tensor, randoms: torch.Tensor, lam: float = 1.0) -> torch.Tensor:
    """Log of the mean softmax over the C mixes (§3.6 step 3), from one forward pass over C × batch."""
    c, b = randoms.shape[0], x.shape[0]
    probs = model(ttsa_mix(x, randoms, lam)).float().softmax(1).reshape(c, b, -1).mean(0)
    return probs.clamp_min(1e-12).log()


class TTSASampler:
    """Random images for TTSA from a split of the run's data, drawn with the method's own generator."""

    def __init__(self, p: TTSAParams, data, seed: int):
        self.p, self.data = p, data
        self.images = data.train_x if p.pool == "train" else data.test[0]
        self.gen = torch.Generator(device=data.device)
        self.gen.manual_seed(seed + p.seed)

    def draw(self, b: int) -> torch.Tensor:
        idx = torch.randint(0, len(self.images), (self.p.c * (self.p.k - 1) * b,), generator=self.gen,
                            device=self.data.device)
        r = self.data.to_input(self.images[idx], augment=False)
        return r.reshape(self.p.c, self.p.k - 1, b, *r.shape[1:])

    def predict(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return ttsa_predict(model, x, self.draw(x.shape[0]).to(x.dtype), self.p.lam)


# --------------------------------------------------------------------------- methods


def mixed_batches(data, batch_size: int, k: int, weights: torch.Tensor | None = None) -> Iterator[Batch]:
    """One epoch of sum-augmented batches: each shuffled batch of m → m // k mixed samples.

    The last, smaller batch is mixed too, its m mod k leftover dropped (the official code skips it);
    `index` keeps the positions of the images that were mixed.
    """
    for b in data.batches(batch_size):
        used = (len(b.index) // k) * k
        if used == 0:
            continue
        onehot = F.one_hot(b.y[:used], data.classes).float()
        x, y = sum_mix(b.x[:used], onehot, k, weights)
        yield Batch(x, y, b.index[:used])


class SumAugmentation(Method):
    """SA at a fixed K for every epoch (§3.3): the building block of CSA and GCSA, and the speed bench's subject."""

    name = "sum_augmentation"

    def __init__(self, params: SumAugmentationParams, ctx: MethodContext):
        super().__init__(params, ctx)
        self.k = params.k

    def train_batches(self, epoch: int, state: TrainState) -> Iterator[Batch] | None:
        return mixed_batches(state.data, self.ctx.run.train.batch_size, self.k) if self.k > 1 else None

    def loss(self, outputs: torch.Tensor, batch: Batch, state: TrainState) -> torch.Tensor | None:
        return sum_bce(outputs, batch.y, self.k, self.params.loss) if self.k > 1 else None

    def train_correct(self, outputs: torch.Tensor, batch: Batch, state: TrainState) -> torch.Tensor | None:
        if self.k == 1:
            return None
        return topk_correct(outputs, state.data.train_y[batch.index].reshape(self.k, -1))

    def state_metrics(self) -> dict[str, float]:
        return {"sa_k": float(self.k)}


class TestTimeSumAugmentation(Method):
    """TTSA as the run's `predict` hook (§3.6): every evaluation averages the softmax of C mixes."""

    name = "ttsa"
    contract_params = {"c": 2}

    def __init__(self, params: TTSAParams, ctx: MethodContext):
        super().__init__(params, ctx)
        self.sampler = TTSASampler(params, ctx.data, ctx.run.seed)

    def predict(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return self.sampler.predict(model, x)

    def state_dict(self) -> dict[str, Any]:
        return {"gen": self.sampler.gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "gen" in state:
            self.sampler.gen.set_state(state["gen"].cpu())
