"""Perfect Ordering by brute force (thesis §2.2, Algorithm 1): every batch order of every epoch, batched.

Epoch 1 trains all (n/b)! orders of one batch split from one initialisation. Each later epoch draws a
new split, picks `clusters` networks of the previous epoch by k-means on their test loss, and trains
every order from each. All networks of an epoch train at once as one stack of models
(engine/batched.py), `chunk` at a time; there is no Python loop over orders or networks.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from curriculab.config import ConfigError, RunConfig
from curriculab.data.prepared import atomic_write_bytes, load_prepared
from curriculab.engine.batched import SGDConfig, Stack, evaluate, train_step
from curriculab.engine.devices import resolve_device, seed_everything
from curriculab.engine.records import new_record, write_record, write_timing
from curriculab.models import create_model
from curriculab.runners.settings import PerfectOrderingParams

if TYPE_CHECKING:
    import pandas as pd

NETWORKS_FILE = "networks.csv.gz"


def _data(run: RunConfig, p: PerfectOrderingParams, workdir: Path, gen: torch.Generator):
    """Normalised (train x, y) with per_class images of each class, and the test set; labels 0..C-1."""
    prep = load_prepared(Path(workdir) / "data", run.data.dataset)
    bad = [c for c in p.classes if c >= prep.classes]
    if bad:
        raise ConfigError(f"runner.classes: dataset {run.data.dataset!r} has no class {bad[0]}")
    train, test = [], []
    for c in p.classes:
        pos = prep.splits["train"][prep.y[prep.splits["train"]] == c]
        if len(pos) < p.per_class:
            raise ConfigError(f"runner.per_class: class {c} of {run.data.dataset!r} has {len(pos)} training images")
        pick = pos[torch.randperm(len(pos), generator=gen).numpy()[: p.per_class]]
        train.append(pick)
        if p.test == "rest":
            rest = np.setdiff1d(np.flatnonzero(prep.y == c), pick)
        else:
            rest = prep.splits["test"][prep.y[prep.splits["test"]] == c]
        test.append(rest)
    train_pos = np.concatenate(train)
    test_pos = np.sort(np.concatenate(test))[: p.test_limit]
    remap = np.full(prep.classes, -1)
    remap[p.classes] = np.arange(len(p.classes))
    x = torch.from_numpy(prep.x[train_pos]).float() / 255
    mean, std = x.mean(), x.std().clamp_min(1e-3)
    xt = (torch.from_numpy(prep.x[test_pos]).float() / 255 - mean) / std
    return ((x - mean) / std, torch.from_numpy(remap[prep.y[train_pos]]), xt,
            torch.from_numpy(remap[prep.y[test_pos]]))


def train_orders(model: torch.nn.Module, starts: Stack, start_of: torch.Tensor, orders: torch.Tensor,
                 xb: torch.Tensor, yb: torch.Tensor, cfg: SGDConfig) -> Stack:
    """Network i starts from starts[start_of[i]] and takes one SGD step on each batch xb[orders[i, s]] in turn.

    Networks with the same start and the same first s batches share those s steps, so step s trains each
    distinct prefix once (the orders' prefix tree): 6 + 30 + 120 + 360 + 720 + 720 = 1,956 network-steps for
    the 720 orders of 6 batches, where one stack row per order would take 4,320.
    """
    stack, node = starts, start_of  # node[i]: the row of `stack` that holds network i's state so far
    for s in range(orders.shape[1]):
        prefix, node = torch.unique(torch.stack([node, orders[:, s]], 1), dim=0, return_inverse=True)
        stack = train_step(model, stack.select(prefix[:, 0]), xb[prefix[:, 1]], yb[prefix[:, 1]], cfg)
    return stack.select(node)


def train_and_test(model: torch.nn.Module, starts: Stack, start_of: torch.Tensor, orders: torch.Tensor,
                   xb: torch.Tensor, yb: torch.Tensor, xt: torch.Tensor, yt: torch.Tensor, cfg: SGDConfig,
                   p: PerfectOrderingParams) -> tuple[list[Stack], torch.Tensor, torch.Tensor]:
    """One epoch's networks (as `train_orders`), `p.chunk` at a time, each chunk tested on (xt, yt) in batches of
    `p.eval_batch_size` images: the trained chunks and every network's test loss and accuracy."""
    parts, losses, accs = [], [], []
    for i in range(0, len(orders), p.chunk):
        sl = slice(i, i + p.chunk)
        stack = train_orders(model, starts, start_of[sl], orders[sl], xb, yb, cfg)
        loss, acc = evaluate(model, stack, xt, yt, p.eval_batch_size)
        parts.append(stack)
        losses.append(loss)
        accs.append(acc)
    return parts, torch.cat(losses), torch.cat(accs)


def pick_starts(losses: np.ndarray, k: int, pick: str, extremes: bool, seed: int) -> np.ndarray:
    """k-means (k clusters) on the test losses; one network per cluster: the one nearest its centre
    (`nearest`, the thesis) or the first by index (`first`, the authors' code); + min and max if `extremes`."""
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(losses.reshape(-1, 1))
    chosen = []
    for c in range(k):
        members = np.flatnonzero(km.labels_ == c)
        if len(members) == 0:
            continue
        dist = np.abs(losses[members] - km.cluster_centers_[c, 0])
        chosen.append(members[dist.argmin()] if pick == "nearest" else members[0])
    if extremes:
        chosen += [losses.argmin(), losses.argmax()]
    return np.array(sorted(set(int(c) for c in chosen)))


def _summary(epoch: int, loss: torch.Tensor, acc: torch.Tensor, starts: int) -> dict:
    return {"epoch": epoch, "networks": len(acc), "start_networks": starts,
            "test_acc_min": acc.min().item(), "test_acc_mean": acc.mean().item(), "test_acc_max": acc.max().item(),
            "test_loss_min": loss.min().item(), "test_loss_mean": loss.mean().item(),
            "test_loss_max": loss.max().item()}


def run_perfect_ordering(run: RunConfig, run_dir: Path, workdir: Path, run_id: str = "", position: int = 0,
                         meta: dict | None = None) -> dict:
    """The whole experiment for one seed; writes metrics.json, the per-network table (networks.csv.gz) and the
    wall-clock seconds per epoch (timing.json, apart, so that metrics.json repeats byte for byte)."""
    import pandas as pd

    p = PerfectOrderingParams.model_validate(run.runner)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(run.train.device)
    seed_everything(run.seed)
    gen = torch.Generator().manual_seed(run.seed)
    x, y, xt, yt = (t.to(device) for t in _data(run, p, workdir, gen))
    model = create_model(run.model.name, x.shape[1], len(p.classes), run.model.width, **run.model.kwargs).to(device)
    o = run.train.optimizer
    cfg = SGDConfig(o.lr, o.momentum, o.nesterov and o.momentum > 0, o.weight_decay)
    bs = run.train.batch_size
    nb = len(y) // bs
    perms = torch.tensor(list(itertools.permutations(range(nb))), device=device)  # (nb!, nb)
    starts, parent_rows = Stack.of(model, 1), np.array([-1])
    record = {**new_record(run_id, meta), "files": [NETWORKS_FILE]}
    tables, row0, seconds = [], 0, []
    for epoch in range(run.train.epochs):
        t0 = time.perf_counter()
        split = torch.randperm(len(y), generator=gen).to(device).view(nb, bs)
        xb, yb = x[split], y[split]
        n = starts.n * len(perms)
        start_of = torch.arange(starts.n, device=device).repeat_interleave(len(perms))
        order_of = torch.arange(len(perms), device=device).repeat(starts.n)
        parts, loss, acc = train_and_test(model, starts, start_of, perms[order_of], xb, yb, xt, yt, cfg, p)
        loss, acc = loss.cpu(), acc.cpu()
        tables.append(pd.DataFrame({
            "epoch": epoch + 1, "network": np.arange(row0, row0 + n),
            "start_network": parent_rows[start_of.cpu().numpy()], "order": order_of.cpu().numpy(),
            "test_loss": loss.numpy(), "test_acc": acc.numpy()}))
        if epoch + 1 < run.train.epochs:
            chosen = pick_starts(loss.numpy().astype(np.float64), p.clusters, p.pick, p.extremes, run.seed + epoch)
            everything = Stack(*({k: torch.cat([getattr(s, f)[k] for s in parts]) for k in getattr(parts[0], f)}
                                 for f in ("params", "buffers", "momentum")))
            starts = everything.select(torch.from_numpy(chosen).to(device))
            parent_rows = row0 + chosen
        row0 += n
        record["history"].append(_summary(epoch + 1, loss, acc, len(parent_rows) if epoch else 1))
        seconds.append(time.perf_counter() - t0)
        print(f"perfect ordering {run_id or ''} seed {run.seed}: epoch {epoch + 1}/{run.train.epochs}, {n} networks, "
              f"{seconds[-1]:.1f} s", flush=True)
        record["artifacts"].append({})
    networks = pd.concat(tables, ignore_index=True)
    atomic_write_bytes(run_dir / NETWORKS_FILE, _gzip_csv(networks))
    last = record["history"][-1]
    record["final"] = {**{k: v for k, v in last.items() if k.startswith("test_")},
                       "networks": int(len(networks)), "epochs": run.train.epochs}
    record["status"] = "done"
    write_timing(run_dir, seconds)
    write_record(run_dir / "metrics.json", record)
    return record


def _gzip_csv(df: pd.DataFrame) -> bytes:
    import gzip

    return gzip.compress(df.to_csv(index=False, float_format="%.8g").encode(), mtime=0)


def read_networks(run_dir: Path) -> pd.DataFrame:
    """The per-network table of a finished run: epoch, network, start_network, order, test_loss, test_acc."""
    import pandas as pd

    return pd.read_csv(Path(run_dir) / NETWORKS_FILE)
