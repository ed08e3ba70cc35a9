"""Sum Augmentation family (thesis ch. 3): sum_mix, gcc, the losses, TTSA, the phase rules, the comparators."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from curriculab.config import ConfigError, RunConfig
from curriculab.methods import check_methods
from curriculab.methods.base import Batch
from curriculab.methods.settings.sum_augmentation import TTSAParams
from curriculab.methods.sum_augmentation import (
    TTSASampler,
    active_groups,
    gcc,
    sum_bce,
    sum_mix,
    topk_correct,
    ttsa_mix,
    ttsa_predict,
)

# --------------------------------------------------------------------------- gcc, eqs. 3.1-3.6


@pytest.mark.parametrize("n", [2, 3, 4, 8])
def test_gcc_endpoints_sum_and_sign(n):
    assert gcc(n, 0.0).dtype == torch.float64
    assert torch.allclose(gcc(n, 0.0), torch.full((n,), 1 / n, dtype=torch.float64))
    one = torch.zeros(n, dtype=torch.float64)
    one[0] = 1
    assert torch.equal(gcc(n, 1.0), one)
    for t in torch.linspace(0, 1, 301).tolist():
        w = gcc(n, t)
        assert abs(float(w.sum()) - 1) < 1e-12 and float(w.min()) >= 0
        # the first n-k coefficients are the non-zero ones; K = n - k of them are used
        assert int((w > 0).sum()) <= active_groups(n, t)


@pytest.mark.parametrize("n", [2, 4, 8])
def test_gcc_is_continuous_across_segments(n):
    for j in range(1, n):  # the segment boundaries t = j / (n-1), where k changes
        b = j / (n - 1)
        for t in (b, b - 1e-9):
            if 0 <= t <= 1:
                assert torch.allclose(gcc(n, t), gcc(n, min(1.0, t + 1e-9)), atol=1e-6)
    ts = torch.linspace(0, 1, 2001).tolist()
    jumps = [float((gcc(n, b) - gcc(n, a)).abs().max()) for a, b in zip(ts, ts[1:])]
    assert max(jumps) < 0.01  # a step of 5e-4 in t moves no weight by more than ~n/2000


def test_gcc_2_closed_form_and_segment_value():
    for t in (0.1, 0.5, 0.9):  # n = 2: k = 0, centroid (1+t)/2, remainder (1-t)/2, eps t(1-t)/2
        w = gcc(2, t)
        assert w.tolist() == pytest.approx([(1 + t) / 2 + t * (1 - t) / 2, (1 - t) ** 2 / 2])
    # at a boundary the weights are the plain average of the n - k remaining groups
    assert gcc(4, 1 / 3).tolist() == pytest.approx([1 / 3, 1 / 3, 1 / 3, 0])
    assert gcc(4, 2 / 3).tolist() == pytest.approx([1 / 2, 1 / 2, 0, 0])
    with pytest.raises(ValueError):
        gcc(4, 1.5)
    with pytest.raises(ValueError):
        gcc(0, 0.5)


# --------------------------------------------------------------------------- sum_mix and the loss


def test_sum_mix_matches_the_formula():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(12, 2, 3, 3, generator=g)
    y = torch.randint(0, 5, (12,), generator=g)
    onehot = torch.nn.functional.one_hot(y, 5).float()
    for k, w in [(3, None), (4, torch.tensor([0.4, 0.3, 0.2, 0.1])), (1, None)]:
        xn, tn = sum_mix(x, onehot, k, w)
        m = 12 // k
        ww = torch.full((k,), 1 / k) if w is None else w
        assert xn.shape == (m, 2, 3, 3) and tn.shape == (m, 5)
        for i in range(m):
            assert torch.allclose(xn[i], sum(ww[j] * x[i + j * m] for j in range(k)), atol=1e-6)
            assert torch.allclose(tn[i], sum(ww[j] * onehot[i + j * m] for j in range(k)), atol=1e-6)
    _, t3 = sum_mix(x, onehot, 3)  # uniform weights: class counts / K
    counts = torch.stack([torch.bincount(y[[i, i + 4, i + 8]], minlength=5) for i in range(4)]).float()
    assert torch.allclose(t3, counts / 3)
    with pytest.raises(ValueError):
        sum_mix(x, onehot, 0)


def test_sum_bce_thesis_divides_by_k_and_official_does_not():
    out, t = torch.randn(6, 5), torch.rand(6, 5)
    official = torch.nn.functional.binary_cross_entropy_with_logits(out, t)
    assert float(sum_bce(out, t, 4, "official").mean()) == pytest.approx(float(official), rel=1e-6)
    assert float(sum_bce(out, t, 4, "thesis").mean()) == pytest.approx(float(official) / 4, rel=1e-6)


def test_topk_correct_counts_labels_among_top_k():
    out = torch.tensor([[5.0, 4.0, 0.0, 0.0], [0.0, 0.0, 3.0, 2.0]])
    labels = torch.tensor([[0, 2], [1, 2]])  # K = 2 groups × 2 mixed samples: sample 0 has {0, 1}, 1 has {2, 2}
    # sample 0: top-2 {0, 1} covers both labels; sample 1: top-2 {2, 3} covers one of its two 2's
    assert float(topk_correct(out, labels)) == 3.0


# --------------------------------------------------------------------------- TTSA


def test_ttsa_batched_equals_a_loop_over_mixes():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 7)).eval()
    x = torch.randn(5, 1, 4, 4)
    c, k, lam = 6, 4, 1.5
    randoms = torch.randn(c, k - 1, 5, 1, 4, 4)
    got = ttsa_predict(model, x, randoms, lam)
    probs = []
    for i in range(c):  # §3.6: Aug = λ/K · x + Σ_j 1/(Kλ) · r_j, prediction = mean of the C softmaxes
        aug = lam / k * x + sum(randoms[i, j] for j in range(k - 1)) / (k * lam)
        probs.append(model(aug).softmax(1))
    assert torch.allclose(got.exp(), torch.stack(probs).mean(0), atol=1e-6)
    assert ttsa_mix(x, randoms, lam).shape == (c * 5, 1, 4, 4)
    # K = 1 (no random images): TTSA is the plain prediction
    assert torch.allclose(ttsa_predict(model, x, torch.zeros(3, 0, 5, 1, 4, 4)), model(x).log_softmax(1), atol=1e-5)


def test_ttsa_runs_one_forward_over_c_times_batch():
    calls = []

    class Count(nn.Module):
        def forward(self, x):
            calls.append(x.shape[0])
            return x.flatten(1)[:, :3]

    ttsa_predict(Count(), torch.randn(10, 1, 2, 2), torch.randn(16, 3, 10, 1, 2, 2))
    assert calls == [160]


# --------------------------------------------------------------------------- bad input, one line each

BASE = {"data": {"dataset": "digits"}, "model": {"name": "small_cnn", "width": 0.25}, "train": {"batch_size": 64}}


@pytest.mark.parametrize("methods,match", [
    ({"sum_augmentation": {"k": 0}}, r"methods\.sum_augmentation\.k: .*greater than or equal to 1"),
    ({"sum_augmentation": {"k": 3}}, r"methods\.sum_augmentation\.k: K = 3 does not divide train\.batch_size 64"),
    ({"csa": {"cascade": [8, 6, 3]}}, r"methods\.csa\.cascade: K = 6 does not divide"),
    ({"csa": {"cascade": [2, 4, 1]}}, r"methods\.csa\.cascade: the cascade's K values must be strictly decreasing"),
    ({"csa": {"cascade": [4, 0]}}, r"methods\.csa\.cascade\.1: .*greater than or equal to 1"),
    ({"csa": {"select_on": "test"}}, r"methods\.csa\.select_on: 'test' .*allow_test_selection: true"),
    ({"gcsa": {"start": 4}}, r"methods\.gcsa\.start: K = 3 does not divide"),
    ({"ttsa": {"c": 0}}, r"methods\.ttsa\.c: .*greater than or equal to 1"),
    ({"ttsa": {"lam": 0.0}}, r"methods\.ttsa\.lam: .*greater than 0"),
    ({"mixup": {"alpha": 0.0}}, r"methods\.mixup\.alpha: .*greater than 0"),
    ({"csa": {"cascade": [8, 4, 2, 1]}}, r"methods\.csa\.cascade: 4 phases need at least 4 epochs"),
])
def test_bad_settings_are_one_line_errors(methods, match):
    epochs = 3 if "cascade" in str(methods) and "[8, 4, 2, 1]" in str(methods) else 10
    run = RunConfig.model_validate({**BASE, "train": {"batch_size": 64, "epochs": epochs}, "methods": methods})
    with pytest.raises(ConfigError, match=match) as err:
        check_methods(methods, "methods", run=run)
    assert "\n" not in str(err.value)


def test_leak_flag_and_drop_make_those_settings_valid():
    run = RunConfig.model_validate({**BASE, "train": {"batch_size": 64, "epochs": 10}})
    check_methods({"csa": {"select_on": "test", "allow_test_selection": True}}, "methods", run=run)
    check_methods({"gcsa": {"start": 8, "uneven": "drop"}}, "methods", run=run)
    assert math.isfinite(gcc(8, 0.3).sum().item())


# --------------------------------------------------------------------------- the phase rules (fake engine state)


class FakeState:
    """The engine contract's TrainState surface that the phase rules use."""

    def __init__(self, epochs: int):
        self.model = nn.Linear(2, 2)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9)
        self.epoch, self.epochs = 0, epochs
        self.restored, self.stopped = [], False

    def request_stop(self):
        self.stopped = True

    def restore_weights(self, weights, reset_optimizer):
        self.model.load_state_dict(weights)
        self.restored.append((self.epoch, reset_optimizer))


def _method(name: str, params: dict, epochs: int, schedule: dict | None = None):
    from curriculab.methods import build_methods
    from curriculab.methods.base import MethodContext

    run = RunConfig.model_validate({**BASE, "train": {"batch_size": 64, "epochs": epochs,
                                                      "schedule": schedule or {"name": "constant"}},
                                    "methods": {name: params}})
    check_methods(run.methods, "methods", run=run)
    return build_methods(run.methods, MethodContext(run=run, data=None, device=torch.device("cpu"),
                                                     run_dir=None, workdir=None))[0]


def _drive(method, state, vals):
    """Run the epoch hooks over a sequence of validation accuracies; return the K logged per epoch."""
    ks = []
    for e, v in enumerate(vals):
        if state.stopped:
            break
        state.epoch = e
        method.on_epoch_start(state)
        with torch.no_grad():  # each epoch's weights are recognisable: every entry equals the epoch
            for p in state.model.parameters():
                p.fill_(float(e))
        method.on_eval_end(state, {"val_acc": v, "test_acc": 1 - v, "val_loss": 1 - v})
        ks.append(method.state_metrics()["sa_k"])
    return ks


def test_sum_augmentation_from_k_2_and_plain_training_at_k_1():
    """K = 2 is the smallest sum (§3.3): mixed batches, the sum BCE, top-K training accuracy, `sa_k` logged;
    K = 1 leaves batches, loss and accuracy to the task."""
    g = torch.Generator().manual_seed(0)
    z, labels = torch.randn(4, 10, generator=g), torch.randint(0, 10, (8,), generator=g)
    y = torch.nn.functional.one_hot(labels[:4], 10).float() + torch.nn.functional.one_hot(labels[4:], 10).float()
    state = SimpleNamespace(data=SimpleNamespace(train_y=labels))
    batch = Batch(torch.zeros(4), y, torch.arange(8))
    two, one = _method("sum_augmentation", {"k": 2}, 1), _method("sum_augmentation", {"k": 1}, 1)
    assert torch.equal(two.loss(z, batch, state), sum_bce(z, y, 2, two.params.loss))
    assert torch.equal(two.train_correct(z, batch, state), topk_correct(z, labels.reshape(2, -1)))
    assert two.train_batches(0, state) is not None and two.state_metrics() == {"sa_k": 2.0}
    assert one.loss(z, batch, state) is None and one.train_correct(z, batch, state) is None
    assert one.train_batches(0, state) is None


def test_ttsa_sampler_draws_from_its_pool_with_its_own_generator():
    """Images from the chosen split, every item reachable, without augmentation, from a generator seeded by the
    run's seed plus `seed` (so the global RNG does not change them)."""
    flags = []

    def to_input(x, augment):
        flags.append(augment)
        return x.float()

    items = torch.arange(6, dtype=torch.uint8).view(6, 1, 1, 1).expand(6, 1, 2, 2)
    data = SimpleNamespace(train_x=items, test=(items + 100, None), device=torch.device("cpu"), to_input=to_input)
    p = TTSAParams(k=2, c=3)
    torch.manual_seed(0)
    a = TTSASampler(p, data, seed=5).draw(4)
    torch.manual_seed(1)
    assert torch.equal(a, TTSASampler(p, data, seed=5).draw(4))
    assert torch.equal(a, TTSASampler(TTSAParams(k=2, c=3, seed=2), data, seed=3).draw(4))
    assert not torch.equal(a, TTSASampler(p, data, seed=6).draw(4))
    assert a.shape == (3, 1, 4, 1, 2, 2) and set(flags) == {False}
    assert set(TTSASampler(p, data, seed=0).draw(100).unique().tolist()) == {0, 1, 2, 3, 4, 5}
    assert TTSASampler(TTSAParams(k=2, c=3, pool="test"), data, seed=0).draw(4).min() >= 100


def test_csa_cascade_restores_the_phase_best_and_stops_after_the_last_phase():
    m = _method("csa", {"cascade": [4, 2, 1], "patience": 2}, epochs=30)
    s = FakeState(30)
    # K=4: best at epoch 1, then 2 epochs without gain → restore epoch 1 at epoch 3, switch
    # K=2: best at epoch 5, plateau → restore at epoch 7; K=1: best at epoch 9, stop at 11
    vals = [0.2, 0.5, 0.4, 0.45, 0.6, 0.7, 0.65, 0.69, 0.8, 0.9, 0.85, 0.88, 0.99, 0.99]
    ks = _drive(m, s, vals)
    assert ks == [4, 4, 4, 4, 2, 2, 2, 2, 1, 1, 1, 1]
    assert s.restored == [(3, True), (7, True), (11, True)] and s.stopped
    assert s.model.weight[0, 0].item() == 9.0  # the kept weights of the last phase's best epoch
    # the kept weights live in the method's state_dict, so a resumed run restores them too
    m2 = _method("csa", {"cascade": [4, 2, 1], "patience": 2}, epochs=30)
    m2.load_state_dict(m.state_dict())
    assert float(m2.kept["weight"][0, 0]) == 9.0 and m2.i == 2


def test_csa_budget_share_ends_a_phase_that_never_plateaus():
    m = _method("csa", {"cascade": [2, 1], "patience": 5, "reset_optimizer": False}, epochs=6)
    s = FakeState(6)
    ks = _drive(m, s, [0.1 * (e + 1) for e in range(6)])  # always improving
    assert ks == [2, 2, 2, 1, 1, 1]  # 6 epochs, 2 phases: at most 3 each
    assert s.restored == [(2, False), (5, False)] and s.stopped


def test_selection_on_test_uses_the_test_metric():
    m = _method("csa", {"cascade": [1], "patience": 1, "select_on": "test", "allow_test_selection": True}, 10)
    s = FakeState(10)
    _drive(m, s, [0.9, 0.5, 0.6])  # test_acc = 1 - val_acc: best test at epoch 1, worse at epoch 2
    assert s.restored == [(2, True)] and s.model.weight[0, 0].item() == 1.0


def test_selection_on_loss_keeps_the_lowest_loss():
    """`metric: loss` ranks epochs by validation loss, lower is better (the drive logs val_loss = 1 - val_acc)."""
    m = _method("csa", {"cascade": [1], "patience": 1, "metric": "loss"}, 10)
    s = FakeState(10)
    _drive(m, s, [0.9, 0.5, 0.6])  # val_loss 0.1, 0.5, 0.4: best at epoch 0
    assert s.restored == [(1, True)] and s.model.weight[0, 0].item() == 0.0


def test_lr_resets_per_phase_when_asked():
    sched = {"name": "step", "step_size": 1, "gamma": 0.5}
    lrs = {}
    for reset in (True, False):
        m = _method("csa", {"cascade": [2, 1], "patience": 2, "lr_reset": reset}, epochs=8, schedule=sched)
        s = FakeState(8)
        seen = []
        for e, v in enumerate([0.5, 0.4, 0.3, 0.6, 0.7]):
            s.epoch = e
            for g in s.optimizer.param_groups:  # what the engine's schedule sets before on_epoch_start
                g["lr"] = 0.05 * 0.5 ** e
            m.on_epoch_start(s)
            seen.append(round(s.optimizer.param_groups[0]["lr"], 6))
            m.on_eval_end(s, {"val_acc": v, "val_loss": 1 - v, "test_acc": v})
        lrs[reset] = seen
    assert lrs[True] == [0.05, 0.025, 0.0125, 0.05, 0.025]  # phase 2 starts at epoch 3 from the base lr
    assert lrs[False] == [0.05 * 0.5 ** e for e in range(5)]


def test_gcsa_t_per_epoch_and_per_step_then_clean():
    m = _method("gcsa", {"start": 4, "cascade_epochs": 4, "uneven": "drop"}, epochs=8)
    assert [m.t_at(e) for e in range(6)] == [0, 0.25, 0.5, 0.75, 1.0, 1.0]
    m = _method("gcsa", {"start": 4, "cascade_epochs": 2, "t_update": "step", "uneven": "drop"}, epochs=8)
    assert [m.t_at(e, i, 4) for e in range(2) for i in range(4)] == [i / 8 for i in range(8)]
    assert [p.label for p in m.plan] == ["gradual", "clean"] and m.plan[0].fixed == 2
    s = FakeState(8)
    ks = _drive(m, s, [0.1, 0.2, 0.5, 0.4, 0.3, 0.2, 0.9])
    assert ks == [4, 4, 1, 1, 1, 1] and s.restored == [(5, True)] and s.stopped  # patience 3 in the clean phase
    assert s.model.weight[0, 0].item() == 2.0


def test_sample_pairing_schedule_and_mixup_batch():
    from curriculab.methods.base import Batch
    from curriculab.methods.mixup import mixup_batch

    m = _method("sample_pairing", {"warmup": 2, "on_epochs": 3, "off_epochs": 1}, epochs=20)
    assert [m.pairing_on(e) for e in range(10)] == [False, False, True, True, True, False, True, True, True, False]
    b = Batch(torch.arange(4.0).reshape(4, 1), torch.tensor([0, 1, 2, 0]), torch.arange(4))
    perm = torch.tensor([1, 0, 3, 2])
    mixed = mixup_batch(b, 3, 0.7, perm)
    assert mixed.x[:, 0].tolist() == pytest.approx([0.3, 0.7, 2.3, 2.7])
    assert mixed.y[0].tolist() == pytest.approx([0.7, 0.3, 0.0]) and mixed.y[3].tolist() == pytest.approx([0.7, 0, 0.3])


@pytest.mark.parametrize("rows,evaluate,match", [
    ({"csa_k8": {"methods": {"csa": {"cascade": [8, 3, 1]}}}}, None,
     r"tables\.thesis_t31\.rows\.csa_k8\.methods\.csa\.cascade: K = 3 does not divide train\.batch_size 64"),
    ({"csa_k4": {"methods": {"csa": {"cascade": [4, 4, 1]}}}}, None, r"strictly decreasing"),
    ({"csa_k4": {"methods": {"csa": {"select_on": "test"}}}}, None, r"csa\.select_on: 'test'"),
    ({"csa_k4": {"methods": {"csa": {}}}}, {"ttsa": {"c": 0}}, r"evaluate\.thesis_t31\.ttsa\.c: "),
    ({"csa_k4": {"methods": {"csa": {}}}}, {"ttsa": {"lam": -1.0}}, r"evaluate\.thesis_t31\.ttsa\.lam: "),
    ({"mixup": {"methods": {"mixup": {"alpha": -0.5}}}}, None, r"rows\.mixup\.methods\.mixup\.alpha: "),
])
def test_validate_gives_one_line_errors_naming_the_key(tmp_path, capsys, rows, evaluate, match):
    import re

    import yaml

    from curriculab.cli import main

    block = {"seeds": [0], "run": {"data": {"dataset": "digits"}, "train": {"batch_size": 64, "epochs": 10}},
             "rows": rows}
    params = {"prepare": {"datasets": ["digits"]}, "tables": {"thesis_t31": block}}
    if evaluate:
        params["evaluate"] = {"thesis_t31": evaluate}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params))
    assert main(["validate", str(tmp_path / "p.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and re.search(match, err), err
