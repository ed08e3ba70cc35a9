"""POA: batched scores = looped scores, scoring leaves model/optimiser/BN bit-identical, the data loader, bad input."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
import yaml

from curriculab.config import ConfigError, RunConfig
from curriculab.engine.batched import SGDConfig, trial_steps, vmap_net
from curriculab.engine.loop import fit
from curriculab.methods.poa import candidate_losses, loss_deltas
from curriculab.models import create_model
from curriculab.models.toy import PlainBatchNorm2d
from curriculab.project import load_params
from curriculab.settings_file import load_yaml
from tests.conftest import ROOT


def _trained(nesterov=True, wd=5e-4):
    """A small CNN with BatchNorm after two real SGD steps (so momentum and BN buffers are not trivial)."""
    torch.manual_seed(0)
    model = create_model("small_cnn", 1, 10, 0.25)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=nesterov, weight_decay=wd)
    for _ in range(2):
        x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model, opt


def _looped(model, opt, x, y, external, relative, train_mode):
    """The naive reference: deepcopy, one real step, score, throw the copy away."""
    out = []
    for k in range(len(x)):
        m = copy.deepcopy(model)
        o = torch.optim.SGD(m.parameters(), **{k_: v for k_, v in opt.defaults.items() if k_ in
                                                ("lr", "momentum", "nesterov", "weight_decay")})
        o.load_state_dict(copy.deepcopy(opt.state_dict()))  # load_state_dict may alias the buffers
        m.train(train_mode)
        xs, ys = (x[k], y[k]) if external is None else external
        with torch.no_grad():
            prev = F.cross_entropy(m(xs), ys)
        o.zero_grad()
        F.cross_entropy(m(x[k]), y[k]).backward()
        o.step()
        with torch.no_grad():
            new = F.cross_entropy(m(xs), ys)
        out.append((prev - new) / prev if relative else prev - new)
    return torch.stack(out)


@pytest.mark.parametrize("external,relative,train_mode,nesterov",
                         [(False, False, True, True), (True, True, False, False)])
def test_batched_trial_steps_equal_looped_steps(external, relative, train_mode, nesterov):
    model, opt = _trained(nesterov)
    x, y = torch.randn(5, 8, 1, 8, 8), torch.randint(0, 10, (5, 8))
    ext = (torch.randn(32, 1, 8, 8), torch.randint(0, 10, (32,))) if external else None
    batched = loss_deltas(model, opt, x, y, ext, relative, train_mode)
    torch.testing.assert_close(batched, _looped(model, opt, x, y, ext, relative, train_mode), atol=1e-5, rtol=1e-5)
    assert batched.std() > 0  # the candidates really differ


def test_batched_losses_equal_looped_losses():
    model, _ = _trained()
    x, y = torch.randn(6, 8, 1, 8, 8), torch.randint(0, 10, (6,  8))
    for train_mode in (True, False):
        ref = copy.deepcopy(model).train(train_mode)
        with torch.no_grad():
            want = torch.stack([F.cross_entropy(ref(x[k]), y[k]) for k in range(6)])
        torch.testing.assert_close(candidate_losses(model, x, y, train_mode), want, atol=1e-5, rtol=1e-5)


def test_scoring_leaves_weights_momentum_and_bn_buffers_bit_identical():
    model, opt = _trained()
    before = ({k: v.clone() for k, v in model.state_dict().items()},
              {k: v["momentum_buffer"].clone() for k, v in opt.state_dict()["state"].items()})
    x, y = torch.randn(4, 8, 1, 8, 8), torch.randint(0, 10, (4, 8))
    ext = (torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,)))
    for e in (None, ext):
        loss_deltas(model, opt, x, y, e, False, True)
    candidate_losses(model, x, y, True)
    candidate_losses(model, x[:, :1], y[:, :1], True)
    after = model.state_dict()
    assert after.keys() == before[0].keys()
    for k, v in before[0].items():
        assert torch.equal(after[k], v), k  # includes running_mean / running_var / num_batches_tracked
    for k, v in before[1].items():
        assert torch.equal(opt.state_dict()["state"][k]["momentum_buffer"], v)
    assert model.training


def test_trial_steps_default_to_train_mode_on_the_model_itself():
    model, opt = _trained()
    x, y = torch.randn(3, 8, 1, 8, 8), torch.randint(0, 10, (3, 8))
    prev, out = trial_steps(model, opt, x, y, lambda p, b: p["0.conv.weight"].sum((1, 2, 3, 4)))
    torch.testing.assert_close(prev, candidate_losses(model, x, y, True), atol=1e-6, rtol=1e-6)
    assert not torch.allclose(prev, candidate_losses(model, x, y, False))
    assert out.shape == (3,) and len(set(out.tolist())) == 3  # each candidate's own step


def test_vmap_net_swaps_batchnorm_in_a_copy_only():
    model, _ = _trained()
    x = torch.randn(8, 1, 8, 8)
    net = vmap_net(model)
    assert any(type(m) is torch.nn.BatchNorm2d for m in model.modules())
    assert not any(type(m) is torch.nn.BatchNorm2d for m in net.modules())
    assert any(isinstance(m, PlainBatchNorm2d) for m in net.modules())
    for mode in (True, False):
        model.train(mode), net.train(mode)
        torch.testing.assert_close(net(x), model(x), atol=1e-5, rtol=1e-5)  # the running stats move alike
    for (k, a), b in zip(net.state_dict().items(), model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=k)


def test_batched_trial_steps_refuse_optimisers_they_cannot_replay():
    model, _ = _trained()
    with pytest.raises(TypeError, match="torch.optim.SGD with one parameter group"):
        SGDConfig.of(torch.optim.Adam(model.parameters()))
    first, rest = list(model.parameters())[:1], list(model.parameters())[1:]
    with pytest.raises(TypeError, match="torch.optim.SGD with one parameter group"):
        SGDConfig.of(torch.optim.SGD([{"params": first}, {"params": rest}], lr=0.1))
    with pytest.raises(TypeError, match="dampening 0"):
        SGDConfig.of(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, dampening=0.1))
    assert SGDConfig.of(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True,
                                        weight_decay=1e-4)) == SGDConfig(0.1, 0.9, True, 1e-4)


RUN = {"data": {"dataset": "digits", "subset_per_class": 20}, "model": {"name": "small_cnn", "width": 0.25},
       "train": {"epochs": 1, "batch_size": 16, "device": "cpu",
                 "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4}}}


@pytest.mark.parametrize("poa,steps,scored", [
    # 200 images, batch 16: 12 full batches + one of 8 (trained unscored); K = 4 while ≥ 4 full batches remain
    ({"scoring": "loss_delta", "order": "descending", "k": 4}, 13, 4 * 9 + 3 + 2),
    pytest.param({"scoring": "loss", "k": "all"}, 13, sum(range(2, 13)), marks=pytest.mark.slow),
    ({"scoring": "loss", "strategy": "sampling", "k": 5}, 12, 12 * 5),
    pytest.param({"item": "sample", "scoring": "loss", "k": 32}, 13, None, marks=pytest.mark.slow),
])
def test_data_loader_steps_and_scoring_per_step(workdir, poa, steps, scored):
    run = RunConfig.model_validate({**RUN, "methods": {"poa": poa}})
    rec = fit(run, workdir / "r", workdir)
    h = rec["history"][0]
    assert h["step"] == steps
    if poa.get("strategy") != "sampling":
        assert h["train_seen"] == 200  # an ordering consumes every item once
    if scored is not None:
        assert h["poa_scored"] == scored


def test_ordering_takes_the_lowest_or_highest_score(workdir, monkeypatch):
    from curriculab.methods import poa as mod

    log = []
    orig_choose = mod.Poa._choose

    def fake_score(self, state, x, y):
        s = torch.rand(len(x))
        log.append([s])
        return s

    def choose(self, state, cand, take):
        out = orig_choose(self, state, cand, take)
        if len(cand) > 1:
            log[-1].append((out, self.p.order))
        return out

    monkeypatch.setattr(mod.Poa, "score", fake_score)
    monkeypatch.setattr(mod.Poa, "_choose", choose)
    for order in ("ascending", "descending"):
        fit(RunConfig.model_validate({**RUN, "methods": {"poa": {"k": 6, "order": order}}}), workdir / order, workdir)
    assert len(log) > 10
    for s, (out, order) in log:
        assert out.tolist() == [int(s.argmin() if order == "ascending" else s.argmax())]


def _bad(tmp_path, poa: dict, table="thesis_t23") -> str:
    p = load_yaml(ROOT / "params.yaml")
    p["tables"][table]["rows"]["mld_k8"]["methods"]["poa"].update(poa)
    p["tables"][table]["run"]["data"] = {"dataset": "digits"}  # prepared by the test fixture: its size is known
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(p))
    with pytest.raises(ConfigError) as e:
        load_params(f)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_bad_poa_settings(tmp_path, workdir, monkeypatch):
    monkeypatch.chdir(workdir)  # K is checked against the prepared training set under ./data
    path = "tables.thesis_t23.rows.mld_k8.methods.poa"
    assert _bad(tmp_path, {"k": 0}).startswith(f"{path}.k:")
    assert "more than the" in _bad(tmp_path, {"k": 5000})
    assert _bad(tmp_path, {"scoring": "loss_detla"}).startswith(f"{path}.scoring:")
    assert _bad(tmp_path, {"strategy": "sorting"}).startswith(f"{path}.strategy:")
    assert _bad(tmp_path, {"item": "minibatch"}).startswith(f"{path}.item:")
    msg = _bad(tmp_path, {"target": "external", "external": "test"})
    assert msg.startswith(path) and "allow_test_leak" in msg


# -- the Poa data loader's parts, one at a time (mutation testing found each untested)
SMALL = {"data": {"subset_per_class": 3},
         "train": {"epochs": 1, "batch_size": 8, "optimizer": RUN["train"]["optimizer"]}}


def _poa(micro, poa: dict, *layers):
    """A Poa method on 30 digits (batch 8: 3 full batches + one of 6) with a fresh model, and its TrainState."""
    return micro.method(SMALL, {"methods": {"poa": {"k": 2, **poa}}}, *layers)


def _candidates(data, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain images (K, b, C, H, W) and labels (K, b) of the training items idx (K, b)."""
    x = data.to_input(data.train_x[idx.flatten()], augment=False)
    return x.view(*idx.shape, *data.train_x.shape[1:]), data.train_y[idx]


def _recorded(poa, state, monkeypatch, scores=lambda k: torch.rand(k)) -> tuple[list, list]:
    """The epoch's batches, and per scored choice (candidates, their scores (random by default), positions
    chosen, take)."""
    from curriculab.methods import poa as mod

    choices, orig = [], mod.Poa._choose

    def score(self, state, x, y):
        assert x.shape[:2] == y.shape
        choices[-1]["x"], choices[-1]["scores"] = x, scores(len(x))
        return choices[-1]["scores"]

    def choose(self, state, cand, take):
        choices.append({"cand": cand.clone(), "take": take})
        choices[-1]["out"] = orig(self, state, cand, take)
        return choices[-1]["out"]

    monkeypatch.setattr(mod.Poa, "score", score)
    monkeypatch.setattr(mod.Poa, "_choose", choose)
    return list(poa.train_batches(0, state)), choices


def test_resample_candidates_are_fresh_draws_from_the_remaining_samples(micro, monkeypatch):
    poa, state = _poa(micro, {"candidates": "resample", "k": 3})
    batches, choices = _recorded(poa, state, monkeypatch)
    seen = torch.cat([b.index for b in batches])
    assert sorted(seen.tolist()) == list(range(30))  # each sample once
    assert [len(b.index) for b in batches] == [8, 8, 8, 6]
    left = set(range(30))
    for b, c in zip(batches, choices, strict=True):
        assert len(c["cand"]) == min(3, max(1, len(left) // 8))  # K of the remaining batches' count
        for cand in c["cand"]:  # distinct samples, all still remaining
            assert len(set(cand.tolist())) == len(cand) == min(8, len(left)) and set(cand.tolist()) <= left
        if len(c["cand"]) > 1:
            assert torch.equal(b.index, c["cand"][int(c["scores"].argmin())])
        left -= set(b.index.tolist())


def test_ordering_samples_takes_the_batch_of_lowest_scores(micro, monkeypatch):
    poa, state = _poa(micro, {"item": "sample", "k": 10})
    batches, choices = _recorded(poa, state, monkeypatch)
    assert [len(b.index) for b in batches] == [8, 8, 8, 6]
    assert sorted(torch.cat([b.index for b in batches]).tolist()) == list(range(30))
    for i, (b, c) in enumerate(zip(batches, choices, strict=True)):
        assert c["cand"].shape[1] == 1 and len(c["cand"]) == min(10, 30 - 8 * i)
        lowest = c["cand"][torch.argsort(c["scores"])[: len(b.index)], 0]
        assert torch.equal(b.index, lowest)


@pytest.mark.parametrize("item,k,per_choice", [("sample", 12, 12), ("batch", 2, 2), ("batch", "all", 3)])
def test_sampling_draws_n_over_batch_size_batches_from_k_candidates(micro, monkeypatch, item, k, per_choice):
    poa, state = _poa(micro, {"item": item, "strategy": "sampling", "k": k})
    batches, choices = _recorded(poa, state, monkeypatch)
    assert len(batches) == len(choices) == 30 // 8
    for b, c in zip(batches, choices, strict=True):
        assert len(c["cand"]) == per_choice and len(b.index) == 8
        if item == "sample":  # B draws (with replacement) among K distinct samples
            assert len(set(c["cand"][:, 0].tolist())) == 12 and set(b.index.tolist()) <= set(c["cand"][:, 0].tolist())
        else:  # one of the K random batches, whole
            assert any(torch.equal(b.index, cand) for cand in c["cand"])


def test_ordering_with_k_all_scores_every_remaining_full_batch(micro, monkeypatch):
    poa, state = _poa(micro, {"k": "all"})
    batches, choices = _recorded(poa, state, monkeypatch)
    assert [len(c["cand"]) for c in choices] == [3, 2, 1]  # every full batch left; the short one is not scored
    assert [len(b.index) for b in batches] == [8, 8, 8, 6]


def test_training_batches_are_augmented_and_scored_candidates_are_not(micro, monkeypatch):
    poa, state = _poa(micro, {"k": 2}, {"data": {"augment": {"crop_pad": 2, "flip": True}}})
    data = state.data
    batches, choices = _recorded(poa, state, monkeypatch)
    b, c = batches[0], choices[0]
    assert torch.equal(b.y, data.train_y[b.index])
    assert not torch.equal(b.x, data.to_input(data.train_x[b.index], augment=False))
    assert torch.equal(c["x"], _candidates(data, c["cand"])[0])


@pytest.mark.parametrize("scoring", ["loss", "loss_delta"])
def test_score_follows_the_scoring_and_score_mode_settings(micro, scoring):
    got = {}
    for mode in ("train", "eval"):
        poa, state = _poa(micro, {"scoring": scoring, "score_mode": mode, "relative": True} if scoring == "loss_delta"
                          else {"scoring": scoring, "score_mode": mode})
        x, y = _candidates(state.data, torch.randperm(30, generator=torch.Generator().manual_seed(0))[:24].view(3, 8))
        train = mode == "train"
        want = (candidate_losses(state.model, x, y, train) if scoring == "loss" else
                loss_deltas(state.model, state.optimizer, x, y, None, True, train))
        got[mode] = poa.score(state, x, y)
        torch.testing.assert_close(got[mode], want)
    assert not torch.allclose(got["train"], got["eval"])  # BatchNorm: batch statistics vs running statistics


def test_external_target_scores_against_a_fixed_draw_of_the_chosen_split(micro):
    for split in ("val", "test"):
        poa, state = _poa(micro, {"scoring": "loss_delta", "target": "external", "external": split,
                                  "external_size": 5, "allow_test_leak": True},
                          {"data": {"augment": {"crop_pad": 2, "flip": True}}})
        data = state.data
        gen = torch.Generator().set_state(data.gen.get_state())
        torch.manual_seed(len(split))  # the draw uses the run's generator, never torch's global one
        poa.on_epoch_start(state)
        src_x, src_y = getattr(data, split)
        idx = torch.randperm(len(src_y), generator=gen)[:5]
        ext_x, ext_y = poa.external
        assert torch.equal(ext_y, src_y[idx])
        assert torch.equal(ext_x, data.to_input(src_x[idx], augment=False))  # plain images
        x, y = _candidates(data, torch.arange(16).view(2, 8))
        torch.testing.assert_close(poa.score(state, x, y),
                                   loss_deltas(state.model, state.optimizer, x, y, poa.external, False, True))
        assert not torch.allclose(poa.score(state, x, y),
                                  loss_deltas(state.model, state.optimizer, x, y, None, False, True))
    poa, state = _poa(micro, {"scoring": "loss_delta"})
    before = state.data.gen.get_state()
    poa.on_epoch_start(state)
    assert poa.external is None and torch.equal(state.data.gen.get_state(), before)  # target same: no draw


def test_k_above_the_learning_items_and_a_compiled_model(micro):
    from curriculab.methods.poa import _plain

    with pytest.raises(ConfigError, match="K = 4 is more than the 3 learning items"):
        _poa(micro, {"k": 4})
    model = create_model("small_cnn", 1, 10, 0.25)
    assert _plain(torch.compile(model)) is model and _plain(model) is model


@pytest.mark.parametrize("weighting", ["score", "inverse"])
def test_sampling_weights_by_score_or_inverse_with_replacement_from_the_runs_generator(micro, monkeypatch, weighting):
    from curriculab.methods import poa as mod

    poa, state = _poa(micro, {"item": "sample", "strategy": "sampling", "k": 12, "weighting": weighting})
    _, choices = _recorded(poa, state, monkeypatch, lambda k: torch.tensor([1e6] + [1e-6] * (k - 1)))
    picks = [c["out"].tolist() for c in choices]
    if weighting == "score":  # candidate 0 holds all the weight: drawn B times (with replacement)
        assert picks == [[0] * 8] * 3
    else:
        assert all(0 not in p for p in picks)
    # the draws come from the run's generator, not torch's global one
    monkeypatch.setattr(mod.Poa, "score", lambda self, s, x, y: torch.linspace(1, 2, len(x)))
    g = state.data.gen.get_state()
    runs = []
    for seed in (1, 2):
        state.data.gen.set_state(g)
        torch.manual_seed(seed)
        runs.append([b.index.tolist() for b in poa.train_batches(0, state)])
    assert runs[0] == runs[1]


def test_logged_scores_are_the_epochs_count_and_sum_of_chosen_scores(micro, monkeypatch):
    poa, state = _poa(micro, {"k": 3})
    poa.scored, poa.score_sum = 7, 5.0  # the last epoch's
    poa.on_epoch_start(state)
    _, choices = _recorded(poa, state, monkeypatch)
    scored = [c for c in choices if "scores" in c]
    m = poa.state_metrics()
    assert m["poa_scored"] == sum(len(c["cand"]) for c in scored) == 3 + 2
    assert m["poa_chosen_score"] == pytest.approx(sum(float(c["scores"][c["out"]].mean()) for c in scored))


@pytest.mark.parametrize("poa", [{"candidates": "resample", "k": 3},
                                 {"item": "sample", "strategy": "sampling", "k": 12},
                                 {"item": "sample", "k": 10, "scoring": "loss_delta"}])
def test_each_data_loader_scores_with_the_live_model(micro, poa):
    """The loaders above, with the real scoring instead of recorded random scores."""
    method, state = _poa(micro, poa)
    batches = list(method.train_batches(0, state))
    assert len(batches) == (3 if method.p.strategy == "sampling" else 4) and method.scored > 0
