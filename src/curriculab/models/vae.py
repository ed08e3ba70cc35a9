"""A convolutional VAE: two stride-2 convs → (μ, log σ²); linear → two stride-2 transposed convs → logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from curriculab.models import register_model
from curriculab.models.layers import ch


class ConvVAE(nn.Module):
    """Gaussian encoder q(z|x), Bernoulli decoder p(x|z) over pixel intensities in [0, 1]."""

    def __init__(self, in_channels: int, image_size: int, latent: int, width: float):
        super().__init__()
        if image_size % 4:
            raise ValueError(f"the VAE needs an image size divisible by 4, got {image_size}")
        c1, c2 = ch(32, width), ch(64, width)
        self.latent, self.side, self.c2 = latent, image_size // 4, c2
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, c1, 4, 2, 1), nn.ReLU(), nn.Conv2d(c1, c2, 4, 2, 1), nn.ReLU(), nn.Flatten()
        )
        flat = c2 * self.side * self.side
        self.mu = nn.Linear(flat, latent)
        self.logvar = nn.Linear(flat, latent)
        self.project = nn.Linear(latent, flat)
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(c2, c1, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(c1, in_channels, 4, 2, 1)
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.mu(h), self.logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.project(z)).view(-1, self.c2, self.side, self.side)
        return self.decoder(h)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return self.decode(z), mu, logvar


@register_model
def vae(in_channels: int, num_classes: int, width: float = 1.0, latent: int = 50, image_size: int = 28) -> nn.Module:
    """Convolutional VAE with a `latent`-d Gaussian posterior (num_classes is unused)."""
    return ConvVAE(in_channels, image_size, latent, width)
