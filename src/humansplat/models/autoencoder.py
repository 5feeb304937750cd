"""A small convolutional VAE: images in [0, 1] -> latents at 1/8 resolution, trained by us, then frozen.

HumanSplat reconstructs from the latent space of its (SD) VAE and its ablation favours it over pixels; we
keep that design with an autoencoder small enough to train in minutes on the synthetic engine. The encoder
returns the posterior mean (deterministic) multiplied by ``scale``, so latents have roughly unit spread.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from humansplat.models.base import PretrainedModel, register


@dataclass
class AutoencoderConfig:
    latent_channels: int = 8
    channels: tuple[int, ...] = (32, 64, 128, 128)  # len - 1 stride-2 stages: (32, 64, 128, 128) -> /8
    scale: float = 1.0  # multiplies encoder latents; set from data after training

    def __post_init__(self) -> None:
        self.channels = tuple(self.channels)

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.channels) - 1)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.GroupNorm(8, cin), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1),
            nn.GroupNorm(8, cout), nn.SiLU(), nn.Conv2d(cout, cout, 3, padding=1),
        )
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(x) + self.body(x)


def build_encoder(c: AutoencoderConfig) -> nn.Sequential:
    """Images in [-1, 1] -> (mean, log-variance) stacked on channels, at 1 / ``c.downsample`` resolution."""
    ch = c.channels
    enc: list[nn.Module] = [nn.Conv2d(3, ch[0], 3, padding=1)]
    for i in range(len(ch) - 1):
        enc += [ResBlock(ch[i], ch[i]), nn.Conv2d(ch[i], ch[i + 1], 3, stride=2, padding=1)]
    enc += [ResBlock(ch[-1], ch[-1]), nn.GroupNorm(8, ch[-1]), nn.SiLU(), nn.Conv2d(ch[-1], 2 * c.latent_channels, 3, padding=1)]
    return nn.Sequential(*enc)


def build_decoder(c: AutoencoderConfig) -> nn.Sequential:
    ch = c.channels
    dec: list[nn.Module] = [nn.Conv2d(c.latent_channels, ch[-1], 3, padding=1), ResBlock(ch[-1], ch[-1])]
    for i in range(len(ch) - 1, 0, -1):
        dec += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch[i], ch[i - 1], 3, padding=1), ResBlock(ch[i - 1], ch[i - 1])]
    dec += [nn.GroupNorm(8, ch[0]), nn.SiLU(), nn.Conv2d(ch[0], 3, 3, padding=1)]
    return nn.Sequential(*dec)


def encode_mean(encoder: nn.Module, images: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and log-variance of q(z|x) for images (N,3,H,W) in [0,1]; H, W divisible by the downsample."""
    mean, logvar = encoder(images * 2 - 1).chunk(2, dim=1)
    return mean, logvar.clamp(-30, 20)


@register
class Autoencoder(PretrainedModel):
    """Encoder + decoder; the reconstructor keeps only ``encoder`` (same parameter names, ``encoder.*``)."""

    model_type = "humansplat-autoencoder"
    config_class = AutoencoderConfig

    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        self.config = config
        self.encoder = build_encoder(config)
        self.decoder = build_decoder(config)

    def posterior(self, images: Tensor) -> tuple[Tensor, Tensor]:
        return encode_mean(self.encoder, images)

    def encode(self, images: Tensor) -> Tensor:
        """Deterministic scaled latents (N, C, H/8, W/8)."""
        return self.posterior(images)[0] * self.config.scale

    def decode(self, latents: Tensor) -> Tensor:
        return (self.decoder(latents / self.config.scale) + 1) / 2

    def forward(self, images: Tensor, kl_weight: float = 1e-6) -> tuple[Tensor, dict[str, float]]:
        return self.loss(images, kl_weight)

    def loss(self, images: Tensor, kl_weight: float = 1e-6) -> tuple[Tensor, dict[str, float]]:
        """Reconstruction (L1 + MSE) plus a small KL term that keeps the latent space smooth."""
        mean, logvar = self.posterior(images)
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp()
        recon = (self.decoder(z) + 1) / 2
        l1, mse = (recon - images).abs().mean(), F.mse_loss(recon, images)
        kl = 0.5 * (mean.square() + logvar.exp() - 1 - logvar).mean()
        total = l1 + mse + kl_weight * kl
        psnr = -10 * torch.log10(F.mse_loss(recon.clamp(0, 1), images).detach() + 1e-10)
        return total, {"ae/l1": l1.item(), "ae/mse": mse.item(), "ae/kl": kl.item(), "ae/psnr": psnr.item()}
