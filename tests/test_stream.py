"""The streaming path: an image folder prepared as files (layout "files") and decoded batch by batch while
training (data/stream.py), and the device-side ImageNet crops it uses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from curriculab.config import ConfigError, Params, RunConfig
from curriculab.data.loader import DeviceData, center_crop, random_resized_crop
from curriculab.data.prepare import prepare_all
from curriculab.data.prepared import load_prepared, read_meta
from curriculab.data.stream import StreamData, open_data

SIDE = 12


def _tree(root, per_class=6, classes=("a", "b", "c")):
    """train/<class>/ and val/<class>/ PNGs of random pixels, wider than tall (so the centre square matters)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("val", 2)):
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                px = rng.integers(0, 256, (SIDE, SIDE + 5, 3), dtype=np.uint8)
                Image.fromarray(px).save(root / split / c / f"{i}.png")


def _params(tree, **folder) -> Params:
    return Params.model_validate({"prepare": {"datasets": ["imagefolder"],
                                              "imagefolder": {"root": str(tree), "image_size": SIDE, **folder}}})


def _run(**data) -> RunConfig:
    return RunConfig.model_validate({"data": {"dataset": "imagefolder", **data}})


@pytest.fixture()
def streamed(tmp_path):
    _tree(tmp_path / "tree")
    prepare_all(_params(tmp_path / "tree", layout="files", load_size=SIDE), tmp_path / "w")
    return tmp_path / "w" / "data"


def test_files_layout_keeps_paths_labels_and_statistics(streamed, tmp_path):
    meta = read_meta(streamed, "imagefolder")
    assert meta["layout"] == "files" and meta["shape"] == [3, SIDE, SIDE]
    assert not (streamed / "prepared" / "imagefolder" / "arrays.npz").exists()
    p = load_prepared(streamed, "imagefolder")
    assert p.x is None and len(p.files) == len(p.y) == 3 * 6 + 3 * 2 and p.classes == 3
    assert [f.split("/")[-2] for f in p.files[p.splits["test"]]] == ["a", "a", "b", "b", "c", "c"]
    assert p.y[p.splits["test"]].tolist() == [0, 0, 1, 1, 2, 2]
    # the statistics are those of the training images (all of them here: stats_images > 15)
    prepare_all(_params(tmp_path / "tree", layout="arrays"), tmp_path / "arrays")
    arrays = DeviceData(_run(), tmp_path / "arrays" / "data", torch.device("cpu"))
    assert np.allclose(p.stream["mean"], arrays.mean.flatten().tolist(), atol=1e-6)
    assert np.allclose(p.stream["std"], arrays.std.flatten().tolist(), atol=1e-6)


def test_auto_layout_streams_above_the_threshold(tmp_path):
    _tree(tmp_path / "tree", per_class=2, classes=("a",))
    prepare_all(_params(tmp_path / "tree"), tmp_path / "small")
    assert read_meta(tmp_path / "small" / "data", "imagefolder").get("layout") is None  # arrays
    prepare_all(_params(tmp_path / "tree", files_above_gib=1e-9), tmp_path / "big")
    assert read_meta(tmp_path / "big" / "data", "imagefolder")["layout"] == "files"


def test_streamed_batches_equal_the_device_loaders(streamed, tmp_path):
    """Same items, same order, same flips, same normalisation: the two loaders differ only in where the images
    are, for any number of decoding processes."""
    prepare_all(_params(tmp_path / "tree", layout="arrays"), tmp_path / "arrays")
    run = _run(augment={"flip": True, "crop_pad": 2}, noise={"rate": 0.3})
    dev = DeviceData(run, tmp_path / "arrays" / "data", torch.device("cpu"))
    st = open_data(run, streamed, torch.device("cpu"))
    assert isinstance(st, StreamData) and st.n_train == dev.n_train and torch.equal(st.train_y, dev.train_y)
    some = torch.tensor([0, 2, 3, 7, 11, 12])  # 6 items: a last batch of one
    for workers, kw in ((0, {}), (1, {}), (0, {"drop_last": True}), (0, {"indices": some}),
                        (0, {"indices": some, "drop_last": True, "shuffle": False})):
        st.workers = workers
        dev.gen.manual_seed(5), st.gen.manual_seed(5)
        got = list(st.batches(5, **kw))
        for a, b in zip(dev.batches(5, **kw), got, strict=True):
            assert torch.equal(a.index, b.index) and torch.equal(a.y, b.y) and torch.equal(a.x, b.x)
        items = kw.get("indices", torch.arange(st.n_train))
        seen = torch.cat([b.index for b in got])
        if kw.get("drop_last"):  # whole batches only
            assert [len(b.index) for b in got] == [5] * (len(items) // 5) and set(seen.tolist()) < set(items.tolist())
        else:
            assert sorted(seen.tolist()) == items.tolist()
    for split in ("val", "test", "train"):
        for (xa, ya), (xb, yb) in zip(dev.eval_batches(split, 4), st.eval_batches(split, 4), strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_streamed_test_images_are_centre_crops(tmp_path):
    _tree(tmp_path / "tree")
    prepare_all(_params(tmp_path / "tree", layout="files", load_size=SIDE + 4), tmp_path / "w")
    st = open_data(_run(augment={"normalize": False}), tmp_path / "w" / "data", torch.device("cpu"))
    full = next(st._decoded(st.test_pos, [torch.arange(2)]))
    x, _ = next(st.eval_batches("test", 2))
    assert full.shape[-1] == SIDE + 4 and x.shape[-1] == SIDE
    assert torch.equal(x, full[:, :, 2:2 + SIDE, 2:2 + SIDE].float() / 255)


def test_load_square_takes_the_centred_square_in_rgb(tmp_path):
    from PIL import Image

    from curriculab.data.stream import load_square

    rng = np.random.default_rng(1)
    for h, w in ((12, 17), (19, 12)):  # wide: 2 columns cut on the left; tall: 3 rows cut at the top
        px = rng.integers(0, 256, (h, w), dtype=np.uint8)
        Image.fromarray(px).save(tmp_path / "g.png")  # grayscale on disk
        top, left = (h - 12) // 2, (w - 12) // 2
        want = np.repeat(px[top:top + 12, left:left + 12][None], 3, 0)
        assert np.array_equal(load_square(tmp_path / "g.png", 12), want)
        small = Image.fromarray(want[0]).resize((5, 5), Image.BILINEAR)
        assert np.array_equal(load_square(tmp_path / "g.png", 5)[1], np.asarray(small))


def test_decoding_processes_and_channels(streamed, monkeypatch):
    from curriculab.data.stream import loader_workers

    monkeypatch.delenv("CURRICULAB_DATA_WORKERS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 12)
    assert loader_workers() == 8
    monkeypatch.setattr("os.cpu_count", lambda: None)
    assert loader_workers() == 1
    for env, want in (("0", 0), ("3", 3)):
        monkeypatch.setenv("CURRICULAB_DATA_WORKERS", env)
        assert loader_workers() == want and open_data(_run(), streamed, torch.device("cpu")).workers == want
    monkeypatch.setenv("CURRICULAB_DATA_WORKERS", "two")
    with pytest.raises(ConfigError, match="CURRICULAB_DATA_WORKERS='two': must be a whole number"):
        loader_workers()
    monkeypatch.setenv("CURRICULAB_DATA_WORKERS", "0")
    assert open_data(_run(channels=3), streamed, torch.device("cpu")).in_channels == 3
    with pytest.raises(ConfigError, match="data.channels: 'imagefolder' is streamed as RGB images"):
        open_data(_run(channels=1), streamed, torch.device("cpu"))


def test_streamed_data_has_no_arrays_and_says_so(streamed):
    st = open_data(_run(), streamed, torch.device("cpu"))
    for get in (lambda: st.train_x, lambda: st.test, lambda: st.copy("blur"),
                lambda: next(st.batches(2, images=torch.zeros(1)))):
        with pytest.raises(ConfigError, match="streamed from image files"):
            get()
    with pytest.raises(ConfigError, match="larger than the 12 px squares"):
        open_data(_run(image_size=16), streamed, torch.device("cpu"))


def test_a_run_trains_and_resumes_on_streamed_data(streamed, tmp_path):
    from curriculab.engine.loop import fit

    workdir = streamed.parent
    run = RunConfig.model_validate({"data": {"dataset": "imagefolder", "augment": {"resized_crop": True,
                                                                                   "flip": True}},
                                    "train": {"epochs": 2, "batch_size": 4, "eval_batch_size": 4}})
    whole = fit(run, tmp_path / "whole", workdir)
    one = fit(run.model_copy(update={"train": run.train.model_copy(update={"epochs": 1})}), tmp_path / "r", workdir)
    resumed = fit(run, tmp_path / "r", workdir)
    assert whole["status"] == "done" and len(one["history"]) == 1
    assert resumed["history"] == whole["history"]  # the checkpoint's generator state continues the stream


def test_copies_of_a_streamed_dataset_are_refused(tmp_path):
    _tree(tmp_path / "tree", per_class=1)
    params = Params.model_validate({"prepare": {
        "datasets": ["imagefolder"], "imagefolder": {"root": str(tmp_path / "tree"), "layout": "files"},
        "copies": {"blur": {"kind": "box", "sizes": [3]}}}})
    with pytest.raises(ConfigError, match="prepare.copies.blur: cannot copy dataset 'imagefolder'"):
        prepare_all(params, tmp_path / "w")


def test_random_resized_crop_takes_boxes_of_the_image():
    """At scale 1/4 and aspect 1 of an 8×8 image every crop is a 4×4 window at an integer offset, copied exactly;
    the whole-image box is the image."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(16, 3, 8, 8)
    out = random_resized_crop(x, 4, gen, scale=(0.25, 0.25), ratio=(1.0, 1.0))
    offsets = set()
    for i in range(16):
        hits = [(t, l) for t in range(5) for l in range(5) if torch.allclose(out[i], x[i, :, t:t + 4, l:l + 4])]
        assert len(hits) == 1
        offsets.add(hits[0])
    assert len(offsets) > 4  # positions vary
    assert torch.allclose(random_resized_crop(x, 8, gen, scale=(1.0, 1.0), ratio=(1.0, 1.0)), x, atol=1e-6)
    # the standard draw: every output at the asked side, values inside the input's range
    y = random_resized_crop(x, 6, gen)
    assert y.shape == (16, 3, 6, 6) and y.min() >= 0 and y.max() <= 1


def test_center_crop_offsets_are_torchvisions():
    from torchvision.transforms.functional import center_crop as tv_center_crop

    x = torch.arange(2 * 3 * 9 * 11).float().view(2, 3, 9, 11)
    for size in (4, 5, 9):
        assert torch.equal(center_crop(x, size), tv_center_crop(x, [size, size]))


def test_webvision_reads_its_file_lists(tmp_path):
    """WebVision 1.0: training images from info/'s Google and Flickr lists, the labelled validation images
    (val_filelist.txt, images in val_images_256/) as test; labels as listed."""
    from PIL import Image

    from curriculab.config import PrepareParams
    from curriculab.data.sources import SOURCES, DatasetMissing

    def img(path, value):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (9, 7), (value, value, value)).save(path)

    root = tmp_path / "webvision"
    lists = {"train_filelist_google.txt": [f"google/q0001/{i}.jpg {i % 2}" for i in range(4)],
             "train_filelist_flickr.txt": [f"flickr/q0002/{i}.jpg 2" for i in range(2)],
             "val_filelist.txt": ["val000001.jpg 2", "val000002.jpg 0"]}
    cfg = PrepareParams(webvision={"root": str(root), "image_size": 4})
    with pytest.raises(DatasetMissing, match="train_filelist_google.txt, train_filelist_flickr.txt"):
        SOURCES["webvision"](cfg)
    for name, lines in lists.items():
        (root / "info").mkdir(parents=True, exist_ok=True)
        (root / "info" / name).write_text("\n".join(lines) + "\n")
    for line in lists["train_filelist_google.txt"] + lists["train_filelist_flickr.txt"]:
        img(root / line.split()[0], 10)
    with pytest.raises(DatasetMissing, match="validation images of .* are in none of"):
        SOURCES["webvision"](cfg)
    img(root / "val_images_256" / "val000001.jpg", 200)
    img(root / "val_images_256" / "val000002.jpg", 100)
    raw = SOURCES["webvision"](cfg)
    assert raw.classes == 3 and len(raw.y) == 8
    assert raw.y[raw.splits["test"]].tolist() == [2, 0] and raw.x[raw.splits["test"], 0, 0, 0].tolist() == [200, 100]
    assert sorted(raw.y[np.concatenate([raw.splits["train"], raw.splits["val"]])].tolist()) == [0, 0, 1, 1, 2, 2]
