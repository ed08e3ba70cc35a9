"""Settings of Curriculum by Smoothing and of the appendix's weight initialisation (methods/cbs.py)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from curriculab.methods.settings import MethodParams, declare


class CBSParams(MethodParams):
    sigma: Annotated[float, Field(ge=0)] = 1.0  # σ0
    decay: Annotated[float, Field(gt=0, le=1)] = 0.9
    period: Annotated[float, Field(gt=0)] = 5.0  # epochs between decays; fractional = within an epoch
    kernel_size: int = 3
    placement: Literal["all", "no_shortcut", "vgg_official", "single"] = "all"
    layer: int | None = None  # conv index for placement 'single' (appendix B)
    transposed: bool = False  # also smooth ConvTranspose2d outputs (the VAE of Table 6)
    target: Literal["features", "image", "image_and_features"] = "features"  # Table 7 ablation
    constant: bool = False  # σ stays σ0 (Table 7 ablation)

    @field_validator("kernel_size")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v < 1 or v % 2 == 0:
            raise ValueError("kernel_size must be odd and >= 1 (the official code uses 3)")
        return v

    @model_validator(mode="after")
    def _layer(self):
        if self.placement == "single" and self.layer is None:
            raise ValueError("placement 'single' needs `layer`, the index of the conv to smooth")
        if self.placement != "single" and self.layer is not None:
            raise ValueError("`layer` is only read with placement 'single'")
        if self.target == "image" and self.placement != "all":
            raise ValueError("`placement` has no effect with target 'image' (no feature is smoothed)")
        return self


class WeightInitParams(MethodParams):
    # kaiming_normal: the official CBS code (convs He-normal fan_in, BN 1/0, linear N(0, 0.01));
    # xavier_normal: Glorot & Bengio 2010 for convs and linears, zero biases; default: PyTorch's own.
    scheme: Literal["default", "kaiming_normal", "xavier_normal"] = "kaiming_normal"


declare("cbs", "curriculab.methods.cbs:CBS", CBSParams)
declare("weight_init", "curriculab.methods.cbs:WeightInit", WeightInitParams)
