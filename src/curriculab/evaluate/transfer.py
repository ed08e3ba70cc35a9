"""Evaluate-stage transfer of trained classifiers: a frozen-feature MLP probe (CBS Table 3) and
zero-shot domain adaptation with a target-only oracle (CBS Table 5).

Both work on a finished run's final checkpoint (`engine.loop.load_trained`). Target images are
resized to the source run's image size and channel count, and normalised with the *source* training
mean/std: the frozen network keeps the preprocessing it was trained with.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from curriculab.config import ConfigError, RunConfig, table_key
from curriculab.data.loader import DeviceData
from curriculab.engine.records import is_done
from curriculab.evaluate.settings.transfer import ProbeParams, ZeroShotParams


@contextlib.contextmanager
def cpu_threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def target_data(run: RunConfig, dataset: str, source: DeviceData, workdir: Path,
                subset_per_class: int | None = None, test_limit: int | None = None) -> DeviceData:
    """`dataset` at the source run's image shape, normalised with the source's statistics."""
    cfg = run.model_copy(update={"data": run.data.model_copy(update={
        "dataset": dataset, "image_size": source.image_size, "channels": source.in_channels,
        "subset_per_class": subset_per_class, "subset": None, "test_limit": test_limit,
        "noise": type(run.data.noise)()})})
    data = DeviceData(cfg, Path(workdir) / "data", source.device)
    data.mean, data.std = source.mean, source.std
    return data


def last_linear(model: nn.Module) -> nn.Linear:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("feature probe: the model has no nn.Linear head whose input could serve as features")
    return linears[-1]


@torch.no_grad()
def extract_features(model: nn.Module, predict, x_uint8: torch.Tensor, data: DeviceData,
                     batch_size: int = 1000) -> torch.Tensor:
    """The input of the model's last linear layer (the penultimate features), for every image."""
    feats: list[torch.Tensor] = []
    head = last_linear(model)
    handle = head.register_forward_pre_hook(lambda _m, args: feats.append(args[0].detach().float()))
    try:
        for i in range(0, len(x_uint8), batch_size):
            predict(model, data.to_input(x_uint8[i:i + batch_size], augment=False))
    finally:
        handle.remove()
    return torch.cat(feats)


def mlp(d_in: int, hidden: int, layers: int, classes: int) -> nn.Sequential:
    dims = [d_in] + [hidden] * (layers - 1) + [classes]
    mods: list[nn.Module] = []
    for i in range(layers):
        mods.append(nn.Linear(dims[i], dims[i + 1]))
        if i < layers - 1:
            mods.append(nn.ReLU())
    return nn.Sequential(*mods)


Split = tuple[torch.Tensor, torch.Tensor]


def train_probe(train: Split, val: Split, test: Split, classes: int, p: ProbeParams, seed: int
                ) -> dict[str, float]:
    """Fit the MLP with Adam; test accuracy at its last epoch and at its epoch of best validation accuracy."""
    gen = torch.Generator(device=train[0].device)
    gen.manual_seed(seed)
    torch.manual_seed(seed)
    net = mlp(train[0].shape[1], p.hidden, p.layers, classes).to(train[0].device)
    opt = torch.optim.Adam(net.parameters(), lr=p.lr)

    @torch.no_grad()
    def acc(split: tuple[torch.Tensor, torch.Tensor]) -> float:
        return float((net(split[0]).argmax(1) == split[1]).float().mean())

    best_val, at_best, last = -1.0, math.nan, math.nan
    for _ in range(p.epochs):
        perm = torch.randperm(len(train[1]), generator=gen, device=train[0].device)
        for i in range(0, len(perm), p.batch_size):
            idx = perm[i:i + p.batch_size]
            loss = F.cross_entropy(net(train[0][idx]), train[1][idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        v, last = acc(val), acc(test)
        if v > best_val:
            best_val, at_best = v, last
    return {"acc": last, "acc_at_best_val": at_best, "val_acc": best_val}


def feature_probe(run, record: dict, p: ProbeParams, workdir: Path) -> dict[str, float]:
    """Table 3: per target `probe_<target>_acc` (last MLP epoch) and `_acc_at_best_val`; their means."""
    with cpu_threads(p.threads):
        return _feature_probe(run, p, workdir)


def _feature_probe(run, p: ProbeParams, workdir: Path) -> dict[str, float]:
    from curriculab.engine.loop import load_trained

    model, data, hooks = load_trained(run.config, run.dir(workdir), workdir, p.device)

    def predict(m, x):
        return hooks.predict(m, x)

    out: dict[str, float] = {}
    for target in p.targets:
        tgt = target_data(run.config, target, data, workdir, p.subset_per_class, p.test_limit)
        splits = {"train": (tgt.train_x, tgt.train_y), "val": tgt.val, "test": tgt.test}
        feats = {k: (extract_features(model, predict, x, tgt), y) for k, (x, y) in splits.items()}
        res = train_probe(feats["train"], feats["val"], feats["test"], tgt.classes, p, run.seed)
        out.update({f"probe_{target}_{k}": v for k, v in res.items()})
    for k in ("acc", "acc_at_best_val"):  # the headline: mean over the probed targets
        out[f"probe_mean_{k}"] = sum(out[f"probe_{t}_{k}"] for t in p.targets) / len(p.targets)
    return out


@torch.no_grad()
def accuracy(model: nn.Module, predict, data: DeviceData, split: str = "test", batch_size: int = 1000
             ) -> float:
    correct, n = None, 0
    for x, y in data.eval_batches(split, batch_size):
        hits = (predict(model, x).argmax(1) == y).sum()
        correct = hits if correct is None else correct + hits
        n += len(y)
    return int(correct) / n if n else 0.0


def oracle_record(run, target: str, workdir: Path, subset: int | None = None) -> dict:
    """The target-only oracle: the run's settings with the target (a sample of `subset` of its training items,
    or all) as training set.

    A run of the same table with exactly these settings (e.g. the reverse direction's column) is reused;
    otherwise it is trained here, under runs/eval/<table>/oracle/<run-id>/.
    """
    from curriculab.engine.loop import fit
    from curriculab.executor import read_record
    from curriculab.tables.spec import run_id

    cfg = run.config.model_copy(update={"data": run.config.data.model_copy(update={"dataset": target,
                                                                                   "subset": subset})})
    rid = run_id(cfg)  # as the table names its runs: settings and code
    key = table_key(run.table)
    for d in (Path(workdir) / "runs" / key / rid, Path(workdir) / "runs" / "eval" / key / "oracle" / rid):
        rec = read_record(d)
        if is_done(rec):
            return rec
    labels = {"table": run.table, "row": run.row, "column": f"{run.column}: oracle on {target}", "seed": run.seed,
              "oracle_of": run.run_id, "target": target}
    return fit(cfg, d, workdir, run_id=rid, meta={"labels": labels})


def zero_shot(run, record: dict, p: ZeroShotParams, workdir: Path) -> dict[str, float]:
    """Table 5: `target_acc` (source-trained model on the target test split) and the target-only oracle."""

    if run.column not in p.targets:
        raise ConfigError(f"evaluate.{table_key(run.table)}.targets: no target dataset for column "
                          f"{run.column!r}; add `{run.column}: <dataset>`")
    with cpu_threads(p.threads):
        return _zero_shot(run, p, p.targets[run.column], workdir)


def _zero_shot(run, p: ZeroShotParams, target: str, workdir: Path) -> dict[str, float]:
    from curriculab.engine.loop import load_trained

    model, data, hooks = load_trained(run.config, run.dir(workdir), workdir, p.device)
    tgt = target_data(run.config, target, data, workdir, test_limit=run.config.data.test_limit)
    out = {"target_acc": accuracy(model, hooks.predict, tgt)}
    if p.oracle:
        rec = oracle_record(run, target, workdir, p.oracle_subset.get(target))
        out["target_only_acc"] = rec["final"]["test_acc"]
        out["target_only_acc_at_best_val"] = rec["final"]["test_acc_at_best_val"]
    return out
