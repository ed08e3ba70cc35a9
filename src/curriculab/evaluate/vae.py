"""The VAE task of CBS Table 6: ELBO training, and NLL / mutual information / active units at the end.

The decoder is Bernoulli over pixel intensities in [0, 1]: log p(x|z) = −BCE(logits, x) summed over
pixels. Inputs must be the raw intensities, so VAE tables set `data.augment.normalize: false` (the
device loader then only divides by 255); the loss checks this on its first batch. On grey-level data
(digits, Fashion-MNIST) this Bernoulli likelihood is not a normalised density, so the NLL compares
rows with each other, not with the paper's binarised-MNIST nats.

Metrics (paper appendix A, following Burda et al. 2015 and He et al. 2019):
- NLL: importance-weighted bound with k samples, −log (1/k) Σ_k p(x, z_k) / q(z_k|x), z_k ~ q(z|x).
- Mutual information I_q(x; z) = E_x E_q(z|x)[log q(z|x) − log q(z)] (Hoffman & Johnson 2016), with
  the aggregate posterior q(z) = (1/N) Σ_j q(z|x_j) over the N evaluated images, one z per image (the
  estimator of He et al.'s `calc_mi`); it is at most log N.
- Active units: #{d : Cov_x(E_q(z|x)[z_d]) > threshold} (Burda et al. 2015), threshold 0.01.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from curriculab.engine.tasks import Task
from curriculab.evaluate.settings.vae import VAE, VAEParams
from curriculab.methods.base import Batch
from curriculab.models.layers import InputTransform

LOG2PI = math.log(2 * math.pi)


def log_bernoulli(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x|z) per sample: −BCE summed over every non-batch dimension (logits (..., C, H, W))."""
    x = x.expand_as(logits)
    bce = F.binary_cross_entropy_with_logits(logits.float(), x.float(), reduction="none")
    return -bce.flatten(-3).sum(-1)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) || N(0, I)) per sample, summed over latent dimensions."""
    mu, logvar = mu.float(), logvar.float()
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(-1)


def log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; μ, diag σ²), summed over the last dimension (broadcasting)."""
    return -0.5 * (((z - mu) ** 2) / logvar.exp() + logvar + LOG2PI).sum(-1)


def negative_elbo(outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor], x: torch.Tensor, beta: float = 1.0
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample (−ELBO_β, reconstruction −log p(x|z), KL), one z per sample; β = 1 is the VAE."""
    logits, mu, logvar = outputs
    rec = -log_bernoulli(logits, x)
    kl = gaussian_kl(mu, logvar)
    return rec + beta * kl, rec, kl


@torch.no_grad()
def iw_nll(x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, decode: Callable, k: int, chunk: int = 64,
           gen: torch.Generator | None = None) -> torch.Tensor:
    """Per-image importance-weighted NLL with k samples from q(z|x) = N(μ, σ²) (Burda et al. 2015)."""
    mu, logvar = mu.float(), logvar.float()
    n, d = mu.shape
    logw = torch.empty(n, k, device=x.device)
    for s in range(0, k, chunk):
        m = min(chunk, k - s)
        eps = torch.randn(m, n, d, device=x.device, generator=gen)
        z = mu + eps * (0.5 * logvar).exp()  # (m, n, d)
        logits = decode(z.reshape(m * n, d)).reshape(m, n, *x.shape[1:])
        log_px_z = log_bernoulli(logits, x.unsqueeze(0))
        log_pz = -0.5 * (z.pow(2) + LOG2PI).sum(-1)
        log_qz = log_normal(z, mu, logvar)
        logw[:, s:s + m] = (log_px_z + log_pz - log_qz).T
    return -(torch.logsumexp(logw, 1) - math.log(k))


def mutual_information(mu: torch.Tensor, logvar: torch.Tensor, gen: torch.Generator | None = None,
                       chunk: int = 1024) -> float:
    """I_q(x; z) = E[log q(z|x)] − E[log q(z)], q(z) the aggregate posterior of the N rows (He et al. 2019)"""
    mu, logvar = mu.float(), logvar.float()
    n, d = mu.shape
    neg_entropy = (-0.5 * d * LOG2PI - 0.5 * (1 + logvar).sum(-1)).mean()  # E_q(z|x) log q(z|x), exact
    z = mu + torch.randn(n, d, device=mu.device, generator=gen) * (0.5 * logvar).exp()
    log_qz = torch.empty(n, device=mu.device)
    for s in range(0, n, chunk):  # log q(z_i) = logsumexp_j log q(z_i|x_j) − log N
        dens = log_normal(z[s:s + chunk, None, :], mu[None], logvar[None])  # (chunk, N)
        log_qz[s:s + chunk] = torch.logsumexp(dens, 1) - math.log(n)
    return float(neg_entropy - log_qz.mean())


def active_units(mu: torch.Tensor, threshold: float = 0.01) -> int:
    """Number of latent dimensions whose posterior mean varies across x: Cov_x(E_q[z_d]) > threshold."""
    return int((mu.float().var(0, unbiased=True) > threshold).sum())


def _vae(model: nn.Module) -> tuple[Callable, Callable]:
    """encode/decode of a (possibly wrapped or compiled) VAE; an input transform (e.g. a blur) is kept."""
    model = getattr(model, "_orig_mod", model)
    if isinstance(model, InputTransform):
        net, pre = model.net, model.transform
        return (lambda x: net.encode(pre(x))), net.decode
    return model.encode, model.decode


class VAETask(Task):
    """Outputs (logits, μ, log σ²); loss −ELBO_β (β-VAE when β > 1); primary metric −ELBO (lower is better)"""

    settings = VAE  # evaluate/settings/vae.py

    def __init__(self, params: VAEParams):
        super().__init__(params)
        self._checked = False

    def _check(self, x: torch.Tensor) -> None:
        if not self._checked:
            lo, hi = float(x.min()), float(x.max())
            if lo < -1e-6 or hi > 1 + 1e-6:
                raise ValueError(f"task 'vae' needs inputs in [0, 1] for its Bernoulli decoder, got "
                                 f"[{lo:.3g}, {hi:.3g}]: set data.augment.normalize: false in the table")
            self._checked = True

    def loss(self, outputs: Any, batch: Batch) -> torch.Tensor:
        self._check(batch.x)
        return negative_elbo(outputs, batch.x, self.params.beta)[0]

    def correct(self, outputs: Any, y: torch.Tensor) -> torch.Tensor:
        return torch.zeros((), device=y.device)

    @torch.no_grad()
    def evaluate(self, predict, batches) -> dict[str, float]:
        """Per-image −ELBO_β (`loss` and `nelbo`), reconstruction term and KL, one posterior sample each."""
        tot, n = None, 0
        for x, _ in batches:
            self._check(x)
            nelbo, rec, kl = negative_elbo(predict(x), x, self.params.beta)
            part = torch.stack([nelbo.sum(), rec.sum(), kl.sum()])
            tot = part if tot is None else tot + part
            n += len(x)  # counted on the host: one device read per evaluation, at the end
        nelbo, rec, kl = tot.tolist()
        return {"loss": nelbo / n, "nelbo": nelbo / n, "rec": rec / n, "kl": kl / n}

    @torch.no_grad()
    def final_metrics(self, model: nn.Module, data, predict, run) -> dict[str, float]:
        """NLL (k-sample IW), MI and active units on the test split (first `eval_limit` images)."""
        p = self.params
        was = model.training
        model.eval()
        encode, decode = _vae(model)
        gen = torch.Generator(device=data.device)
        gen.manual_seed(10_000 + run.seed)
        x_all = data.test[0][: p.eval_limit] if p.eval_limit else data.test[0]
        nll, mus, logvars = [], [], []
        for i in range(0, len(x_all), p.batch_size):
            x = data.to_input(x_all[i:i + p.batch_size], augment=False)
            self._check(x)
            mu, logvar = encode(x)
            nll.append(iw_nll(x, mu, logvar, decode, p.nll_samples, gen=gen))
            mus.append(mu.float())
            logvars.append(logvar.float())
        mu, logvar = torch.cat(mus), torch.cat(logvars)
        model.train(was)
        return {"nll": float(torch.cat(nll).mean()), "mi": mutual_information(mu, logvar, gen),
                "au": float(active_units(mu, p.au_threshold)), "eval_images": float(len(mu))}
