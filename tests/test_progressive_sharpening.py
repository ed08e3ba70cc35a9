"""Progressive sharpening: kernels, prepared copies, the epoch → copy schedule, alignment, bad input."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from curriculab import kernels
from curriculab.config import ConfigError, Params
from curriculab.data.copies import check_copies
from curriculab.data.prepare import prepare_all
from curriculab.data.prepared import load_prepared
from curriculab.engine.loop import build, fit
from curriculab.kernels import box_kernel
from curriculab.methods.progressive_sharpening import (
    BoxCopies,
    GaussianCopies,
    ProgressiveSharpening,
    blur,
    schedule_boundaries,
    stage_at,
)
from tests.conftest import micro_run, micro_table

BOX = {"kind": "box", "sizes": [1, 2, 3], "padding": "replicate"}
GAUSS = {"kind": "gaussian", "sigmas": [0.5, 1.0], "padding": "replicate"}


@pytest.fixture(scope="module")
def ps_root(tmp_path_factory) -> Path:
    """A workdir with digits prepared and its box and Gaussian copies."""
    wd = tmp_path_factory.mktemp("ps")
    params = Params.model_validate({"prepare": {"datasets": ["digits"], "copies": {"b": BOX, "g": GAUSS}},
                                    "tracking": {"enabled": False}})
    prepare_all(params, wd)
    return wd


def ps_run(method: dict, epochs: int = 4, **data) -> dict:
    """The settings layer of a progressive-sharpening micro run (see conftest.micro_run)."""
    return {"seed": 1, "data": data, "train": {"epochs": epochs, "batch_size": 128, "checkpoint": False},
            "methods": {"progressive_sharpening": method}}


# --------------------------------------------------------------------------- kernels


def test_box_kernel_is_shared_and_is_j_over_n2():
    assert box_kernel is kernels.box_kernel  # re-exported, not duplicated
    for n in (1, 2, 3, 5):
        k = box_kernel(n)
        assert k.shape == (n, n)
        assert torch.allclose(k, torch.ones(n, n) / n**2)
    assert box_kernel(1).item() == 1.0  # kernel_1 is the identity
    with pytest.raises(ValueError, match=">= 1"):
        box_kernel(0)


def test_box1_copy_is_the_original():
    x = np.random.default_rng(0).integers(0, 256, (5, 2, 7, 6), dtype=np.uint8)
    for pad in ("replicate", "reflect", "zeros"):
        assert np.array_equal(blur(x, box_kernel(1), pad), x)


@pytest.mark.parametrize("kernel", [box_kernel(2), box_kernel(3), box_kernel(5),
                                    kernels.gaussian_kernel(1.0, 5)])
@pytest.mark.parametrize("padding", ["replicate", "reflect"])
def test_constant_image_stays_constant(kernel, padding):
    """Kernels sum to 1 and replicate/reflect padding repeats the constant: every pixel keeps its value."""
    x = np.full((3, 3, 9, 8), 173, dtype=np.uint8)
    y = blur(x, kernel, padding)
    assert y.shape == x.shape and y.dtype == np.uint8
    assert (y == 173).all()


def test_zero_padding_darkens_only_the_border():
    """With zero padding a constant image is not preserved: the border pulls in black; the inside is kept."""
    x = np.full((1, 1, 9, 9), 200, dtype=np.uint8)
    y = blur(x, box_kernel(3), "zeros")[0, 0]
    assert (y[1:-1, 1:-1] == 200).all()
    assert y[0, 0] == round(200 * 4 / 9) and y[0, 4] == round(200 * 6 / 9)


@pytest.mark.parametrize("n", [3, 5])
def test_impulse_response_is_the_box(n):
    x = np.zeros((1, 1, 11, 11), dtype=np.uint8)
    x[0, 0, 5, 5] = 225  # divisible by 9 and 25: exact in uint8
    y = blur(x, box_kernel(n), "zeros")[0, 0].astype(int)
    r = n // 2
    want = np.zeros((11, 11), dtype=int)
    want[5 - r:5 + r + 1, 5 - r:5 + r + 1] = 225 // n**2
    assert np.array_equal(y, want)


def test_impulse_response_even_box_is_shifted_up_left():
    """An even box pads one more pixel at the bottom/right, so the impulse spreads up and left."""
    x = np.zeros((1, 1, 6, 6), dtype=np.uint8)
    x[0, 0, 3, 3] = 200
    y = blur(x, box_kernel(2), "replicate")[0, 0]
    assert set(zip(*np.nonzero(y), strict=True)) == {(2, 2), (2, 3), (3, 2), (3, 3)}
    assert (y[2:4, 2:4] == 50).all()


def test_impulse_response_gaussian():
    x = np.zeros((1, 1, 9, 9), dtype=np.uint8)
    x[0, 0, 4, 4] = 255
    k = kernels.gaussian_kernel(1.0, 5)
    y = blur(x, k, "zeros")[0, 0].astype(float)
    want = np.zeros((9, 9))
    want[2:7, 2:7] = 255 * k.numpy()
    assert np.abs(y - want).max() <= 0.5


def test_blur_matches_per_image_convolution_and_is_chunked(monkeypatch):
    """The vectorised blur (all channels as groups, in chunks) equals a plain per-image depthwise filter."""
    import curriculab.methods.progressive_sharpening as ps

    monkeypatch.setattr(ps, "CHUNK_PIXELS", 100)  # many small chunks
    x = np.random.default_rng(1).integers(0, 256, (7, 3, 8, 8), dtype=np.uint8)
    k = box_kernel(3)
    ref = kernels.depthwise(torch.from_numpy(x).float(), k, "reflect").round().clamp(0, 255).to(torch.uint8)
    assert np.array_equal(blur(x, k, "reflect"), ref.numpy())


# --------------------------------------------------------------------------- prepared copies


def test_prepare_writes_one_aligned_copy_per_level(ps_root):
    prep = load_prepared(ps_root / "data", "digits")
    names = ["box1_replicate", "box2_replicate", "box3_replicate",
             "gauss0.5_k5_replicate", "gauss1_k7_replicate"]
    from curriculab.data.prepared import load_copy, read_meta

    assert set(names) <= set(read_meta(ps_root / "data", "digits")["copies"])
    for name, k in zip(names, [box_kernel(1), box_kernel(2), box_kernel(3), kernels.gaussian_kernel(0.5, 5),
                               kernels.gaussian_kernel(1.0, 7)], strict=True):
        c = load_copy(ps_root / "data", "digits", name)
        assert c.shape == prep.x.shape and c.dtype == np.uint8
        assert np.array_equal(c, blur(prep.x, k, "replicate"))  # row i is item i, blurred


def test_copies_are_aligned_with_batch_indices(ps_root, tmp_path):
    """With a per-class subset (train rows ≠ prepared rows) index i is the same item in every copy."""
    run = micro_run(ps_run({"box": BOX, "every": 1}, subset_per_class=20, augment={"normalize": False}))
    data, hooks, _ = build(run, tmp_path, ps_root, torch.device("cpu"))
    assert torch.equal(data.copy("box1_replicate"), data.train_x)
    box3 = data.copy("box3_replicate")
    expect = blur(data.train_x.numpy(), box_kernel(3), "replicate")
    assert np.array_equal(box3.numpy(), expect)
    (m,) = hooks.methods
    from curriculab.methods.base import TrainState

    state = TrainState(model=torch.nn.Identity(), optimizer=None, data=data, epochs=4)
    seen = []
    for batch in m.train_batches(0, state):  # epoch 0: the most blurred copy, box3
        assert torch.equal(batch.y, data.train_y[batch.index])
        assert torch.allclose(batch.x, box3[batch.index].float() / 255)
        seen.append(batch.index)
    assert torch.equal(torch.cat(seen).sort().values, torch.arange(data.n_train))


# --------------------------------------------------------------------------- schedule


def test_schedule_every():
    b = schedule_boundaries(3, 2, None)
    assert b == [2, 4, 6]
    assert [stage_at(e, b) for e in range(8)] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert schedule_boundaries(3, None, None) == [1, 2, 3]  # default E = 1


def test_epoch_to_copy_mapping(ps_root, tmp_path):
    run = micro_run(ps_run({"box": BOX, "boundaries": [1, 3, 4]}, epochs=6))
    _, hooks, _ = build(run, tmp_path, ps_root, torch.device("cpu"))
    (m,) = hooks.methods
    got = [m.copy_at(e) for e in range(6)]
    assert got == [("box3_replicate", 3.0), ("box2_replicate", 2.0), ("box2_replicate", 2.0),
                   ("box1_replicate", 1.0), (None, 1.0), (None, 1.0)]
    run = micro_run(ps_run({"gaussian": GAUSS, "every": 2}, epochs=6))
    _, hooks, _ = build(run, tmp_path, ps_root, torch.device("cpu"))
    (m,) = hooks.methods
    assert [m.copy_at(e)[1] for e in range(6)] == [1.0, 1.0, 0.5, 0.5, 0.0, 0.0]
    for e, sigma in ((0, 1.0), (3, 0.5), (5, 0.0)):  # a Gaussian schedule logs σ under its own name
        m.on_epoch_start(SimpleNamespace(epoch=e))
        assert m.state_metrics() == {"ps_sigma": sigma, "ps_stage": float(e // 2)}


def test_training_logs_the_kernel_size(ps_root, tmp_path):
    rec = fit(micro_run(ps_run({"box": {**BOX, "sizes": [2, 3]}, "every": 1}, epochs=3)), tmp_path / "r", ps_root)
    assert [h["ps_kernel_size"] for h in rec["history"]] == [3.0, 2.0, 1.0]
    assert [h["ps_stage"] for h in rec["history"]] == [0.0, 1.0, 2.0]
    assert [a["ps_copy"] for a in rec["artifacts"]] == ["box3_replicate", "box2_replicate", "original"]


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("block, key, words", [
    ({"kind": "box", "sizes": [0, 3]}, "prepare.copies.c.sizes.0", "greater than or equal to 1"),
    ({"kind": "box", "sizes": [3, 3]}, "prepare.copies.c.sizes", "strictly increasing"),
    ({"kind": "box", "sizes": [5, 3]}, "prepare.copies.c.sizes", "strictly increasing"),
    ({"kind": "box", "sizes": []}, "prepare.copies.c.sizes", "at least 1"),
    ({"kind": "box", "sizes": [3], "padding": "wrap"}, "prepare.copies.c.padding", "replicate"),
    ({"kind": "gaussian", "sigmas": [1.0, 0.5]}, "prepare.copies.c.sigmas", "strictly increasing"),
    ({"kind": "gaussian", "sigmas": [0.0]}, "prepare.copies.c.sigmas.0", "greater than 0"),
    ({"kind": "gaussian", "sigmas": [1.0], "size": 4}, "prepare.copies.c.size", "odd"),
    ({"kind": "boxx", "sizes": [3]}, "prepare.copies.c.kind", "did you mean 'box'"),
])
def test_bad_copy_settings(block, key, words):
    with pytest.raises(ConfigError) as e:
        check_copies({"c": block})
    msg = str(e.value)
    assert msg.startswith(key + ":") and words in msg and "\n" not in msg


def test_reflect_padding_larger_than_the_image_is_refused():
    x = np.zeros((2, 1, 8, 8), dtype=np.uint8)
    blur(x, box_kernel(15), "reflect")  # pad 7 < 8: allowed
    with pytest.raises(ConfigError, match="padding 'reflect' with a 17×17 kernel"):
        blur(x, box_kernel(17), "reflect")
    assert blur(x, box_kernel(17), "replicate").shape == x.shape


@pytest.mark.parametrize("method, words", [
    ({"box": BOX, "gaussian": GAUSS}, "exactly one of `box` or `gaussian`"),
    ({}, "exactly one of `box` or `gaussian`"),
    ({"box": BOX, "every": 1, "boundaries": [1, 2, 3]}, "either `every` or `boundaries`"),
    ({"box": BOX, "boundaries": [1, 2]}, "one switch epoch per blurred copy (3)"),
    ({"box": BOX, "boundaries": [2, 2, 3]}, "strictly increasing"),
    ({"box": {**BOX, "sizes": [0]}}, "box.sizes.0"),
])
def test_bad_method_settings(tmp_path, method, words):
    with pytest.raises(ConfigError) as e:
        micro_table(tmp_path, "ps_t1", ps_table(method))
    msg = str(e.value)
    assert words in msg and msg.startswith("tables.ps_t1.rows.ps.methods.progressive_sharpening")


def ps_table(method: dict, epochs: int = 4) -> dict:
    return {"seeds": [0], "run": {"train": {"epochs": epochs}, "data": {"dataset": "digits"}},
            "rows": {"ps": {"methods": {"progressive_sharpening": method}}}}


@pytest.mark.parametrize("method, epochs", [({"box": BOX, "every": 2}, 6), ({"box": BOX, "every": 1}, 3),
                                            ({"box": BOX, "boundaries": [1, 2, 5]}, 5)])
def test_schedule_longer_than_training_is_caught_at_validation(tmp_path, method, epochs):
    with pytest.raises(ConfigError) as e:
        micro_table(tmp_path, "ps_t1", ps_table(method, epochs))
    msg = str(e.value)
    assert msg.startswith("tables.ps_t1.rows.ps.methods.progressive_sharpening.")
    assert f"train.epochs is {epochs}" in msg and "at least one epoch on the original" in msg
    micro_table(tmp_path, "ps_t1", ps_table(method, epochs + 1))  # one more epoch: valid


def test_schedule_longer_than_training_is_caught_at_construction(ps_root, tmp_path):
    with pytest.raises(ConfigError, match="methods.progressive_sharpening.every: .*train.epochs is 3"):
        build(micro_run(ps_run({"box": BOX, "every": 1}, epochs=3)), tmp_path, ps_root, torch.device("cpu"))


def test_copies_for_another_dataset_only_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="box.datasets: the run trains on 'digits'"):
        micro_table(tmp_path, "ps_t1", ps_table({"box": {**BOX, "datasets": ["syndigits"]}}))


def test_copy_not_prepared_fails_before_training(ps_root, tmp_path):
    run = micro_run(ps_run({"box": {**BOX, "sizes": [2, 7]}, "every": 1}))
    with pytest.raises(ConfigError) as e:
        fit(run, tmp_path / "r", ps_root)
    msg = str(e.value)
    assert msg.startswith("methods.progressive_sharpening.box: dataset 'digits' has no prepared copy "
                          "'box7_replicate'")
    assert "prepare.copies" in msg and not (tmp_path / "r" / "metrics.json").exists()
    run = micro_run(ps_run({"box": {**BOX, "padding": "reflect"}, "every": 1}))  # the same sizes, another padding
    with pytest.raises(ConfigError, match="no prepared copy 'box1_reflect'"):
        build(run, tmp_path, ps_root, torch.device("cpu"))


def test_copy_params_accept_the_prepare_block():
    """The same YAML block (anchor) configures prepare.copies and the method."""
    made = check_copies({"b": BOX, "g": GAUSS})
    assert isinstance(made["b"][1], BoxCopies) and isinstance(made["g"][1], GaussianCopies)
    p = ProgressiveSharpening.Params.model_validate({"box": BOX})
    assert [n for n, _ in p.copies.levels()] == [n for n, _ in made["b"][1].levels()]


# --------------------------------------------------------------------------- figure


def test_ps_f1_shows_the_prepared_copies(ps_root, tmp_path):
    import pandas as pd

    from curriculab.tables.ps import ps_f1
    from curriculab.tables.result import load_result

    params = micro_table(tmp_path, "ps_t1", ps_table({"box": BOX, "every": 1}, 5))
    res = load_result("ps.t1", params, ps_root)
    files = ps_f1(res, tmp_path / "fig")
    assert sorted(p.name for p in files) == ["ps.f1.csv", "ps.f1.png"]
    df = pd.read_csv(tmp_path / "fig" / "ps.f1.csv")
    assert len(df) == 3 * 4  # 3 samples × (original + 3 box copies)
    assert list(df[df.sample_row == 0]["copy"]) == ["original", "box1_replicate", "box2_replicate",
                                                     "box3_replicate"]
    assert (df.groupby("sample_row")["label"].first().to_list()) == [0, 1, 2]
    box1 = df[df["copy"] == "box1_replicate"]["mean_pixel"].to_numpy()
    assert np.allclose(box1, df[df["copy"] == "original"]["mean_pixel"].to_numpy())
