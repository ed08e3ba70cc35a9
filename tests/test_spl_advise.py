"""SPL-ADVisE: Magnet loss (eq. 1), the cluster index and sampler (Algorithm 1), the SPLD selection rule
(Algorithm 2), the pretrain stage's checkpoint checks, and bad settings."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch

from curriculab.config import ConfigError, RunConfig, validate
from curriculab.methods.magnet import ClusterIndex, magnet_loss
from curriculab.methods.spl_advise import (
    SPLAdvise,
    SPLAdviseParams,
    cluster_ranks,
    official_k,
    official_select,
    pace_thresholds,
    spld_select,
)
from curriculab.methods.spl_embedding import (
    EmbeddingParams,
    PretrainParams,
    load_embedding_clusters,
    pretrain_dir,
    pretrain_embedding,
)
from tests.conftest import Micro

TINY = {"model": {"name": "lenet", "width": 0.5}, "dim": 4, "clusters": 2, "m": 3, "b": 4, "iterations": 12,
        "refresh": 5, "lr": 1e-3}


def stage(embedding: dict, datasets=("digits",), tsne_points: int = 30) -> PretrainParams:
    return validate(PretrainParams, {"datasets": list(datasets), "embedding": embedding, "tsne_points": tsne_points,
                                     "tsne_iterations": 250, "device": "cpu"})


# --------------------------------------------------------------------------- Magnet loss


def eq1_direct(r: np.ndarray, cluster: list[int], cls: list[int], alpha: float, variance: str) -> float:
    """Paper eq. (1) evaluated term by term with plain loops."""
    slots = sorted(set(cluster))
    mu = {m: np.mean([r[i] for i in range(len(r)) if cluster[i] == m], axis=0) for m in slots}
    slot_cls = {cluster[i]: cls[i] for i in range(len(r))}
    var = sum(float(np.sum((r[i] - mu[cluster[i]]) ** 2)) for i in range(len(r))) / (len(r) - 1)
    s2 = var if variance == "rippel" else var ** 2
    total = 0.0
    for i in range(len(r)):
        num = math.exp(-float(np.sum((r[i] - mu[cluster[i]]) ** 2)) / (2 * s2) - alpha)
        den = sum(math.exp(-float(np.sum((r[i] - mu[m]) ** 2)) / (2 * s2))
                  for m in slots if slot_cls[m] != cls[i])
        total += max(0.0, -math.log(num / den))
    return total / len(r)


@pytest.mark.parametrize("variance", ["rippel", "squared"])
@pytest.mark.parametrize("alpha", [1.0, 0.25])
def test_magnet_loss_matches_eq1(variance, alpha):
    rng = np.random.default_rng(0)
    cluster = [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    cls = [0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2]  # two clusters of class 0: not impostors of each other
    r = rng.normal(size=(12, 3)) * 0.8 + np.repeat(rng.normal(size=(4, 3)) * 0.3, 3, axis=0)
    got = magnet_loss(torch.tensor(r), torch.tensor(cluster), torch.tensor(cls), alpha, variance)
    assert got.dtype == torch.float64
    assert float(got) == pytest.approx(eq1_direct(r, cluster, cls, alpha, variance), rel=1e-9, abs=1e-12)
    assert float(got) > 0


def test_magnet_loss_hinge_and_modes_differ():
    r = torch.tensor([[0.0, 0.0], [0.2, 0.0], [3.0, 0.0], [3.2, 0.0]], dtype=torch.float64)
    cl, cls = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 0, 1, 1])
    per = magnet_loss(r, cl, cls, alpha=1.0, reduction="none")
    assert per.shape == (4,) and torch.all(per == 0)  # well separated: every hinge is inactive
    near = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.8, 0.0], [1.8, 0.0]], dtype=torch.float64)
    rip = [float(magnet_loss(near * s, cl, cls, alpha=1.0, variance="rippel")) for s in (1.0, 3.0)]
    sq = [float(magnet_loss(near * s, cl, cls, alpha=1.0, variance="squared")) for s in (1.0, 3.0)]
    assert rip[0] > 0 and rip[0] == pytest.approx(rip[1])  # σ² = batch variance: invariant to scale
    assert sq[0] != pytest.approx(sq[1])  # squared variance is not
    # slot ids are arbitrary labels
    assert float(magnet_loss(near, torch.tensor([7, 7, 3, 3]), cls, 1.0)) == pytest.approx(rip[0])


def test_magnet_loss_tight_clusters_finite():
    r = torch.tensor([[1.0, 1.0]] * 8, requires_grad=True)  # zero variance, coincident means
    cl, cls = torch.tensor([0] * 4 + [1] * 4), torch.tensor([0] * 4 + [1] * 4)
    loss = magnet_loss(r, cl, cls, alpha=1.0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(r.grad).all()
    assert float(loss.detach()) == pytest.approx(1.0)  # α + log(1 other cluster) with every distance 0
    r2 = torch.tensor([[0.0, 0.0]] * 4 + [[1.0, 0.0]] * 4, requires_grad=True)  # tight and apart
    loss2 = magnet_loss(r2, cl, cls, alpha=1.0, variance="squared")
    loss2.backward()
    assert torch.isfinite(loss2) and float(loss2.detach()) == 0 and torch.isfinite(r2.grad).all()


def test_magnet_loss_no_impostor_is_zero_and_rejects_mixed_slots():
    r = torch.randn(6, 2, requires_grad=True)
    loss = magnet_loss(r, torch.tensor([0, 0, 0, 1, 1, 1]), torch.zeros(6, dtype=torch.long), 1.0)
    loss.backward()
    assert float(loss.detach()) == 0 and torch.isfinite(r.grad).all()
    with pytest.raises(ValueError, match="one class"):
        magnet_loss(r, torch.tensor([0, 0, 0, 1, 1, 1]), torch.tensor([0, 1, 0, 1, 1, 1]), 1.0)
    with pytest.raises(ValueError, match="variance"):
        magnet_loss(r, torch.tensor([0, 0, 0, 1, 1, 1]), torch.tensor([0, 0, 0, 1, 1, 1]), 1.0, "std")


# --------------------------------------------------------------------------- selection


def test_spld_select_worked_example():
    # cluster 0 by loss: 0.1 (i=1), 0.5 (i=2), 0.9 (i=3); cluster 1: 0.2 (i=1), 0.3 (i=2), 0.31 (i=3).
    # λ=0.2, γ=0.3: thresholds 0.5, 0.2+0.3/(√2+1)=0.3243, 0.2+0.3/(√3+√2)=0.2954.
    losses = torch.tensor([0.5, 0.1, 0.9, 0.3, 0.2, 0.31])
    clusters = torch.tensor([0, 0, 0, 1, 1, 1])
    sel = spld_select(losses, clusters, lam=0.2, gamma=0.3)
    assert sel.dtype == torch.bool
    assert sel.tolist() == [False, True, False, True, True, False]
    # γ = 0 is plain SPL: loss < λ
    assert spld_select(losses, clusters, 0.25, 0.0).tolist() == (losses < 0.25).tolist()


def test_spld_select_matches_loop_reference():
    g = torch.Generator().manual_seed(1)
    losses, clusters = torch.rand(300, generator=g), torch.randint(0, 7, (300,), generator=g)
    lam, gamma = 0.3, 0.4
    want = torch.zeros(300, dtype=torch.bool)
    for c in range(7):
        idx = torch.nonzero(clusters == c).squeeze(1)
        for i, j in enumerate(idx[torch.argsort(losses[idx])].tolist(), start=1):
            want[j] = bool(losses[j] < lam + gamma / (math.sqrt(i) + math.sqrt(i - 1)))
    assert torch.equal(spld_select(losses, clusters, lam, gamma), want)


def test_cluster_ranks_and_official_rule():
    ranks = cluster_ranks(torch.tensor([3.0, 1.0, 2.0, 1.0, 5.0]), torch.tensor([1, 1, 0, 1, 0]))
    assert ranks.tolist() == [3, 1, 1, 2, 2]  # tie (1.0, 1.0) broken by position
    clusters = torch.tensor([1, 0, 1, 1, 0, 1])
    assert official_select(clusters, 2).tolist() == [True, True, True, False, True, False]
    assert [official_k(500, 0.1, e) for e in range(4)] == [500, 500, 550, 605]


def test_pace_thresholds_admit_target_fraction():
    g = torch.Generator().manual_seed(2)
    losses, clusters = torch.rand(1000, generator=g) * 3, torch.randint(0, 20, (1000,), generator=g)
    for fraction, ratio in [(0.3, 0.0), (0.55, 1.0), (0.8, 2.5), (1.0, 1.0)]:
        lam, gam = pace_thresholds(losses, clusters, fraction, ratio)
        assert gam == pytest.approx(ratio * lam)
        assert int(spld_select(losses.double(), clusters, lam, gam).sum()) == math.ceil(fraction * 1000)
    # the diversity term admits samples above λ, the easiest of clusters whose losses are all high
    lam, gam = pace_thresholds(losses, clusters, 0.3, 2.0)
    sel = spld_select(losses.double(), clusters, lam, gam)
    assert bool((losses[sel] >= lam).any())
    assert len(torch.unique(clusters[sel])) == 20


# --------------------------------------------------------------------------- cluster index and sampler


def _index(m=3, b=4, sizes=(5, 2, 6, 3, 4, 5)) -> ClusterIndex:
    labels = np.repeat([0, 0, 1, 1, 2, 2], sizes)
    idx = ClusterIndex(labels, classes=3, k=2, m=m, b=b, rng=np.random.default_rng(0))
    assign = np.repeat(np.arange(6), sizes)
    # cluster 1 (class 0) is nearest to cluster 0 but of the same class; then 4 (class 2), then 3, 2, 5
    cents = np.array([[0.0, 0.0], [0.1, 0.0], [3.0, 0.0], [2.0, 0.0], [0.5, 0.5], [9.0, 9.0]], np.float32)
    idx.set_clusters(assign, cents)
    return idx


def test_impostors_are_nearest_of_other_classes():
    idx = _index(m=4)
    assert idx.impostors(0).tolist() == [4, 3, 2]
    for seed in range(6):
        imp = idx.impostors(seed)
        assert (idx.cluster_class[imp] != idx.cluster_class[seed]).all()
        others = [c for c in range(6) if idx.cluster_class[c] != idx.cluster_class[seed]]
        d = ((idx.centroids[others] - idx.centroids[seed]) ** 2).sum(1)
        assert sorted(imp.tolist()) == sorted(np.array(others)[np.argsort(d)[:3]].tolist())


def test_sampler_batches():
    idx = _index(m=3, b=4)
    for _ in range(20):
        pos, slot, cls, clusters = idx.sample()
        assert len(pos) == 12 and slot.tolist() == [0] * 4 + [1] * 4 + [2] * 4
        assert (idx.assign[pos] == clusters[slot]).all() and (idx.labels[pos] == cls).all()
        assert idx.cluster_class[clusters[0]] not in idx.cluster_class[clusters[1:]]  # other classes
        assert clusters[1:].tolist() == idx.impostors(clusters[0]).tolist()
        for s, c in enumerate(clusters):
            members = pos[slot == s]
            if idx.sizes[c] >= 4:
                assert len(set(members.tolist())) == 4  # without replacement when the cluster is large enough
    small = [pos[slot == s] for pos, slot, _, cl in (idx.sample() for _ in range(200)) for s in range(3)
             if cl[s] == 1]
    assert small and all(set(m.tolist()) <= set(np.flatnonzero(idx.assign == 1).tolist()) for m in small)


def test_seed_probabilities_follow_cluster_losses():
    idx = _index()
    assert np.allclose(idx.seed_probs(), 1 / 6)  # uniform before losses exist
    losses = np.zeros(len(idx.labels))
    losses[idx.assign == 2] = 3.0
    losses[idx.assign != 2] = 1.0
    idx.update_losses(np.arange(len(losses)), losses)
    p = idx.seed_probs()
    assert p[2] == pytest.approx(3 * p[0]) and p.sum() == pytest.approx(1)


def _sparse_index(m=4) -> ClusterIndex:
    """Clusters of sizes 5, 2, 6, 1, 4, 0: one of a single example, and an empty last one whose centroid
    is nearest cluster 0."""
    idx = _index(m=m, sizes=(5, 2, 6, 1, 4, 0))
    cents = idx.centroids.copy()
    cents[5] = [0.05, 0.0]
    idx.set_clusters(idx.assign, cents)
    return idx


def test_seed_probabilities_exactly_for_measured_unmeasured_small_and_empty_clusters():
    idx = _sparse_index()
    pos = np.flatnonzero(idx.assign == 0)[:2]  # two of cluster 0's five examples measured: mean 2
    idx.update_losses(np.concatenate([pos, np.flatnonzero(idx.assign == 2)[:1]]), np.array([1.0, 3.0, 1.0]))
    w = np.array([2.0, 1.5, 1.0, 1.5, 1.5, 0.0])  # unmeasured clusters: the measured clusters' mean; empty: 0
    assert idx.seed_probs() == pytest.approx(w / w.sum())
    idx.update_losses(np.arange(len(idx.labels)), np.full(len(idx.labels), 0.001))  # small losses: still ∝
    idx.update_losses(np.flatnonzero(idx.assign == 2), np.full(6, 0.004))
    w = np.array([0.001, 0.001, 0.004, 0.001, 0.001, 0.0])
    assert idx.seed_probs() == pytest.approx(w / w.sum())
    idx.update_losses(np.arange(len(idx.labels)), np.zeros(len(idx.labels)))  # all zero: uniform, never empty
    assert idx.seed_probs() == pytest.approx([0.2] * 5 + [0.0])


def test_the_seed_cluster_is_drawn_by_its_probability_and_impostors_skip_empty_clusters():
    idx = _sparse_index()
    losses = np.where(idx.assign == 2, 1.0, 0.0)
    idx.update_losses(np.arange(len(losses)), losses)
    assert all(idx.sample()[3][0] == 2 for _ in range(20))  # only cluster 2 has a loss
    assert idx.impostors(0).tolist() == [4, 3, 2]  # not the empty cluster 5; cluster 3 (one example) counts
    with pytest.raises(ConfigError, match="^m: 6 clusters per minibatch need 5 non-empty impostor clusters"):
        _sparse_index(m=6).impostors(0)


def test_kmeans_per_class_skips_empty_classes_and_takes_exactly_k_samples():
    from curriculab.methods.magnet import kmeans_per_class

    labels = np.array([1, 1, 2, 2, 2, 3, 3])  # class 0 empty, class 1 with exactly k = 2 samples
    feats = np.arange(14, dtype=np.float32).reshape(7, 2)
    assign, cents = kmeans_per_class(feats, labels, 2, 4, seed=0)
    assert (assign // 2 == labels).all() and len(set(assign[:2].tolist())) == 2
    assert np.isnan(cents[:2]).all() and not np.isnan(cents[2:]).any()
    with pytest.raises(ConfigError, match="^clusters: class 1 has 2 samples, fewer than the 3"):
        kmeans_per_class(feats, labels, 3, 4, seed=0)


def test_cluster_refreshes_are_counted():
    idx = _index()
    feats = np.random.default_rng(0).normal(size=(len(idx.labels), 2)).astype(np.float32)
    idx.refresh(feats)
    idx.refresh(feats)
    assert idx.refreshes == 2


def test_a_magnet_step_trains_on_the_rows_it_maps_without_augmentation():
    from types import SimpleNamespace

    from curriculab.methods.magnet import magnet_step

    idx = _index(m=3, b=4)
    rows = np.arange(len(idx.labels)) * 2 + 1  # index position p is training row 2p + 1
    seen = []
    g = torch.Generator().manual_seed(0)
    train_x = torch.cat([torch.arange(60.0).view(60, 1), torch.randn(60, 3, generator=g)], 1).view(60, 1, 1, 4)
    scale = torch.tensor([1 / 60, 1, 1, 1])  # first pixel: the row
    data = SimpleNamespace(device=torch.device("cpu"), train_x=train_x,
                           to_input=lambda x, augment: seen.append((x, augment)) or x * scale)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    before = copy.deepcopy(model)
    drawn, sample = [], idx.sample
    idx.sample = lambda: drawn.append(sample()) or drawn[-1]
    losses = magnet_step(model, torch.optim.SGD(model.parameters(), lr=0.1), idx, data, 1.0, "squared", rows=rows)
    (pos, slot, cls, _), = drawn
    (x, augment), = seen
    assert x[:, 0, 0, 0].long().tolist() == rows[pos].tolist() and augment is False
    with torch.no_grad():
        r, slot, cls = before(x * scale), torch.as_tensor(slot), torch.as_tensor(cls)
        want = magnet_loss(r, slot, cls, 1.0, "squared", reduction="none")
        other = magnet_loss(r, slot, cls, 1.0, "rippel", reduction="none")
    assert losses == pytest.approx(want.numpy()) and not np.allclose(losses, other.numpy())
    assert (idx.example_loss[pos] == losses).all() and not torch.equal(model[1].weight, before[1].weight)


# --------------------------------------------------------------------------- pretrain and the student


def test_pretrain_writes_clusters_and_student_checks_hash(spl_workdir):
    workdir = spl_workdir
    emb = validate(EmbeddingParams, TINY)
    msg = pretrain_embedding(stage(TINY), "digits", workdir)
    assert "12 iterations" in msg
    d = pretrain_dir(workdir, "digits")
    meta = json.loads((d / "meta.json").read_text())
    with np.load(d / "clusters.npz") as z:
        assign = z["assign"]
    from curriculab.data.prepared import load_prepared

    prep = load_prepared(workdir / "data", "digits")
    train = prep.splits["train"]
    assert (assign[train] >= 0).all() and (np.delete(assign, train) == -1).all()
    assert (assign[train] // 2 == prep.y[train]).all()  # cluster id = class·K + k
    with np.load(d / "tsne.npz") as z:
        assert z["coords"].shape == (3, 30, 2) and z["iterations"].tolist() == [0, 6, 12]
    assert meta["hash"] == emb.digest("digits", prep.checksum)
    assert pretrain_embedding(stage(TINY), "digits", workdir).startswith("up to date")
    assert meta["figure"] == {"tsne_points": 30, "tsne_iterations": 250}

    # the student maps its (subset) training items through train_pos
    micro = Micro(workdir)
    student = built_student(micro, {"selection": "spld", "clusters": "frozen", "embedding": TINY},
                            {"dataset": "digits", "subset_per_class": 20})
    assert torch.equal(student.clusters.cpu(), torch.as_tensor(assign[student.ctx.data.train_pos]))

    stale = dict(TINY, lr=2e-3)  # other settings
    with pytest.raises(ConfigError, match="embedding checkpoint stale.*dvc repro pretrain@spl_advise"):
        built_student(micro, {"clusters": "frozen", "embedding": stale}, {"dataset": "digits"})
    with pytest.raises(ConfigError, match="stale"):  # other data (checksum)
        load_embedding_clusters(workdir, emb, "digits", "0" * 64)
    with pytest.raises(ConfigError, match="embedding checkpoint missing.*dvc repro pretrain@spl_advise"):
        built_student(micro, {"clusters": "adaptive", "embedding": TINY}, {"dataset": "syndigits"})


def built_student(micro, method: dict, data: dict) -> SPLAdvise:
    """The spl_advise method of a built micro run."""
    _, hooks, _ = micro.build(data=data, methods={"spl_advise": method}, train={"batch_size": 32})
    return hooks.methods[0]


def test_student_same_updates_and_pace(workdir, micro):
    from curriculab.engine.loop import fit

    pace = {"selection": "spld", "clusters": "pixels", "k": 3, "start_fraction": 0.5, "beta1": 0.5}
    recs = {}
    official = {"selection": "official", "clusters": "pixels", "k": 3, "official_k": 4}
    for name, method in [("spld", pace), ("random", {"selection": "random"}),
                         ("none", dict(pace, fill="none")), ("official", official)]:
        run = RunConfig.model_validate({"seed": 0, "data": {"dataset": "syndigits"},
                                        "methods": {"spl_advise": method},
                                        "model": {"name": "small_cnn", "width": 0.25},
                                        "train": {"epochs": 3, "batch_size": 32, "device": "cpu",
                                                  "checkpoint": False}})
        recs[name] = fit(run, workdir / name, workdir)["history"]
    steps = [h["step"] for h in recs["spld"]]
    assert steps == [h["step"] for h in recs["random"]] == [10, 20, 30]  # 300 items, batch 32
    assert [h["train_seen"] for h in recs["spld"]] == [300, 300, 300]
    assert [h["spl_selected_fraction"] for h in recs["spld"]] == pytest.approx([1.0, 0.5, 0.75], abs=0.01)
    assert recs["spld"][0]["test_acc"] == recs["random"][0]["test_acc"]  # epoch 0 uses all data, same stream
    assert [h["train_seen"] for h in recs["none"]][1] == 150  # fill: none trains on the selection once
    assert recs["official"][1]["spl_k"] == 4 and recs["official"][1]["train_seen"] == 300
    sizes = torch.bincount(built_student(micro, {"clusters": "pixels", "k": 3}, {"dataset": "syndigits"}).clusters)
    want = float(sizes.clamp(max=4).sum()) / 300  # the first 4 of each cluster (fewer in small clusters)
    assert recs["official"][1]["spl_selected_fraction"] == pytest.approx(want)


def test_epoch_indices_balanced(micro):
    student = built_student(micro, {"clusters": "pixels", "k": 2}, {"dataset": "syndigits"})
    from curriculab.methods.base import TrainState

    state = TrainState(model=torch.nn.Identity(), optimizer=None, data=student.ctx.data)
    sel = torch.arange(0, 300, 7)  # 43 items
    idx = student.epoch_indices(sel, state)
    counts = torch.bincount(idx, minlength=300)
    assert len(idx) == 300 and set(torch.nonzero(counts).squeeze(1).tolist()) == set(sel.tolist())
    assert counts[sel].max() - counts[sel].min() <= 1


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("block, match", [
    ({"clusters": 0}, "clusters: input should be greater than or equal to 1"),
    ({"b": 0}, "b: input should be greater than or equal to 1"),
    ({"refresh": 0}, "refresh: input should be greater than or equal to 1"),
    ({"dim": 0}, "dim: input should be greater than or equal to 1"),
    ({"m": 1}, "m: input should be greater than or equal to 2"),
    ({"variance": "std"}, "variance"),
    ({"model": {"name": "lenett"}}, "unknown model 'lenett'"),
    ({"per_dataset": {"digits": {"dim": 0}}}, "per_dataset.digits.dim"),
])
def test_bad_embedding_settings(block, match):
    with pytest.raises(ConfigError, match=match):
        validate(PretrainParams, {"datasets": ["digits"], "embedding": block}, prefix="pretrain.spl_advise")


@pytest.mark.parametrize("block, match", [
    ({"clusters": "pixels", "k": 0}, "k: input should be greater than or equal to 1"),
    ({"beta1": 0.0}, "beta1: input should be greater than 0"),
    ({"beta2": -0.1}, "beta2: input should be greater than 0"),
    ({"beta1": float("inf")}, "beta1: input should be a finite number"),
    ({"clusters": "frozen"}, "embedding: required with clusters 'frozen'"),
    ({}, "embedding: required with clusters 'adaptive'"),
    ({"clusters": "embedding", "embedding": TINY}, "clusters: 'embedding' was renamed: 'frozen' keeps"),
    ({"clusters": "adaptive", "refresh_every": 0, "embedding": TINY}, "refresh_every: input should be greater"),
    ({"clusters": "adaptive", "embedding_steps": 0, "embedding": TINY}, "embedding_steps: input should be"),
    ({"start_fraction": 0.0}, "start_fraction"),
    ({"embedding": {"dim": 0}}, "embedding.dim"),
])
def test_bad_student_settings(block, match):
    with pytest.raises(ConfigError, match=match):
        validate(SPLAdviseParams, block, prefix="methods.spl_advise")


def test_too_many_clusters_per_batch(spl_workdir):
    workdir = spl_workdir
    # digits: (10 − 1)·2 = 18 impostors at most
    with pytest.raises(ConfigError, match=r"embedding\.m: 20 clusters per minibatch need 19 impostor"):
        pretrain_embedding(stage(dict(TINY, m=20)), "digits", workdir)
    with pytest.raises(ConfigError, match="fewer than the 50 clusters"):
        built_student(Micro(workdir), {"clusters": "pixels", "k": 50}, {"dataset": "syndigits"})
    with pytest.raises(ConfigError, match="not in prepare.datasets"):
        from curriculab.config import Params

        params = Params.model_validate({"prepare": {"datasets": ["digits"]}})
        SPLAdvise.pretrain(validate(PretrainParams, {"datasets": ["syndigits"]}), params, workdir)


def test_missing_embedding_stops_the_table_before_any_run_trains(workdir):
    from curriculab.config import ExecutorParams, Params
    from curriculab.executor import run_all
    from curriculab.tables.spec import expand_table, get_spec

    table = {"seeds": [0], "run": {"model": {"name": "small_cnn", "width": 0.25}, "train": {"epochs": 1},
                                   "data": {"dataset": "digits", "subset_per_class": 10}},
             "rows": {"Random": {"methods": {"spl_advise": {"selection": "random"}}},
                      "SPL-ADVisE": {"methods": {"spl_advise": {"clusters": "adaptive", "embedding": TINY}}}}}
    params = Params.model_validate({"prepare": {"datasets": ["digits"]}, "tables": {"spl_t1": table}})
    runs = expand_table(get_spec("spl.t1"), params)
    assert [r.row for r in runs] == ["Random", "SPL-ADVisE"]  # the run that could train comes first
    with pytest.raises(ConfigError, match="embedding checkpoint missing"):
        run_all(runs, workdir, ExecutorParams())
    assert not (workdir / "runs").exists()  # nothing trained


# --------------------------------------------------------------------------- losses: fresh | last_epoch


def _train_epochs(micro, method: dict, epochs: int):
    """Build a micro run and train `epochs` epochs with the loop's own `train_epoch`; counts the samples
    the model forwards, per epoch."""
    from curriculab.engine.loop import train_epoch
    from curriculab.engine.optim import build_optimizer
    from curriculab.engine.tasks import get_task
    from curriculab.methods.base import TrainState

    run = micro.run(data={"dataset": "syndigits"}, methods={"spl_advise": method},
                    train={"batch_size": 32, "epochs": epochs})
    from curriculab.engine.loop import build

    data, hooks, model = build(run, micro.workdir / f"run{next(micro.counter)}", micro.workdir,
                               torch.device("cpu"))
    seen = [0]
    model.register_forward_hook(lambda m, i, o: seen.__setitem__(0, seen[0] + len(i[0])))
    state = TrainState(model=model, optimizer=build_optimizer(model.parameters(), run.train.optimizer),
                       data=data, epochs=epochs)
    task, counts = get_task("classification", {}), []
    for ep in range(epochs):
        state.epoch, seen[0] = ep, 0
        train_epoch(run, state, hooks, task)
        counts.append(seen[0])
    return hooks.methods[0], state, counts


def test_last_epoch_losses_need_no_extra_pass(micro):
    pace = {"selection": "spld", "clusters": "pixels", "k": 3, "start_fraction": 0.5, "beta1": 0.5}
    _, _, fresh = _train_epochs(micro, dict(pace, losses="fresh"), 3)
    student, state, last = _train_epochs(micro, dict(pace, losses="last_epoch"), 3)
    assert last == [300, 300, 300]  # training passes only
    assert fresh == [300, 600, 600]  # + one loss pass over the 300 training items per paced epoch
    assert not torch.isnan(student.recorded).any()


def test_last_epoch_selection_uses_recorded_losses(micro):
    from curriculab.methods.base import Batch

    pace = {"selection": "spld", "clusters": "pixels", "k": 3, "start_fraction": 0.5, "beta1": 0.5,
            "losses": "last_epoch"}
    student, state, _ = _train_epochs(micro, pace, 1)
    old = student.recorded.clone()
    # a step over 4 samples records their losses; the others keep their older ones
    idx = torch.tensor([0, 5, 9, 200])
    out = torch.randn(4, 10)
    per = student.loss(out, Batch(torch.zeros(4), state.data.train_y[idx], idx), state)
    want = torch.nn.functional.cross_entropy(out, state.data.train_y[idx], reduction="none")
    assert torch.allclose(per, want)
    rest = torch.ones(300, dtype=torch.bool)
    rest[idx] = False
    assert torch.equal(student.recorded[idx], want) and torch.equal(student.recorded[rest], old[rest])
    # the selection ranks exactly the recorded losses, without a forward pass
    student.recorded = torch.linspace(0, 1, 300)[torch.randperm(300, generator=torch.Generator().manual_seed(0))]
    calls = []
    state.model.register_forward_hook(lambda *a: calls.append(1))
    sel = student.select(1, state)
    assert not calls
    lam, gam = student.metrics["spl_lambda"], student.metrics["spl_gamma"]
    assert torch.equal(sel, torch.nonzero(spld_select(student.recorded.double(), student.clusters, lam, gam))
                       .squeeze(1))
    assert len(sel) == 150
    # resume: the recorded losses travel in the method's state
    again = built_student(micro, pace, {"dataset": "syndigits"})
    again.load_state_dict(student.state_dict())
    assert torch.equal(again.recorded, student.recorded)


# --------------------------------------------------------------------------- clusters: adaptive | frozen


def test_pace_grows_the_fraction_by_beta1_and_the_diversity_by_beta2(micro):
    """Algorithm 2's pace from epoch 1: the target share start·(1+β1)^(e-1) and γ/λ = γ0·(1+β2)^(e-1); a share
    of 1 or more admits every item without a loss pass."""
    pace = {"selection": "spld", "clusters": "pixels", "k": 3, "start_fraction": 0.4, "beta1": 0.5,
            "gamma": 0.3, "beta2": 0.4, "losses": "last_epoch"}
    student, state, _ = _train_epochs(micro, pace, 1)
    student.recorded = torch.linspace(0.1, 1, 300)[torch.randperm(300, generator=torch.Generator().manual_seed(1))]
    for epoch in (1, 2, 3):  # 0.4, 0.6, 0.9
        sel = student.select(epoch, state)
        m = student.metrics
        assert m["spl_target_fraction"] == pytest.approx(0.4 * 1.5 ** (epoch - 1))
        assert m["spl_gamma"] / m["spl_lambda"] == pytest.approx(0.3 * 1.4 ** (epoch - 1))
        assert len(sel) == pytest.approx(300 * m["spl_target_fraction"], abs=2)
    assert student.select(4, state) is None and student.metrics == {"spl_selected_fraction": 1.0,
                                                                    "spl_target_fraction": 1.0}


def test_adaptive_refreshes_embedding_and_clusters_frozen_keeps_them(spl_workdir):
    from curriculab.engine.loop import train_epoch
    from curriculab.engine.optim import build_optimizer
    from curriculab.engine.tasks import get_task
    from curriculab.methods.base import TrainState

    pretrain_embedding(stage(TINY), "digits", spl_workdir)
    saved = torch.load(pretrain_dir(spl_workdir, "digits") / "model.pt", weights_only=True)
    assert saved["optimizer"]["state"]  # the Adam state the adaptive student continues from
    micro, out = Micro(spl_workdir), {}
    for mode in ("adaptive", "frozen"):
        method = {"selection": "spld", "clusters": mode, "embedding": TINY, "refresh_every": 3,
                  "embedding_steps": 2}
        run = micro.run(data={"dataset": "digits", "subset_per_class": 20}, methods={"spl_advise": method},
                        train={"batch_size": 32, "epochs": 2})
        data, hooks, model = micro.build(data={"dataset": "digits", "subset_per_class": 20},
                                         methods={"spl_advise": method}, train={"batch_size": 32, "epochs": 2})
        student = hooks.methods[0]
        start = student.clusters.clone()
        state = TrainState(model=model, optimizer=build_optimizer(model.parameters(), run.train.optimizer),
                           data=data, epochs=2)
        task, seen = get_task("classification", {}), []
        for ep in range(2):  # 200 items, batch 32: 7 steps per epoch, refreshes after steps 3, 6, 9, 12
            state.epoch = ep
            train_epoch(run, state, hooks, task)
            seen.append(student.clusters.clone())
        out[mode] = (student, start, seen)
    student, start, seen = out["adaptive"]
    assert student.embedder.refreshes == 4
    moved = [not torch.allclose(v, saved["model"][k]) for k, v in student.embedder.model.state_dict().items()
             if v.is_floating_point()]
    assert any(moved)  # the embedding trained on
    assert not torch.equal(seen[0], start)  # and the clusters were recomputed from it
    assert (seen[-1] // TINY["clusters"] == student.ctx.data.train_y).all()  # still per class
    # resume: the embedding, its optimiser, index and clusters travel in the method's state
    again = built_student(micro, {"clusters": "adaptive", "embedding": TINY},
                          {"dataset": "digits", "subset_per_class": 20})
    again.load_state_dict(student.state_dict())
    assert torch.equal(again.clusters, student.clusters) and again.embedder.refreshes == 4
    assert all(torch.equal(a, b) for a, b in zip(again.embedder.model.state_dict().values(),
                                                 student.embedder.model.state_dict().values()))
    mine, theirs = again.embedder.index, student.embedder.index  # the Magnet sampler's per-cluster losses too
    assert student.embedder.index.has_loss.any()
    for name in ("assign", "centroids", "example_loss", "has_loss"):
        assert np.array_equal(getattr(mine, name), getattr(theirs, name)), name
    frozen, start, seen = out["frozen"]
    assert frozen.embedder is None and all(torch.equal(c, start) for c in seen)


def test_pretrained_files_of_the_older_format_are_stale(spl_workdir):
    from curriculab.methods.settings import spl_advise as settings

    emb = validate(EmbeddingParams, TINY)
    old = emb.digest("digits", "x")
    try:
        settings.FORMAT -= 1
        assert emb.digest("digits", "x") != old
    finally:
        settings.FORMAT += 1
