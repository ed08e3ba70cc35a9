"""Progressive Sharpening (Trivedi 2021): train on blurred copies of the data, most blurred first.

§3: kernel_N = J_N / N² (box filter; kernel_1 is the identity). §4: train_n = data ⊛ kernel_n for the
configured sizes; training starts on the most blurred copy and moves to the next sharper one every few
epochs, ending on the original data. The copies are made once by the `prepare` stage
(`prepare.copies.<name>: {kind: box, ...}`), row-aligned with the original, so batch index i is the
same item (and label) in every copy. The comparator "Gaussian image curriculum" is the same schedule
over Gaussian copies of decreasing σ (`kind: gaussian`).

Padding (`padding`, default 'replicate'): how the border is extended so a copy keeps the original's
shape. 'replicate' repeats the edge pixel (works for any image size; a constant image stays
constant); 'reflect' mirrors without repeating the edge (OpenCV's default BORDER_REFLECT_101; a
constant image stays constant; needs every image side > kernel_size // 2); 'zeros' pads with black
(as CBS's official code; darkens the border of a bright image). Even box sizes pad one more pixel at
the bottom/right (curriculab.kernels.depthwise), which shifts that copy by half a pixel.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from curriculab.config import ConfigError
from curriculab.kernels import box_kernel, depthwise, gaussian_kernel
from curriculab.methods.base import Batch, Method, MethodContext, TrainState
from curriculab.methods.settings.progressive_sharpening import (
    BoxCopies,
    GaussianCopies,
    Padding,
    ProgressiveSharpeningParams,
    schedule_boundaries,
)

__all__ = ["BoxCopies", "GaussianCopies", "ProgressiveSharpening", "blur",
           "schedule_boundaries", "stage_at"]

CHUNK_PIXELS = 1 << 20  # pixels per convolution call: ~1 M keeps the working set in cache


def blur(x: np.ndarray | torch.Tensor, kernel: torch.Tensor, padding: Padding = "replicate") -> np.ndarray:
    """uint8 (N, C, H, W) ⊛ kernel per channel, same shape, rounded back to uint8 (train_n, §4).

    Vectorised: every image channel is one group of a single depthwise convolution, in chunks of
    about CHUNK_PIXELS pixels.
    """
    x = torch.as_tensor(x)
    n, c, h, w = x.shape
    kh, kw = kernel.shape
    if padding == "reflect" and (kh // 2 >= h or kw // 2 >= w):
        raise ConfigError(f"prepare.copies: padding 'reflect' with a {kh}×{kw} kernel needs images larger "
                          f"than {kh // 2}×{kw // 2} pixels, but these are {h}×{w}; use padding 'replicate' "
                          "or smaller kernels")
    flat = x.reshape(1, n * c, h, w)
    step = max(1, CHUNK_PIXELS // (h * w))
    out = torch.empty(n * c, h, w, dtype=torch.uint8)
    for i in range(0, n * c, step):
        y = depthwise(flat[:, i:i + step].float(), kernel, padding)
        out[i:i + step] = y[0].round_().clamp_(0, 255).to(torch.uint8)
    return out.reshape(n, c, h, w).numpy()


def level_kernel(p: BoxCopies | GaussianCopies, value: float) -> torch.Tensor:
    """The blur kernel of one level of `p.levels()`: J_n / n² (§3) or G_σ."""
    if p.kind == "box":
        return box_kernel(int(value))
    return gaussian_kernel(value, p.kernel_size(value))


def make_box_copies(x: np.ndarray, p: BoxCopies) -> dict[str, np.ndarray]:
    """prepare.copies.<name> with kind: box → {box<n>_<padding>: train_n}."""
    return {name: blur(x, level_kernel(p, n), p.padding) for name, n in p.levels()}


def make_gaussian_copies(x: np.ndarray, p: GaussianCopies) -> dict[str, np.ndarray]:
    """prepare.copies.<name> with kind: gaussian → {gauss<σ>_k<size>_<padding>: data ⊛ G_σ}."""
    return {name: blur(x, level_kernel(p, s), p.padding) for name, s in p.levels()}


def stage_at(epoch: int, bounds: list[int]) -> int:
    """0 = the most blurred copy, …, len(bounds) = the original data."""
    return bisect.bisect_right(bounds, epoch)


class ProgressiveSharpening(Method):
    """Train on train_K (most blurred) first, then each sharper copy, then the original (§4)."""

    name = "progressive_sharpening"
    # No default copies: the contract tests prepare one box copy and train on it.
    contract_copies = {"contract_box": {"kind": "box", "sizes": [2], "padding": "replicate"}}
    contract_params = {"box": {"sizes": [2], "padding": "replicate"}, "every": 1}

    def __init__(self, params: ProgressiveSharpeningParams, ctx: MethodContext):
        super().__init__(params, ctx)
        path = f"methods.{self.name}"
        params.check_run(ctx.run, path)
        self.kind = params.kind
        self.levels = params.copies.levels()  # sharpest first
        self.bounds = params.bounds()
        self.images: dict[str, torch.Tensor] = {}
        for name, _ in self.levels:  # load now: a copy prepare has not made fails before training
            try:
                self.images[name] = ctx.data.copy(name)
            except ConfigError as e:
                raise ConfigError(f"{path}.{self.kind}: {e}") from None
        self.epoch = 0

    def copy_at(self, epoch: int) -> tuple[str | None, float]:
        """(copy name, kernel size or σ) trained on at `epoch` (from 0); None is the original data."""
        stage = stage_at(epoch, self.bounds)
        if stage >= len(self.levels):
            return None, (1.0 if self.kind == "box" else 0.0)
        return self.levels[len(self.levels) - 1 - stage]

    def on_epoch_start(self, state: TrainState) -> None:
        self.epoch = state.epoch

    def train_batches(self, epoch: int, state: TrainState) -> Iterator[Batch]:
        self.epoch = epoch
        name, _ = self.copy_at(epoch)
        images = None if name is None else self.images[name]
        return state.data.batches(self.ctx.run.train.batch_size, images=images)

    def state_metrics(self) -> dict[str, float]:
        _, value = self.copy_at(self.epoch)
        key = "ps_kernel_size" if self.kind == "box" else "ps_sigma"
        return {key: value, "ps_stage": float(stage_at(self.epoch, self.bounds))}

    def epoch_artifacts(self) -> dict[str, Any]:
        return {"ps_copy": self.copy_at(self.epoch)[0] or "original"}
