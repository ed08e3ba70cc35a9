"""Dataset sources: each returns uint8 (N, C, H, W) images, labels and fixed train/val/test splits."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from curriculab.config import ConfigError, PrepareParams


class DatasetMissing(ConfigError):
    """A dataset that is not on this machine: the message says where we looked and how to get it."""


@dataclass
class Raw:
    x: np.ndarray
    y: np.ndarray
    splits: dict[str, np.ndarray]
    classes: int
    info: dict


SOURCES: dict[str, Callable[[PrepareParams], Raw]] = {}


def source(name: str):
    def deco(fn):
        SOURCES[name] = fn
        return fn

    return deco


def split_indices(n: int, val: int, test: int, seed: int) -> dict[str, np.ndarray]:
    """A fixed seeded train/val/test split of n items."""
    perm = np.random.default_rng(seed).permutation(n)
    return {"test": np.sort(perm[:test]), "val": np.sort(perm[test:test + val]), "train": np.sort(perm[test + val:])}


def holdout_val(n_train: int, n_test: int, val: int, seed: int) -> dict[str, np.ndarray]:
    """Official train/test sets concatenated (train first); val is a seeded part of train."""
    perm = np.random.default_rng(seed).permutation(n_train)
    return {"train": np.sort(perm[val:]), "val": np.sort(perm[:val]),
            "test": np.arange(n_train, n_train + n_test)}


def to_nchw(x: np.ndarray) -> np.ndarray:
    """(N, H, W) or (N, H, W, C) uint8 → (N, C, H, W)."""
    x = np.asarray(x, dtype=np.uint8)
    return x[:, None] if x.ndim == 3 else np.ascontiguousarray(x.transpose(0, 3, 1, 2))


@source("digits")
def digits(cfg: PrepareParams) -> Raw:
    """scikit-learn's 1,797 8×8 handwritten digits (values 0-16), bundled with the package."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    splits = split_indices(len(x), cfg.digits.val, cfg.digits.test, cfg.seed)
    return Raw(x, d.target.astype(np.int64), splits, 10, {"source": "sklearn.datasets.load_digits"})


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


@source("fashion_mnist")
def fashion_mnist(cfg: PrepareParams) -> Raw:
    """Fashion-MNIST from the Debian package's IDX files, else through torchvision."""
    root = Path(cfg.fashion_mnist.root)
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    files = []
    for n in names:
        found = [p for p in (root / f"{n}.gz", root / n) if p.is_file()]
        files.append(found[0] if found else None)
    if all(files):
        xtr, ytr, xte, yte = (_read_idx(p) for p in files)
        where = str(root)
    else:
        tv = _torchvision("fashion_mnist", cfg, extra=f"{root} (Debian: apt-get install dataset-fashion-mnist)")
        xtr, ytr = tv.train.data.numpy(), tv.train.targets.numpy()
        xte, yte = tv.test.data.numpy(), tv.test.targets.numpy()
        where = "torchvision"
    x = np.concatenate([xtr, xte])[:, None]
    y = np.concatenate([ytr, yte]).astype(np.int64)
    return Raw(x, y, holdout_val(len(xtr), len(xte), cfg.fashion_mnist.val, cfg.seed), 10, {"source": where})


@source("syndigits")
def syndigits(cfg: PrepareParams) -> Raw:
    """Digits rendered from the fonts that matplotlib ships (seeded; see data/syndigits.py)."""
    from curriculab.data.syndigits import render

    s = cfg.syndigits
    n = s.train + s.val + s.test
    x, y, fonts = render(n, s.size, seed=cfg.seed)
    splits = {"train": np.arange(s.train), "val": np.arange(s.train, s.train + s.val),
              "test": np.arange(s.train + s.val, n)}
    return Raw(x, y, splits, 10, {"source": "matplotlib fonts", "fonts": fonts})


# --------------------------------------------------------------------------- torchvision


@dataclass
class _TV:
    train: object
    test: object


_TV_CLASSES = {
    "mnist": ("MNIST", "train"),
    "fashion_mnist": ("FashionMNIST", "train"),
    "usps": ("USPS", "train"),
    "cifar10": ("CIFAR10", "train"),
    "cifar100": ("CIFAR100", "train"),
    "svhn": ("SVHN", "split"),
}


def _torchvision(name: str, cfg: PrepareParams, extra: str = "") -> _TV:
    """Open a torchvision dataset's train and test sets, or fail with one clear sentence."""
    import torchvision.datasets as tvd

    cls_name, kind = _TV_CLASSES[name]
    cls = getattr(tvd, cls_name)
    root = Path(cfg.torchvision_root).expanduser()
    try:
        if kind == "split":
            return _TV(cls(str(root), split="train", download=cfg.download),
                       cls(str(root), split="test", download=cfg.download))
        return _TV(cls(str(root), train=True, download=cfg.download),
                   cls(str(root), train=False, download=cfg.download))
    except Exception as e:  # torchvision raises RuntimeError when absent, URLError/OSError offline
        looked = f"{extra} and {root}" if extra else str(root)
        how = ("the download failed (no internet?)" if cfg.download
               else "downloads are off (prepare.download: false)")
        raise DatasetMissing(
            f"dataset {name!r} is not available: looked in {looked}, {how} [{type(e).__name__}]; "
            f"put torchvision's {cls_name} files under {root} or set prepare.torchvision_root to where they are"
        ) from None


def _from_torchvision(name: str, cfg: PrepareParams, classes: int) -> Raw:
    tv = _torchvision(name, cfg)
    parts = []
    for ds in (tv.train, tv.test):
        data = ds.data
        data = data.numpy() if hasattr(data, "numpy") else np.asarray(data)
        labels = getattr(ds, "targets", None)
        if labels is None:
            labels = ds.labels
        labels = labels.numpy() if hasattr(labels, "numpy") else np.asarray(labels)
        if name == "svhn":  # already (N, C, H, W)
            parts.append((data.astype(np.uint8), labels))
        else:
            parts.append((to_nchw(data), labels))
    (xtr, ytr), (xte, yte) = parts
    val = max(1, len(xtr) // 10)
    return Raw(np.concatenate([xtr, xte]), np.concatenate([ytr, yte]).astype(np.int64),
               holdout_val(len(xtr), len(xte), val, cfg.seed), classes, {"source": "torchvision"})


for _name, _k in {"mnist": 10, "usps": 10, "svhn": 10, "cifar10": 10, "cifar100": 100}.items():
    SOURCES[_name] = (lambda n, k: (lambda cfg: _from_torchvision(n, cfg, k)))(_name, _k)


def _load_folder(root: Path, size: int, limit: int | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images of an ImageFolder tree, centre-cropped and resized to size×size uint8."""
    from PIL import Image
    from torchvision.datasets import ImageFolder

    ds = ImageFolder(str(root))
    items = ds.samples[:limit] if limit else ds.samples
    x = np.empty((len(items), 3, size, size), np.uint8)
    for i, (path, _) in enumerate(items):
        with Image.open(path) as im:
            im = im.convert("RGB")
            s = min(im.size)
            left, top = (im.width - s) // 2, (im.height - s) // 2
            im = im.crop((left, top, left + s, top + s)).resize((size, size), Image.BILINEAR)
            x[i] = np.asarray(im).transpose(2, 0, 1)
    return x, np.array([c for _, c in items], np.int64), ds.classes


@source("imagefolder")
def imagefolder(cfg: PrepareParams) -> Raw:
    """An ImageNet-style tree: <root>/train/<class>/*.jpg and <root>/val/<class>/*.jpg (val is the test set)."""
    c = cfg.imagefolder
    root = Path(c.root).expanduser() if c.root else None
    if root is None or not (root / "train").is_dir() or not (root / "val").is_dir():
        raise DatasetMissing(
            f"dataset 'imagefolder' is not available: expected {root or '<prepare.imagefolder.root>'}/train/<class>/ "
            "and /val/<class>/ image folders; download ImageNet (or Tiny-ImageNet) and set prepare.imagefolder.root"
        )
    xtr, ytr, classes = _load_folder(root / "train", c.image_size, c.limit)
    xte, yte, _ = _load_folder(root / "val", c.image_size, c.limit)
    val = max(1, min(10000, len(xtr) // 20))
    return Raw(np.concatenate([xtr, xte]), np.concatenate([ytr, yte]), holdout_val(len(xtr), len(xte), val, cfg.seed),
               len(classes), {"source": str(root), "image_size": c.image_size})


@source("celeba")
def celeba(cfg: PrepareParams) -> Raw:
    """CelebA through torchvision, centre-cropped to 140 and resized (for the VAE; labels are unused)."""
    import torchvision.datasets as tvd
    from torchvision import transforms as T

    root = Path(cfg.torchvision_root).expanduser()
    size = cfg.imagefolder.image_size
    tf = T.Compose([T.CenterCrop(140), T.Resize(size), T.PILToTensor()])
    try:
        sets = [tvd.CelebA(str(root), split=s, target_type="identity", transform=tf, download=cfg.download)
                for s in ("train", "valid", "test")]
    except Exception as e:
        raise DatasetMissing(
            f"dataset 'celeba' is not available: looked in {root}/celeba, the download failed or is off "
            f"[{type(e).__name__}]; put torchvision's CelebA files under {root}/celeba"
        ) from None
    xs = [np.stack([np.asarray(ds[i][0]) for i in range(len(ds))]) for ds in sets]
    n = [len(x) for x in xs]
    splits = {"train": np.arange(n[0]), "val": np.arange(n[0], n[0] + n[1]),
              "test": np.arange(n[0] + n[1], sum(n))}
    return Raw(np.concatenate(xs), np.zeros(sum(n), np.int64), splits, 1, {"source": "torchvision CelebA"})
