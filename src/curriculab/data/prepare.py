"""The `prepare` stage: write every configured dataset once in the prepared format, then its copies."""

from __future__ import annotations

import json
from pathlib import Path

from tqdm.auto import tqdm

from curriculab.config import ConfigError, Params, stable_hash
from curriculab.data.copies import check_copies
from curriculab.data.prepared import (
    MISSING,
    DatasetMissing,
    atomic_write_json,
    check_copyable,
    data_file,
    dataset_dir,
    intact,
    load_prepared,
    read_meta,
    write_copy,
    write_prepared,
    write_prepared_files,
)
from curriculab.data.sources import SOURCES


def _source_settings(params: Params, name: str) -> dict:
    """The prepare settings that decide a dataset's bytes (so unrelated edits do not rewrite it)."""
    p = params.prepare
    own = getattr(p, name, None)
    return {"name": name, "seed": p.seed, "own": own.model_dump() if own is not None else None, "version": 1}


def _meta_or_none(path: Path) -> dict | None:
    """A dataset's meta.json, or None when it is missing or unreadable (then the dataset is rebuilt)."""
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and "checksum" in meta and "info" in meta else None


def prepare_all(params: Params, workdir: Path, progress: bool = False, names: list[str] | None = None) -> list[str]:
    """Write what is missing, stale or corrupt (every file's checksum is verified); return the names written.

    `names`: these datasets only (default: all of prepare.datasets). A dataset that is not on this machine
    does not stop the others: its folder gets `missing.json` with the one-line reason, and the tables that
    use it are reported as not run.
    """
    root = Path(workdir) / params.prepare.root
    copies = check_copies(params.prepare.copies)
    unknown = [n for n in names or [] if n not in params.prepare.datasets]
    if unknown:
        raise ConfigError(f"prepare: {unknown[0]!r} is not in prepare.datasets {params.prepare.datasets}")
    written = []
    for name in tqdm(names or params.prepare.datasets, desc="prepare", disable=not progress):
        settings = stable_hash(_source_settings(params, name))
        d = dataset_dir(root, name)
        current = _meta_or_none(d / "meta.json")
        if (current is None or current["info"].get("settings") != settings
                or not intact(d / data_file(current), current["checksum"])):
            try:
                raw = SOURCES[name](params.prepare)
            except DatasetMissing as e:
                (d / "meta.json").unlink(missing_ok=True)  # a stale dataset is not used in its place
                atomic_write_json(d / MISSING, {"reason": str(e)})
                continue
            (d / MISSING).unlink(missing_ok=True)
            info = {**raw.info, "settings": settings}
            if raw.files is None:
                digest = write_prepared(root, name, raw.x, raw.y, raw.splits, raw.classes, info)
            else:
                digest = write_prepared_files(root, name, raw.files, raw.y, raw.splits, raw.classes, raw.stream, info)
            if current is not None and current.get("checksum") == digest and current.get("copies"):
                meta = read_meta(root, name)  # the same bytes again (a healed file): its copies still apply
                atomic_write_json(d / "meta.json", {**meta, "copies": current["copies"]})
            written.append(name)
        prep = None  # loaded (and checksum-verified) once, only if a copy has to be made
        for cname, (maker, cparams) in copies.items():
            datasets = getattr(cparams, "datasets", None)
            if datasets and name not in datasets:
                continue
            meta = read_meta(root, name)
            check_copyable(meta, cname)
            tag = stable_hash({"kind": maker.kind, "params": cparams.model_dump(), "of": meta["checksum"]})
            group = {c: m for c, m in meta["copies"].items() if m["info"].get("group") == cname}
            if any(m["info"].get("settings") == tag for m in group.values()) and all(
                    intact(dataset_dir(root, name) / "copies" / f"{c}.npz", m["checksum"]) for c, m in group.items()):
                continue
            prep = prep or load_prepared(root, name)
            for copy_name, x in maker.make(prep.x, cparams).items():
                write_copy(root, name, copy_name, x, {"settings": tag, "group": cname})
            written.append(f"{name}/{cname}")
    return written
