"""The `prepare` stage: write every configured dataset once in the prepared format, then its copies."""

from __future__ import annotations

import json
from pathlib import Path

from tqdm.auto import tqdm

from curriculab.config import Params, stable_hash
from curriculab.data.copies import check_copies
from curriculab.data.prepared import dataset_dir, load_prepared, read_meta, write_copy, write_prepared
from curriculab.data.sources import SOURCES


def _source_settings(params: Params, name: str) -> dict:
    """The prepare settings that decide a dataset's bytes (so unrelated edits do not rewrite it)."""
    p = params.prepare
    own = getattr(p, name, None)
    return {"name": name, "seed": p.seed, "own": own.model_dump() if own is not None else None, "version": 1}


def prepare_all(params: Params, workdir: Path, progress: bool = False) -> list[str]:
    """Write what is missing or stale; return the names written."""
    root = Path(workdir) / params.prepare.root
    copies = check_copies(params.prepare.copies)
    written = []
    for name in tqdm(params.prepare.datasets, desc="prepare", disable=not progress):
        settings = stable_hash(_source_settings(params, name))
        meta_path = dataset_dir(root, name) / "meta.json"
        current = json.loads(meta_path.read_text()) if meta_path.is_file() else None
        if current is None or current["info"].get("settings") != settings:
            raw = SOURCES[name](params.prepare)
            write_prepared(root, name, raw.x, raw.y, raw.splits, raw.classes, {**raw.info, "settings": settings})
            written.append(name)
        prep = None  # loaded (and checksum-verified) once, only if a copy has to be made
        for cname, (maker, cparams) in copies.items():
            datasets = getattr(cparams, "datasets", None)
            if datasets and name not in datasets:
                continue
            meta = read_meta(root, name)
            tag = stable_hash({"kind": maker.kind, "params": cparams.model_dump(), "of": meta["checksum"]})
            if any(c["info"].get("group") == cname and c["info"].get("settings") == tag
                   for c in meta["copies"].values()):
                continue
            prep = prep or load_prepared(root, name)
            for copy_name, x in maker.make(prep.x, cparams).items():
                write_copy(root, name, copy_name, x, {"settings": tag, "group": cname})
            written.append(f"{name}/{cname}")
    return written
