"""Sources, the prepared format, derived variants and the device loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from curriculab.config import ConfigError, Params, PrepareParams, RunConfig
from curriculab.data.derive import resize, subset_per_class
from curriculab.data.loader import DeviceData, random_crop, random_flip
from curriculab.data.prepared import dataset_dir, load_prepared, write_copy
from curriculab.data.sources import SOURCES, DatasetMissing, Raw
from curriculab.data.syndigits import FONTS, _glyphs, render
from tests.conftest import FASHION


def test_digits_prepared_format(prepared_root):
    p = load_prepared(prepared_root / "data", "digits")
    assert p.x.dtype == np.uint8 and p.x.shape[1:] == (1, 8, 8) and p.x.max() == 255
    assert p.y.dtype == np.int64 and p.classes == 10
    sizes = {k: len(v) for k, v in p.splits.items()}
    assert sizes == {"train": 1797 - 540, "val": 180, "test": 360}
    all_idx = np.concatenate(list(p.splits.values()))
    assert len(np.unique(all_idx)) == len(all_idx) == 1797  # disjoint and complete


def test_corrupt_prepared_file_is_detected(tmp_path):
    from curriculab.data.prepare import prepare_all

    params = Params.model_validate({"prepare": {"datasets": ["digits"]}})
    prepare_all(params, tmp_path)
    f = dataset_dir(tmp_path / "data", "digits") / "arrays.npz"
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    f.write_bytes(bytes(raw))
    with pytest.raises(ConfigError, match="checksum mismatch") as e:
        load_prepared(tmp_path / "data", "digits")
    assert "curriculab prepare" in str(e.value)


def test_unprepared_dataset_message(tmp_path):
    with pytest.raises(ConfigError, match="is not prepared"):
        load_prepared(tmp_path, "digits")


@pytest.mark.parametrize("name", ["cifar10", "svhn", "svhn_extra", "mnist", "binarized_mnist", "usps", "cifar100"])
def test_missing_torchvision_dataset_fails_in_one_sentence(tmp_path, name):
    cfg = PrepareParams(torchvision_root=str(tmp_path), download=False)
    with pytest.raises(DatasetMissing) as e:
        SOURCES[name](cfg)
    msg = str(e.value)
    assert name in msg and str(tmp_path) in msg and "\n" not in msg


def test_missing_imagefolder_and_fashion(tmp_path):
    with pytest.raises(DatasetMissing, match="prepare.imagefolder.root"):
        SOURCES["imagefolder"](PrepareParams())
    cfg = PrepareParams(torchvision_root=str(tmp_path), download=False, fashion_mnist={"root": str(tmp_path / "none")})
    with pytest.raises(DatasetMissing, match="dataset-fashion-mnist"):
        SOURCES["fashion_mnist"](cfg)


@pytest.mark.skipif(not FASHION.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_idx():
    raw = SOURCES["fashion_mnist"](PrepareParams())
    assert raw.x.shape == (70000, 1, 28, 28) and raw.classes == 10
    assert len(raw.splits["test"]) == 10000 and len(raw.splits["val"]) == 5000
    assert np.bincount(raw.y[raw.splits["test"]]).tolist() == [1000] * 10


def test_syndigits_seeded_and_varied():
    a, ya, fonts = render(64, 16, seed=3)
    b, yb, _ = render(64, 16, seed=3)
    c, _, _ = render(64, 16, seed=4)
    assert np.array_equal(a, b) and np.array_equal(ya, yb) and not np.array_equal(a, c)
    assert a.shape == (64, 1, 16, 16) and len(fonts) >= 10
    assert a.reshape(64, -1).std(1).min() > 10  # every image has a glyph on it


def test_syndigits_glyphs_are_centred_upright_and_fill_80_percent_of_the_raster():
    g = _glyphs(FONTS[:3])
    assert g.shape == (3, 10, 64, 64) and g.dtype == np.float32 and not np.array_equal(g[0], g[1])
    for f in range(3):
        for d in range(10):
            ys, xs = np.nonzero(g[f, d] > 0.5)
            assert 48 <= max(ys.max() - ys.min(), xs.max() - xs.min()) + 1 <= 53  # 0.8 · 64 on the longer side
            # centred; across, up to 4.5 px right of centre, because the box taken from the path's vertices
            # includes its CLOSEPOLY vertices, stored at (0, 0) (left as it is: the prepared data depend on it)
            assert abs((ys.min() + ys.max()) / 2 - 31.5) <= 1.5 and 0 <= (xs.min() + xs.max()) / 2 - 31.5 <= 5
    seven = g[0, 7]
    assert seven[:32].sum() > 1.5 * seven[32:].sum()  # upright: the bar of the 7 is at the top


def test_syndigits_labels_and_inversions():
    x, y, _ = render(400, 16, seed=0)
    assert y.dtype == np.int64 and np.bincount(y, minlength=10).min() >= 20  # every digit, about evenly
    border = np.concatenate([x[:, 0, 0, :], x[:, 0, -1, :]], 1).mean(1)
    assert 0.22 < (border > 128).mean() < 0.38  # about 30% drawn dark on light


def test_prepare_rewrites_a_dataset_exactly_when_its_own_settings_or_the_seed_change(tmp_path):
    import json

    from curriculab.data.prepare import prepare_all

    def prepare(seed=0, train=20):
        params = Params.model_validate({"prepare": {
            "datasets": ["digits", "syndigits"], "seed": seed,
            "syndigits": {"train": train, "val": 10, "test": 10, "size": 8}}})
        return prepare_all(params, tmp_path)

    assert prepare() == ["digits", "syndigits"]
    assert prepare() == []
    assert prepare(train=30) == ["syndigits"]  # syndigits' own block: digits keeps its bytes
    assert len(load_prepared(tmp_path / "data", "syndigits").splits["train"]) == 30
    assert prepare(seed=1, train=30) == ["digits", "syndigits"]
    meta = dataset_dir(tmp_path / "data", "syndigits") / "meta.json"
    meta.write_text(json.dumps({k: v for k, v in json.loads(meta.read_text()).items() if k != "info"}))
    assert prepare(seed=1, train=30) == ["syndigits"]  # a meta.json without its info is rebuilt


def test_subset_per_class():
    y = np.repeat(np.arange(5), 20)
    idx = subset_per_class(y, 7, seed=0)
    assert np.bincount(y[idx]).tolist() == [7] * 5
    assert np.array_equal(idx, subset_per_class(y, 7, seed=0))
    assert not np.array_equal(idx, subset_per_class(y, 7, seed=1))


def test_subset_is_a_seeded_uniform_sample_of_the_training_items(prepared_root):
    """data.subset (CBS Table 5, ADDA's protocol: 2,000 MNIST / 1,800 USPS images): n training items drawn
    uniformly (not per class) by the run's seed, after subset_per_class."""
    def data(seed, **extra):
        run = RunConfig.model_validate({"seed": seed, "data": {"dataset": "digits", **extra}})
        return DeviceData(run, prepared_root / "data", torch.device("cpu"))

    full, a, b = data(0), data(0, subset=100), data(1, subset=100)
    assert a.n_train == 100 and set(a.train_pos) <= set(full.train_pos) and list(a.train_pos) == sorted(a.train_pos)
    assert np.array_equal(a.train_pos, data(0, subset=100).train_pos) and not np.array_equal(a.train_pos, b.train_pos)
    assert len(set(np.bincount(a.train_y.numpy(), minlength=10))) > 1  # not balanced per class
    both = data(0, subset_per_class=20, subset=50)
    assert both.n_train == 50 and set(both.train_pos) <= set(data(0, subset_per_class=20).train_pos)
    assert data(0, subset=10**6).n_train == full.n_train


def test_train_split_train_plus_val_trains_on_the_whole_official_training_split(prepared_root):
    """data.train_split: train+val (the papers train on all of the training split): the holdout joins the training
    items; the validation split is still evaluated (now on trained items)."""
    p = load_prepared(prepared_root / "data", "digits")
    run = RunConfig.model_validate({"data": {"dataset": "digits", "train_split": "train+val"}})
    d = DeviceData(run, prepared_root / "data", torch.device("cpu"))
    both = np.sort(np.concatenate([p.splits["train"], p.splits["val"]]))
    assert np.array_equal(d.train_pos, both) and torch.equal(d.train_y, torch.from_numpy(p.y[both]))
    assert torch.equal(d.val[1], torch.from_numpy(p.y[p.splits["val"]]))


def test_resize_and_channels():
    x = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    y = resize(x, 16, 3)
    assert y.shape == (4, 3, 16, 16) and y.dtype == torch.uint8
    assert torch.equal(y[:, 0], y[:, 2])
    back = resize(y, 8, 1)
    assert back.shape == (4, 1, 8, 8)
    assert (back.int() - x.int()).abs().float().mean() < 30


def test_crop_and_flip_are_per_sample_and_seeded():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4).repeat(50, 1, 1, 1)
    g = torch.Generator().manual_seed(0)
    out = random_crop(x, 1, g)
    assert out.shape == x.shape
    shifted = [not torch.equal(out[i], x[i]) for i in range(len(x))]
    assert 0 < sum(shifted) < len(x)  # some crops move the image, some do not
    for i in range(len(x)):  # every crop is a shifted window of the zero-padded image
        padded = torch.nn.functional.pad(x[i], (1, 1, 1, 1))
        assert any(torch.equal(out[i], padded[:, a:a + 4, b:b + 4]) for a in range(3) for b in range(3))
    f = random_flip(x, torch.Generator().manual_seed(0))
    flipped = [torch.equal(f[i], x[i].flip(2)) for i in range(len(x))]
    assert 0 < sum(flipped) < len(x)

    v = random_flip(x, torch.Generator().manual_seed(0), dim=2)
    assert 0 < sum(torch.equal(v[i], x[i].flip(1)) for i in range(len(x))) < len(x)


def test_random_affine_turns_and_shifts_each_image():
    from curriculab.data.loader import random_affine

    x = torch.zeros(64, 1, 9, 9)
    x[:, :, 4, 2:7] = 1.0  # a horizontal bar through the centre
    same = random_affine(x, 0.0, 0.0, torch.Generator().manual_seed(0))
    torch.testing.assert_close(same, x, atol=1e-6, rtol=0)  # zero angle and shift: the identity
    quarter = random_affine(x, 90.0, 0.0, torch.Generator().manual_seed(1))
    turned = x.transpose(2, 3)  # the bar upright: the rotation of ±90° (bilinear, so compare where it lands)
    near = [(quarter[i] - turned[i]).abs().max() < 0.5 for i in range(len(x))]
    assert 0 < sum(near) < len(x)  # per-image angles: some near ±90°, others not
    shifted = random_affine(x, 0.0, 0.25, torch.Generator().manual_seed(2))
    rows = (shifted[:, 0].sum(2) > 0.5).float().argmax(1)  # the row the bar moved to, per image
    assert len(set(rows.tolist())) > 1 and all(abs(r - 4) <= 3 for r in rows.tolist())
    again = random_affine(x, 90.0, 0.0, torch.Generator().manual_seed(1))
    assert torch.equal(again, quarter)  # seeded


def test_device_data_batches_cover_the_training_set(prepared_root):
    run = RunConfig.model_validate({"data": {"dataset": "digits", "subset_per_class": 20}})
    d = DeviceData(run, prepared_root / "data", torch.device("cpu"))
    assert d.n_train == 200 and d.classes == 10
    seen = torch.cat([b.index for b in d.batches(64)])
    assert sorted(seen.tolist()) == list(range(200))
    b = next(d.batches(64, augment=False, shuffle=False))
    assert torch.equal(b.y, d.train_y[:64]) and b.x.dtype == torch.float32
    assert abs(float(torch.cat([x for x, _ in d.eval_batches("train", 1000)]).mean())) < 1e-4  # normalised


def test_copy_alignment_and_missing_copy(prepared_root, tmp_path):
    import shutil

    shutil.copytree(prepared_root / "data", tmp_path / "data")
    p = load_prepared(tmp_path / "data", "digits")
    write_copy(tmp_path / "data", "digits", "inverted", 255 - p.x)
    run = RunConfig.model_validate({"data": {"dataset": "digits", "subset_per_class": 5}})
    d = DeviceData(run, tmp_path / "data", torch.device("cpu"))
    assert torch.equal(d.copy("inverted"), 255 - d.train_x)
    with pytest.raises(ConfigError, match="no prepared copy 'blur9'"):
        d.copy("blur9")


def _png(path, value):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (10, 8), (value, value, value)).save(path)


def _imagefolder(root):
    return SOURCES["imagefolder"](PrepareParams(imagefolder={"root": str(root), "image_size": 4}))


def _test_labels(raw):
    return raw.y[raw.splits["test"]].tolist(), raw.x[raw.splits["test"], 0, 0, 0].tolist()


def test_imagefolder_tiny_imagenet_val_annotations(tmp_path):
    """Tiny-ImageNet: train/<wnid>/images/, val/images/ labelled by val_annotations.txt (not one class 'images')."""
    for i, wnid in enumerate(["n01", "n02", "n03"]):
        _png(tmp_path / "train" / wnid / "images" / f"{wnid}_0.JPEG", 10 * i)
    for name, value in [("val_0.JPEG", 200), ("val_1.JPEG", 100), ("val_2.JPEG", 50)]:
        _png(tmp_path / "val" / "images" / name, value)
    (tmp_path / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn03\t0\t0\t9\t7\nval_1.JPEG\tn01\t0\t0\t9\t7\n"
                                                          "val_2.JPEG\tn03\t0\t0\t9\t7\n")
    raw = _imagefolder(tmp_path)
    assert raw.classes == 3 and _test_labels(raw) == ([2, 0, 2], [200, 100, 50])
    (tmp_path / "val" / "val_annotations.txt").unlink()  # without it: refused, not read as one class
    with pytest.raises(ConfigError, match="val/images/ is not a class"):
        _imagefolder(tmp_path)


def test_imagefolder_flat_imagenet_val_uses_the_devkit(tmp_path):
    """Stock ImageNet: val/ flat, classes from torchvision's meta.bin (the parsed devkit), in file-name order."""
    for i, wnid in enumerate(["n01", "n02"]):
        _png(tmp_path / "train" / wnid / f"{wnid}_0.JPEG", i)
    for k, value in enumerate([30, 60, 90]):
        _png(tmp_path / "val" / f"ILSVRC2012_val_0000000{k + 1}.JPEG", value)
    with pytest.raises(DatasetMissing, match="ILSVRC2012_devkit_t12.tar.gz"):
        _imagefolder(tmp_path)
    torch.save(({"n01": ("a",), "n02": ("b",)}, ["n02", "n01", "n02"]), tmp_path / "meta.bin")
    assert _test_labels(_imagefolder(tmp_path)) == ([1, 0, 1], [30, 60, 90])


def test_imagefolder_val_classes_indexed_as_train(tmp_path):
    """val/<class>/ folders get the training classes' indices even when val lacks a class; a stray one is refused."""
    for i, wnid in enumerate(["a", "b", "c"]):
        _png(tmp_path / "train" / wnid / "0.png", i)
    _png(tmp_path / "val" / "c" / "0.png", 77)
    assert _test_labels(_imagefolder(tmp_path)) == ([2], [77])
    _png(tmp_path / "val" / "d" / "0.png", 1)
    with pytest.raises(ConfigError, match="val/d/ is not a class"):
        _imagefolder(tmp_path)


def test_celeba_without_gdown_names_the_extra_and_the_files(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "gdown", None)  # `import gdown` fails, as without the celeba extra
    with pytest.raises(DatasetMissing) as e:
        SOURCES["celeba"](PrepareParams(torchvision_root=str(tmp_path), download=True))
    msg = str(e.value)
    assert "pip install -e '.[celeba]'" in msg and f"{tmp_path}/celeba" in msg and "list_eval_partition.txt" in msg
    assert "\n" not in msg
    with pytest.raises(DatasetMissing, match=r"the download failed or is off \[RuntimeError\]"):
        SOURCES["celeba"](PrepareParams(torchvision_root=str(tmp_path), download=False))


def test_channel_stats_in_chunks_match_one_pass():
    from curriculab.data.loader import channel_stats

    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (50, 3, 5, 4), generator=gen, dtype=torch.uint8)
    x[:, 1] //= 4  # channels with different moments
    xf = x.float() / 255
    mean, std = channel_stats(x)  # one chunk: the float32 formula, unchanged
    assert torch.equal(mean, xf.mean((0, 2, 3), keepdim=True)) and torch.equal(std, xf.std((0, 2, 3), keepdim=True))
    for chunk in (1, 60, 7 * 60):  # 1 image per chunk, 1, 7 (the last chunk shorter)
        m, s = channel_stats(x, chunk=chunk)
        assert m.shape == (1, 3, 1, 1) and m.dtype == torch.float32
        torch.testing.assert_close(m, mean, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(s, std, rtol=1e-6, atol=1e-7)


def test_prepare_records_a_missing_dataset_and_goes_on(tmp_path):
    from curriculab.data.prepare import prepare_all
    from curriculab.data.prepared import missing_datasets

    params = Params.model_validate({"prepare": {"datasets": ["digits", "cifar10"], "download": False,
                                                "torchvision_root": str(tmp_path / "tv")}})
    assert prepare_all(params, tmp_path) == ["digits"]
    root = tmp_path / "data"
    reason = missing_datasets(root, ["digits", "cifar10"])
    assert list(reason) == ["cifar10"] and "dataset 'cifar10' is not available" in reason["cifar10"]
    with pytest.raises(DatasetMissing, match=r"not available.*dvc repro -f prepare@cifar10"):
        load_prepared(root, "cifar10")
    assert load_prepared(root, "digits").classes == 10
    with pytest.raises(ConfigError, match="'nosuch' is not in prepare.datasets"):
        prepare_all(params, tmp_path, names=["nosuch"])


def test_train_and_evaluate_of_a_table_whose_data_is_missing(tmp_path, capsys, monkeypatch):
    """train: one line, exit 0, the stage's (empty) output folder; evaluate: a missing target is one line too."""
    import yaml

    import curriculab.cli as cli
    from curriculab.data.prepared import MISSING, atomic_write_json, dataset_dir
    from curriculab.engine.records import write_record
    from curriculab.evaluate import transfer
    from curriculab.project import load_params
    from curriculab.tables.spec import expand_table

    table = {"seeds": [0], "run": {"model": {"name": "small_cnn", "width": 0.25}, "train": {"epochs": 1}},
             "columns": {"c": {"data": {"dataset": "cifar10"}}}, "rows": {"baseline": {"methods": {"baseline": {}}}}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"prepare": {"datasets": ["cifar10", "digits"]},
                                                     "tracking": {"enabled": False}, "evaluate": {"cbs_t3": {}},
                                                     "tables": {"cbs_t3": table}}))
    args = ["--params", str(tmp_path / "p.yaml"), "--workdir", str(tmp_path)]
    atomic_write_json(dataset_dir(tmp_path / "data", "cifar10") / MISSING, {"reason": "cifar10 is not here"})
    assert cli.main([*args, "train", "cbs_t3"]) == 0
    assert "cbs.t3: not run: cifar10 is not here" in capsys.readouterr().out
    assert (tmp_path / "runs" / "cbs_t3").is_dir() and not any((tmp_path / "runs" / "cbs_t3").iterdir())
    assert cli.main([*args, "evaluate", "cbs_t3"]) == 0
    assert "cbs.t3: not run: cifar10 is not here" in capsys.readouterr().out
    # the training data is there, an evaluation target is not: the evaluation stops in one line, exit 0
    (dataset_dir(tmp_path / "data", "cifar10") / MISSING).unlink()
    params = load_params(tmp_path / "p.yaml")
    for run in expand_table(cli._table(params, "cbs_t3"), params):
        write_record(run.dir(tmp_path) / "metrics.json", {"run_id": run.run_id, "status": "done", "final": {}})

    def target_missing(*a):
        raise DatasetMissing("dataset 'digits' is not available: looked there")

    monkeypatch.setattr(transfer, "feature_probe", target_missing)  # what the table's `evaluate` names
    assert cli.main([*args, "evaluate", "cbs_t3"]) == 0
    assert "cbs.t3: evaluation not run: dataset 'digits' is not available" in capsys.readouterr().out


def test_svhn_extra_trains_on_train_and_extra(monkeypatch):
    """svhn_extra: SVHN's train + extra splits as the training images (SPL-ADVisE §4), its test split as test."""
    import torchvision.datasets as tvd

    sizes = {"train": 30, "extra": 50, "test": 20}

    class FakeSVHN:  # torchvision's layout: data (N, 3, 32, 32) uint8, labels (N,)
        def __init__(self, root, split, download):
            self.data = np.full((sizes[split], 3, 32, 32), list(sizes).index(split), np.uint8)
            self.labels = np.arange(sizes[split]) % 10

    monkeypatch.setattr(tvd, "SVHN", FakeSVHN)
    both, plain = SOURCES["svhn_extra"](PrepareParams()), SOURCES["svhn"](PrepareParams())
    assert len(both.x) == 100 and len(plain.x) == 50
    train = np.concatenate([both.splits["train"], both.splits["val"]])
    assert sorted(both.x[train, 0, 0, 0].tolist()) == [0] * 30 + [1] * 50  # train, then extra
    assert both.x[both.splits["test"], 0, 0, 0].tolist() == [2] * 20 and len(both.splits["val"]) == 8


def test_binarized_mnist_is_one_seeded_bernoulli_sample_of_mnist(monkeypatch):
    """binarized_mnist: MNIST's images with each pixel 255 with probability intensity / 255, else 0; the same
    sample for the same prepare.seed; labels and splits as MNIST's."""
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, (400, 1, 28, 28), dtype=np.uint8)
    grey[:, :, :2] = 0
    grey[:, :, -2:] = 255
    splits = {"train": np.arange(300), "val": np.arange(300, 350), "test": np.arange(350, 400)}
    monkeypatch.setitem(SOURCES, "mnist", lambda cfg: Raw(grey, np.arange(400) % 10, splits, 10, {}))
    a = SOURCES["binarized_mnist"](PrepareParams(seed=0))
    assert a.x.dtype == np.uint8 and set(np.unique(a.x)) == {0, 255}
    assert (a.x[:, :, :2] == 0).all() and (a.x[:, :, -2:] == 255).all()  # intensity 0 and 255 are certain
    mid = (grey >= 100) & (grey <= 150)
    assert abs((a.x[mid] == 255).mean() - grey[mid].mean() / 255) < 0.01  # P(255) = intensity / 255
    assert np.array_equal(a.x, SOURCES["binarized_mnist"](PrepareParams(seed=0)).x)
    assert not np.array_equal(a.x, SOURCES["binarized_mnist"](PrepareParams(seed=1)).x)
    assert a.splits is splits and (a.y == np.arange(400) % 10).all()
