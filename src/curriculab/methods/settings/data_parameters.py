"""Settings of Data Parameters (methods/data_parameters.py; Saxena, Tuzel & DeCoste, NeurIPS 2019)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from curriculab.config import NonNegFloat, PosFloat
from curriculab.methods.settings import MethodParams, declare

Sigma = Annotated[float, Field(gt=0)]


class DataParametersParams(MethodParams):
    curriculum: Literal["class", "instance", "joint"] = "class"  # σ*_i = σ^class_y, σ^inst_i, or the sum
    class_init: PosFloat = 1.0  # initial σ^class (§3.1: 1)
    class_lr: NonNegFloat = 0.1  # §3.1: 0.1
    class_weight_decay: NonNegFloat = 5e-4  # on log σ; §3.1: 5e-4 (CIFAR), 1e-4 (ImageNet)
    inst_init: PosFloat | None = None  # initial σ^inst; null: 1 (instance) or 0.001 (joint), as in §3.1
    inst_lr: NonNegFloat = 0.2  # §3.4: 0.2 (noisy CIFAR); 0.8 ImageNet
    inst_weight_decay: NonNegFloat = 0.0  # official noisy CIFAR: 0; ImageNet 1e-8
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    weight_decay_mode: Literal["all", "minibatch"] = "all"  # paper (ℓ2 on the vector) vs official code
    clamp: Annotated[list[Sigma], Field(min_length=2, max_length=2)] | None = [0.05, 20.0]  # σ; null: off
    top_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.4  # Fig. 4 right: top share ranked by σ^inst

    @field_validator("clamp")
    @classmethod
    def _ordered(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and v[0] >= v[1]:
            raise ValueError(f"low {v[0]:g} must be below high {v[1]:g} (e.g. [0.05, 20]; null: off)")
        return v


declare("data_parameters", "curriculab.methods.data_parameters:DataParameters", DataParametersParams,
        hooks=("loss",))
