"""The phase methods' batches, loss and accuracy on real data, phase by phase: CSA's cascade, GCSA's gradual
mixing, mixup and SamplePairing (thesis ch. 3). Mutation testing found each of these untested."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from curriculab.methods.base import Batch
from curriculab.methods.sum_augmentation import active_groups, gcc, sum_bce, sum_mix, topk_correct

SMALL = {"data": {"subset_per_class": 3}, "train": {"epochs": 50, "batch_size": 8}}


def _method(micro, name: str, params: dict):
    """One phase method on 30 digits (batch 8), and its TrainState."""
    return micro.method(SMALL, {"methods": {name: params}})


def _plain_batches(data, bs: int) -> list[Batch]:
    """The shuffled batches that `data.batches` gives from the generator's current state, which it keeps."""
    g = data.gen.get_state()
    out = list(data.batches(bs))
    data.gen.set_state(g)
    return out


def _outputs(batch: Batch) -> torch.Tensor:
    return torch.randn(len(batch.x), 10, generator=torch.Generator().manual_seed(len(batch.index)))


@pytest.mark.parametrize("loss", ["thesis", "official"])
def test_csa_mixes_k_images_per_sample_until_k_1(micro, loss):
    m, state = _method(micro, "csa", {"cascade": [4, 2, 1], "loss": loss})
    data = state.data
    for i, k in enumerate([4, 2, 1]):
        m.i = i
        m.on_epoch_start(state)
        assert m.state_metrics()["sa_k"] == k
        plain = _plain_batches(data, 8)
        batches = m.train_batches(0, state)
        if k == 1:  # clean training: the task's batches, loss and accuracy
            assert batches is None
            b = plain[0]
            assert m.loss(_outputs(b), b, state) is None and m.train_correct(_outputs(b), b, state) is None
            continue
        batches = list(batches)
        assert len(batches) == len(plain)
        for b, p in zip(batches, plain, strict=True):
            used = len(p.index) // k * k
            x, y = sum_mix(p.x[:used], F.one_hot(p.y[:used], 10).float(), k)
            assert torch.equal(b.x, x) and torch.equal(b.y, y) and torch.equal(b.index, p.index[:used])
            z = _outputs(b)
            assert torch.equal(m.loss(z, b, state), sum_bce(z, y, k, loss))
            assert torch.equal(m.train_correct(z, b, state), topk_correct(z, data.train_y[b.index].reshape(k, -1)))
    assert not torch.equal(sum_bce(z, y, 2, "thesis"), sum_bce(z, y, 2, "official"))  # the two losses differ


@pytest.mark.parametrize("loss", ["thesis", "official"])
def test_gcsa_mixes_with_the_gcc_weights_of_each_step(micro, loss):
    n, epochs = 4, 2
    m, state = _method(micro, "gcsa", {"start": n, "cascade_epochs": epochs, "t_update": "step", "uneven": "drop",
                                       "loss": loss})
    data, steps = state.data, 4  # ⌈30 / 8⌉
    seen_k = set()
    for epoch in range(epochs):
        state.epoch = epoch
        m.on_epoch_start(state)
        plain = _plain_batches(data, 8)
        for i, (b, p) in enumerate(zip(m.train_batches(epoch, state), plain, strict=True)):
            t = (epoch * steps + i) / (epochs * steps)
            assert m.t == t
            k = active_groups(n, t)
            used = len(p.index) // k * k
            x, y = sum_mix(p.x[:used], F.one_hot(p.y[:used], 10).float(), k, gcc(n, t)[:k].float())
            assert torch.equal(b.x, x) and torch.equal(b.y, y) and torch.equal(b.index, p.index[:used])
            metrics = m.state_metrics()
            assert metrics["sa_t"] == t and metrics["sa_k"] == pytest.approx(n - t * (n - 1))
            z = _outputs(b)
            if k > 1:
                assert torch.equal(m.loss(z, b, state), sum_bce(z, y, k, loss))
                assert torch.equal(m.train_correct(z, b, state),
                                   topk_correct(z, data.train_y[b.index].reshape(k, -1)))
            else:
                assert m.loss(z, b, state) is None and m.train_correct(z, b, state) is None
            seen_k.add(k)
    assert seen_k == {4, 3, 2}  # t runs over [0, 1) in 8 steps
    m.i, m.start = 1, epochs  # the clean phase: the task's batches, t = 1
    state.epoch = epochs
    m.on_epoch_start(state)
    assert m.train_batches(epochs, state) is None and m.state_metrics()["sa_t"] == 1.0


def test_mixup_mixes_in_its_phase_only_with_the_runs_beta_draws(micro, monkeypatch):
    from curriculab.methods import mixup as mod

    m, state = _method(micro, "mixup", {"alpha": 0.4})
    calls = []
    orig = mod.mixup_batch
    monkeypatch.setattr(mod, "mixup_batch", lambda b, c, lam, perm: calls.append((lam, perm)) or orig(b, c, lam, perm))
    m.on_epoch_start(state)
    batches = list(m.train_batches(0, state))
    assert len(batches) == len(calls) == 4 and m.state_metrics()["sa_k"] == 2
    want = np.random.default_rng(m.ctx.run.seed).beta(0.4, 0.4, 4)  # one λ per batch, from the run's seed
    assert [lam for lam, _ in calls] == pytest.approx(want.tolist())
    for b, (_, perm) in zip(batches, calls, strict=True):
        assert sorted(perm.tolist()) == list(range(len(b.index)))
        assert b.y.shape == (len(b.index), 10) and torch.allclose(b.y.sum(1), torch.ones(len(b.index)))
    m.i = 1  # the clean phase
    m.on_epoch_start(state)
    assert m.train_batches(1, state) is None and m.state_metrics()["sa_k"] == 1


def test_sample_pairing_averages_with_augmented_random_partners_in_its_phase_only(micro):
    m, state = _method(micro, "sample_pairing", {"warmup": 1, "on_epochs": 1, "off_epochs": 1})
    data = state.data
    assert m.state_metrics()["sp_on"] == 0.0  # before any epoch
    data.train_x = torch.arange(30, dtype=torch.uint8).view(30, 1, 1, 1).expand(30, *data.train_x.shape[1:])
    flags = []
    data.to_input = lambda x, augment: flags.append(augment) or x.float()  # image i: every pixel is i
    partners = []
    for epoch in range(40):  # odd epochs pair (warm-up 1, then on 1, off 1)
        state.epoch = epoch
        m.on_epoch_start(state)
        batches = m.train_batches(epoch, state)
        assert (batches is not None) == (epoch % 2 == 1) and m.state_metrics()["sp_on"] == float(epoch % 2)
        assert m.state_metrics()["sa_k"] == 2  # two images per sample, as mixup
        for b in batches or []:
            assert torch.equal(b.y, data.train_y[b.index])
            partners += (b.x[:, 0, 0, 0] * 2 - b.index.float()).long().tolist()  # (i + j) / 2 → j
    assert set(partners) == set(range(30)) and len(partners) == 20 * 30  # any image, item 0 too
    assert flags == [True] * (20 * 4 * 2)  # each pairing batch and its partners, both augmented
    # the partners come from the run's generator, not torch's global one
    g = torch.Generator().manual_seed(1)
    data.gen.manual_seed(1)
    torch.manual_seed(5)
    state.epoch = 1
    m.on_epoch_start(state)
    first = next(iter(m.train_batches(1, state)))
    data.gen.set_state(g.get_state())
    torch.manual_seed(6)
    again = next(iter(m.train_batches(1, state)))
    assert torch.equal(first.x, again.x)
    m.i, m.start = 1, 40  # the clean phase pairs no more, whatever the on/off schedule says
    state.epoch = 41
    m.on_epoch_start(state)
    assert m.train_batches(41, state) is None and m.state_metrics()["sp_on"] == 0.0
