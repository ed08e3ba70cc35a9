"""Synthetic stand-ins for the dry run (`curriculab.dryrun`): each dataset's real shape and split sizes
(`REAL`), synthetic prepared data in the on-disk format of `prepare`, the dry settings of a table, and the
measured training step of each architecture.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from curriculab.config import ConfigError, Params, RunConfig, stable_hash

DRY_EPOCHS = 2  # interrupted after epoch 1, then resumed (more where a method's schedule needs it)
DRY_CLUSTERS = 1  # SPL-ADVisE clusters per class in the dry run, so the split needs one item per class
STEP_LIMIT_S = 0.5  # a dry step at the real batch size must be projected to take at most this long
SMALL_BATCH = 8  # otherwise the dry steps use this batch size (and the output says so)
EVAL_BATCH = 64
DRY_NLL_SAMPLES = 4  # importance samples of a VAE's test NLL (CBS Table 6 uses 500)
DRY_START_NETWORKS = 2  # Perfect Ordering's k-means picks per later epoch (thesis §2.2: 12, so 8,640 networks)
DRY_CANDIDATES = 4  # POA's K candidates scored per step (thesis Tables 2.2-2.4: 8 to 64, or all)
DRY_TTSA_SUMS = 2  # test-time sums per image (TTSA's C, and an attack's EOT samples through it)
DRY_ATTACK_STEPS = 2  # an iterative attack's steps (the thesis' official script: 10)
DRY_ATTACKED = 4  # test images attacked per run
GPU_SPEEDUP = 1000.0  # a guess: see SPEEDUP_BASIS
SPEEDUP_BASIS = ("a guess, not a measurement: an H100 (bf16, ~1000 dense TFLOP/s peak, far less achieved on "
                 "these convnets) against two shared CPU cores (tens of GFLOP/s)")


@dataclass(frozen=True)
class Shape:
    """A dataset as `prepare` writes it from the real source: image shape, classes, split sizes."""

    channels: int
    size: int
    classes: int
    train: int
    val: int
    test: int
    note: str


# The real datasets' shapes and split sizes as `prepare` would write them (data/sources.py: official train and
# test sets, a seeded 10% of train held out for validation). Kept here because the datasets are not on this
# machine; `imagefolder` and `celeba` take their image side from prepare.imagefolder.image_size.
REAL: dict[str, Shape] = {
    "digits": Shape(1, 8, 10, 1257, 180, 360, "sklearn digits (prepare.digits)"),
    "mnist": Shape(1, 28, 10, 54000, 6000, 10000, "MNIST 60k/10k"),
    "binarized_mnist": Shape(1, 28, 10, 54000, 6000, 10000, "MNIST 60k/10k, one Bernoulli sample of each image"),
    "fashion_mnist": Shape(1, 28, 10, 55000, 5000, 10000, "Fashion-MNIST 60k/10k (prepare.fashion_mnist.val)"),
    "usps": Shape(1, 16, 10, 6562, 729, 2007, "USPS 7,291/2,007"),
    "svhn": Shape(3, 32, 10, 65932, 7325, 26032, "SVHN 73,257/26,032 (no extra)"),
    "svhn_extra": Shape(3, 32, 10, 543950, 60438, 26032, "SVHN train + extra 604,388/26,032"),
    "cifar10": Shape(3, 32, 10, 45000, 5000, 10000, "CIFAR-10 50k/10k"),
    "cifar100": Shape(3, 32, 100, 45000, 5000, 10000, "CIFAR-100 50k/10k"),
    "imagefolder": Shape(3, 224, 1000, 1271167, 10000, 50000,
                         "assumed ImageNet-1k (1,281,167/50,000; 10,000 held out) at prepare.imagefolder.image_size"),
    "webvision": Shape(3, 224, 1000, 2429574, 10000, 50000,
                       "WebVision 1.0: 2,439,574 Google + Flickr training images (10,000 held out) / 50,000 validation "
                       "images, at prepare.webvision.image_size"),
    "celeba": Shape(3, 64, 1, 162770, 19867, 19962, "CelebA (labels unused) at prepare.celeba.image_size"),
}


def real_shape(name: str, params: Params) -> Shape:
    if name == "syndigits":
        s = params.prepare.syndigits
        return Shape(1, s.size, 10, s.train, s.val, s.test, "syndigits (prepare.syndigits)")
    if name not in REAL:
        raise ConfigError(f"dryrun: no known shape for dataset {name!r}; add it to curriculab.synthetic.REAL")
    shape = REAL[name]
    if name in ("imagefolder", "webvision", "celeba"):
        shape = replace(shape, size=getattr(params.prepare, name).image_size)
    if name == "fashion_mnist":
        val = params.prepare.fashion_mnist.val
        shape = replace(shape, train=60000 - val, val=val)
    return shape


# --------------------------------------------------------------------------- architectures


@dataclass
class Arch:
    """One architecture at one input shape: its parameters and a measured training step on this CPU."""

    label: str
    params: int
    batch: int  # the batch size the step was timed at
    step_s: float  # seconds per SGD step at `batch` (forward, backward, step), median of 2 after a warm-up


def _scalar(out) -> object:
    """A differentiable scalar from any model output (logits, or a VAE's tuple): for timing only."""
    import torch

    if isinstance(out, torch.Tensor):
        return out.float().mean()
    parts = [_scalar(o) for o in (out.values() if isinstance(out, dict) else out)
             if isinstance(o, (torch.Tensor, tuple, list, dict))]
    return sum(p for p in parts if p is not None)


def measure_arch(cfg: RunConfig, shape: Shape, batch: int, device: str = "cpu") -> Arch:
    import torch

    from curriculab.models import create_model

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    ch = cfg.data.channels or shape.channels
    size = cfg.data.image_size or shape.size
    m = cfg.model
    model = create_model(m.name, ch, shape.classes, m.width, image_size=size, **m.kwargs).to(device)
    n = sum(p.numel() for p in model.parameters())
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.rand(batch, ch, size, size, device=device)
    times = []
    model.train()
    for _ in range(3):
        sync()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        _scalar(model(x)).backward()
        opt.step()
        sync()
        times.append(time.perf_counter() - t0)
    kw = ",".join(f"{k}={v}" for k, v in sorted(m.kwargs.items()))
    label = f"{m.name}{'×' + str(m.width) if m.width != 1 else ''}{'(' + kw + ')' if kw else ''} @{ch}×{size}²"
    return Arch(label, n, batch, float(np.median(times[1:])))


def arch_key(cfg: RunConfig, shape: Shape) -> str:
    m = cfg.model
    return stable_hash({"model": m.model_dump(mode="json"), "ch": cfg.data.channels or shape.channels,
                        "size": cfg.data.image_size or shape.size, "classes": shape.classes})


# --------------------------------------------------------------------------- the dry project


def config_key(cfg: RunConfig, params: Params) -> str:
    """Runs with one key run the same code at the same shapes, so the dry run trains one of them: the seed,
    the optimiser's and schedule's numbers and the noise rate are left out, and the dataset counts only by
    its shape (channels, side, classes)."""
    d = cfg.model_dump(mode="json", exclude={"seed"})
    s = real_shape(cfg.data.dataset, params)
    d["data"]["dataset"] = [s.channels, s.size, s.classes]
    d["data"]["noise"]["rate"] = d["data"]["noise"]["rate"] > 0
    d["data"]["subset_per_class"] = d["data"]["subset_per_class"] is not None
    d["data"]["subset"] = d["data"]["subset"] is not None
    for k in ("lr", "momentum", "weight_decay", "betas"):
        d["train"]["optimizer"].pop(k)
    for k in ("milestones", "gamma", "step_size", "patience"):
        d["train"]["schedule"].pop(k)
    return stable_hash(d)


def _fit_schedule(methods: dict) -> int:
    """Epochs a row's methods need at dry scale (at least DRY_EPOCHS, so that there is an epoch to resume
    into). In place: a blur schedule is scaled to one epoch per copy (then one per copy and one on the
    original data), a gradual cascade (GCSA) to one epoch (then one clean epoch); a cascade (CSA) keeps its
    phases, one epoch each."""
    from curriculab.methods.cascading import CascadingSumAugmentation
    from curriculab.methods.settings.progressive_sharpening import ProgressiveSharpeningParams

    need = DRY_EPOCHS
    ps = methods.get("progressive_sharpening")
    if isinstance(ps, dict):
        ps.pop("boundaries", None)
        ps["every"] = 1
        need = max(need, len(ProgressiveSharpeningParams.model_validate(ps).copies.levels()) + 1)
    csa = methods.get("csa")
    if isinstance(csa, dict):
        need = max(need, len(CascadingSumAugmentation.Params.model_validate(csa).cascade))
    gcsa = methods.get("gcsa")
    if isinstance(gcsa, dict):
        gcsa["cascade_epochs"] = 1
        need = max(need, 2)
    return need


def candidate_need(runs) -> int:
    """Training images the runs' POA candidates need: K batches (or K samples) to score in one step."""
    need = 0
    for r in runs:
        poa = r.config.methods.get("poa")
        if isinstance(poa, dict) and isinstance(poa.get("k"), int):
            need = max(need, poa["k"] * (r.config.train.batch_size if poa.get("item") == "batch" else 1))
    return need


def cluster_need(dry: dict) -> int:
    """Training items per class the dry settings' clusters need (0: none use per-class clusters)."""
    for row in dry["tables"].values():
        for r in [row.get("run", {}), *row["rows"].values()]:
            spl = (r.get("methods") or {}).get("spl_advise")
            if isinstance(spl, dict) and spl.get("selection") != "random":
                return DRY_CLUSTERS
    return 0


def _shrink_embeddings(node) -> None:
    """Every SPL-ADVisE embedding block (the pretrain one and the rows' copies alike): 2 iterations and
    DRY_CLUSTERS clusters per class; a pixel k-means (`k`) too."""
    if isinstance(node, dict):
        if isinstance(node.get("k"), int) and node.get("clusters") == "pixels":
            node["k"] = min(node["k"], DRY_CLUSTERS)
        if isinstance(node.get("embedding"), dict):
            emb = node["embedding"]
            emb.update(iterations=2, refresh=1, clusters=min(emb.get("clusters", DRY_CLUSTERS), DRY_CLUSTERS))
            for over in (emb.get("per_dataset") or {}).values():
                over.update(iterations=2, refresh=1)
                if "clusters" in over:
                    over["clusters"] = min(over["clusters"], DRY_CLUSTERS)
        for v in node.values():
            _shrink_embeddings(v)
    elif isinstance(node, list):
        for v in node:
            _shrink_embeddings(v)


def dry_raw(raw: dict, key: str, batch: int, device: str = "cpu", bf16: bool = False,
            channels_last: bool = False, compile: bool = False) -> dict:
    """The profile's settings (uses resolved) for one table at dry-run scale: every row trains 2 epochs at
    `batch` on `device` with the given bf16/channels_last/compile switches (a blur schedule is scaled to one
    epoch per copy, and its row trains two epochs more
    than it has copies); no MLflow, no downloads; evaluate steps (TTSA's sums too), a VAE's importance
    samples, Perfect Ordering's start networks and POA's candidates shrunk; pretrain stages 2 iterations."""
    out = copy.deepcopy({k: v for k, v in raw.items() if k not in ("tables", "evaluate")})
    out["tracking"] = {"enabled": False, "uri": None}
    out["store"] = {"root": None}
    out["executor"] = {"workers": 1, "backend": "local"}
    out["prepare"] = {**out.get("prepare", {}), "root": "data", "download": False}
    table = copy.deepcopy(raw["tables"][key])
    for row in table["rows"].values():
        row.setdefault("train", {})
        epochs = max(_fit_schedule(row.get("methods") or {}), _fit_schedule(table.get("run", {}).get("methods") or {}))
        row["train"].update(epochs=epochs, batch_size=batch, eval_batch_size=EVAL_BATCH, device=device,
                            bf16=bf16, channels_last=channels_last, compile=compile, checkpoint=True)
    for frag in [table.get("run", {}), *table.get("columns", {}).values(), *table["rows"].values()]:
        task = frag.get("task_params")
        if isinstance(task, dict) and "nll_samples" in task:
            task["nll_samples"] = min(task["nll_samples"], DRY_NLL_SAMPLES)
        poa = (frag.get("methods") or {}).get("poa")
        if isinstance(poa, dict) and isinstance(poa.get("k"), int):
            poa["k"] = min(poa["k"], DRY_CANDIDATES)
        runner = frag.get("runner")
        if isinstance(runner, dict):
            if "eval_batch_size" in runner:
                runner["eval_batch_size"] = EVAL_BATCH
            if "clusters" in runner:  # Perfect Ordering's start networks of each later epoch
                runner["clusters"] = min(runner["clusters"], DRY_START_NETWORKS)
    out["tables"] = {key: table}
    if key in raw.get("evaluate", {}):
        ev = copy.deepcopy(raw["evaluate"][key])
        if "epochs" in ev:
            ev["epochs"] = 1
        if "batch_size" in ev:
            ev["batch_size"] = min(ev["batch_size"], EVAL_BATCH)
        adv = ev.get("adversarial")
        if isinstance(adv, dict):
            adv["limit"] = min(adv.get("limit") or DRY_ATTACKED, DRY_ATTACKED)
            adv["batch_size"] = min(adv.get("batch_size", DRY_ATTACKED), DRY_ATTACKED)
            if "eot_samples" in adv:
                adv["eot_samples"] = min(adv["eot_samples"], DRY_TTSA_SUMS)
            adv["attacks"] = _dry_attacks(adv.get("attacks"), f"evaluate.{key}.adversarial.attacks")
        for ttsa in (ev.get("ttsa"), ((adv if isinstance(adv, dict) else {}).get("defences") or {}).get("ttsa")):
            if isinstance(ttsa, dict) and "c" in ttsa:  # TTSA's C sums per test image (thesis §3.7.3: 16)
                ttsa["c"] = min(ttsa["c"], DRY_TTSA_SUMS)
        out["evaluate"] = {key: ev}
    for block in out.get("pretrain", {}).values():
        block.update(device=device, tsne_points=min(block.get("tsne_points", 64), 64),
                     tsne_iterations=250, eval_batch_size=EVAL_BATCH)
    _shrink_embeddings(out)
    _shrink_embeddings(out["tables"])
    return out


def _dry_attacks(attacks, path: str) -> dict:
    """The block's attacks, read as AdversarialParams reads them (a list, a dict, or its defaults when none
    is named), with each iterative attack (BIM, MIM, PGD) capped at DRY_ATTACK_STEPS steps."""
    from curriculab.evaluate.settings.adversarial import ITERATIVE, AdversarialParams, resolve_attack

    parsed = AdversarialParams.model_validate({} if attacks is None else {"attacks": attacks}).attacks
    return {n: a.model_dump(exclude_unset=True)
            | ({"steps": min(resolve_attack(n, a, f"{path}.{n}").steps, DRY_ATTACK_STEPS)} if n in ITERATIVE else {})
            for n, a in parsed.items()}


LISTED = ("imagefolder", "webvision")  # datasets of image files, which prepare may keep as files


def streams(name: str, params: Params) -> bool:
    """Whether `prepare` would keep the real dataset as image files (data/stream.py) rather than an array."""
    from curriculab.data.sources import stream_files

    if name not in LISTED:
        return False
    s = real_shape(name, params)
    return stream_files(getattr(params.prepare, name), s.train + s.val + s.test)


def write_image_files(name: str, root: Path, shape: Shape, train: int, test: int, load_size: int, seed: int) -> None:
    """Random JPEGs, a little wider than tall, in the real dataset's layout: an ImageNet-style folder
    (train/<class>/, val/<class>/, a folder for each of the shape's classes) or WebVision's lists (info/ with the
    Google and Flickr training lists and the validation list, val_images_256/). Labels spread over the classes,
    first and last included."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    lines: dict[str, list[str]] = {"train": [], "val": []}
    if name == "imagefolder":
        for c in range(shape.classes):
            for split in ("train", "val"):
                (root / split / f"c{c:04d}").mkdir(parents=True, exist_ok=True)
    for split, n in (("train", train), ("val", test)):
        for i in range(n):
            label = round(i * (shape.classes - 1) / max(1, n - 1))
            if name == "imagefolder":
                rel = f"{split}/c{label:04d}/{i}.jpg"
            else:
                rel = f"google/q{label:04d}/{i}.jpg" if split == "train" else f"val{i:06d}.jpg"
                lines[split].append(f"{rel} {label}")
                rel = rel if split == "train" else f"val_images_256/{rel}"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            px = rng.integers(0, 256, (load_size, load_size + load_size // 8, 3), dtype=np.uint8)
            Image.fromarray(px).save(root / rel, quality=90)
    if name == "webvision":
        (root / "info").mkdir(parents=True, exist_ok=True)
        for fname, rows in (("train_filelist_google.txt", lines["train"]), ("train_filelist_flickr.txt", []),
                            ("val_filelist.txt", lines["val"])):
            (root / "info" / fname).write_text("".join(f"{r}\n" for r in rows))


def write_synthetic(params: Params, workdir: Path, sizes: dict[str, tuple[int, int, int]]) -> None:
    """Random uint8 images with the real channels, side and classes; `sizes` gives (train, val, test) per
    dataset. Written with the settings stamp `prepare` expects, so `prepare_all` keeps them and makes the copies.

    A dataset that `prepare` would keep as image files at its real size (ImageNet at 224 px) is written as a
    folder of random JPEG files instead and prepared from it by the real source, as files: the dry run then
    trains through the streaming path."""
    from curriculab.data.prepare import _source_settings, prepare_all
    from curriculab.data.prepared import write_prepared

    root = workdir / params.prepare.root
    arrays = []
    for i, name in enumerate(params.prepare.datasets):
        shape = real_shape(name, params)
        ntr, nva, nte = sizes.get(name, (16, 8, 8))
        if streams(name, params):
            listed = getattr(params.prepare, name)
            tree = workdir / f"{name}_files"
            write_image_files(name, tree, shape, ntr + nva, nte, listed.load_size or shape.size, i)
            own = params.model_copy(deep=True)
            setattr(own.prepare, name, listed.model_copy(update={"root": str(tree), "layout": "files"}))
            prepare_all(own, workdir, names=[name])
            continue
        arrays.append(name)
        n = ntr + nva + nte
        rng = np.random.default_rng(i)
        x = rng.integers(0, 256, (n, shape.channels, shape.size, shape.size), dtype=np.uint8)
        y = (np.arange(n) % shape.classes).astype(np.int64)
        rng.shuffle(y[:ntr])
        splits = {"train": np.arange(ntr), "val": np.arange(ntr, ntr + nva), "test": np.arange(ntr + nva, n)}
        info = {"source": "synthetic (curriculab dryrun)", "settings": stable_hash(_source_settings(params, name))}
        write_prepared(root, name, x, y, splits, shape.classes, info)
    if arrays:
        prepare_all(params, workdir, names=arrays)  # the derived copies, by the normal code
