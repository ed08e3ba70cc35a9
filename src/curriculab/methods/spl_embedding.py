"""SPL-ADVisE's pretrain stage (Thangarasa & Taylor, BMVC 2018, Algorithm 1): an embedding CNN trained with
the stochastic Magnet loss (eq. 1) on neighbourhood minibatches drawn from a per-class K-means++ cluster index
refreshed every R iterations.

It writes, per dataset, under data/pretrained/spl_advise/<dataset>/: the model, the final cluster of every
training sample (indexed by position in the prepared arrays), t-SNE snapshots (figure spl.f2) and a hash of
(embedding settings, dataset, dataset checksum). The student (methods/spl_advise.py) loads the clusters.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
import torch

from curriculab.config import (
    ConfigError,
    DataParams,
    RunConfig,
)
from curriculab.data.derive import subset_per_class
from curriculab.data.loader import DeviceData
from curriculab.data.prepared import atomic_write_bytes, atomic_write_json, read_meta
from curriculab.engine.devices import resolve_device, seed_everything
from curriculab.methods.magnet import ClusterIndex, kmeans_per_class, magnet_step
from curriculab.methods.settings.spl_advise import EmbeddingParams, PretrainParams
from curriculab.models import create_model

PRETRAIN_HINT = "run `dvc repro pretrain@spl_advise` (or `curriculab pretrain spl_advise`)"


# --------------------------------------------------------------------------- paths and checks


def pretrain_dir(workdir: Path, dataset: str) -> Path:
    return Path(workdir) / "data" / "pretrained" / "spl_advise" / dataset


def load_embedding_clusters(workdir: Path, emb: EmbeddingParams, dataset: str, checksum: str) -> np.ndarray:
    """The pretrain stage's cluster of every prepared position, after checking its hash is current."""
    d = pretrain_dir(workdir, dataset)
    meta_path, npz = d / "meta.json", d / "clusters.npz"
    if not meta_path.is_file() or not npz.is_file():
        raise ConfigError(f"methods.spl_advise: embedding checkpoint missing: {meta_path} does not exist; "
                          f"{PRETRAIN_HINT} with {dataset!r} in pretrain.spl_advise.datasets")
    saved = json.loads(meta_path.read_text()).get("hash")
    want = emb.digest(dataset, checksum)
    if saved != want:
        raise ConfigError(f"methods.spl_advise: embedding checkpoint stale: {d} was trained with other "
                          f"settings or data (hash {saved} ≠ {want}); make methods.spl_advise.embedding "
                          f"equal pretrain.spl_advise.embedding and {PRETRAIN_HINT}")
    with np.load(npz) as z:
        return z["assign"]


def load_embedding_model(workdir: Path, emb: EmbeddingParams, dataset: str, checksum: str,
                         device: torch.device) -> tuple[torch.nn.Module, torch.optim.Optimizer, np.ndarray]:
    """The pretrained embedding CNN, its Adam optimiser with the saved state (training continues where the
    stage stopped) and the final centroids, after the same hash check as `load_embedding_clusters`."""
    from curriculab.engine.checkpoint import safe_load

    load_embedding_clusters(workdir, emb, dataset, checksum)
    d = pretrain_dir(workdir, dataset)
    cfg = emb.resolve(dataset)
    ck = safe_load(d / "model.pt", device, fix=PRETRAIN_HINT)
    model = create_model(cfg.model.name, ck["in_channels"], cfg.dim, cfg.model.width, **cfg.model.kwargs)
    model.load_state_dict(ck["model"])
    model = model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    opt.load_state_dict(ck["optimizer"])
    with np.load(d / "clusters.npz") as z:
        centroids = z["centroids"]
    return model, opt, centroids


# --------------------------------------------------------------------------- the stage


class _Clock:
    """Exclusive wall and CPU seconds per named section (time in a nested section is not its parent's).
    The section "loop" is reported as "train": the Magnet-loss iterations without the refreshes in them."""

    def __init__(self):
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.stack: list[list] = []
        self.start = (time.perf_counter(), time.process_time())
        self.name = ""

    def __call__(self, name: str) -> _Clock:
        self.name = name
        return self

    def __enter__(self) -> None:
        self.stack.append([self.name, time.perf_counter(), time.process_time(), 0.0, 0.0])

    def __exit__(self, *exc) -> None:
        name, w0, c0, child_w, child_c = self.stack.pop()
        dw, dc = time.perf_counter() - w0, time.process_time() - c0
        self.wall[name] = self.wall.get(name, 0.0) + dw - child_w
        self.cpu[name] = self.cpu.get(name, 0.0) + dc - child_c
        if self.stack:
            self.stack[-1][3] += dw
            self.stack[-1][4] += dc

    def report(self) -> dict[str, dict[str, float]]:
        return {key: {**{("train" if k == "loop" else k): v for k, v in d.items()}, "total": now - t0}
                for key, d, now, t0 in (("seconds", self.wall, time.perf_counter(), self.start[0]),
                                        ("cpu_seconds", self.cpu, time.process_time(), self.start[1]))}


def embed(model: torch.nn.Module, data, positions: torch.Tensor, bs: int) -> np.ndarray:
    """Representations of the training items at `positions` (eval mode, batched)."""
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(positions), bs):
            idx = positions[i:i + bs]
            out.append(model(data.to_input(data.train_x[idx], augment=False)).float().cpu())
    model.train()
    return torch.cat(out).numpy()


def pretrain_embedding(pp: PretrainParams, dataset: str, workdir: Path) -> str:
    """Algorithm 1 for one dataset; writes model.pt, clusters.npz, tsne.npz, timing.json and meta.json (last)."""
    from sklearn.manifold import TSNE

    cfg = pp.embedding.resolve(dataset)
    key = "pretrain.spl_advise.embedding"
    out = pretrain_dir(workdir, dataset)
    meta = read_meta(Path(workdir) / "data", dataset)
    digest = pp.embedding.digest(dataset, meta["checksum"])
    figure = {"tsne_points": pp.tsne_points, "tsne_iterations": pp.tsne_iterations}
    old = json.loads((out / "meta.json").read_text()) if (out / "meta.json").is_file() else {}
    if old.get("hash") == digest and old.get("figure") == figure and (out / "tsne.npz").is_file():
        return f"up to date ({digest})"
    classes = meta["classes"]
    if cfg.m - 1 > (classes - 1) * cfg.clusters:
        raise ConfigError(f"{key}.m: {cfg.m} clusters per minibatch need {cfg.m - 1} impostor clusters of "
                          f"other classes, but {dataset!r} has only ({classes}−1)·{cfg.clusters} = "
                          f"{(classes - 1) * cfg.clusters}; lower m or raise clusters")
    clock = _Clock()
    seed_everything(cfg.seed)
    device = resolve_device(pp.device)
    data = DeviceData(RunConfig(seed=cfg.seed, data=DataParams(dataset=dataset)), Path(workdir) / "data", device)
    labels = data.train_y.cpu().numpy()
    pos = (subset_per_class(labels, cfg.subset_per_class, cfg.seed) if cfg.subset_per_class
           else np.arange(len(labels)))
    pos_t = torch.as_tensor(pos, device=device)
    rng = np.random.default_rng(cfg.seed)
    model = create_model(cfg.model.name, data.in_channels, cfg.dim, cfg.model.width, **cfg.model.kwargs)
    model = model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    index = ClusterIndex(labels[pos], classes, cfg.clusters, cfg.m, cfg.b, rng, cfg.seed)
    tsne_pos = pos_t[torch.as_tensor(np.sort(rng.permutation(len(pos))[:pp.tsne_points]), device=device)]
    mid = cfg.iterations // 2

    def snapshot() -> np.ndarray:
        with clock("snapshots"):
            return embed(model, data, tsne_pos, pp.eval_batch_size)

    def refresh() -> None:
        with clock("refresh"):
            index.refresh(embed(model, data, pos_t, pp.eval_batch_size))

    snaps = {0: snapshot()}
    refresh()
    curve, window = [], []
    with clock("loop"):
        for it in range(1, cfg.iterations + 1):
            window.append(float(magnet_step(model, opt, index, data, cfg.alpha, cfg.variance, pos).mean()))
            if it % cfg.refresh == 0 or it == cfg.iterations:
                curve.append({"iteration": it, "loss": float(np.mean(window))})
                window = []
            if it == mid:
                snaps[mid] = snapshot()
            if it % cfg.refresh == 0 and it < cfg.iterations:
                refresh()
    snaps[cfg.iterations] = snapshot()

    with clock("final"):  # the final index: every training item of the prepared split, clustered per class
        reps = embed(model, data, torch.arange(data.n_train, device=device), pp.eval_batch_size)
        assign_train, centroids = kmeans_per_class(reps, labels, cfg.clusters, classes, cfg.seed + 1,
                                                   what=f"{key}.clusters")
        assign = np.full(int(sum(meta["sizes"].values())), -1, np.int64)
        assign[data.train_pos] = assign_train

    with clock("tsne"):
        pts = len(tsne_pos)
        perplexity = float(min(30.0, max(2.0, (pts - 1) / 3)))
        coords = np.stack([TSNE(2, perplexity=perplexity, init="pca", max_iter=pp.tsne_iterations,
                                random_state=cfg.seed).fit_transform(snaps[s])
                           for s in sorted(snaps)]) if pts > 3 else np.zeros((len(snaps), pts, 2))
    timing = clock.report()

    out.mkdir(parents=True, exist_ok=True)
    (out / "meta.json").unlink(missing_ok=True)  # invalid until everything below is written
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                "settings": cfg.model_dump(mode="json"), "hash": digest, "in_channels": data.in_channels}, buf)
    atomic_write_bytes(out / "model.pt", buf.getvalue())
    buf = io.BytesIO()
    np.savez(buf, assign=assign, centroids=centroids, index_positions=data.train_pos[pos])
    atomic_write_bytes(out / "clusters.npz", buf.getvalue())
    buf = io.BytesIO()
    np.savez(buf, coords=coords.astype(np.float32), labels=labels[tsne_pos.cpu().numpy()],
             iterations=np.array(sorted(snaps)), positions=data.train_pos[tsne_pos.cpu().numpy()])
    atomic_write_bytes(out / "tsne.npz", buf.getvalue())
    atomic_write_json(out / "timing.json", timing)  # wall-clock apart: the other files are the same everywhere
    atomic_write_json(out / "meta.json", {
        "hash": digest, "figure": figure, "dataset": dataset, "checksum": meta["checksum"],
        "settings": cfg.model_dump(mode="json"),
        "index_size": int(len(pos)), "train_size": int(data.n_train), "refreshes": index.refreshes,
        "loss_curve": curve, "device": str(device)})
    sec = timing["cpu_seconds"]
    share = sec["refresh"] / max(sec["refresh"] + sec["train"], 1e-9)
    return (f"{cfg.iterations} iterations, {index.refreshes} cluster refreshes ({share:.1%} of the training "
            f"CPU time), loss {curve[0]['loss']:.3f} → {curve[-1]['loss']:.3f}, "
            f"{timing['seconds']['total']:.1f}s")
