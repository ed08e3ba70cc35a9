"""Where finished runs and the MLflow store live: one absolute location shared by every checkout.

`dvc exp run --queue` / `--temp` run the pipeline in a temporary copy of the project
(`<project>/.dvc/tmp/exps/<tmp>`). Runs finished there are published to the store, and runs already
in the store are linked into the copy instead of being trained again; the copy logs to the store's
MLflow. Order: the CURRICULAB_STORE environment variable, then `store.root`, then the project root
(for a temporary copy, the project it was copied from).
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

ENV = "CURRICULAB_STORE"


def project_root(workdir: Path) -> Path:
    """`workdir`, or the project a DVC temporary experiment copy was made from."""
    wd = Path(workdir).resolve()
    parts = wd.parts
    for i in range(len(parts) - 2):
        if parts[i:i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return wd


def store_root(workdir: Path, setting: str | None = None) -> Path:
    """The absolute store location for a checkout at `workdir`."""
    chosen = os.environ.get(ENV) or setting
    if chosen:
        p = Path(chosen).expanduser()
        return (p if p.is_absolute() else project_root(workdir) / p).resolve()
    return project_root(workdir)


def link_tree(src: Path, dst: Path) -> None:
    """Copy a run folder as hard links (a copy where links are impossible), atomically by rename. Safe because
    every file of a run folder is rewritten by atomic replace, never in place: a rewrite unshares the file."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dst.parent, prefix=f".{dst.name}."))
    try:
        for f in src.rglob("*"):
            if f.is_file() and not f.name.startswith("."):
                target = tmp / f.relative_to(src)
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(f, target)
                except OSError:
                    shutil.copy2(f, target)
        if dst.exists():
            shutil.rmtree(dst)
        os.replace(tmp, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def disk_bytes(root: Path) -> int:
    """Bytes the files under `root` take, a file with several hard links (a dry copy of a run) counted once."""
    seen, total = set(), 0
    for f in root.rglob("*"):
        st = f.lstat()
        if stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


def pull(run_dirs) -> int:
    """For (store dir, local dir, finished(dir)) triples: link each run finished in the store into the checkout."""
    n = 0
    for store_dir, local_dir, finished in run_dirs:
        if store_dir != local_dir and finished(store_dir) and not finished(local_dir):
            link_tree(store_dir, local_dir)
            n += 1
    return n


def publish(run_dirs) -> int:
    """For (store dir, local dir, finished(dir)) triples: link each run finished in the checkout into the store."""
    n = 0
    for store_dir, local_dir, finished in run_dirs:
        if store_dir != local_dir and finished(local_dir) and not finished(store_dir):
            link_tree(local_dir, store_dir)
            n += 1
    return n
