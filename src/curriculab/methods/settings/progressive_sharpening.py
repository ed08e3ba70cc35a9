"""Settings of Progressive Sharpening (methods/progressive_sharpening.py) and of its blurred copies, which
the `prepare` stage makes (`prepare.copies.<name>: {kind: box | gaussian, ...}`)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from curriculab.config import ConfigError, NonNegInt, PosInt, Strict
from curriculab.data.copies import declare_copy
from curriculab.methods.settings import MethodParams, declare

if TYPE_CHECKING:
    from curriculab.config import RunConfig

Padding = Literal["replicate", "reflect", "zeros"]


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

    def levels(self) -> list[tuple[str, float]]:
        """(copy name, kernel size n) for each size, sharpest first."""
        return [(f"box{n}_{self.padding}", float(n)) for n in self.sizes]


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

    def levels(self) -> list[tuple[str, float]]:
        """(copy name, σ) for each σ, sharpest first."""
        return [(f"gauss{s:g}_k{self.kernel_size(s)}_{self.padding}", float(s)) for s in self.sigmas]


def schedule_boundaries(levels: int, every: int | None, boundaries: list[int] | None) -> list[int]:
    """Epochs (from 0) at which training moves to the next sharper copy; the last to the original."""
    if boundaries is not None:
        return list(boundaries)
    return [(k + 1) * (every or 1) for k in range(levels)]


class ProgressiveSharpeningParams(MethodParams):
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

    def check_run(self, run: RunConfig, path: str) -> None:
        """The schedule fits train.epochs; the copies are made for the run's dataset."""
        bounds = self.bounds()
        key = "boundaries" if self.boundaries is not None else "every"
        if bounds[-1] >= run.train.epochs:
            raise ConfigError(
                f"{path}.{key}: the switch schedule reaches the original data at epoch {bounds[-1]} "
                f"(from 0) but train.epochs is {run.train.epochs}; it must end with at least one epoch on "
                f"the original data: lower `{key}`, use fewer copies, or train longer")
        if self.copies.datasets is not None and run.data.dataset not in self.copies.datasets:
            raise ConfigError(f"{path}.{self.kind}.datasets: the run trains on {run.data.dataset!r} but these "
                              f"copies are made only for {self.copies.datasets}; add it there (and under "
                              "prepare.copies)")


IMPL = "curriculab.methods.progressive_sharpening"
declare("progressive_sharpening", f"{IMPL}:ProgressiveSharpening", ProgressiveSharpeningParams,
        hooks=("train_batches",))
declare_copy("box", BoxCopies, f"{IMPL}:make_box_copies")
declare_copy("gaussian", GaussianCopies, f"{IMPL}:make_gaussian_copies")
