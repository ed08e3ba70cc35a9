"""Data Parameters: the loss and its gradients (eqs. (3)-(5)), SparseSGD, weight decay, clamp, statistics,
label noise, bad settings, and a short training run with resume."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from curriculab.config import ConfigError, RunConfig
from curriculab.data.derive import corrupt_labels
from curriculab.methods.base import Batch, MethodContext
from curriculab.methods.data_parameters import DataParameters, SparseSGD, data_parameter_loss
from tests.conftest import micro_run, micro_table

LOW, HIGH = math.log(1 / 20), math.log(20)


def make(n: int = 12, k: int = 5, corrupt=None, **params) -> DataParameters:
    """A DataParameters instance on a stand-in dataset of n items and k classes (CPU)."""
    data = SimpleNamespace(classes=k, n_train=n, corrupt=corrupt)
    ctx = MethodContext(run=RunConfig(), data=data, device=torch.device("cpu"), run_dir=None, workdir=None)
    return DataParameters(DataParameters.Params.model_validate(params), ctx)


def randomise(m: DataParameters, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for log in (m.class_log, m.inst_log):
            if log is not None:
                log.copy_(torch.randn(log.shape, generator=g) * 0.7)


def batch_loss(m: DataParameters, z: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """The scalar the engine backpropagates: the mean of the method's per-sample losses."""
    return m.loss(z, Batch(torch.zeros(len(y)), y, idx), None).mean()


# --------------------------------------------------------------------------- the loss and eqs. (3)-(5)


def eq_grads(z: torch.Tensor, y: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Paper eq. (3) (dL/dz) and eqs. (4)/(5) (dL/dσ*) written out."""
    p = torch.softmax(z / s[:, None], 1)
    onehot = F.one_hot(y, z.shape[1]).to(z.dtype)
    dz = (p - onehot) / s[:, None]
    py = p.gather(1, y[:, None]).squeeze(1)
    q = p * (1 - onehot) / (1 - py)[:, None]  # distribution over the non-target classes
    zy = z.gather(1, y[:, None]).squeeze(1)
    ds = (1 - py) / s**2 * (zy - (q * z).sum(1))
    return dz, ds


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_autograd_gradients_match_eqs_3_to_5(seed):
    g = torch.Generator().manual_seed(seed)
    n, k = 9, 7
    z = (torch.randn(n, k, generator=g, dtype=torch.float64) * 3).requires_grad_()
    y = torch.randint(0, k, (n,), generator=g)
    s = (torch.rand(n, generator=g, dtype=torch.float64) * 3 + 0.1).requires_grad_()
    loss = F.cross_entropy(z / s[:, None], y, reduction="none")
    assert torch.allclose(data_parameter_loss(z.float(), y, s.float()).double(), loss, atol=1e-5)
    loss.sum().backward()
    dz, ds = eq_grads(z.detach(), y, s.detach())
    assert torch.allclose(z.grad, dz, atol=1e-10)
    assert torch.allclose(s.grad, ds, atol=1e-10)
    # eq. (1)'s typo (σ_j per logit) would differ: every logit is divided by the target's σ*_i
    logp = torch.log_softmax(z.detach().float() / s.detach().float()[:, None], 1)
    assert torch.allclose(data_parameter_loss(z.float(), y, s.float()), -logp[torch.arange(n), y])


def test_class_and_joint_gradients_through_the_method():
    """Class params average eq. (4) over their samples; joint: class and instance get eq. (5) per sample."""
    n, k = 16, 4
    g = torch.Generator().manual_seed(3)
    z = torch.randn(n, k, generator=g) * 2
    y = torch.randint(0, k, (n,), generator=g)
    idx = torch.randperm(40, generator=g)[:n]
    for curriculum in ("class", "joint"):
        m = make(n=40, k=k, curriculum=curriculum, class_weight_decay=0.0, inst_weight_decay=0.0)
        randomise(m, 1)
        batch_loss(m, z, y, idx).backward()
        s_class = m.class_log.detach().exp()
        s_star = s_class[y] + (m.inst_log.detach().exp()[idx] if curriculum == "joint" else 0)
        _, ds = eq_grads(z.double(), y, s_star.double())
        # chain rule through σ = exp(p): dL/dp = σ · dL/dσ; the engine's loss is the minibatch mean
        want_class = torch.zeros(k, dtype=torch.float64).index_add_(0, y, ds) / n * s_class.double()
        assert torch.allclose(m.class_log.grad.double(), want_class, atol=1e-6)
        if curriculum == "joint":
            s_inst = m.inst_log.detach().exp()
            want_inst = torch.zeros(40, dtype=torch.float64)
            want_inst[idx] = ds / n * s_inst[idx].double()
            assert torch.allclose(m.inst_log.grad.double(), want_inst, atol=1e-6)
            assert (m.inst_log.grad[~torch.isin(torch.arange(40), idx)] == 0).all()


def test_evaluation_uses_plain_logits():
    assert not DataParameters.overrides("predict")


# --------------------------------------------------------------------------- SparseSGD


def test_sparse_sgd_absent_item_keeps_value_and_momentum_exactly():
    p = torch.nn.Parameter(torch.tensor([0.3, -1.2, 2.0, 0.7]))
    opt = SparseSGD([p], lr=0.5, momentum=0.9)
    p.grad = torch.tensor([1.0, 2.0, -1.0, 0.5])
    opt.present(p, torch.arange(4))
    opt.step()  # every item present: buffer = g, p -= lr·g
    assert torch.equal(opt.state[p]["momentum_buffer"], torch.tensor([1.0, 2.0, -1.0, 0.5]))
    buf_before, p_before = opt.state[p]["momentum_buffer"].clone(), p.detach().clone()
    p.grad = torch.tensor([0.5, 1.0, 0.7, -2.0])  # items 0 and 2 absent, whatever their gradient
    opt.present(p, torch.tensor([3, 1, 3]))
    opt.step()
    buf = opt.state[p]["momentum_buffer"]
    for i in (0, 2):
        assert p[i].item() == p_before[i].item() and buf[i].item() == buf_before[i].item()
    for i, gi in ((1, 1.0), (3, -2.0)):
        want_buf = 0.9 * buf_before[i].item() + gi
        assert buf[i].item() == pytest.approx(want_buf)
        assert p[i].item() == pytest.approx(p_before[i].item() - 0.5 * want_buf)


def test_sparse_sgd_first_step_leaves_absent_items_and_zero_buffers():
    p = torch.nn.Parameter(torch.tensor([1.0, 2.0, 3.0]))
    opt = SparseSGD([p], lr=0.1, momentum=0.9, weight_decay=0.1)
    p.grad = torch.tensor([0.0, 1.0, 0.0])
    opt.present(p, torch.tensor([1]))
    opt.step()
    assert p[0].item() == 1.0 and p[2].item() == 3.0  # weight decay does not reach absent items
    assert torch.equal(opt.state[p]["momentum_buffer"][[0, 2]], torch.zeros(2))


@pytest.mark.parametrize("kw", [dict(momentum=0.9), dict(momentum=0.9, nesterov=True), dict(momentum=0.0),
                                dict(momentum=0.8, weight_decay=0.01), dict(momentum=0.9, dampening=0.3)])
def test_sparse_sgd_with_dense_gradients_equals_torch_sgd(kw):
    g = torch.Generator().manual_seed(0)
    a = torch.nn.Parameter(torch.randn(6, generator=g))
    b = torch.nn.Parameter(a.detach().clone())
    oa, ob = SparseSGD([a], lr=0.05, **kw), torch.optim.SGD([b], lr=0.05, **kw)
    for _ in range(5):
        grad = torch.randn(6, generator=g)
        a.grad, b.grad = grad.clone(), grad.clone()
        oa.present(a, torch.arange(6))
        oa.step()
        ob.step()
    assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("kw,msg", [(dict(lr=-0.1), "lr"), (dict(lr=0.1, momentum=1.0), "momentum"),
                                    (dict(lr=0.1, weight_decay=-1.0), "weight_decay")])
def test_sparse_sgd_rejects_bad_arguments(kw, msg):
    with pytest.raises(ValueError, match=msg):
        SparseSGD([torch.nn.Parameter(torch.zeros(2))], **kw)


@pytest.mark.parametrize("kw", [dict(nesterov=True, momentum=0.0), dict(nesterov=True, momentum=0.9, dampening=0.1)])
def test_sparse_sgd_nesterov_needs_momentum_and_no_dampening(kw):
    with pytest.raises(ValueError, match="nesterov needs momentum > 0 and dampening 0"):
        SparseSGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1, **kw)


def test_sparse_sgd_takes_lr_zero_and_sets_gradients_to_none():
    p = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    opt = SparseSGD([p], lr=0.0, nesterov=True)  # a frozen group is allowed; nesterov with the default momentum
    p.grad = torch.ones(2)
    opt.present(p, torch.arange(2))
    opt.step()
    assert torch.equal(p.detach(), torch.tensor([1.0, 2.0]))
    opt.zero_grad()  # torch's default: gradients to None, not zeros
    assert p.grad is None


# --------------------------------------------------------------------------- weight decay on log σ


def penalty_grads(mode: str, curriculum: str = "class"):
    """The gradient of the weight-decay term alone, and the minibatch it came from."""
    k, n = 6, 20
    y = torch.tensor([0, 0, 0, 2, 2, 5])  # classes 1, 3 and 4 absent; class 0 three times
    idx = torch.tensor([1, 4, 7, 9, 12, 19])
    z = torch.randn(len(y), k, generator=torch.Generator().manual_seed(0))
    grads = []
    for wd in (0.0, 0.01):
        m = make(n=n, k=k, curriculum=curriculum, weight_decay_mode=mode, class_weight_decay=wd,
                 inst_weight_decay=wd)
        randomise(m, 2)
        batch_loss(m, z, y, idx).backward()
        grads.append((m.class_log.grad.clone() if m.class_log is not None else None,
                      m.inst_log.grad.clone() if m.inst_log is not None else None, m))
    (c0, i0, _), (c1, i1, m) = grads
    return m, y, idx, (None if c0 is None else c1 - c0), (None if i0 is None else i1 - i0)


def test_weight_decay_minibatch_mode_counts_each_occurrence_and_skips_absent_items():
    m, y, idx, dc, di = penalty_grads("minibatch", "joint")
    count = torch.bincount(y, minlength=6).float()
    assert torch.allclose(dc, 0.01 * count * m.class_log.detach(), atol=1e-7)  # class 0 penalised 3 times
    assert (dc[[1, 3, 4]] == 0).all()
    want = torch.zeros(20)
    want[idx] = 0.01 * m.inst_log.detach()[idx]
    assert torch.allclose(di, want, atol=1e-7)


def test_weight_decay_all_mode_is_not_in_the_loss():
    """`all`: the ℓ2 acts in the optimiser step on present entries (below), not through the loss."""
    _, _, _, dc, di = penalty_grads("all", "joint")
    assert (dc == 0).all() and (di == 0).all()
    m = make(curriculum="joint", class_weight_decay=0.01, inst_weight_decay=0.02)
    (opt,) = m.optimizers(None)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.02]
    m = make(curriculum="joint", weight_decay_mode="minibatch", class_weight_decay=0.01)
    assert [g["weight_decay"] for g in m.optimizers(None)[0].param_groups] == [0.0, 0.0]


@pytest.mark.parametrize("mode", ["minibatch", "all"])
def test_absent_class_after_a_step_stays_in_both_modes(mode):
    m = make(n=10, k=4, curriculum="class", weight_decay_mode=mode, class_weight_decay=0.1)
    randomise(m, 5)
    (opt,) = m.optimizers(None)
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[0]["params"][0] is m.class_log
    before = m.class_log.detach().clone()
    y = torch.tensor([0, 1, 1, 2])  # class 3 absent
    batch_loss(m, torch.randn(4, 4), y, torch.arange(4)).backward()
    opt.step()
    assert m.class_log[3].item() == before[3].item()
    assert (m.class_log[:3] != before[:3]).all()


# --------------------------------------------------------------------------- clamp, init, state


def test_clamp_after_every_step_and_switch_off():
    m = make(curriculum="joint")
    assert torch.allclose(m.inst_log.exp(), torch.full((12,), 1e-3))  # §3.1: joint instance init 0.001
    with torch.no_grad():
        m.class_log.copy_(torch.tensor([-9.0, -1.0, 0.0, 2.0, 9.0]))
    m.on_step_end(None)
    assert torch.allclose(m.class_log, torch.tensor([LOW, -1.0, 0.0, 2.0, HIGH]))
    assert torch.allclose(m.inst_log.exp(), torch.full((12,), 0.05))  # the official code lifts 0.001 to 0.05
    off = make(curriculum="class", clamp=None)
    with torch.no_grad():
        off.class_log.fill_(-9.0)
    off.on_step_end(None)
    assert (off.class_log == -9.0).all()
    custom = make(curriculum="instance", clamp=[0.5, 2.0])
    with torch.no_grad():
        custom.inst_log.fill_(3.0)
    custom.on_step_end(None)
    assert torch.allclose(custom.inst_log, torch.full((12,), math.log(2.0)))


@pytest.mark.parametrize("curriculum,init,want", [("instance", None, 1.0), ("joint", None, 1e-3),
                                                   ("instance", 0.3, 0.3), ("joint", 2.5, 2.5)])
def test_instance_init_default_and_setting(curriculum, init, want):
    """§3.1: σ^inst starts at 1 (instance) or 0.001 (joint) unless `inst_init` says otherwise."""
    m = make(curriculum=curriculum, inst_init=init, class_init=4.0, clamp=None)
    assert torch.allclose(m.inst_log, torch.full((12,), math.log(want)))
    if curriculum == "joint":
        assert torch.allclose(m.class_log, torch.full((5,), math.log(4.0)))
    else:
        assert m.class_log is None


@pytest.mark.parametrize("mode", ["all", "minibatch"])
def test_optimizer_groups_take_the_settings(mode):
    """Each group's lr, the momentum, and the weight decay in the step only under `all` (in the loss under
    `minibatch`, so never twice)."""
    m = make(curriculum="joint", class_lr=0.3, inst_lr=0.7, momentum=0.5, class_weight_decay=0.01,
             inst_weight_decay=0.02, weight_decay_mode=mode)
    groups = m.optimizers(torch.nn.Linear(1, 1))[0].param_groups
    assert [(g["params"][0] is t, g["lr"], g["momentum"]) for g, t in zip(groups, (m.class_log, m.inst_log))] == \
        [(True, 0.3, 0.5), (True, 0.7, 0.5)]
    assert [g["weight_decay"] for g in groups] == ([0.01, 0.02] if mode == "all" else [0.0, 0.0])


def test_soft_and_low_precision_targets_and_outputs():
    """One-hot targets select σ^class by their argmax, as integer labels do; bfloat16 logits (autocast) are
    scored in float32."""
    g = torch.Generator().manual_seed(5)
    z, y, idx = torch.randn(8, 5, generator=g), torch.randint(0, 5, (8,), generator=g), torch.randperm(12)[:8]
    m = make(curriculum="joint")
    randomise(m, 2)
    hard = m.loss(z, Batch(torch.zeros(8), y, idx), None)
    soft = m.loss(z, Batch(torch.zeros(8), F.one_hot(y, 5).float(), idx), None)
    assert torch.allclose(hard, soft, atol=1e-6)
    low = m.loss(z.bfloat16(), Batch(torch.zeros(8), y, idx), None)
    assert low.dtype == torch.float32
    assert torch.equal(low, m.loss(z.bfloat16().float(), Batch(torch.zeros(8), y, idx), None))


def test_epoch_artifacts_hold_the_figures_data():
    """Fig. 1's class σ vector (6 decimals) and Fig. 4's clean/corrupt statistics, nothing else."""
    corrupt = torch.tensor([True, False] * 6)
    m = make(curriculum="joint", corrupt=corrupt)
    randomise(m, 3)
    m.on_epoch_end(None)
    art = m.epoch_artifacts()
    assert art["dp_class_sigma"] == [round(v, 6) for v in m.class_log.exp().tolist()]
    assert any(v != round(v, 5) for v in art["dp_class_sigma"])  # the sixth decimal is kept
    assert set(art["dp_f4"]) == set(m.instance_stats(corrupt))


def test_state_dict_round_trip_and_mismatch():
    a, b = make(curriculum="joint"), make(curriculum="joint")
    randomise(a, 7)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.class_log, b.class_log) and torch.equal(a.inst_log, b.inst_log)
    with pytest.raises(ValueError, match="does not match"):
        make(curriculum="class").load_state_dict(a.state_dict())


def test_instance_statistics_on_known_values():
    from sklearn.metrics import roc_auc_score

    corrupt = torch.tensor([False, False, False, False, False, False, True, True, True, True])
    m = make(n=10, k=3, corrupt=corrupt, curriculum="instance")
    sigma = torch.tensor([0.2, 0.3, 0.4, 0.5, 0.6, 3.0, 2.0, 4.0, 5.0, 6.0])
    with torch.no_grad():
        m.inst_log.copy_(sigma.log())
    m.on_epoch_end(None)
    s = m.state_metrics()
    assert s["dp_inst_sigma_corrupt_mean"] == pytest.approx(4.25)
    assert s["dp_inst_sigma_clean_mean"] == pytest.approx(sigma[:6].mean().item())
    assert s["dp_top_corrupt_share"] == pytest.approx(3 / 4)  # top 40% = {6, 5, 4, 3.0}
    assert s["dp_corrupt_above_all_clean"] == pytest.approx(3 / 4)  # 2.0 is below the clean 3.0
    assert s["dp_inst_auroc"] == pytest.approx(roc_auc_score(corrupt.numpy(), sigma.numpy()))
    assert s["dp_corrupt_fraction"] == pytest.approx(0.4)
    art = m.epoch_artifacts()
    assert "dp_class_sigma" not in art and art["dp_f4"]["dp_top_corrupt_share"] == pytest.approx(0.75)
    assert json.loads(json.dumps(art)) == art


# --------------------------------------------------------------------------- label noise


@pytest.mark.parametrize("rate", [0.2, 0.4, 0.8])
def test_uniform_noise_exact_rate_seeded_and_uniform(rate):
    y = np.repeat(np.arange(10), 300)
    noisy, chosen = corrupt_labels(y, rate, "uniform", 10, seed=3)
    assert chosen.sum() == math.floor(len(y) * rate)
    assert (noisy[~chosen] == y[~chosen]).all()
    again, chosen2 = corrupt_labels(y, rate, "uniform", 10, seed=3)
    assert (again == noisy).all() and (chosen2 == chosen).all()
    other, chosen3 = corrupt_labels(y, rate, "uniform", 10, seed=4)
    assert (chosen3 != chosen).any()
    kept = (noisy[chosen] == y[chosen]).mean()  # a uniform class keeps the label 1/k of the time
    assert abs(kept - 0.1) < 0.04
    counts = np.bincount(noisy[chosen], minlength=10) / chosen.sum()
    assert np.abs(counts - 0.1).max() < 0.04


def test_permute_first_noise_is_the_official_scheme():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 1000)
    noisy, chosen = corrupt_labels(y, 0.4, "permute_first", 10, seed=1)
    assert chosen[:400].all() and not chosen[400:].any()
    assert (noisy[400:] == y[400:]).all()
    assert (np.bincount(noisy[:400], minlength=10) == np.bincount(y[:400], minlength=10)).all()
    assert 0.8 < (noisy[:400] != y[:400]).mean() < 0.95
    again, _ = corrupt_labels(y, 0.4, "permute_first", 10, seed=1)
    assert (again == noisy).all()


def test_random_labels_replace_every_label():
    y = np.repeat(np.arange(10), 100)
    noisy, chosen = corrupt_labels(y, 0.0, "random", 10, seed=0)
    assert chosen.all() and abs((noisy == y).mean() - 0.1) < 0.04


@pytest.mark.parametrize("kind", ["uniform", "permute_first"])
def test_oracle_trains_on_exactly_the_clean_indices(workdir, kind):
    from curriculab.data.loader import DeviceData

    cpu = torch.device("cpu")
    noise = {"rate": 0.4, "kind": kind}
    noisy = RunConfig.model_validate({"data": {"dataset": "digits", "noise": noise}, "seed": 2})
    oracle = RunConfig.model_validate({"data": {"dataset": "digits", "noise": {**noise, "oracle": True}},
                                       "seed": 2})
    a, b = DeviceData(noisy, workdir / "data", cpu), DeviceData(oracle, workdir / "data", cpu)
    assert a.chosen.sum().item() == math.floor(a.n_train * 0.4)
    assert torch.equal(a.corrupt, a.train_y != a.true_y) and not (a.corrupt & ~a.chosen).any()
    assert np.array_equal(b.train_pos, a.train_pos[~a.chosen.numpy()])
    assert torch.equal(b.train_y, b.true_y) and b.n_train == a.n_train - a.chosen.sum().item()
    assert torch.equal(b.train_x, a.train_x[~a.chosen])


# --------------------------------------------------------------------------- bad settings


def dp_table(row: dict) -> dict:
    return {"seeds": [0], "run": {"data": {"dataset": "digits"}}, "rows": {"bad": row}}


def _dp(**kw) -> dict:
    return {"methods": {"data_parameters": kw}}


def _noise(**kw) -> dict:
    return {"data": {"noise": kw}, "methods": {"baseline": {}}}


GE = "greater than or equal"
BAD = [
    (_dp(class_init=0.0), "data_parameters.class_init", "greater than 0"),
    (_dp(inst_init=-1.0), "data_parameters.inst_init", "greater than 0"),
    (_dp(class_lr=-0.1), "data_parameters.class_lr", GE),
    (_dp(inst_lr=-1.0), "data_parameters.inst_lr", GE),
    (_dp(class_weight_decay=-1e-4), "data_parameters.class_weight_decay", GE),
    (_dp(inst_weight_decay=-1.0), "data_parameters.inst_weight_decay", GE),
    (_dp(clamp=[20.0, 0.05]), "data_parameters.clamp", "must be below"),
    (_dp(clamp=[1.0, 1.0]), "data_parameters.clamp", "must be below"),
    (_dp(clamp=[0.0, 20.0]), "data_parameters.clamp", "greater than 0"),
    (_dp(curriculum="classes"), "data_parameters.curriculum", "'instance'"),
    (_dp(weight_decay_mode="some"), "data_parameters.weight_decay_mode", "'all'"),
    (_dp(class_lr=0.1, lr=0.1), "data_parameters.lr", "unknown key"),
    (_noise(rate=1.0), "data.noise.rate", "less than 1"),
    (_noise(rate=-0.1), "data.noise.rate", GE),
    (_noise(rate=0.4, kind="flip"), "data.noise.kind", "uniform"),
]


@pytest.mark.parametrize("row,key,words", BAD, ids=[f"{b[1].split('.')[-1]}-{i}" for i, b in enumerate(BAD)])
def test_bad_settings_get_one_line_errors(tmp_path, row, key, words):
    with pytest.raises(ConfigError) as err:
        micro_table(tmp_path, "dp_t1", dp_table(row))
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("tables.dp_t1.rows.bad.") and key in msg and words in msg, msg


def test_good_settings_validate(tmp_path):
    row = {"methods": {"data_parameters": {"curriculum": "joint", "clamp": None, "weight_decay_mode": "all"}}}
    params = micro_table(tmp_path, "dp_t1", dp_table(row))
    assert params.tables["dp_t1"].rows["bad"]["methods"]["data_parameters"]["clamp"] is None


# --------------------------------------------------------------------------- training


def dp_run(curriculum: str) -> dict:
    return {"seed": 1, "train": {"optimizer": {"lr": 0.05}, "schedule": {"name": "constant"}},
            "methods": {"data_parameters": {"curriculum": curriculum, "inst_lr": 10.0}}}


def test_noisy_training_separates_corrupt_from_clean(workdir):
    from curriculab.engine.loop import fit

    run = micro_run(dp_run("instance"), train={"epochs": 4}, data={"noise": {"rate": 0.4}})
    rec = fit(run, workdir / "run", workdir)
    last = rec["history"][-1]
    assert last["dp_inst_sigma_corrupt_mean"] > 2 * last["dp_inst_sigma_clean_mean"]
    assert last["dp_inst_auroc"] > 0.8
    assert len(rec["artifacts"]) == 4 and "dp_f4" in rec["artifacts"][-1]


def test_resume_gives_the_same_run(workdir):
    from curriculab.engine.loop import fit

    straight = fit(micro_run(dp_run("joint"), train={"epochs": 3}), workdir / "a", workdir)
    fit(micro_run(dp_run("joint"), train={"epochs": 2}), workdir / "b", workdir)
    # picks up the checkpoint after epoch 2
    resumed = fit(micro_run(dp_run("joint"), train={"epochs": 3}), workdir / "b", workdir)
    for key in ("train_loss", "val_acc", "dp_class_sigma_mean", "dp_inst_sigma_mean", "dp_inst_sigma_std"):
        assert resumed["history"][-1][key] == straight["history"][-1][key], key
    assert resumed["artifacts"][-1]["dp_class_sigma"] == straight["artifacts"][-1]["dp_class_sigma"]
    assert len(straight["artifacts"][-1]["dp_class_sigma"]) == 10


def test_auroc_counts_ties_at_the_clamp_as_half():
    from sklearn.metrics import roc_auc_score

    corrupt = torch.tensor([False, False, False, True, True, True])
    m = make(n=6, k=2, corrupt=corrupt, curriculum="instance")
    sigma = torch.tensor([0.5, 20.0, 20.0, 20.0, 20.0, 3.0])  # two clean and two corrupt items at the clamp
    with torch.no_grad():
        m.inst_log.copy_(sigma.log())
    m.on_epoch_end(None)
    s = m.state_metrics()
    assert s["dp_inst_auroc"] == pytest.approx(roc_auc_score(corrupt.numpy(), sigma.numpy()))
    assert s["dp_corrupt_above_all_clean"] == 0.0  # a clean item at the clamp: nothing ranks above it


# --------------------------------------------------------------------------- presence from the batch (issue 13)


def engine_step(m: DataParameters, opt: SparseSGD, y: torch.Tensor, idx: torch.Tensor, seed: int) -> None:
    """One step in the engine's order: the method's loss, zero_grad, backward, step, then the clamp."""
    z = torch.randn(len(y), 5, generator=torch.Generator().manual_seed(seed)) * 2
    loss = batch_loss(m, z, y, idx)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    m.on_step_end(None)


@pytest.mark.parametrize("mode", ["all", "minibatch"])
def test_absent_classes_and_instances_keep_value_and_momentum_exactly(mode):
    """§3.1: "When a class or instance is not present in a mini-batch, we do not update the momentum buffer"
    — under both weight-decay modes, with weight decay on both groups (issue 13 item 1)."""
    m = make(n=12, k=5, curriculum="joint", weight_decay_mode=mode, class_weight_decay=0.05,
             inst_weight_decay=0.02, inst_lr=0.5)
    randomise(m, 4)
    (opt,) = m.optimizers(None)
    engine_step(m, opt, torch.tensor([0, 1, 2, 3, 4, 0]), torch.tensor([0, 1, 2, 3, 4, 5]), 0)  # buffers ≠ 0
    engine_step(m, opt, torch.tensor([0, 1, 2, 3, 4, 1]), torch.tensor([6, 7, 8, 9, 10, 11]), 1)
    bufs = [opt.state[p]["momentum_buffer"] for p in (m.class_log, m.inst_log)]
    assert (bufs[0] != 0).all() and (bufs[1] != 0).all()
    y, idx = torch.tensor([0, 0, 1, 4]), torch.tensor([3, 7, 7, 11])  # classes 2, 3 and most instances absent
    for step in range(3):
        before = [t.detach().clone() for t in (m.class_log, m.inst_log, *bufs)]
        engine_step(m, opt, y, idx, 2 + step)
        after = [m.class_log, m.inst_log, *bufs]
        for present, b, a in ((torch.tensor([0, 1, 4]), before[0], after[0]), (idx, before[1], after[1]),
                              (torch.tensor([0, 1, 4]), before[2], after[2]), (idx, before[3], after[3])):
            absent = ~torch.isin(torch.arange(len(b)), present)
            assert torch.equal(a[absent], b[absent])  # bit for bit
            assert (a[present] != b[present]).all()


def test_all_mode_weight_decay_acts_through_present_gradients_only():
    """`all`: d = ∂CE/∂p + wd·p for the present entries (the paper's ℓ2), nothing for absent ones."""
    y, idx, z = torch.tensor([0, 0, 2]), torch.tensor([1, 4, 4]), torch.randn(3, 5)
    steps = {}
    for wd in (0.0, 0.1):
        m = make(n=6, k=5, curriculum="joint", class_weight_decay=wd, inst_weight_decay=wd, momentum=0.0,
                 clamp=None)
        randomise(m, 6)
        before = (m.class_log.detach().clone(), m.inst_log.detach().clone())
        (opt,) = m.optimizers(None)
        batch_loss(m, z, y, idx).backward()
        opt.step()
        steps[wd] = (m.class_log.detach() - before[0], m.inst_log.detach() - before[1], before)
    dc, di = steps[0.1][0] - steps[0.0][0], steps[0.1][1] - steps[0.0][1]
    c0, i0 = steps[0.1][2]
    want_c, want_i = torch.zeros(5), torch.zeros(6)
    want_c[[0, 2]] = -0.1 * 0.1 * c0[[0, 2]]  # -lr·wd·p, once per present class
    want_i[[1, 4]] = -0.2 * 0.1 * i0[[1, 4]]
    assert torch.allclose(dc, want_c, atol=1e-7) and torch.allclose(di, want_i, atol=1e-7)


def test_sparse_sgd_presence_is_the_batch_not_the_gradient():
    """A present entry with a zero gradient still steps (its momentum); an absent one with a gradient
    does not."""
    p = torch.nn.Parameter(torch.tensor([1.0, 2.0, 3.0]))
    opt = SparseSGD([p], lr=0.1, momentum=0.9)
    p.grad = torch.tensor([1.0, 1.0, 1.0])
    opt.present(p, torch.tensor([0, 1, 2]))
    opt.step()
    p.grad = torch.tensor([0.0, 5.0, 0.0])
    opt.present(p, torch.tensor([0, 0]))  # item 0 present (twice) with gradient 0; item 1 absent
    opt.step()
    assert p[0].item() == pytest.approx(1.0 - 0.1 - 0.1 * 0.9)  # momentum carries it
    assert p[1].item() == pytest.approx(2.0 - 0.1) and p[2].item() == pytest.approx(3.0 - 0.1)
    assert opt.state[p]["momentum_buffer"][1].item() == 1.0
    p.grad = torch.tensor([1.0, 1.0, 1.0])
    with pytest.raises(RuntimeError, match="present"):
        opt.step()  # no presence given for this step


def test_clamp_in_the_step_matches_the_official_whole_vector_clamp():
    """After the first step the optimiser clamps the rows it updates; the result equals clamping the whole
    vectors after every step (the official code)."""
    g = torch.Generator().manual_seed(9)
    a, b = make(n=30, k=5, curriculum="joint", inst_lr=40.0), make(n=30, k=5, curriculum="joint", inst_lr=40.0)
    (oa,), (ob,) = a.optimizers(None), b.optimizers(None)
    for group in oa.param_groups:  # a: the official order, a plain step then the whole-vector clamp
        group["bounds"] = None
    for _ in range(6):
        y, idx = torch.randint(0, 5, (8,), generator=g), torch.randint(0, 30, (8,), generator=g)
        z = torch.randn(8, 5, generator=g) * 5
        for m, o, whole in ((a, oa, True), (b, ob, False)):
            loss = batch_loss(m, z, y, idx)
            o.zero_grad(set_to_none=True)
            loss.backward()
            o.step()
            if whole:
                with torch.no_grad():
                    for log in (m.class_log, m.inst_log):
                        log.clamp_(LOW, HIGH)
            else:
                m.on_step_end(None)
    assert torch.equal(a.class_log, b.class_log) and torch.equal(a.inst_log, b.inst_log)
    assert (b.inst_log.detach() == HIGH).any()  # the clamp was reached
