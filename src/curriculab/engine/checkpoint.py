"""Atomic checkpoints: write to a temporary file, then rename. Loaded with `weights_only=True`:
a checkpoint holds tensors and plain data only, so loading one can never run code."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import torch

from curriculab.config import ConfigError
from curriculab.data.prepared import atomic_write_bytes


def save_checkpoint(path: Path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


def safe_load(path: Path, device: torch.device | str = "cpu", fix: str = "delete it and run the command again"):
    """torch.load of tensors and plain data only; anything else is a one-line ConfigError naming the file."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:
        raise ConfigError(f"{path}: refused to load: it holds objects other than tensors and plain data, so "
                          f"curriculab did not write it (it may be malicious); {fix}") from None
    except Exception as e:  # truncated or overwritten: torch raises RuntimeError, OSError, EOFError, ...
        reason = str(e).strip().splitlines()[0][:80] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{path}: truncated or corrupt ({reason}); {fix}") from None


def load_checkpoint(path: Path, device: torch.device) -> dict | None:
    path = Path(path)
    if not path.is_file():
        return None
    return safe_load(path, device, fix="delete it to train the run again from its first epoch")
