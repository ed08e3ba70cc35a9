"""The prepared format: int64 labels, fixed splits and a checksum, with the images either as one uint8 array
(N, C, H, W) in arrays.npz (layout "arrays", every dataset that fits in memory) or as a list of image files in
files.npz that training decodes as it goes (layout "files", data/stream.py: ImageNet at 224 px)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from curriculab.config import ConfigError

SPLITS = ("train", "val", "test")
FILES = "files.npz"  # layout "files": image paths, labels, splits
MISSING = "missing.json"  # written by `prepare` in place of a dataset it could not get: {"reason": one line}


class DatasetMissing(ConfigError):
    """A dataset that is not on this machine: the message says where we looked and how to get it."""


@dataclass
class Prepared:
    """A dataset as `prepare` wrote it."""

    name: str
    x: np.ndarray | None  # uint8 (N, C, H, W); None for layout "files"
    y: np.ndarray  # int64 (N,)
    splits: dict[str, np.ndarray]  # split → int64 positions into x / y
    classes: int
    checksum: str
    path: Path
    files: np.ndarray | None = None  # layout "files": the image paths (N,), str
    stream: dict | None = None  # layout "files": {"image_size", "load_size", "mean", "std", "root"}

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        idx = self.splits[name]
        return self.x[idx], self.y[idx]


def named(e: OSError, path: Path) -> OSError:
    """The same error naming the file meant (a failed write() or a temporary file names another)."""
    return OSError(e.errno, e.strerror, str(path)) if e.errno else e


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def _replacing(path: Path):
    """A binary file object on a temporary file beside `path`, renamed over `path` when the block ends.

    Readers never see half a file; a failed write leaves the old file as it was and no temporary file
    behind. The file gets the permissions a plain `open` gives (0666 less the umask), not mkstemp's 0600.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as e:
        raise named(e, path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise named(e, path) from None
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically (see `_replacing`)."""
    with _replacing(path) as f:
        f.write(data)


def finite_json(obj):
    """`obj` with every non-finite float (NaN, ±inf) as None: JSON has no such numbers."""
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def atomic_write_json(path: Path, obj) -> None:
    """Always valid JSON (non-finite numbers are written as null), keys sorted, written atomically."""
    text = json.dumps(finite_json(obj), indent=1, sort_keys=True, allow_nan=False,
                      default=lambda o: finite_json(float(o)))
    atomic_write_bytes(Path(path), text.encode())


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def dataset_dir(root: Path, name: str) -> Path:
    return Path(root) / "prepared" / name


def _save_npz(path: Path, **arrays) -> str:
    with _replacing(path) as f:
        np.savez(f, **arrays)  # the same bytes for the same arrays (numpy stamps members with a fixed date)
    return _sha256(path)


def write_prepared(root: Path, name: str, x: np.ndarray, y: np.ndarray, splits: dict[str, np.ndarray],
                   classes: int, info: dict | None = None) -> str:
    """Write arrays.npz and meta.json (meta.json last, so a half-written dataset never validates)."""
    assert x.dtype == np.uint8 and x.ndim == 4, "prepared images are uint8 (N, C, H, W)"
    assert set(splits) == set(SPLITS)
    d = dataset_dir(root, name)
    d.mkdir(parents=True, exist_ok=True)
    (d / FILES).unlink(missing_ok=True)
    digest = _save_npz(d / "arrays.npz", x=x, y=y.astype(np.int64),
                       **{f"split_{k}": v.astype(np.int64) for k, v in splits.items()})
    meta = {"name": name, "shape": list(x.shape[1:]), "classes": int(classes), "checksum": digest,
            "sizes": {k: len(v) for k, v in splits.items()}, "info": info or {}, "copies": {}}
    atomic_write_json(d / "meta.json", meta)
    return digest


def read_json(path: Path, fix: str):
    """A JSON file written by curriculab; a truncated or hand-broken one is a one-line ConfigError."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: truncated or corrupt ({getattr(e, 'msg', type(e).__name__)}); {fix}") from None


def missing_reason(root: Path, name: str) -> str | None:
    """Why `prepare` could not write the dataset (its one line), or None when it did or has not tried."""
    path = dataset_dir(root, name) / MISSING
    if (dataset_dir(root, name) / "meta.json").is_file() or not path.is_file():
        return None
    return str(read_json(path, f"delete it and run `dvc repro -f prepare@{name}`").get("reason", "not available"))


def missing_datasets(root: Path, names) -> dict[str, str]:
    """dataset → why it is missing, for the named datasets `prepare` could not get."""
    return {n: r for n in sorted(set(names)) if (r := missing_reason(root, n)) is not None}


def read_meta(root: Path, name: str) -> dict:
    path = dataset_dir(root, name) / "meta.json"
    reason = missing_reason(root, name)
    if reason is not None:
        raise DatasetMissing(f"{reason}; then `dvc repro -f prepare@{name}`")
    if not path.is_file():
        raise ConfigError(
            f"dataset {name!r} is not prepared: {path} is missing; run `dvc repro prepare@{name}` "
            f"(or `curriculab prepare`) with {name!r} in prepare.datasets"
        )
    return read_json(path, "run `dvc repro prepare` (or `curriculab prepare`) to rebuild the dataset")


def intact(path: Path, expected: str) -> bool:
    """The file is there and its bytes are those the checksum was taken from."""
    return Path(path).is_file() and _sha256(Path(path)) == expected


def _verify(path: Path, expected: str, what: str) -> None:
    if not path.is_file():
        raise ConfigError(f"{what}: {path} is missing; run `dvc repro prepare` (or `curriculab prepare`): "
                          "it rebuilds missing and corrupt files")
    got = _sha256(path)
    if got != expected:
        raise ConfigError(
            f"{what}: checksum mismatch in {path} (expected {expected[:12]}, found {got[:12]}); the file is "
            "corrupt or was changed by hand: run `dvc repro prepare` (or `curriculab prepare`), which rebuilds it"
        )


def load_prepared(root: Path, name: str) -> Prepared:
    """Load a prepared dataset, verifying its checksum."""
    meta = read_meta(root, name)
    path = dataset_dir(root, name) / data_file(meta)
    _verify(path, meta["checksum"], f"dataset {name!r}")
    with np.load(path) as z:
        splits = {k: z[f"split_{k}"] for k in SPLITS}
        if meta.get("layout") == "files":
            return Prepared(name, None, z["y"], splits, meta["classes"], meta["checksum"], path,
                            files=z["files"], stream=meta["stream"])
        return Prepared(name, z["x"], z["y"], splits, meta["classes"], meta["checksum"], path)


def write_prepared_files(root: Path, name: str, files: list[str], y: np.ndarray, splits: dict[str, np.ndarray],
                         classes: int, stream: dict, info: dict | None = None) -> str:
    """Layout "files": the image paths (the checksum covers the list, not the images' bytes), labels, splits,
    and `stream` (sizes and normalisation statistics, see data/stream.py); meta.json last."""
    assert set(splits) == set(SPLITS) and len(files) == len(y)
    d = dataset_dir(root, name)
    d.mkdir(parents=True, exist_ok=True)
    (d / "arrays.npz").unlink(missing_ok=True)
    digest = _save_npz(d / FILES, files=np.asarray(files, dtype=str), y=np.asarray(y, np.int64),
                       **{f"split_{k}": v.astype(np.int64) for k, v in splits.items()})
    meta = {"name": name, "layout": "files", "file": FILES, "shape": [3, stream["image_size"], stream["image_size"]],
            "classes": int(classes), "checksum": digest, "sizes": {k: len(v) for k, v in splits.items()},
            "stream": stream, "info": info or {}, "copies": {}}
    atomic_write_json(d / "meta.json", meta)
    return digest


def data_file(meta: dict) -> str:
    """The file meta.json's checksum is of: arrays.npz, or files.npz for layout "files"."""
    return meta.get("file", "arrays.npz")


def check_copyable(meta: dict, copy: str) -> None:
    """Copies are made of the images' array: a streamed dataset has none."""
    if meta.get("layout") == "files":
        name = meta["name"]
        raise ConfigError(f"prepare.copies.{copy}: cannot copy dataset {name!r}: it is streamed from image files "
                          f"(prepare.{name}.layout); list the datasets the copy is for under its `datasets`")


def write_copy(root: Path, name: str, copy: str, x: np.ndarray, info: dict | None = None) -> str:
    """A derived copy of a dataset's images (same shape, same order, same labels), with its checksum."""
    d = dataset_dir(root, name)
    meta = read_meta(root, name)
    check_copyable(meta, copy)
    assert x.dtype == np.uint8 and list(x.shape[1:]) == meta["shape"], "a copy keeps the original's shape"
    (d / "copies").mkdir(exist_ok=True)
    digest = _save_npz(d / "copies" / f"{copy}.npz", x=x)
    meta["copies"][copy] = {"checksum": digest, "info": info or {}}
    atomic_write_json(d / "meta.json", meta)
    return digest


def load_copy(root: Path, name: str, copy: str) -> np.ndarray:
    """The images of a derived copy; asking for one that prepare did not make is a ConfigError."""
    meta = read_meta(root, name)
    if copy not in meta["copies"]:
        have = ", ".join(sorted(meta["copies"])) or "none"
        raise ConfigError(
            f"dataset {name!r} has no prepared copy {copy!r} (prepared copies: {have}); "
            "add it under prepare.copies and run `curriculab prepare`"
        )
    path = dataset_dir(root, name) / "copies" / f"{copy}.npz"
    _verify(path, meta["copies"][copy]["checksum"], f"copy {copy!r} of dataset {name!r}")
    with np.load(path) as z:
        return z["x"]
