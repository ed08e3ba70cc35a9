"""Settings of the evaluate step of the sum-augmentation tables (evaluate/ttsa.py)."""

from __future__ import annotations

from typing import Literal

from curriculab.config import PosInt, Strict
from curriculab.methods.settings.sum_augmentation import TTSAParams


class KeptEvalParams(Strict):
    """`evaluate.<key>` of the sum-augmentation tables."""

    ttsa: TTSAParams | None = None  # also the TTSA test error (tables 3.5-3.6)
    batch_size: PosInt = 500  # images per forward: TTSA tests batch_size // C images at a time (C mixes each)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: PosInt = 1
