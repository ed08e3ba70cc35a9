"""The one prepared format: uint8 images (N, C, H, W), int64 labels, fixed splits, a checksum."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from curriculab.config import ConfigError

SPLITS = ("train", "val", "test")


@dataclass
class Prepared:
    """A dataset as `prepare` wrote it."""

    name: str
    x: np.ndarray  # uint8 (N, C, H, W)
    y: np.ndarray  # int64 (N,)
    splits: dict[str, np.ndarray]  # split → int64 positions into x / y
    classes: int
    checksum: str
    path: Path

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        idx = self.splits[name]
        return self.x[idx], self.y[idx]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(Path(path), json.dumps(obj, indent=1, sort_keys=True, default=float).encode())


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def dataset_dir(root: Path, name: str) -> Path:
    return Path(root) / "prepared" / name


def _save_npz(path: Path, **arrays) -> str:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".npz")
    os.close(fd)
    try:
        np.savez(tmp, **arrays)
        digest = _sha256(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return digest


def write_prepared(root: Path, name: str, x: np.ndarray, y: np.ndarray, splits: dict[str, np.ndarray],
                   classes: int, info: dict | None = None) -> str:
    """Write arrays.npz and meta.json (checksum last, so a half-written dataset never validates)."""
    assert x.dtype == np.uint8 and x.ndim == 4, "prepared images are uint8 (N, C, H, W)"
    assert set(splits) == set(SPLITS)
    d = dataset_dir(root, name)
    d.mkdir(parents=True, exist_ok=True)
    digest = _save_npz(d / "arrays.npz", x=x, y=y.astype(np.int64),
                       **{f"split_{k}": v.astype(np.int64) for k, v in splits.items()})
    meta = {"name": name, "shape": list(x.shape[1:]), "classes": int(classes), "checksum": digest,
            "sizes": {k: len(v) for k, v in splits.items()}, "info": info or {}, "copies": {}}
    atomic_write_json(d / "meta.json", meta)
    return digest


def read_meta(root: Path, name: str) -> dict:
    path = dataset_dir(root, name) / "meta.json"
    if not path.is_file():
        raise ConfigError(
            f"dataset {name!r} is not prepared: {path} is missing; run `dvc repro prepare` "
            f"(or `curriculab prepare`) with {name!r} in prepare.datasets"
        )
    return json.loads(path.read_text())


def _verify(path: Path, expected: str, what: str) -> None:
    if not path.is_file():
        raise ConfigError(f"{what}: {path} is missing; run `curriculab prepare` again")
    got = _sha256(path)
    if got != expected:
        raise ConfigError(
            f"{what}: checksum mismatch in {path} (expected {expected[:12]}, found {got[:12]}); "
            "the file is corrupt or was changed by hand: delete it and run `curriculab prepare` again"
        )


def load_prepared(root: Path, name: str) -> Prepared:
    """Load a prepared dataset, verifying its checksum."""
    meta = read_meta(root, name)
    path = dataset_dir(root, name) / "arrays.npz"
    _verify(path, meta["checksum"], f"dataset {name!r}")
    with np.load(path) as z:
        splits = {k: z[f"split_{k}"] for k in SPLITS}
        return Prepared(name, z["x"], z["y"], splits, meta["classes"], meta["checksum"], path)


def write_copy(root: Path, name: str, copy: str, x: np.ndarray, info: dict | None = None) -> str:
    """A derived copy of a dataset's images (same shape, same order, same labels), with its checksum."""
    d = dataset_dir(root, name)
    meta = read_meta(root, name)
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
