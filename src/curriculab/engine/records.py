"""A run's metrics record (metrics.json): its layout and the one definition of a finished run.

Wall-clock times live apart, in timing.json, so that two runs of the same settings write metrics.json
files that are equal byte for byte.
"""

from __future__ import annotations

import json
from pathlib import Path

from curriculab.data.prepared import atomic_write_json


def new_record(run_id: str, meta: dict | None = None) -> dict:
    """The record of a run that has not trained yet."""
    return {"run_id": run_id, **(meta or {}), "status": "running", "history": [], "artifacts": [], "final": {}}


def is_done(record: dict | None) -> bool:
    """A run is finished when its record says so (its `final` metrics are then written)."""
    return bool(record) and record.get("status") == "done"


def has_ended(record: dict | None) -> bool:
    """Nothing more to train: finished, or stopped because its loss became non-finite (status diverged)."""
    return bool(record) and record.get("status") in ("done", "diverged")


def write_record(path: Path, record: dict) -> None:
    """metrics.json, atomically, as strict JSON (non-finite floats written as null)."""
    atomic_write_json(path, record)


def read_timing(run_dir: Path, epochs: int) -> list[float | None]:
    """Seconds of each of the first `epochs` epochs from timing.json (None where it was not written)."""
    try:
        got = json.loads((Path(run_dir) / "timing.json").read_text())["epoch_seconds"][:epochs]
    except (OSError, ValueError, KeyError, TypeError):
        got = []
    return got + [None] * (epochs - len(got))


def write_timing(run_dir: Path, seconds: list[float | None]) -> None:
    """timing.json: wall-clock seconds per epoch and in all."""
    atomic_write_json(Path(run_dir) / "timing.json",
                      {"epoch_seconds": seconds, "seconds": sum(s for s in seconds if s is not None)})
