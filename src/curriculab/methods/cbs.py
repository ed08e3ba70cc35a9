"""Curriculum by Smoothing (Sinha, Garg, Larochelle, NeurIPS 2020).

After every conv, h = act(pool(G_σ * (W * x))) (paper eq. 3.1): G_σ is a fixed size×size Gaussian
(§2.2), normalised to sum 1 and applied per channel; σ starts at σ0 and is multiplied by `decay`
every `period` epochs (§4), so σ → 0 recovers the plain network (§3.2). For integer periods this
schedule is the official code's (σ decays at the start of epoch e when e % period == 0, e ≠ 0); the
former `official_first_decay` option (a first decay fixed at epoch 5) misread that code and is removed.

Official code (pairlab/CBS) facts kept here: 3×3 kernel with zero padding; the blur stays on at test
time; σ has no floor (σ = 0 is guarded: the kernel becomes the identity and the layer is skipped);
the ResNet skips 1×1 shortcut convs (`placement: no_shortcut`); the VGG blurs only the last conv of
each block, right before ReLU + pool (`placement: vgg_official`). The official code rebuilds its
kernel modules every epoch; here the kernel is a buffer rewritten in place.

`weight_init` (also here) re-initialises a model for the appendix's initialisation study.
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F
from torch import nn

from curriculab.kernels import gaussian_kernel
from curriculab.methods.base import Method, TrainState
from curriculab.models.layers import InputTransform

__all__ = ["CBS", "GaussianSmoothing", "SmoothedInput", "WeightInit", "conv_sites", "gaussian_kernel",
           "sigma_at"]

PLACEMENTS = ("all", "no_shortcut", "vgg_official", "single")
SHORTCUTS = {"shortcut", "downsample"}  # a residual shortcut's module name: ours, torchvision's ResNets
_VGG_CONV = re.compile(r"^(?P<block>.*blocks\.\d+)\.conv(?P<k>\d+)\.conv$")


class GaussianSmoothing(nn.Module):
    """Fixed depthwise G_σ (eq. 3.1) keeping H×W (zero padding); the kernel is a buffer, never trained."""

    def __init__(self, channels: int, sigma: float, size: int = 3):
        super().__init__()
        self.channels, self.size, self.sigma = channels, size, float(sigma)
        k = gaussian_kernel(sigma, size)
        self.register_buffer("kernel", k.expand(channels, 1, size, size).clone())
        self.identity = _is_identity(k)

    @torch.no_grad()
    def set_sigma(self, sigma: float, kernel: torch.Tensor | None = None) -> None:
        """Rewrite the kernel in place for a new σ (the module and its buffer are kept). `kernel`, when
        given, is G_σ already on this module's device, so that layers sharing it cost one upload."""
        if sigma != self.sigma:
            host = gaussian_kernel(sigma, self.size)
            k = host if kernel is None else kernel
            self.kernel.copy_(k.to(self.kernel).expand_as(self.kernel))
            self.sigma, self.identity = float(sigma), _is_identity(host)  # read on the host: no device sync

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # σ = 0, or so small that the float32 kernel is a centred delta: skip the conv, except under
        # torch.compile, where the branch would be one more graph (the delta conv returns x exactly)
        if not torch.compiler.is_compiling() and self.identity:
            return x
        with torch.autocast(x.device.type, enabled=False):  # float32: a bf16 kernel does not sum to 1
            out = F.conv2d(x.float(), self.kernel, padding=self.size // 2, groups=self.channels)
        return out.to(x.dtype)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, size={self.size}, sigma={self.sigma:g}"


def _is_identity(k: torch.Tensor) -> bool:
    """True when the float32 kernel's centre is exactly 1: every other tap is below float32 resolution."""
    c = k.shape[-1] // 2
    return bool(k[c, c] == 1.0)


class SmoothedInput(InputTransform):
    """G_σ on the input image in front of a model (the ablation of CBS Table 7)."""

    def __init__(self, net: nn.Module, smooth: GaussianSmoothing):
        super().__init__()
        self.smooth, self.net = smooth, net

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        return self.smooth(x)


def conv_sites(model: nn.Module, placement: str = "all", transposed: bool = False,
               layer: int | None = None) -> list[str]:
    """Qualified names of the convs that get a smoothing layer, in `named_modules` order (nested included)."""
    kinds = (nn.Conv2d, nn.ConvTranspose2d) if transposed else (nn.Conv2d,)
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, kinds)]
    if placement == "all":
        return [n for n, _ in convs]
    if placement == "no_shortcut":
        return [n for n, m in convs if not (SHORTCUTS & set(n.split(".")) and tuple(m.kernel_size) == (1, 1))]
    if placement == "vgg_official":
        last: dict[str, tuple[int, str]] = {}
        for n, _ in convs:
            if (mt := _VGG_CONV.match(n)) and int(mt["k"]) >= last.get(mt["block"], (0, ""))[0]:
                last[mt["block"]] = (int(mt["k"]), n)
        if not last:
            raise ValueError("methods.cbs.placement: 'vgg_official' needs a VGG model (convs named "
                             "blocks.<b>.conv<k>.conv); use 'all' or 'no_shortcut' for other models")
        return [n for _, n in last.values()]
    if placement == "single":
        if layer is None or not -len(convs) <= layer < len(convs):
            raise ValueError(f"methods.cbs.layer: {layer} is not a conv index of this model "
                             f"(it has {len(convs)} convs: 0 to {len(convs) - 1})")
        return [convs[layer][0]]
    raise ValueError(f"methods.cbs.placement: unknown placement {placement!r}; "
                     f"valid: {', '.join(PLACEMENTS)}")


def sigma_at(t: float, sigma0: float, decay: float, period: float, constant: bool = False) -> float:
    """σ at training time t (epochs, fractional): σ0·decay^⌊t/period⌋ (§4: 1, 0.9, every 5 epochs).

    The n-th decay happens at t = n·period. For an integer period this is the official pairlab/CBS rule
    exactly: there `--epoch` is the decay period and, at the start of 0-based epoch e, σ is multiplied
    by the factor when `e % period == 0 and e != 0`, so epoch e trains with σ0·decay^⌊e/period⌋
    (tests/test_cbs.py replays that rule). A fractional period decays within an epoch.
    """
    if constant:
        return sigma0
    return sigma0 * decay ** math.floor(t / period + 1e-9)


class CBS(Method):
    """Gaussian smoothing after convs (eq. 3.1), σ annealed by a step schedule (§3.2, §4)."""

    name = "cbs"

    def __init__(self, params, ctx):
        super().__init__(params, ctx)
        self.layers: list[GaussianSmoothing] = []
        self.sigma = params.sigma
        self.sites: list[str] = []
        self._trace: list[list[float]] = []  # [t (epochs), σ] at each change, for the σ figures

    # -- model
    def wrap_model(self, model: nn.Module) -> nn.Module:
        p = self.params
        if p.target in ("features", "image_and_features"):
            self.sites = conv_sites(model, p.placement, p.transposed, p.layer)
            for name in self.sites:
                parent_name, _, child = name.rpartition(".")
                parent = model.get_submodule(parent_name) if parent_name else model
                conv = getattr(parent, child)
                smooth = GaussianSmoothing(conv.out_channels, self.sigma, p.kernel_size)
                setattr(parent, child, nn.Sequential(conv, smooth))
                self.layers.append(smooth)
        if p.target in ("image", "image_and_features"):
            smooth = GaussianSmoothing(self.ctx.data.in_channels, self.sigma, p.kernel_size)
            self.layers.append(smooth)
            model = SmoothedInput(model, smooth)
        return model

    # -- schedule
    def set_sigma(self, sigma: float) -> None:
        if sigma == self.sigma and all(layer.sigma == sigma for layer in self.layers):
            return
        self.sigma = sigma
        if not self.layers:
            return
        kernel = gaussian_kernel(sigma, self.params.kernel_size).to(self.layers[0].kernel)  # one upload
        for layer in self.layers:
            layer.set_sigma(sigma, kernel)

    def sigma_at(self, t: float) -> float:
        p = self.params
        return sigma_at(t, p.sigma, p.decay, p.period, p.constant)

    def _advance(self, t: float) -> None:
        sigma = self.sigma_at(t)
        if sigma != self.sigma or not self._trace:
            self._trace.append([round(t, 6), sigma])
        self.set_sigma(sigma)

    def on_epoch_start(self, state: TrainState) -> None:
        self._advance(state.epoch)

    def on_step_end(self, state: TrainState) -> None:
        """Fractional periods decay within an epoch; a decay due at an epoch boundary waits for the epoch."""
        t = state.step / max(1, state.steps_per_epoch)
        if t < state.epoch + 1 - 1e-9:
            self._advance(t)

    def state_metrics(self) -> dict[str, float]:
        return {"sigma": self.sigma}

    def epoch_artifacts(self) -> dict:
        """σ at each change during the epoch, [[t in epochs, σ], ...] (the first epoch starts with σ0)."""
        trace, self._trace = self._trace, []
        return {"sigma_trace": trace}

    # -- resume / evaluate-stage loading
    def state_dict(self) -> dict:
        return {"sigma": self.sigma}

    def load_state_dict(self, state: dict) -> None:
        if "sigma" in state:
            self.set_sigma(float(state["sigma"]))


class WeightInit(Method):
    """Re-initialise the model's weights (CBS appendix D compares initialisation schemes)."""

    name = "weight_init"

    def wrap_model(self, model: nn.Module) -> nn.Module:
        scheme = self.params.scheme
        if scheme == "default":
            return model
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                if scheme == "kaiming_normal":
                    nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                else:
                    nn.init.xavier_normal_(m.weight)
            elif isinstance(m, nn.Linear):
                if scheme == "kaiming_normal":
                    nn.init.normal_(m.weight, 0, 0.01)
                else:
                    nn.init.xavier_normal_(m.weight)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) and m.affine:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
                continue
            else:
                continue
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        return model
