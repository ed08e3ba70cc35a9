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
import math
from collections.abc import Iterator
from typing import Annotated, Any, Literal

import numpy as np
import torch
from pydantic import Field, ValidationInfo, field_validator, model_validator

from curriculab.config import ConfigError, NonNegInt, PosInt, RunConfig, Strict
from curriculab.data.copies import register_copy
from curriculab.kernels import box_kernel, depthwise, gaussian_kernel
from curriculab.methods.base import Batch, Method, MethodContext, TrainState

__all__ = ["BoxCopies", "GaussianCopies", "ProgressiveSharpening", "blur",
           "schedule_boundaries", "stage_at"]

Padding = Literal["replicate", "reflect", "zeros"]
CHUNK_PIXELS = 1 << 20  # pixels per convolution call: ~1 M keeps the working set in cache


def _strictly_increasing(v: list, what: str) -> list:
    if any(b <= a for a, b in zip(v, v[1:], strict=False)):
        raise ValueError(f"{what} must be strictly increasing, from the sharpest copy to the most blurred")
    return v


class BoxCopies(Strict):
    """`kind: box`: one copy per size n, train_n = data ⊛ J_n / n² (§3-4)."""

    kind: Literal["box"] = "box"
    sizes: Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1)] = [2, 3, 4]
    padding: Padding = "replicate"
    datasets: list[str] | None = None  # prepare only these datasets (default: all of prepare.datasets)

    @field_validator("sizes")
    @classmethod
    def _increasing(cls, v: list[int]) -> list[int]:
        return _strictly_increasing(v, "box kernel sizes")

    def levels(self) -> list[tuple[str, float, torch.Tensor]]:
        """(copy name, kernel size n, kernel) for each size, sharpest first."""
        return [(f"box{n}_{self.padding}", float(n), box_kernel(n)) for n in self.sizes]


class GaussianCopies(Strict):
    """`kind: gaussian`: one copy per σ, data ⊛ G_σ (G_σ normalised to sum 1, as CBS's kernel)."""

    kind: Literal["gaussian"] = "gaussian"
    sigmas: Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=1)] = [0.5, 0.8, 1.1]
    size: Annotated[int, Field(ge=1)] | None = None  # odd kernel side; None: 2·⌈3σ⌉ + 1 per σ
    padding: Padding = "replicate"
    datasets: list[str] | None = None

    @field_validator("sigmas")
    @classmethod
    def _increasing(cls, v: list[float]) -> list[float]:
        return _strictly_increasing(v, "Gaussian sigmas")

    @field_validator("size")
    @classmethod
    def _odd(cls, v: int | None) -> int | None:
        if v is not None and v % 2 == 0:
            raise ValueError("the Gaussian kernel size must be odd")
        return v

    def kernel_size(self, sigma: float) -> int:
        return self.size if self.size is not None else 2 * math.ceil(3 * sigma) + 1

    def levels(self) -> list[tuple[str, float, torch.Tensor]]:
        """(copy name, σ, kernel) for each σ, sharpest first."""
        out = []
        for s in self.sigmas:
            k = self.kernel_size(s)
            out.append((f"gauss{s:g}_k{k}_{self.padding}", float(s), gaussian_kernel(s, k)))
        return out


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


@register_copy("box", BoxCopies)
def make_box_copies(x: np.ndarray, p: BoxCopies) -> dict[str, np.ndarray]:
    """prepare.copies.<name> with kind: box → {box<n>_<padding>: train_n}."""
    return {name: blur(x, k, p.padding) for name, _, k in p.levels()}


@register_copy("gaussian", GaussianCopies)
def make_gaussian_copies(x: np.ndarray, p: GaussianCopies) -> dict[str, np.ndarray]:
    """prepare.copies.<name> with kind: gaussian → {gauss<σ>_k<size>_<padding>: data ⊛ G_σ}."""
    return {name: blur(x, k, p.padding) for name, _, k in p.levels()}


def schedule_boundaries(levels: int, every: int | None, boundaries: list[int] | None) -> list[int]:
    """Epochs (from 0) at which training moves to the next sharper copy; the last to the original."""
    if boundaries is not None:
        return list(boundaries)
    return [(k + 1) * (every or 1) for k in range(levels)]


def stage_at(epoch: int, bounds: list[int]) -> int:
    """0 = the most blurred copy, …, len(bounds) = the original data."""
    return bisect.bisect_right(bounds, epoch)


class ProgressiveSharpening(Method):
    """Train on train_K (most blurred) first, then each sharper copy, then the original (§4)."""

    name = "progressive_sharpening"
    # No default copies: the contract tests prepare one box copy and train on it.
    contract_copies = {"contract_box": {"kind": "box", "sizes": [2], "padding": "replicate"}}
    contract_params = {"box": {"sizes": [2], "padding": "replicate"}, "every": 1}

    class Params(Strict):
        box: BoxCopies | None = None  # the box copies to use (the same block as prepare.copies.<name>)
        gaussian: GaussianCopies | None = None  # or Gaussian copies: the "Gaussian image curriculum"
        every: PosInt | None = None  # E: epochs per blurred copy (default 1 when boundaries is not given)
        boundaries: list[NonNegInt] | None = None  # or: the epochs (from 0) of each switch, one per copy

        @model_validator(mode="after")
        def _one(self):
            if (self.box is None) == (self.gaussian is None):
                raise ValueError("set exactly one of `box` or `gaussian` (the copies made by prepare.copies)")
            if self.every is not None and self.boundaries is not None:
                raise ValueError("set either `every` or `boundaries`, not both")
            return self

        @field_validator("boundaries")
        @classmethod
        def _bounds(cls, b: list[int] | None, info: ValidationInfo) -> list[int] | None:
            copies = info.data.get("box") or info.data.get("gaussian")
            if b is None or copies is None:
                return b
            k = len(copies.levels())
            if len(b) != k:
                raise ValueError(f"needs one switch epoch per blurred copy ({k}), got {len(b)}")
            if b[0] < 1 or any(y <= x for x, y in zip(b, b[1:], strict=False)):
                raise ValueError("switch epochs must be strictly increasing and >= 1")
            return b

        @property
        def kind(self) -> Literal["box", "gaussian"]:
            """Which copies the run trains on (exactly one is set)."""
            return "box" if self.box is not None else "gaussian"

        @property
        def copies(self) -> BoxCopies | GaussianCopies:
            return getattr(self, self.kind)

        def bounds(self) -> list[int]:
            return schedule_boundaries(len(self.copies.levels()), self.every, self.boundaries)

    @classmethod
    def check_run(cls, p: Params, run: RunConfig, path: str) -> None:
        """Settings that need the whole run: the schedule fits train.epochs; copies exist for the dataset."""
        bounds = p.bounds()
        key = "boundaries" if p.boundaries is not None else "every"
        if bounds[-1] >= run.train.epochs:
            raise ConfigError(
                f"{path}.{key}: the switch schedule reaches the original data at epoch {bounds[-1]} "
                f"(from 0) but train.epochs is {run.train.epochs}; it must end with at least one epoch on "
                f"the original data: lower `{key}`, use fewer copies, or train longer")
        if p.copies.datasets is not None and run.data.dataset not in p.copies.datasets:
            raise ConfigError(f"{path}.{p.kind}.datasets: the run trains on {run.data.dataset!r} but these "
                              f"copies are made only for {p.copies.datasets}; add it there (and under "
                              "prepare.copies)")

    def __init__(self, params: Params, ctx: MethodContext):
        super().__init__(params, ctx)
        path = f"methods.{self.name}"
        self.check_run(params, ctx.run, path)
        self.kind = params.kind
        self.levels = [(name, value) for name, value, _ in params.copies.levels()]  # sharpest first
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
