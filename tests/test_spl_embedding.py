"""SPL-ADVisE's pretrain stage (methods/spl_embedding.py): what it writes, when it retrains, its timing clock and
its checks. The student's use of the files is tested in test_spl_advise.py."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

import curriculab.methods.spl_embedding as spl_embedding
from curriculab.config import ConfigError, validate
from curriculab.data.derive import subset_per_class
from curriculab.data.prepared import load_prepared
from curriculab.engine.checkpoint import safe_load
from curriculab.methods.spl_embedding import (
    EmbeddingParams,
    _Clock,
    embed,
    load_embedding_clusters,
    load_embedding_model,
    pretrain_dir,
    pretrain_embedding,
)
from tests.conftest import own_data_workdir
from tests.test_spl_advise import TINY, stage

# digits only: 5 images per class in the index, 11 iterations refreshed every 5 (odd, so the middle is 11 // 2)
DIGITS = {"subset_per_class": 5, "iterations": 11, "refresh": 5, "lr": 2e-3, "weight_decay": 1e-4, "seed": 3,
          "dim": 3}


def test_pretrain_writes_what_it_trained(spl_workdir, monkeypatch):
    emb = {**TINY, "per_dataset": {"digits": DIGITS}}
    rows, step = [], spl_embedding.magnet_step
    monkeypatch.setattr(spl_embedding, "magnet_step", lambda *a: rows.append(a[-1]) or step(*a))
    msg = pretrain_embedding(stage(emb, tsne_points=20), "digits", spl_workdir)
    cfg = validate(EmbeddingParams, emb).resolve("digits")
    prep = load_prepared(spl_workdir / "data", "digits")
    train = prep.splits["train"]
    d = pretrain_dir(spl_workdir, "digits")

    meta = json.loads((d / "meta.json").read_text())
    subset = subset_per_class(prep.y[train], 5, 3)  # the per-dataset override's size and seed
    index = train[subset]
    assert len(rows) == 11 and all(r.tolist() == subset.tolist() for r in rows)  # steps on the subset's images
    assert {k: meta[k] for k in ("dataset", "checksum", "settings", "index_size", "train_size", "device")} == {
        "dataset": "digits", "checksum": prep.checksum, "settings": cfg.model_dump(mode="json"),
        "index_size": 50, "train_size": len(train), "device": "cpu"}
    assert meta["refreshes"] == 3  # before iteration 1, after 5 and after 10 (none after the last)
    assert [c["iteration"] for c in meta["loss_curve"]] == [5, 10, 11]
    assert all(np.isfinite(c["loss"]) and c["loss"] >= 0 for c in meta["loss_curve"])

    with np.load(d / "clusters.npz") as z:
        assert z["index_positions"].tolist() == index.tolist()
        assert z["assign"].dtype == np.int64 and len(z["assign"]) == len(prep.y)
    with np.load(d / "tsne.npz") as z:
        assert z["coords"].shape == (3, 20, 2) and z["coords"].dtype == np.float32
        assert z["iterations"].tolist() == [0, 5, 11]
        assert set(z["positions"].tolist()) <= set(index.tolist()) and len(set(z["positions"].tolist())) == 20
        assert z["labels"].tolist() == prep.y[z["positions"]].tolist()
        assert not np.allclose(z["coords"][0], z["coords"][1]) and not np.allclose(z["coords"][1], z["coords"][2])

    ck = safe_load(d / "model.pt")
    assert ck["hash"] == meta["hash"] and ck["settings"] == meta["settings"] and ck["in_channels"] == 1
    assert {k: ck["optimizer"]["param_groups"][0][k] for k in ("lr", "weight_decay")} == {
        "lr": 2e-3, "weight_decay": 1e-4}
    assert {float(v["step"]) for v in ck["optimizer"]["state"].values()} == {11.0}  # one Adam step per iteration
    model, opt, centroids = load_embedding_model(spl_workdir, validate(EmbeddingParams, emb), "digits",
                                                 prep.checksum, torch.device("cpu"))
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 3) and centroids.shape == (20, 3)  # the override's dim
    assert opt.param_groups[0]["lr"] == 2e-3 and opt.state_dict()["state"].keys() == ck["optimizer"]["state"].keys()

    timing = json.loads((d / "timing.json").read_text())
    for key in ("seconds", "cpu_seconds"):
        t = timing[key]
        assert set(t) == {"snapshots", "refresh", "train", "final", "tsne", "total"}
        assert all(v >= 0 for v in t.values())
        assert sum(v for k, v in t.items() if k != "total") <= t["total"] + 1e-6
    cpu = timing["cpu_seconds"]
    share = cpu["refresh"] / (cpu["refresh"] + cpu["train"])
    curve = meta["loss_curve"]
    assert msg.startswith(f"11 iterations, 3 cluster refreshes ({share:.1%} of the training CPU time), "
                          f"loss {curve[0]['loss']:.3f} → {curve[-1]['loss']:.3f}, ")


def test_pretrain_retrains_when_settings_or_figure_change(spl_workdir):
    d = pretrain_dir(spl_workdir, "syndigits")
    small = dict(TINY, iterations=4, refresh=2, subset_per_class=4)

    def pretrain(emb, tsne_points=20):
        return pretrain_embedding(stage(emb, ("syndigits",), tsne_points), "syndigits", spl_workdir)

    pretrain(small)
    first = json.loads((d / "meta.json").read_text())
    assert first["dataset"] == "syndigits" and first["index_size"] == 40  # syndigits' own data
    assert first["refreshes"] == 2  # before iteration 1 and after 2, not after the last
    assert pretrain(small).startswith("up to date")

    # other settings, the t-SNE figure already there: trained again, over the old files
    assert pretrain(dict(small, iterations=6)).startswith("6 iterations")
    again = json.loads((d / "meta.json").read_text())
    assert again["hash"] != first["hash"] and again["loss_curve"][-1]["iteration"] == 6

    # the same settings, another figure: redrawn; 3 points or fewer are too few for t-SNE and stay at 0
    assert pretrain(dict(small, iterations=6), tsne_points=12).startswith("6 iterations")
    with np.load(d / "tsne.npz") as z:
        assert z["coords"].shape == (3, 12, 2)
    assert pretrain(dict(small, iterations=6), tsne_points=3).startswith("6 iterations")
    with np.load(d / "tsne.npz") as z:
        assert z["coords"].shape == (3, 3, 2) and not z["coords"].any()

    # a missing clusters file is "missing", never a traceback
    (d / "clusters.npz").unlink()
    emb = validate(EmbeddingParams, dict(small, iterations=6))
    with pytest.raises(ConfigError, match="embedding checkpoint missing"):
        load_embedding_clusters(spl_workdir, emb, "syndigits", again["checksum"])


def test_a_pretrain_that_fails_while_writing_leaves_no_meta(spl_workdir, monkeypatch):
    """meta.json goes first and comes back last: new files beside an old meta.json would pass its hash check."""
    emb = dict(TINY, iterations=2, refresh=2, subset_per_class=4)
    pretrain_embedding(stage(emb), "digits", spl_workdir)
    write = spl_embedding.atomic_write_bytes

    def fail_on_clusters(path, data):
        if path.name == "clusters.npz":
            raise OSError("disk full")
        write(path, data)

    monkeypatch.setattr(spl_embedding, "atomic_write_bytes", fail_on_clusters)
    with pytest.raises(OSError, match="disk full"):
        pretrain_embedding(stage(dict(emb, iterations=3)), "digits", spl_workdir)
    assert not (pretrain_dir(spl_workdir, "digits") / "meta.json").exists()


def test_pretrain_files_are_the_same_on_a_second_run(spl_workdir, prepared_root, tmp_path):
    """Every written file but timing.json is a function of the settings and the data (figure spl.f2 included)."""
    other = own_data_workdir(prepared_root, tmp_path / "other")
    emb = dict(TINY, iterations=4, refresh=2, subset_per_class=4)
    for wd in (spl_workdir, other):
        pretrain_embedding(stage(emb), "digits", wd)
    for name in ("meta.json", "model.pt", "clusters.npz", "tsne.npz"):
        a, b = (pretrain_dir(wd, "digits") / name for wd in (spl_workdir, other))
        assert a.read_bytes() == b.read_bytes(), name


def test_impostor_count_limit_is_exact(spl_workdir, monkeypatch):
    # digits: (10 − 1)·2 = 18 impostor clusters; m = 19 needs exactly 18, m = 20 one more
    with pytest.raises(ConfigError, match=re.escape("only (10−1)·2 = 18; lower m")):
        pretrain_embedding(stage(dict(TINY, m=20)), "digits", spl_workdir)

    class Passed(Exception):
        pass

    def passed(seed):
        raise Passed

    monkeypatch.setattr(spl_embedding, "seed_everything", passed)  # the first step after the checks
    with pytest.raises(Passed):
        pretrain_embedding(stage(dict(TINY, m=19)), "digits", spl_workdir)


def test_clock_counts_each_section_without_its_nested_ones(monkeypatch):
    wall = iter([100.0, 101.0, 103.0, 110.0, 110.5, 111.0, 112.0, 115.0])
    cpu = iter([10.0, 10.5, 11.0, 12.0, 12.5, 13.0, 14.0, 20.0])
    monkeypatch.setattr(spl_embedding.time, "perf_counter", lambda: next(wall))
    monkeypatch.setattr(spl_embedding.time, "process_time", lambda: next(cpu))
    clock = _Clock()  # starts at 100 / 10
    with clock("loop"):  # 101 → 112 wall, 10.5 → 14 CPU
        with clock("refresh"):  # 103 → 110 wall, 11 → 12 CPU
            pass
        with clock("refresh"):  # 110.5 → 111 wall, 12.5 → 13 CPU: added to the first
            pass
    assert clock.report() == {
        "seconds": {"train": 11.0 - 7.5, "refresh": 7.5, "total": 15.0},
        "cpu_seconds": {"train": 3.5 - 1.5, "refresh": 1.5, "total": 10.0},
    }


def test_embed_uses_unaugmented_inputs_in_eval_mode():
    class Data:
        train_x = torch.arange(10.0).view(10, 1)
        seen = []

        def to_input(self, x, augment):
            self.seen.append(augment)
            return x

    model = torch.nn.Sequential(torch.nn.Linear(1, 2), torch.nn.Dropout(0.9))
    data = Data()
    out = embed(model, data, torch.tensor([7, 2, 5]), bs=2)
    assert data.seen == [False, False] and model.training
    lin = model[0]
    with torch.no_grad():
        want = lin(torch.tensor([[7.0], [2.0], [5.0]]))
    np.testing.assert_allclose(out, want.numpy(), rtol=1e-6)  # no dropout: eval mode
