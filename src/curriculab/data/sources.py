"""Dataset sources: each returns uint8 (N, C, H, W) images, labels and fixed train/val/test splits."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from curriculab.config import ConfigError, PrepareParams
from curriculab.data.prepared import DatasetMissing  # noqa: F401  (raised by the sources below)


@dataclass
class Raw:
    x: np.ndarray | None  # None when the images stay files (`files`)
    y: np.ndarray
    splits: dict[str, np.ndarray]
    classes: int
    info: dict
    files: list[str] | None = None  # layout "files" (prepared.write_prepared_files): one path per item
    stream: dict | None = None  # layout "files": sizes and normalisation statistics


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
    extra: object = None  # SVHN's extra split (svhn_extra)


_TV_CLASSES = {
    "mnist": ("MNIST", "train"),
    "fashion_mnist": ("FashionMNIST", "train"),
    "usps": ("USPS", "train"),
    "cifar10": ("CIFAR10", "train"),
    "cifar100": ("CIFAR100", "train"),
    "svhn": ("SVHN", "split"),
    "svhn_extra": ("SVHN", "split"),  # train + extra (604,388 images; SPL-ADVisE §4), the same test split
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
                       cls(str(root), split="test", download=cfg.download),
                       cls(str(root), split="extra", download=cfg.download) if name.endswith("_extra") else None)
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
    for ds in (tv.train, tv.test, *([tv.extra] if tv.extra is not None else [])):
        data = ds.data
        data = data.numpy() if hasattr(data, "numpy") else np.asarray(data)
        labels = getattr(ds, "targets", None)
        if labels is None:
            labels = ds.labels
        labels = labels.numpy() if hasattr(labels, "numpy") else np.asarray(labels)
        if name.startswith("svhn"):  # already (N, C, H, W)
            parts.append((data.astype(np.uint8), labels))
        else:
            parts.append((to_nchw(data), labels))
    (xtr, ytr), (xte, yte), *extra = parts
    if extra:  # training images: train, then extra
        xtr, ytr = np.concatenate([xtr, extra[0][0]]), np.concatenate([ytr, extra[0][1]])
    val = max(1, len(xtr) // 10)
    return Raw(np.concatenate([xtr, xte]), np.concatenate([ytr, yte]).astype(np.int64),
               holdout_val(len(xtr), len(xte), val, cfg.seed), classes, {"source": "torchvision"})


for _name, _k in {"mnist": 10, "usps": 10, "svhn": 10, "svhn_extra": 10, "cifar10": 10, "cifar100": 100}.items():
    SOURCES[_name] = (lambda n, k: (lambda cfg: _from_torchvision(n, cfg, k)))(_name, _k)


def binarized(raw: Raw, seed: int) -> Raw:
    """Static binarisation: each pixel 255 with probability intensity / 255, else 0, one fixed sample per image
    (seeded), so every run and every evaluation sees the same binary images."""
    rng = np.random.default_rng(seed)
    x = np.where(rng.random(raw.x.shape, dtype=np.float32) * 255 < raw.x, 255, 0).astype(np.uint8)
    return Raw(x, raw.y, raw.splits, raw.classes, {**raw.info, "binarized": f"Bernoulli(intensity), seed {seed}"})


@source("binarized_mnist")
def binarized_mnist(cfg: PrepareParams) -> Raw:
    """MNIST with one fixed Bernoulli sample of its intensities (CBS Table 6: "MNIST is a binary dataset")."""
    try:
        raw = SOURCES["mnist"](cfg)
    except DatasetMissing as e:
        raise DatasetMissing(f"binarized_mnist is made from MNIST: {e}") from None
    return binarized(raw, cfg.seed)


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff"}
Items = list[tuple[Path, int]]


def _load_images(items: Items, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The images, centre-cropped and resized to size×size uint8, and their labels."""
    from tqdm.auto import tqdm

    from curriculab.data.stream import load_square

    x = np.empty((len(items), 3, size, size), np.uint8)
    for i, (path, _) in enumerate(tqdm(items, desc="decode", leave=False, disable=len(items) < 5000)):
        x[i] = load_square(path, size)
    return x, np.array([c for _, c in items], np.int64)


def _train_items(train: Path) -> tuple[Items, list[str]]:
    """<train>/<class>/**/image: every image under a class folder (Tiny-ImageNet's <class>/images/ too); a class
    folder may be empty (a class is a folder)."""
    from torchvision.datasets import ImageFolder

    ds = ImageFolder(str(train), allow_empty=True)
    return [(Path(p), c) for p, c in ds.samples], ds.classes


def _val_items(root: Path, classes: list[str]) -> Items:
    """The test images of <root>/val with labels indexed as the training classes are, in one of three layouts:

    - Tiny-ImageNet: val/images/ and val/val_annotations.txt (file, class, box) name each image's class;
    - stock ImageNet: val/ holds the 50,000 images directly; their classes come from the devkit (torchvision's
      ImageNet meta.bin, made from ILSVRC2012_devkit_t12.tar.gz when only the archive is there), in file order;
    - val/<class>/ folders, each class a training class.
    """
    val, index = root / "val", {c: i for i, c in enumerate(classes)}

    def label(cls: str, where: str) -> int:
        if cls not in index:
            raise ConfigError(f"{where}: class {cls!r} is not one of the {len(classes)} classes of {root}/train")
        return index[cls]

    notes = val / "val_annotations.txt"
    if notes.is_file():
        rows = [line.split("\t") for line in notes.read_text().splitlines() if line.strip()]
        return [(val / "images" / r[0], label(r[1], str(notes))) for r in rows]
    flat = sorted(f for f in val.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    if flat:
        from torchvision.datasets.imagenet import ARCHIVE_META, META_FILE, load_meta_file, parse_devkit_archive

        devkit = ARCHIVE_META["devkit"][0]
        if not (root / META_FILE).is_file():
            if not (root / devkit).is_file():
                raise DatasetMissing(f"dataset 'imagefolder': {val} holds {len(flat)} images directly (stock "
                                     f"ImageNet's layout), whose classes are in the devkit: put {devkit} in {root}")
            parse_devkit_archive(str(root))
        wnids = load_meta_file(str(root))[1]
        if len(wnids) != len(flat):
            raise ConfigError(f"dataset 'imagefolder': {val} has {len(flat)} images, the devkit labels {len(wnids)}")
        return [(f, label(w, str(root / META_FILE))) for f, w in zip(flat, wnids)]
    from torchvision.datasets.folder import make_dataset

    folders = sorted(d.name for d in val.iterdir() if d.is_dir())
    unknown = [d for d in folders if d not in index]
    if unknown:  # e.g. Tiny-ImageNet's val/images/ without its annotations file: one class, meaningless labels
        raise ConfigError(f"dataset 'imagefolder': {val}/{unknown[0]}/ is not a class of {root}/train; give val/ one "
                          "folder per training class, or Tiny-ImageNet's val_annotations.txt, or ImageNet's devkit")
    found = make_dataset(str(val), {c: index[c] for c in folders}, extensions=tuple(IMAGE_SUFFIXES),
                         allow_empty=True)
    return [(Path(p), c) for p, c in found]


@source("imagefolder")
def imagefolder(cfg: PrepareParams) -> Raw:
    """An ImageNet-style tree: <root>/train/<class>/ images, and <root>/val/ as the test set (`_val_items`)."""
    c = cfg.imagefolder
    root = Path(c.root).expanduser() if c.root else None
    if root is None or not (root / "train").is_dir() or not (root / "val").is_dir():
        raise DatasetMissing(
            f"dataset 'imagefolder' is not available: expected {root or '<prepare.imagefolder.root>'}/train/<class>/ "
            "and /val/ image folders; download ImageNet (or Tiny-ImageNet) and set prepare.imagefolder.root"
        )
    train, classes = _train_items(root / "train")
    return _listed("imagefolder", root, train, _val_items(root, classes), len(classes), c, cfg.seed)


def _listed(name: str, root: Path, train: Items, test: Items, classes: int, c, seed: int) -> Raw:
    """Listed image files as a prepared dataset: a seeded validation holdout of the training items (5%, at most
    10,000), the test items as test; decoded into an array, or kept as files (`stream_files`) with the
    normalisation statistics of `c.stats_images` seeded training images."""
    train, test = train[:c.limit], test[:c.limit]
    val = max(1, min(10000, len(train) // 20))
    splits = holdout_val(len(train), len(test), val, seed)
    if not len(splits["train"]):
        raise ConfigError(f"dataset {name!r}: {root} has {len(train)} training image(s), all held out for "
                          "validation: it needs at least 2")
    info = {"source": str(root), "image_size": c.image_size}
    if stream_files(c, len(train) + len(test)):
        import torch

        from curriculab.data.loader import channel_stats

        load = c.load_size or round(c.image_size * 8 / 7)
        pick = np.random.default_rng(seed).permutation(splits["train"])[:c.stats_images]
        sample, _ = _load_images([train[i] for i in np.sort(pick)], c.image_size)
        mean, std = (t.flatten().tolist() for t in channel_stats(torch.from_numpy(sample)))
        items = train + test
        return Raw(None, np.array([k for _, k in items], np.int64), splits, classes, info,
                   files=[str(p) for p, _ in items],
                   stream={"image_size": c.image_size, "load_size": load, "mean": mean, "std": std,
                           "stats_images": len(pick)})
    xtr, ytr = _load_images(train, c.image_size)
    xte, yte = _load_images(test, c.image_size)
    return Raw(np.concatenate([xtr, xte]), np.concatenate([ytr, yte]), splits, classes, info)


WEBVISION_LISTS = ("train_filelist_google.txt", "train_filelist_flickr.txt", "val_filelist.txt")
WEBVISION_VAL_DIRS = ("val_images_256", "val_images_resized", "val_images", "val")


def _file_list(path: Path, base: Path) -> Items:
    """Lines '<path relative to base> <label>'."""
    rows = [line.rsplit(maxsplit=1) for line in path.read_text().splitlines() if line.strip()]
    return [(base / r[0], int(r[1])) for r in rows]


@source("webvision")
def webvision(cfg: PrepareParams) -> Raw:
    """WebVision 1.0 (the 2017 challenge's; DP §3.4): the Google and Flickr training lists of <root>/info/ (2.4M web
    images, labels from their search queries: noisy, 1000 ImageNet classes) and its 50,000 human-labelled validation
    images as the test set."""
    c = cfg.webvision
    root = Path(c.root).expanduser() if c.root else None
    info = root / "info" if root else None
    if info is None or not all((info / f).is_file() for f in WEBVISION_LISTS):
        raise DatasetMissing(
            f"dataset 'webvision' is not available: expected {root or '<prepare.webvision.root>'}/info/ with "
            f"{', '.join(WEBVISION_LISTS)} and the images they list; download WebVision 1.0 (the resized "
            "images and the info files) and set prepare.webvision.root"
        )
    train = _file_list(info / "train_filelist_google.txt", root) + _file_list(info / "train_filelist_flickr.txt", root)
    names = _file_list(info / "val_filelist.txt", Path())
    folder = next((d for d in WEBVISION_VAL_DIRS if names and (root / d / names[0][0]).is_file()), None)
    if folder is None:
        raise DatasetMissing(f"dataset 'webvision': the validation images of {info / 'val_filelist.txt'} are in none "
                             f"of {', '.join(f'{root}/{d}/' for d in WEBVISION_VAL_DIRS)}")
    test = [(root / folder / p, k) for p, k in names]
    classes = 1 + max(k for _, k in train + test)
    return _listed("webvision", root, train, test, classes, c, cfg.seed)


def stream_files(c, n: int) -> bool:
    """Whether `n` listed images are kept as files (prepare.<dataset>.layout)."""
    if c.layout != "auto":
        return c.layout == "files"
    return n * 3 * c.image_size ** 2 > c.files_above_gib * 2 ** 30


CELEBA_FILES = ("img_align_celeba/", "list_attr_celeba.txt", "identity_CelebA.txt", "list_bbox_celeba.txt",
                "list_landmarks_align_celeba.txt", "list_eval_partition.txt")


@source("celeba")
def celeba(cfg: PrepareParams) -> Raw:
    """CelebA through torchvision, centre-cropped to 140 and resized (for the VAE; labels are unused)."""
    import torchvision.datasets as tvd
    from torchvision import transforms as T

    root = Path(cfg.torchvision_root).expanduser()
    size = cfg.celeba.image_size
    tf = T.Compose([T.CenterCrop(140), T.Resize(size), T.PILToTensor()])
    try:
        sets = [tvd.CelebA(str(root), split=s, target_type="identity", transform=tf, download=cfg.download)
                for s in ("train", "valid", "test")]
    except Exception as e:
        why = ("downloading it needs gdown: pip install -e '.[celeba]'" if "gdown" in str(e)
               else f"the download failed or is off [{type(e).__name__}]")
        raise DatasetMissing(
            f"dataset 'celeba' is not available: looked in {root}/celeba; {why}; or put torchvision's CelebA files "
            f"there ({', '.join(CELEBA_FILES)})"
        ) from None
    xs = [np.stack([np.asarray(ds[i][0]) for i in range(len(ds))]) for ds in sets]
    n = [len(x) for x in xs]
    splits = {"train": np.arange(n[0]), "val": np.arange(n[0], n[0] + n[1]),
              "test": np.arange(n[0] + n[1], sum(n))}
    return Raw(np.concatenate(xs), np.zeros(sum(n), np.int64), splits, 1, {"source": "torchvision CelebA"})
