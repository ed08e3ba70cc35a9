"""Curriculum by Smoothing: kernel, smoothing layer, placement, schedule, bad input, transfer evaluation."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from curriculab import kernels
from curriculab.config import ConfigError
from curriculab.methods import check_methods
from curriculab.methods.cbs import (
    CBS,
    GaussianSmoothing,
    SmoothedInput,
    WeightInit,
    conv_sites,
    gaussian_kernel,
    sigma_at,
)
from curriculab.models import create_model
from tests.conftest import micro_run


def make_cbs(in_channels: int = 1, **params) -> CBS:
    ctx = SimpleNamespace(data=SimpleNamespace(in_channels=in_channels))
    return CBS(CBS.Params.model_validate(params), ctx)


def smoothing_layers(model: nn.Module) -> list[GaussianSmoothing]:
    return [m for m in model.modules() if isinstance(m, GaussianSmoothing)]


# --------------------------------------------------------------------------- kernel


def test_gaussian_kernel_is_the_shared_one():
    assert gaussian_kernel is kernels.gaussian_kernel


@pytest.mark.parametrize("sigma", [0.0, 1e-30, 1e-3, 0.3, 1.0, 5.0, 1e6])
@pytest.mark.parametrize("size", [1, 3, 5])
def test_gaussian_kernel_normalised_finite_symmetric(sigma, size):
    k = gaussian_kernel(sigma, size)
    assert k.shape == (size, size)
    assert torch.isfinite(k).all()
    assert k.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(k, k.T) and torch.allclose(k, k.flip(0)) and torch.allclose(k, k.flip(1))
    assert k[size // 2, size // 2] == k.max()


def test_gaussian_kernel_limits_and_values():
    delta = torch.zeros(3, 3)
    delta[1, 1] = 1
    assert torch.equal(gaussian_kernel(0.0), delta)
    assert torch.allclose(gaussian_kernel(1e-4), delta)
    assert torch.allclose(gaussian_kernel(1e6), torch.full((3, 3), 1 / 9), atol=1e-6)
    # σ = 1: taps ∝ exp(-d²/2) with d² ∈ {0, 1, 2}, as in the official get_gaussian_filter
    w = [1.0, math.exp(-0.5), math.exp(-1.0)]
    z = w[0] + 4 * w[1] + 4 * w[2]
    k = gaussian_kernel(1.0)
    assert k[1, 1].item() == pytest.approx(1 / z, rel=1e-6)
    assert k[0, 1].item() == pytest.approx(w[1] / z, rel=1e-6)
    assert k[0, 0].item() == pytest.approx(w[2] / z, rel=1e-6)


# --------------------------------------------------------------------------- smoothing layer


def test_smoothing_layer_matches_depthwise_keeps_shape_and_is_not_trained():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 7, 9)
    layer = GaussianSmoothing(4, 0.8)
    y = layer(x)
    assert y.shape == x.shape
    assert torch.allclose(y, kernels.depthwise(x, gaussian_kernel(0.8)), atol=1e-6)
    assert list(layer.parameters()) == [] and "kernel" in dict(layer.named_buffers())
    # zero padding: the interior of a constant map is unchanged, borders lose mass
    c = layer(torch.ones(1, 4, 5, 5))
    assert torch.allclose(c[..., 1:-1, 1:-1], torch.ones(1, 4, 3, 3), atol=1e-6)
    assert c[0, 0, 0, 0] < 1


def test_smoothing_layer_updates_kernel_in_place_and_identity_at_zero():
    layer = GaussianSmoothing(3, 1.0)
    buf, ptr = layer.kernel, layer.kernel.data_ptr()
    layer.set_sigma(0.5)
    assert layer.kernel is buf and layer.kernel.data_ptr() == ptr
    assert torch.allclose(layer.kernel[2, 0], gaussian_kernel(0.5))
    x = torch.randn(1, 3, 6, 6)
    layer.set_sigma(0.0)
    assert torch.equal(layer(x), x)
    assert torch.equal(layer.kernel[0, 0], gaussian_kernel(0.0))


# --------------------------------------------------------------------------- placement


@pytest.mark.parametrize(("name", "kwargs", "counts"), [
    ("small_cnn", {}, {"all": 3, "no_shortcut": 3}),
    ("lenet", {}, {"all": 2, "no_shortcut": 2}),
    ("resnet18", {}, {"all": 20, "no_shortcut": 17}),  # 17 3×3 convs + 3 1×1 shortcut projections
    ("vgg16", {}, {"all": 13, "no_shortcut": 13, "vgg_official": 5}),
    ("wrn", {"depth": 16, "widen": 2}, {"all": 16, "no_shortcut": 13}),
    ("resnext50", {}, {"all": 53, "no_shortcut": 49}),
    # torchvision's: its shortcut projections are the 1×1 `downsample` convs
    ("torchvision_imagenet", {"arch": "resnet18"}, {"all": 20, "no_shortcut": 17}),
    ("torchvision_imagenet", {"arch": "resnext50_32x4d"}, {"all": 53, "no_shortcut": 49}),
])
def test_placement_counts(name, kwargs, counts):
    model = create_model(name, 3, 10, 1.0 if name == "torchvision_imagenet" else 0.125, **kwargs)
    for placement, n in counts.items():
        assert len(conv_sites(model, placement)) == n, placement


def test_vgg_official_is_last_conv_of_each_block():
    sites = conv_sites(create_model("vgg16", 3, 10, 0.125), "vgg_official")
    assert sites == ["blocks.0.conv2.conv", "blocks.1.conv2.conv", "blocks.2.conv3.conv",
                     "blocks.3.conv3.conv", "blocks.4.conv3.conv"]
    with pytest.raises(ValueError, match="vgg_official"):
        conv_sites(create_model("resnet18", 3, 10, 0.125), "vgg_official")


def test_transposed_and_single_placement():
    vae = create_model("vae", 1, 10, 0.25, image_size=8)
    assert len(conv_sites(vae, "all")) == 2
    assert conv_sites(vae, "all", transposed=True) == ["encoder.0", "encoder.2", "decoder.0", "decoder.2"]
    net = create_model("resnet18", 3, 10, 0.125)
    assert conv_sites(net, "single", layer=0) == ["conv1"]
    assert conv_sites(net, "single", layer=-1) == [conv_sites(net)[-1]]
    with pytest.raises(ValueError, match="layer"):
        conv_sites(net, "single", layer=20)


def test_wrap_model_nested_shapes_and_sigma_zero_recovers_plain_network():
    torch.manual_seed(0)
    plain = create_model("resnet18", 3, 10, 0.125).eval()
    state = {k: v.clone() for k, v in plain.state_dict().items()}
    method = make_cbs(3, sigma=0.0, placement="no_shortcut")
    wrapped = method.wrap_model(create_model("resnet18", 3, 10, 0.125)).eval()
    assert len(smoothing_layers(wrapped)) == 17
    assert isinstance(wrapped.get_submodule("stages.1.0.conv1"), nn.Sequential)  # a nested conv got its layer
    assert isinstance(wrapped.get_submodule("stages.1.0.shortcut.0"), nn.Conv2d)  # the shortcut did not
    assert sum(p.numel() for p in wrapped.parameters()) == sum(p.numel() for p in plain.parameters())
    # same weights (keys gain a `.0` for the conv inside its Sequential)
    wrapped.load_state_dict({**{k: v for k, v in wrapped.state_dict().items() if k.endswith(".kernel")},
                             **{_wrapped_key(k, wrapped): v for k, v in state.items()}})
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(wrapped(x), plain(x), atol=1e-6)
        method.set_sigma(1.0)
        assert not torch.allclose(wrapped(x), plain(x), atol=1e-3)


def test_kernel_size_and_single_layer_reach_the_wrapped_model():
    """A 5×5 G_σ keeps H×W and stays 5×5 as σ moves (every layer, the input's too); placement 'single' wraps
    exactly the conv that `layer` names."""
    net = create_model("resnet18", 3, 10, 0.125)
    target = conv_sites(net)[2]
    method = make_cbs(3, sigma=1.0, kernel_size=5, placement="single", layer=2)
    wrapped = method.wrap_model(net)
    layers = smoothing_layers(wrapped)
    assert len(layers) == 1 and isinstance(wrapped.get_submodule(target), nn.Sequential)
    x = torch.randn(2, layers[0].channels, 9, 9)
    assert layers[0](x).shape == x.shape
    method.set_sigma(0.5)
    assert torch.equal(layers[0].kernel[0, 0], gaussian_kernel(0.5, 5))
    image = make_cbs(1, sigma=1.0, kernel_size=5, target="image")
    image.wrap_model(create_model("small_cnn", 1, 10, 0.25))
    image.set_sigma(0.5)
    assert [tuple(layer.kernel.shape) for layer in image.layers] == [(1, 1, 5, 5)]


def _wrapped_key(key: str, wrapped: nn.Module) -> str:
    mod, _, leaf = key.rpartition(".")
    sub = wrapped.get_submodule(mod) if mod else wrapped
    return f"{mod}.0.{leaf}" if isinstance(sub, nn.Sequential) and isinstance(sub[0], nn.Conv2d) else key


def test_image_targets_blur_the_input():
    conv = nn.Conv2d(1, 1, 1, bias=False)
    nn.init.ones_(conv.weight)
    method = make_cbs(1, sigma=1.0, target="image")
    model = method.wrap_model(nn.Sequential(conv))
    assert isinstance(model, SmoothedInput) and len(smoothing_layers(model)) == 1
    x = torch.randn(2, 1, 6, 6)
    assert torch.allclose(model(x), kernels.depthwise(x, gaussian_kernel(1.0)), atol=1e-6)
    both = make_cbs(3, target="image_and_features").wrap_model(create_model("small_cnn", 3, 10, 0.25))
    assert isinstance(both, SmoothedInput) and len(smoothing_layers(both)) == 4


# --------------------------------------------------------------------------- schedule


def test_sigma_schedule():
    assert [sigma_at(t, 1.0, 0.9, 5) for t in (0, 4.99, 5, 9, 10)] == pytest.approx([1, 1, 0.9, 0.9, 0.81])
    assert [sigma_at(t, 1.0, 0.9, 0.5) for t in (0, 0.49, 0.5, 1.0, 1.5)] == pytest.approx(
        [1, 1, 0.9, 0.81, 0.729])
    assert sigma_at(50, 2.0, 0.5, 1, constant=True) == 2.0
    assert sigma_at(3 * 0.1, 1.0, 0.9, 0.1) == pytest.approx(0.9**3)  # float-safe counting


def official_sigmas(sigma0: float, factor: float, period: int, epochs: int) -> list[float]:
    """pairlab/CBS: get_new_kernels(epoch_count) at each epoch's start multiplies std by the factor when
    `epoch_count % args.epoch == 0 and epoch_count is not 0` (`--epoch` is the decay period)."""
    std, out = sigma0, []
    for epoch_count in range(epochs):
        if epoch_count % period == 0 and epoch_count != 0:
            std *= factor
        out.append(std)
    return out


@pytest.mark.parametrize("period", [1, 2, 3, 5, 7])
def test_default_schedule_is_the_official_rule_for_integer_periods(period):
    want = official_sigmas(1.0, 0.9, period, 30)
    assert [sigma_at(e, 1.0, 0.9, period) for e in range(30)] == pytest.approx(want, rel=1e-12)
    method = make_cbs(1, sigma=1.0, decay=0.9, period=period)
    method.wrap_model(create_model("small_cnn", 1, 10, 0.25))
    state = SimpleNamespace(epoch=0, step=0, steps_per_epoch=3)
    seen = []
    for epoch in range(30):  # the engine's hooks: σ at each epoch's start and after each of its steps
        state.epoch = epoch
        method.on_epoch_start(state)
        for _ in range(3):
            seen.append(method.sigma)
            state.step += 1
            method.on_step_end(state)
    assert seen == pytest.approx([s for s in want for _ in range(3)], rel=1e-12)


def test_official_first_decay_option_is_gone():
    """It fixed the first decay at epoch 5 whatever the period, a misreading of the official code."""
    with pytest.raises(ValueError, match="official_first_decay"):
        make_cbs(1, official_first_decay=True)


def test_schedule_hooks_fractional_period_and_epoch_boundary():
    method = make_cbs(1, sigma=1.0, decay=0.5, period=0.5)
    method.wrap_model(create_model("small_cnn", 1, 10, 0.25))
    state = SimpleNamespace(epoch=0, step=0, steps_per_epoch=4)
    method.on_epoch_start(state)
    seen, traces = [], []
    for epoch in range(2):
        state.epoch = epoch
        method.on_epoch_start(state)
        for _ in range(4):
            state.step += 1
            method.on_step_end(state)
            seen.append(method.sigma)
        assert method.state_metrics() == {"sigma": method.sigma}
        traces.append(method.epoch_artifacts()["sigma_trace"])
    # decays mid-epoch (t = 0.5, 1.5); the boundary decay (t = 1) waits for on_epoch_start of epoch 1
    assert seen == pytest.approx([1, 0.5, 0.5, 0.5, 0.25, 0.125, 0.125, 0.125])
    assert traces == [[[0, 1.0], [0.5, 0.5]], [[1, 0.25], [1.5, 0.125]]]
    assert all(layer.sigma == 0.125 for layer in method.layers)
    fresh = make_cbs(1, sigma=1.0)
    fresh.wrap_model(create_model("small_cnn", 1, 10, 0.25))
    fresh.load_state_dict(method.state_dict())
    assert fresh.sigma == 0.125 and torch.equal(fresh.layers[0].kernel[0, 0], gaussian_kernel(0.125))


def test_constant_sigma_never_moves():
    method = make_cbs(1, sigma=1.0, constant=True, period=0.1)
    method.wrap_model(create_model("small_cnn", 1, 10, 0.25))
    state = SimpleNamespace(epoch=3, step=37, steps_per_epoch=10)
    method.on_epoch_start(state)
    method.on_step_end(state)
    assert method.sigma == 1.0


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("params", "key"), [
    ({"sigma": -0.1}, "sigma"),
    ({"decay": 0.0}, "decay"),
    ({"decay": 1.5}, "decay"),
    ({"period": 0}, "period"),
    ({"kernel_size": 4}, "kernel_size"),
    ({"kernel_size": 0}, "kernel_size"),
    ({"placement": "everywhere"}, "placement"),
    ({"placement": "single"}, "layer"),
    ({"target": "labels"}, "target"),
    ({"sigmaa": 1.0}, "sigmaa"),
])
def test_bad_params_are_one_line_errors(params, key):
    with pytest.raises(ConfigError) as e:
        check_methods({"cbs": params}, "tables.x.rows.cbs.methods")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("tables.x.rows.cbs.methods.cbs") and key in msg


def test_validate_cli_reports_bad_sigma(tmp_path, capsys):
    from curriculab.cli import main

    (tmp_path / "p.yaml").write_text(
        "prepare: {datasets: [digits]}\ntracking: {enabled: false}\n"
        "tables:\n  cbs_t1:\n    seeds: [0]\n    columns: {d: {data: {dataset: digits}}}\n"
        "    rows: {cbs: {methods: {cbs: {sigma: -1}}}}\n")
    assert main(["validate", str(tmp_path / "p.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: tables.cbs_t1.rows.cbs.methods.cbs.sigma") and len(err.splitlines()) == 1


# --------------------------------------------------------------------------- weight init


def test_weight_init_schemes():
    def conv_std(scheme: str) -> float:
        torch.manual_seed(0)
        method = WeightInit(WeightInit.Params(scheme=scheme), None)
        m = method.wrap_model(create_model("small_cnn", 3, 10, 1.0))
        return float(m[2].conv.weight.detach().std()), float(m[-1].weight.detach().std())

    k_conv, k_lin = conv_std("kaiming_normal")
    x_conv, _ = conv_std("xavier_normal")
    fan_in, fan_out = 32 * 9, 64 * 9
    assert k_conv == pytest.approx(math.sqrt(2 / fan_in), rel=0.1)
    assert x_conv == pytest.approx(math.sqrt(2 / (fan_in + fan_out)), rel=0.1)
    assert k_lin == pytest.approx(0.01, rel=0.2)


# --------------------------------------------------------------------------- training and evaluation


CBS_RUN = {"train": {"batch_size": 128}, "methods": {"cbs": {"sigma": 1.0, "decay": 0.5, "period": 0.5}}}


def test_fit_logs_sigma_and_load_trained_restores_it(workdir):
    from curriculab.engine.loop import fit, load_trained

    run = micro_run(CBS_RUN)
    rec = fit(run, workdir / "run", workdir)
    # two decays per epoch; the one due at the end of epoch 2 waits for an epoch 3 that never comes
    assert [h["sigma"] for h in rec["history"]] == pytest.approx([0.5, 0.125])
    model, _, hooks = load_trained(run, workdir / "run", workdir, "cpu")
    (cbs,) = hooks.methods
    assert cbs.sigma == 0.125 and all(layer.sigma == 0.125 for layer in smoothing_layers(model))


def test_feature_probe_and_zero_shot_oracle_reuse(workdir):
    from curriculab.evaluate.transfer import (
        ProbeParams,
        ZeroShotParams,
        feature_probe,
        oracle_record,
        zero_shot,
    )
    from curriculab.executor import execute
    from curriculab.tables.spec import RunSpec, run_id

    def spec(column: str, dataset: str) -> RunSpec:
        data = {"dataset": dataset, "image_size": 16, "channels": 1, "subset_per_class": 20}
        cfg = micro_run(CBS_RUN, data=data, train={"epochs": 3})
        return RunSpec("cbs.t5", "cbs", column, 0, cfg, run_id(cfg))  # named as the table names it

    fwd, back = spec("d2s", "digits"), spec("s2d", "syndigits")
    for r in (fwd, back):
        execute(r, workdir)
    out = zero_shot(fwd, {}, ZeroShotParams(targets={"d2s": "syndigits"}, device="cpu"), workdir)
    assert 0 <= out["target_acc"] <= 1
    # the oracle of digits→syndigits is the syndigits-trained run of the reverse column, reused, not retrained
    rec = oracle_record(fwd, "syndigits", workdir)
    assert rec["run_id"] == back.run_id and out["target_only_acc"] == rec["final"]["test_acc"]
    assert not (workdir / "runs" / "eval").exists()
    with pytest.raises(ConfigError, match="targets"):
        zero_shot(back, {}, ZeroShotParams(targets={"d2s": "syndigits"}, device="cpu"), workdir)
    pp = ProbeParams(targets=["digits", "syndigits"], epochs=15, lr=3e-3, hidden=64, device="cpu")
    probe = feature_probe(fwd, {}, pp, workdir)
    kinds = ("acc", "acc_at_best_val", "val_acc")
    assert set(probe) == {f"probe_{t}_{k}" for t in ("digits", "syndigits") for k in kinds} | {
        "probe_mean_acc", "probe_mean_acc_at_best_val"}
    mean = (probe["probe_digits_acc"] + probe["probe_syndigits_acc"]) / 2
    assert probe["probe_mean_acc"] == pytest.approx(mean)
    assert all(0 <= v <= 1 for v in probe.values())
    assert probe["probe_digits_acc"] > 0.3  # features of a digits-trained net separate digits (chance 0.1)


def test_an_oracle_no_run_of_the_table_provides_is_trained_and_named(workdir, capsys):
    from curriculab.evaluate.transfer import oracle_record
    from curriculab.tables.spec import RunSpec, run_id

    data = {"dataset": "digits", "image_size": 16, "channels": 1, "subset_per_class": 20}
    cfg = micro_run(CBS_RUN, data=data, train={"epochs": 1})
    run = RunSpec("cbs.t5", "cbs", "d2s", 0, cfg, run_id(cfg))
    rec = oracle_record(run, "syndigits", workdir)  # nothing to reuse: trained under runs/eval
    assert rec["status"] == "done" and rec["labels"]["oracle_of"] == run.run_id
    assert (workdir / "runs" / "eval" / "cbs_t5" / "oracle" / rec["run_id"] / "metrics.json").is_file()


def test_train_probe_learns_separable_features():
    from curriculab.evaluate.transfer import ProbeParams, train_probe

    g = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 16, generator=g) * 4

    def split(n):
        y = torch.randint(0, 3, (n,), generator=g)
        return centers[y] + torch.randn(n, 16, generator=g), y

    pp = ProbeParams(epochs=5, lr=1e-3, hidden=64)
    res = train_probe(split(300), split(100), split(200), 3, pp, seed=0)
    assert res["acc"] > 0.95 and res["acc_at_best_val"] > 0.95


def test_an_oracle_takes_its_targets_subset_and_reuses_the_reverse_run(workdir):
    """ADDA's protocol (Table 5): sources are samples (data.subset); the oracle of a target trains on
    `oracle_subset`'s sample of it, and so reuses the reverse column's run, and not the source's subset."""
    from curriculab.evaluate.transfer import ZeroShotParams, oracle_record, target_data
    from curriculab.executor import execute
    from curriculab.tables.spec import RunSpec, run_id

    def spec(column: str, dataset: str, subset: int) -> RunSpec:
        data = {"dataset": dataset, "image_size": 16, "channels": 1, "subset": subset}
        cfg = micro_run(CBS_RUN, data=data, train={"epochs": 1})
        return RunSpec("cbs.t5", "cbs", column, 0, cfg, run_id(cfg))

    fwd, back = spec("d2s", "digits", 150), spec("s2d", "syndigits", 120)
    execute(back, workdir)
    p = ZeroShotParams(targets={"d2s": "syndigits"}, oracle_subset={"syndigits": 120})
    assert oracle_record(fwd, "syndigits", workdir, p.oracle_subset["syndigits"])["run_id"] == back.run_id
    assert not (workdir / "runs" / "eval").exists()
    whole = oracle_record(fwd, "syndigits", workdir)  # no subset: the whole split, trained here
    assert whole["run_id"] != back.run_id and (workdir / "runs" / "eval").exists()
    from curriculab.engine.loop import build

    data, _, _ = build(fwd.config, workdir / "x", workdir, torch.device("cpu"))
    assert data.n_train == 150
    assert target_data(fwd.config, "syndigits", data, workdir).n_train > 120  # the target's test split: no sample
