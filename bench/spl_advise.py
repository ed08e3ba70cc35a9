"""SPL-ADVisE costs, side by side in one process; prints ratios (no asserts on timing).

(a) the student's epoch time under SPL-ADVisE selection against random sampling, same data, model and number
    of updates, for both `losses` modes: `fresh` (a per-sample loss pass over the training set + `spld_select`
    + the filled epoch; target ≤ 1.3×) and `last_epoch` (the losses recorded during the previous epoch's
    training steps; target ≤ 1.1×); epochs alternate between the three so all see the same machine load.
(b) the share of embedding pretraining (Algorithm 1) spent in cluster refreshes (forward pass of the index
    + per-class k-means++), at the offline settings and at the official code's refresh interval ⌈N/64⌉
    (target ≤ 10% at the offline sizes).

    OMP_NUM_THREADS=1 .venv/bin/python bench/spl_advise.py [--workdir .] [--dataset fashion_mnist]

Needs the prepared dataset under <workdir>/data. Uses the pretrain stage's clusters when they are current
in <workdir>, otherwise k-means on pixels (the selection work is the same either way).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from curriculab.config import RunConfig, validate
from curriculab.engine.loop import build
from curriculab.engine.optim import build_optimizer
from curriculab.methods.base import TrainState, cross_entropy
from curriculab.methods.spl_embedding import EmbeddingParams, PretrainParams, pretrain_dir, pretrain_embedding

OFFLINE_EMBEDDING = {"model": {"name": "lenet", "width": 1.0}, "dim": 16, "clusters": 8, "m": 8, "b": 8,
                     "alpha": 1.0, "refresh": 300, "lr": 0.001, "iterations": 900, "subset_per_class": 300}


def student(workdir: Path, dataset: str, method: dict, subset: int, width: float):
    run = RunConfig.model_validate({
        "seed": 0, "data": {"dataset": dataset, "subset_per_class": subset},
        "model": {"name": "small_cnn", "width": width}, "methods": {"spl_advise": method},
        "train": {"epochs": 10, "batch_size": 64, "device": "cpu",
                  "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True}}})
    data, hooks, model = build(run, Path(tempfile.mkdtemp()), workdir, torch.device("cpu"))
    opt = build_optimizer(model.parameters(), run.train.optimizer)
    state = TrainState(model=model, optimizer=opt, data=data, epochs=10, steps_per_epoch=0)
    return hooks, state, run


def epoch(hooks, state, run, ep: int) -> tuple[float, float, int]:
    """CPU seconds of one epoch (selection included), CPU seconds of the selection alone, updates."""
    state.epoch = ep
    state.model.train()
    t0 = time.process_time()
    batches = hooks.train_batches(ep, state, lambda: state.data.batches(run.train.batch_size))
    t_sel = time.process_time() - t0
    steps = 0
    for b in batches:
        out = state.model(b.x)
        loss = hooks.loss(out, b, state, lambda o, bb: cross_entropy(o, bb.y)).mean()
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        state.optimizer.step()
        steps += 1
    return time.process_time() - t0, t_sel, steps


def eval_seconds(state, run) -> float:
    """CPU seconds of the harness's per-epoch evaluation (val + test) for this student."""
    state.model.eval()
    t0 = time.process_time()
    with torch.no_grad():
        for split in ("val", "test"):
            for x, _ in state.data.eval_batches(split, 500):
                state.model(x)
    state.model.train()
    return time.process_time() - t0


def embedding_block(params: Path) -> dict:
    """`pretrain.spl_advise.embedding` of the params file when it has one, else the offline default above."""
    from curriculab.settings_file import load_yaml

    if params.is_file():
        doc = load_yaml(params)
        block = doc.get("pretrain", {}).get("spl_advise", {}).get("embedding")
        if block and "use" in block:  # `{use: name}`: a block of the params file's `defaults`
            block = {**doc.get("defaults", {})[block["use"]], **{k: v for k, v in block.items() if k != "use"}}
        if block:
            return block
    return OFFLINE_EMBEDDING


def bench_student(workdir: Path, dataset: str, epochs: int, subset: int, width: float, block: dict) -> None:
    emb = validate(EmbeddingParams, block)
    meta = pretrain_dir(workdir, dataset) / "meta.json"
    use_emb = False
    if meta.is_file():
        from curriculab.data.prepared import read_meta

        use_emb = json.loads(meta.read_text()).get("hash") == emb.digest(
            dataset, read_meta(workdir / "data", dataset)["checksum"])
    clusters = ({"clusters": "embedding", "embedding": block} if use_emb
                else {"clusters": "pixels"})
    spl = {"selection": "spld", "start_fraction": 0.8, "gamma": 1.0, "beta1": 0.1, "beta2": 0.1, **clusters}
    runs = {"spl": student(workdir, dataset, spl, subset, width),
            "last_epoch": student(workdir, dataset, {**spl, "losses": "last_epoch"}, subset, width),
            "random": student(workdir, dataset, {"selection": "random"}, subset, width)}
    times: dict[str, list[float]] = {name: [] for name in runs}
    sel: dict[str, list[float]] = {"spl": [], "last_epoch": []}
    for ep in range(epochs + 1):
        for name, (hooks, state, run) in runs.items():
            total, t_sel, steps = epoch(hooks, state, run, ep)
            if ep == 0:  # warm-up; epoch 0 also uses all data under SPL-ADVisE
                continue
            times[name].append(total)
            if name in sel:
                sel[name].append(t_sel)
    ev = eval_seconds(*runs["random"][1:])
    s, r = statistics.median(times["spl"]), statistics.median(times["random"])
    le = statistics.median(times["last_epoch"])
    n = runs["spl"][1].data.n_train
    print(f"(a) student epoch, {dataset} ({n} training items, small_cnn width {width}, batch 64, "
          f"{steps} updates per epoch), clusters from {'the embedding' if use_emb else 'pixels (stand-in)'}; "
          f"median CPU seconds over {epochs} paced epochs:")
    print(f"    random sampling        {r:7.3f} s")
    print(f"    SPL-ADVisE, fresh      {s:7.3f} s   (loss pass + selection: "
          f"{statistics.median(sel['spl']):.3f} s)   ratio {s / r:.3f}×   (target ≤ 1.3×)")
    print(f"    SPL-ADVisE, last_epoch {le:7.3f} s   (selection: "
          f"{statistics.median(sel['last_epoch']):.3f} s)   ratio {le / r:.3f}×   (target ≤ 1.1×)")
    print(f"    with the harness's per-epoch val+test evaluation ({ev:.3f} s): "
          f"ratios {(s + ev) / (r + ev):.3f}× (fresh), {(le + ev) / (r + ev):.3f}× (last_epoch)")


def bench_pretrain(workdir: Path, dataset: str, block: dict) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        wd = Path(tmp)
        (wd / "data").mkdir()
        (wd / "data" / "prepared").symlink_to((workdir / "data" / "prepared").resolve())
        rows = []
        cfg = validate(EmbeddingParams, block).resolve(dataset)
        from curriculab.data.prepared import read_meta

        meta = read_meta(workdir / "data", dataset)
        n_train = meta["sizes"]["train"]
        index = min(n_train, cfg.subset_per_class * meta["classes"]) if cfg.subset_per_class else n_train
        official_r = -(-index // 64)
        official = {"refresh": official_r, "iterations": 3 * official_r}
        for label, over in [(f"these settings (R={cfg.refresh})", {}),
                            (f"official R=⌈N/64⌉={official_r}", official)]:
            emb = validate(EmbeddingParams, {**cfg.model_dump(mode="json"), **over})
            pretrain_embedding(PretrainParams(datasets=[dataset], embedding=emb, device="cpu"), dataset, wd)
            meta = json.loads((pretrain_dir(wd, dataset) / "meta.json").read_text())
            sec = json.loads((pretrain_dir(wd, dataset) / "timing.json").read_text())["cpu_seconds"]
            rows.append((label, emb, meta, sec))
        print(f"(b) embedding pretraining on {dataset}, index {meta['index_size']} items, "
              f"final assignment of {meta['train_size']} items (CPU seconds):")
        for label, emb, meta, sec in rows:
            share = sec["refresh"] / (sec["refresh"] + sec["train"])
            print(f"    {label:28s} {emb.iterations} iterations, {meta['refreshes']} refreshes: refresh "
                  f"{sec['refresh']:.2f} s, training {sec['train']:.2f} s → refresh share {share:.1%} "
                  f"(target ≤ 10%); final assignment {sec['final']:.2f} s, t-SNE {sec['tsne']:.2f} s, "
                  f"total {sec['total']:.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default=".")
    ap.add_argument("--params", default="params.yaml", help="takes pretrain.spl_advise.embedding from here")
    ap.add_argument("--dataset", default="fashion_mnist")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--subset", type=int, default=300)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--skip-pretrain", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(1)
    wd = Path(a.workdir).resolve()
    block = embedding_block(Path(a.params))
    bench_student(wd, a.dataset, a.epochs, a.subset, a.width, block)
    if not a.skip_pretrain:
        bench_pretrain(wd, a.dataset, block)


if __name__ == "__main__":
    main()
