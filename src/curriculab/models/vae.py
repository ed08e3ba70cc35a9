"""Convolutional VAEs (CBS Table 6): a Gaussian encoder q(z|x) → (μ, log σ²) and a Bernoulli decoder's logits.

- `vae`: a small one, two stride-2 convs and two stride-2 transposed convs (the offline default).
- `wae`: the architecture of Tolstikhin et al., "Wasserstein Auto-Encoders" [58], which the CBS paper says it
  uses (the official tolstikhin/wae `dcgan` encoder and `dcgan_mod` decoder): encoder four k×k stride-2 convs of
  128, 256, 512, 1024 channels, each BN + ReLU, then linear heads; decoder linear → (1024, s, s) + ReLU, then
  stride-2 transposed convs halving the channels (512, 256, … each BN + ReLU) and a last stride-1 layer to the
  image. MNIST: k = 4 and 3 decoder layers (7×7 start); CelebA 64 px: k = 5 and 4 decoder layers (8×8 start).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from curriculab.models import register_model
from curriculab.models.layers import ch


class GaussianVAE(nn.Module):
    """encode: x → encoder → flatten → (μ, log σ²); decode: z → relu(linear) → (c, side, side) → decoder → logits."""

    encoder: nn.Module
    decoder: nn.Module

    def _heads(self, flat: int, latent: int, c: int, side: int) -> None:
        self.latent, self.c, self.side = latent, c, side
        self.mu = nn.Linear(flat, latent)
        self.logvar = nn.Linear(flat, latent)
        self.project = nn.Linear(latent, c * side * side)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x).flatten(1)
        return self.mu(h), self.logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.project(z)).view(-1, self.c, self.side, self.side)
        return self.decoder(h)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return self.decode(z), mu, logvar


class ConvVAE(GaussianVAE):
    """Two stride-2 convs → (μ, log σ²); linear → two stride-2 transposed convs → logits."""

    def __init__(self, in_channels: int, image_size: int, latent: int, width: float):
        super().__init__()
        if image_size % 4:
            raise ValueError(f"the VAE needs an image size divisible by 4, got {image_size}")
        c1, c2 = ch(32, width), ch(64, width)
        side = image_size // 4
        self.encoder = nn.Sequential(nn.Conv2d(in_channels, c1, 4, 2, 1), nn.ReLU(), nn.Conv2d(c1, c2, 4, 2, 1),
                                     nn.ReLU())
        self._heads(c2 * side * side, latent, c2, side)
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(c2, c1, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(c1, in_channels, 4, 2, 1)
        )


class SameConv2d(nn.Conv2d):
    """A convolution with TensorFlow's "SAME" padding (what [58]'s code uses): output side ⌈n / stride⌉, the
    odd pixel of padding after. Even kernels and strides > 1 need this asymmetric padding."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for n, k, s in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride)):
            total = max((-(-n // s) - 1) * s + k - n, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


class WAE(GaussianVAE):
    """The encoder and decoder of Wasserstein Auto-Encoders [58] (module docstring), with VAE heads."""

    def __init__(self, in_channels: int, image_size: int, latent: int, width: float, kernel: int,
                 decoder_layers: int):
        super().__init__()
        start = 2 ** (decoder_layers - 1)
        if image_size % start:
            raise ValueError(f"the WAE decoder with {decoder_layers} layers needs an image size divisible by {start}, "
                             f"got {image_size}")
        enc, side = [], image_size
        c_in = in_channels
        for c in (128, 256, 512, 1024):
            enc += [SameConv2d(c_in, ch(c, width), kernel, 2, bias=False), nn.BatchNorm2d(ch(c, width)), nn.ReLU()]
            c_in, side = ch(c, width), -(-side // 2)
        self.encoder = nn.Sequential(*enc)
        top = ch(1024, width)
        self._heads(top * side * side, latent, top, image_size // start)
        dec, c_in = [], top
        for i in range(1, decoder_layers):  # fractionally strided: side × 2, channels ÷ 2
            c = ch(1024 // 2 ** i, width)
            dec += [nn.ConvTranspose2d(c_in, c, kernel, 2, padding=(kernel - 1) // 2, output_padding=kernel % 2,
                                       bias=False), nn.BatchNorm2d(c), nn.ReLU()]
            c_in = c
        # [58]'s last layer is a stride-1 transposed conv with SAME padding: the same family of maps as a
        # stride-1 conv with SAME padding (the kernel flipped), which PyTorch can pad asymmetrically
        dec.append(SameConv2d(c_in, in_channels, kernel, 1))
        self.decoder = nn.Sequential(*dec)


@register_model
def vae(in_channels: int, num_classes: int, width: float = 1.0, latent: int = 50, image_size: int = 28) -> nn.Module:
    """Convolutional VAE with a `latent`-d Gaussian posterior (num_classes is unused)."""
    return ConvVAE(in_channels, image_size, latent, width)


@register_model
def wae(in_channels: int, num_classes: int, width: float = 1.0, latent: int = 50, image_size: int = 28,
        kernel: int = 4, decoder_layers: int = 3) -> nn.Module:
    """[58]'s architecture as a VAE with a `latent`-d Gaussian posterior (MNIST: kernel 4, 3 decoder layers;
    CelebA 64 px: kernel 5, 4 decoder layers; num_classes is unused)."""
    return WAE(in_channels, image_size, latent, width, kernel, decoder_layers)
