"""Perfect Ordering: batched trajectories = one model at a time, k-means picks, the runner, bad input."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import yaml

from curriculab.config import ConfigError, RunConfig
from curriculab.engine.batched import SGDConfig, Stack, evaluate
from curriculab.models import create_model
from curriculab.models.toy import PlainBatchNorm2d
from curriculab.project import load_params
from curriculab.runners.perfect_ordering import pick_starts, read_networks, run_perfect_ordering, train_orders
from curriculab.settings_file import load_yaml
from curriculab.tables.thesis_ordering import THESIS_T21, _thesis_frame, claim_counts
from tests.conftest import ROOT

CFG = SGDConfig(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)


def _loop(model, opt, xb, yb, order):
    model.train()
    for b in order:
        loss = F.cross_entropy(model(xb[b]), yb[b])
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.mark.parametrize("arch,cfg", [("basic_conv", CFG), ("small_cnn", CFG),  # plain-op BN and nn.BatchNorm2d
                                      ("basic_conv", SGDConfig(lr=0.1))])  # plain SGD: no momentum, no decay
def test_batched_orders_equal_one_model_at_a_time(arch, cfg):
    torch.manual_seed(0)
    model = create_model(arch, 1, 2, 0.25)
    xb, yb = torch.randn(4, 6, 1, 8, 8), torch.randint(0, 2, (4, 6))
    orders = torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2]])
    # two epochs: the second continues each network's own momentum from where the first left it
    stack = train_orders(model, Stack.of(model, 1), torch.zeros(3, dtype=torch.long), orders, xb, yb, cfg)
    stack = train_orders(model, stack, torch.arange(3), orders.flip(1), xb, yb, cfg)
    xt, yt = torch.randn(20, 1, 8, 8), torch.randint(0, 2, (20,))
    loss, acc = evaluate(model, stack, xt, yt, batch_size=7)
    for i, order in enumerate(orders.tolist()):
        ref = copy.deepcopy(model)
        opt = torch.optim.SGD(ref.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                              weight_decay=cfg.weight_decay)
        _loop(ref, opt, xb, yb, order)
        _loop(ref, opt, xb, yb, order[::-1])
        for k, v in ref.named_parameters():
            torch.testing.assert_close(stack.params[k][i], v.detach(), atol=1e-5, rtol=1e-5)
            buf = opt.state[v].get("momentum_buffer")  # none without momentum: the stack's stays zero
            torch.testing.assert_close(stack.momentum[k][i], torch.zeros_like(v) if buf is None else buf,
                                       atol=1e-5, rtol=1e-5)
        for k, v in ref.named_buffers():
            torch.testing.assert_close(stack.buffers[k][i].float(), v.float(), atol=1e-5, rtol=1e-5)
        ref.eval()
        with torch.no_grad():
            out = ref(xt)
        assert abs(loss[i].item() - F.cross_entropy(out, yt).item()) < 1e-5
        assert acc[i].item() == (out.argmax(1) == yt).float().mean().item()


def test_shared_prefixes_are_trained_once(monkeypatch):
    """All 24 orders of 4 batches from 2 starts: each distinct (start, prefix) takes its step once, and every
    network still equals its order trained one model at a time."""
    import itertools

    import curriculab.runners.perfect_ordering as po

    torch.manual_seed(2)
    model = create_model("basic_conv", 1, 2, 0.25)
    xb, yb = torch.randn(4, 6, 1, 8, 8), torch.randint(0, 2, (4, 6))
    orders = torch.tensor(list(itertools.permutations(range(4)))).repeat(2, 1)
    start_of = torch.arange(2).repeat_interleave(24)
    starts = train_orders(model, Stack.of(model, 1), torch.zeros(2, dtype=torch.long), orders[[0, 23]], xb, yb, CFG)
    sizes, step = [], po.train_step
    monkeypatch.setattr(po, "train_step", lambda m, st, *a: sizes.append(st.n) or step(m, st, *a))
    stack = train_orders(model, starts, start_of, orders, xb, yb, CFG)
    assert sizes == [2 * 4, 2 * 12, 2 * 24, 2 * 24]  # 104 network-steps where one row per order takes 192
    for i in (0, 7, 24, 47):
        ref = copy.deepcopy(model)
        opt = torch.optim.SGD(ref.parameters(), lr=CFG.lr, momentum=CFG.momentum, nesterov=True,
                              weight_decay=CFG.weight_decay)
        _loop(ref, opt, xb, yb, orders[[0, 23][i // 24]].tolist())
        _loop(ref, opt, xb, yb, orders[i].tolist())
        for k, v in ref.named_parameters():
            torch.testing.assert_close(stack.params[k][i], v.detach(), atol=1e-5, rtol=1e-5)


def test_plain_batchnorm_is_nn_batchnorm():
    torch.manual_seed(1)
    a, b = torch.nn.BatchNorm2d(3), PlainBatchNorm2d(3)
    x = torch.randn(5, 3, 4, 4) * 2 + 1
    torch.testing.assert_close(b(x), a(x))
    torch.testing.assert_close(b(x + 1), a(x + 1))
    for name, buf in a.named_buffers():
        torch.testing.assert_close(dict(b.named_buffers())[name], buf)
    a.eval(), b.eval()
    torch.testing.assert_close(b(x), a(x))


def test_pick_starts_nearest_centre_first_and_extremes():
    losses = np.array([0.10, 0.11, 0.50, 0.52, 0.54, 0.90])
    nearest = pick_starts(losses, 3, "nearest", False, seed=0)
    assert sorted(nearest.tolist()) == [0, 3, 5] or sorted(nearest.tolist()) == [1, 3, 5]
    assert 3 in nearest  # the middle cluster's centre is 0.52
    assert pick_starts(losses, 3, "first", False, seed=0).tolist() == [0, 2, 5]
    ext = pick_starts(np.array([0.1, 0.2, 0.3, 0.8, 0.9]), 2, "first", True, seed=0)
    assert 0 in ext and 4 in ext


RUNNER = {"classes": [0, 1], "per_class": 4, "clusters": 2, "chunk": 3, "eval_batch_size": 50}


def _run(epochs=3, **runner) -> RunConfig:
    return RunConfig.model_validate({
        "data": {"dataset": "digits"}, "model": {"name": "basic_conv", "width": 0.25},
        "train": {"epochs": epochs, "batch_size": 4, "device": "cpu",
                  "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4}},
        "runner": {**RUNNER, **runner}})


def test_runner_trains_every_order_and_writes_the_network_table(workdir):
    rec = run_perfect_ordering(_run(), workdir / "r", workdir, run_id="x")
    # 2 batches → 2 orders; epoch 1: 2 networks; then 2 start networks × 2 orders per epoch
    assert [h["networks"] for h in rec["history"]] == [2, 4, 4]
    assert rec["status"] == "done" and rec["final"]["networks"] == 10
    nets = read_networks(workdir / "r")
    assert len(nets) == 10 and set(nets.columns) >= {"epoch", "start_network", "order", "test_loss", "test_acc"}
    e2 = nets[nets["epoch"] == 2]
    assert set(e2["start_network"]) <= set(nets[nets["epoch"] == 1]["network"]) and e2["start_network"].nunique() == 2
    h = rec["history"][1]
    assert h["test_acc_min"] == pytest.approx(e2["test_acc"].min())
    assert h["test_acc_max"] == pytest.approx(e2["test_acc"].max())
    # chunk size does not change the numbers
    run_perfect_ordering(_run(chunk=64), workdir / "r2", workdir)
    pd.testing.assert_frame_equal(nets, read_networks(workdir / "r2"), atol=1e-5, rtol=0)
    # the same run again writes the same metrics.json, byte for byte: wall-clock seconds go to timing.json
    run_perfect_ordering(_run(), workdir / "r3", workdir, run_id="x")
    assert (workdir / "r3" / "metrics.json").read_bytes() == (workdir / "r" / "metrics.json").read_bytes()
    timing = json.loads((workdir / "r" / "timing.json").read_text())
    assert len(timing["epoch_seconds"]) == 3 and timing["seconds"] > 0


def test_claim_counts_on_the_thesis_table():
    t = _thesis_frame()
    # max(N) > min(N + 4) holds for N = 5..9 strictly and also N = 4 with a tie (MaxAcc(4) = MinAcc(10))
    assert claim_counts(t, 4, "test_acc_min") == (5, 6, 9)
    assert claim_counts(t, 1, "test_acc_mean") == (4, 9, 12)
    assert THESIS_T21[13][2] == 0.995


def _bad(tmp_path, mutate) -> str:
    p = load_yaml(ROOT / "params.yaml")
    mutate(p["tables"]["thesis_t21"]["run"])
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(p))
    with pytest.raises(ConfigError) as e:
        load_params(f)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_bad_perfect_ordering_settings(tmp_path):
    msg = _bad(tmp_path, lambda r: r["train"].__setitem__("batch_size", 7))
    assert msg.startswith("tables.thesis_t21.run.train.batch_size:") and "does not divide" in msg
    msg = _bad(tmp_path, lambda r: r["runner"].__setitem__("clusters", 800))
    assert msg.startswith("tables.thesis_t21.run.runner.clusters:") and "720 networks" in msg
    msg = _bad(tmp_path, lambda r: r["runner"].__setitem__("pick", "centre"))
    assert msg.startswith("tables.thesis_t21.run.runner.pick:")
    msg = _bad(tmp_path, lambda r: r["runner"].__setitem__("chunks", 3))
    assert msg.startswith("tables.thesis_t21.run.runner.chunks: unknown key") and "chunk" in msg
