"""Device choice, seeding and the CPU determinism switches."""

from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import torch


def resolve_device(name: str) -> torch.device:
    """`auto` → the first CUDA device when one is visible, else the CPU."""
    if name == "cuda" and not torch.cuda.is_available():
        from curriculab.config import ConfigError

        raise ConfigError("train.device: 'cuda' was asked for but no CUDA device is visible; use 'auto' or 'cpu'")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch; make CPU kernels deterministic."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    # warn_only: a kernel without a deterministic version warns instead of stopping a run; the test suite
    # sets CURRICULAB_STRICT_DETERMINISM=1, so that any such kernel it reaches fails it
    torch.use_deterministic_algorithms(True, warn_only=os.environ.get("CURRICULAB_STRICT_DETERMINISM") != "1")
    torch.utils.deterministic.fill_uninitialized_memory = False  # deterministic kernels, no NaN-filling cost
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast on CUDA when `train.bf16` is set; a no-op elsewhere."""
    if device.type == "cuda" and bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
