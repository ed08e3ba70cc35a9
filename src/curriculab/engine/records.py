"""A run's metrics record (metrics.json): its layout and the one definition of a finished run."""

from __future__ import annotations

import math
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


def _finite(obj):
    """The record with every non-finite float as None (JSON has no NaN or infinity)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def write_record(path: Path, record: dict) -> None:
    """metrics.json, atomically, as strict JSON (non-finite floats written as null)."""
    atomic_write_json(path, _finite(record))
