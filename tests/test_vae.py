"""The VAE task of CBS Table 6: ELBO, importance-weighted NLL, mutual information, active units."""

from __future__ import annotations

import math

import pytest
import torch

from curriculab.engine.task_settings import TASKS
from curriculab.engine.tasks import Task, get_task
from curriculab.evaluate.settings.vae import VAE
from curriculab.evaluate.vae import (
    VAETask,
    active_units,
    gaussian_kl,
    iw_nll,
    log_bernoulli,
    mutual_information,
    negative_elbo,
)
from curriculab.methods.base import Batch
from curriculab.registry import load_object


def test_bernoulli_and_kl_known_values():
    logits = torch.zeros(2, 1, 2, 2)  # p = 0.5 everywhere: log p(x|z) = 4 log 0.5 for any x in {0, 1}
    x = torch.tensor([[[[0.0, 1.0], [1.0, 0.0]]], [[[1.0, 1.0], [1.0, 1.0]]]])
    assert torch.allclose(log_bernoulli(logits, x), torch.full((2,), 4 * math.log(0.5)))
    assert gaussian_kl(torch.zeros(3, 5), torch.zeros(3, 5)).abs().max() == 0
    mu, logvar = torch.ones(1, 4), torch.full((1, 4), math.log(4.0))
    assert gaussian_kl(mu, logvar).item() == pytest.approx(4 * 0.5 * (1 + 4 - 1 - math.log(4)))
    nelbo, rec, kl = negative_elbo((logits, mu.expand(2, 4), logvar.expand(2, 4)), x, beta=10)
    assert torch.allclose(nelbo, rec + 10 * kl) and torch.allclose(rec, -log_bernoulli(logits, x))


def test_iw_nll_exact_when_the_posterior_is_the_prior():
    """q(z|x) = p(z), a decoder that ignores z: every weight is p(x), so the estimate is exact for any k."""
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(5, 1, 3, 3, generator=g) > 0.5).float()
    logits = torch.randn(1, 1, 3, 3, generator=g)

    def decode(z):
        return logits.expand(len(z), 1, 3, 3)

    exact = -log_bernoulli(logits.expand(5, 1, 3, 3), x)
    zeros = torch.zeros(5, 7)
    for k in (1, 13, 100):
        assert torch.allclose(iw_nll(x, zeros, zeros, decode, k, chunk=8, gen=g), exact, atol=1e-4)


def test_iw_nll_matches_quadrature_for_a_one_dimensional_model():
    """p(z) = N(0, 1), p(x=1|z) = sigmoid(2z - 0.5): log p(x) by quadrature; q is a mismatched proposal."""
    zs = torch.linspace(-10, 10, 200001, dtype=torch.float64)
    prior = torch.exp(-0.5 * zs**2) / math.sqrt(2 * math.pi)
    p1 = float(torch.trapezoid(prior * torch.sigmoid(2 * zs - 0.5), zs))
    x = torch.tensor([1.0, 0.0]).view(2, 1, 1, 1)
    exact = torch.tensor([-math.log(p1), -math.log(1 - p1)])

    def decode(z):
        return (2 * z - 0.5).view(-1, 1, 1, 1)

    mu = torch.tensor([[0.4], [-0.3]])
    logvar = torch.full((2, 1), math.log(0.8**2))
    g = torch.Generator().manual_seed(1)
    est = iw_nll(x, mu, logvar, decode, 20000, chunk=4000, gen=g)
    assert torch.allclose(est, exact.float(), atol=5e-3)
    one = torch.stack([iw_nll(x, mu, logvar, decode, 1, gen=g) for _ in range(4000)]).mean(0)  # = −ELBO ≥ NLL
    assert (one > est + 1e-3).all()


def test_mutual_information_known_cases():
    g = torch.Generator().manual_seed(0)
    # K equally likely, well separated posteriors: I(x; z) = H(x) = log K
    # (one z per row: Monte-Carlo noise of the mean of log q(z|x), std ≈ sqrt(d / 2N) ≤ 0.016 here)
    for k in (2, 5):
        mu = (torch.arange(k).float() * 50).repeat_interleave(1000)[:, None]
        logvar = torch.zeros_like(mu)
        assert mutual_information(mu, logvar, g) == pytest.approx(math.log(k), abs=0.05)
    # a posterior that ignores x: I = 0
    mu, logvar = torch.zeros(4000, 2), torch.full((4000, 2), -1.0)
    assert abs(mutual_information(mu, logvar, g)) < 0.05
    # bounded by log N
    mu = torch.randn(50, 8, generator=g) * 100
    assert mutual_information(mu, torch.full((50, 8), -6.0), g) <= math.log(50) + 1e-6


def test_mutual_information_of_a_gaussian_channel():
    """x ~ N(0, 1), q(z|x) = N(x, s²): I = 1/2 · log(1 + 1/s²) (for N large enough that log N is no cap)."""
    g = torch.Generator().manual_seed(3)
    n, d, s2 = 4000, 1, 1.0
    mu = torch.randn(n, d, generator=g)
    est = mutual_information(mu, torch.full((n, d), math.log(s2)), g)
    assert est == pytest.approx(d / 2 * math.log(1 + 1 / s2), abs=0.05)


def test_active_units_counts_dimensions_whose_mean_varies():
    g = torch.Generator().manual_seed(0)
    mu = torch.zeros(500, 6)
    mu[:, 0] = torch.randn(500, generator=g)  # var ≈ 1
    mu[:, 1] = 0.2 * torch.randn(500, generator=g)  # var ≈ 0.04
    mu[:, 2] = 0.05 * torch.randn(500, generator=g)  # var ≈ 0.0025: inactive
    mu[:, 3] = 3.0  # constant: inactive
    assert active_units(mu) == 2
    assert active_units(mu, threshold=0.001) == 3


def test_vae_task_loss_evaluate_and_input_check():
    task = get_task("vae", {"beta": 2.0})
    assert isinstance(task, VAETask) and task.primary == "nelbo" and not task.higher_is_better
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 4, 4, generator=g)
    out = (torch.randn(4, 1, 4, 4, generator=g), torch.randn(4, 3, generator=g),
           torch.randn(4, 3, generator=g))
    loss = task.loss(out, Batch(x, torch.zeros(4, dtype=torch.long), torch.arange(4)))
    assert torch.allclose(loss, -log_bernoulli(out[0], x) + 2 * gaussian_kl(out[1], out[2]))
    assert task.correct(out, torch.zeros(4)).item() == 0
    halves = iter([tuple(o[:2] for o in out), tuple(o[2:] for o in out)])
    res = task.evaluate(lambda _x: next(halves), [(x[:2], None), (x[2:], None)])
    assert res["loss"] == res["nelbo"] == pytest.approx(float(loss.mean()), rel=1e-5)
    assert res["rec"] + 2 * res["kl"] == pytest.approx(res["nelbo"], rel=1e-5)
    with pytest.raises(ValueError, match="normalize: false"):
        get_task("vae", {}).loss(out, Batch(x - 0.5, torch.zeros(4, dtype=torch.long), torch.arange(4)))


def test_every_declared_task_is_the_class_its_declaration_names():
    """engine/task_settings.py and evaluate/settings (what validation and the tables read) against the classes."""
    assert {"classification", "vae"} <= set(TASKS.names())
    for name in TASKS.names():
        s = TASKS.get(name)
        cls = load_object(s.impl)
        assert cls.settings is s and cls.name == name and cls.Params is s.Params, name
    with pytest.raises(TypeError, match="task 'vae' is declared at curriculab.evaluate.vae:VAETask"):
        type("Elsewhere", (Task,), {"settings": VAE})


def test_vae_fit_with_cbs_on_every_conv_and_transposed_conv(workdir):
    from curriculab.config import RunConfig
    from curriculab.engine.loop import fit, load_trained
    from curriculab.methods.cbs import GaussianSmoothing

    run = RunConfig.model_validate({
        "task": "vae", "task_params": {"nll_samples": 8, "eval_limit": 60},
        "data": {"dataset": "digits", "augment": {"normalize": False}},
        "model": {"name": "vae", "width": 0.25, "kwargs": {"latent": 6}},
        "train": {"epochs": 2, "batch_size": 128, "device": "cpu",
                  "optimizer": {"name": "adam", "lr": 0.003}},
        "methods": {"cbs": {"transposed": True, "period": 1.0, "decay": 0.5}}})
    rec = fit(run, workdir / "vae", workdir)
    f = rec["final"]
    assert {"nll", "mi", "au", "test_nelbo", "test_nelbo_at_best_val"} <= set(f)
    assert 0 < f["nll"] < 64 * math.log(2) * 4 and 0 <= f["au"] <= 6 and f["mi"] <= math.log(60) + 1e-6
    assert f["eval_images"] == 60 and rec["history"][-1]["sigma"] == 0.5
    assert rec["history"][1]["val_nelbo"] < rec["history"][0]["val_nelbo"]  # it learns
    model, _, _ = load_trained(run, workdir / "vae", workdir, "cpu")
    assert sum(isinstance(m, GaussianSmoothing) for m in model.modules()) == 4
