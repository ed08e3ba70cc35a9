"""Atomic checkpoints: write to a temporary file, then rename."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from curriculab.data.prepared import atomic_write_bytes


def save_checkpoint(path: Path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


def load_checkpoint(path: Path, device: torch.device) -> dict | None:
    path = Path(path)
    if not path.is_file():
        return None
    return torch.load(path, map_location=device, weights_only=False)
