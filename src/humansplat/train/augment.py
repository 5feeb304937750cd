"""Reconstructor training augmentations that close the gap between the engine and what a user gives it.

- ``perturb_body``: the body prior as a fit from one photo gets it, not the ground truth: each chosen sample's
  bones turned by a few degrees, its phenotype and position nudged. The model learns to follow the image
  where the body disagrees (supervision stays the true views), as it must with fitted bodies.
- ``degrade_photo``: the input photo as a camera and a matting network give it: sensor noise, defocus blur,
  an eroded or dilated matte edge (white eaten into the person, or a band of background colour), and
  optionally JPEG compression (saved and read back by Pillow, the real codec). Only the model's input
  changes; every supervised view stays the clean render.

Both draw from the step's CPU generator, so a seeded run repeats.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from humansplat.body.model import BodyModel, BodyParams

__all__ = ["BodyNoiseConfig", "PhotoNoiseConfig", "degrade_photo", "jpeg_roundtrip", "perturb_body"]

ROOT_POSE_SHARE = 0.3  # the root turns less than the limbs: a fit gets the body's facing right from the torso


@dataclass
class BodyNoiseConfig:
    """Per sample with probability ``prob``; each sample draws its own strength in [0, 1] times the maxima."""

    prob: float = 0.0
    pose_std: float = 0.12  # radians per bone and axis (7 degrees)
    phenotype_std: float = 0.05  # phenotype units ([0, 1] range)
    shift_std: float = 0.02  # metres


@dataclass
class PhotoNoiseConfig:
    """Per sample with probability ``prob``; each degradation is drawn on its own."""

    prob: float = 0.0
    noise_std: float = 0.03  # at most, per pixel and channel, on [0, 1] images
    blur_sigma: float = 1.2  # at most, pixels of the model's input
    matte_px: int = 2  # at most, matte edge moved in or out by up to this many pixels
    jpeg_min_quality: int = 0  # > 0: each degraded photo is also saved as a JPEG at a quality drawn from
    jpeg_max_quality: int = 95  # [jpeg_min_quality, jpeg_max_quality] and read back (0: no JPEG, no draw)
    clean_prior: bool = False  # the photo colour prior (photo_colors) reads the clean photo: a user's photo is its
    # own truth in the input view, and a prior degraded in training teaches the network to distrust it

    def __post_init__(self) -> None:
        if self.jpeg_min_quality and not 1 <= self.jpeg_min_quality <= self.jpeg_max_quality <= 100:
            raise ValueError(f"photo_noise: JPEG qualities must satisfy 1 <= min <= max <= 100, got "
                             f"{self.jpeg_min_quality}..{self.jpeg_max_quality}")


def _chosen(batch_size: int, prob: float, gen: torch.Generator) -> Tensor | None:
    """(B,) bool: the samples to augment; None when there are none. ``prob`` 0 draws nothing, so runs without
    the augmentation keep their random streams."""
    if prob <= 0:
        return None
    chosen = torch.rand(batch_size, generator=gen) < prob
    return chosen if bool(chosen.any()) else None


@torch.no_grad()
def perturb_body(body: BodyModel, params: BodyParams, vertices: Tensor, cfg: BodyNoiseConfig, gen: torch.Generator) -> Tensor:
    """vertices (B, Nv, 3) of ``params`` (in the same frame) -> the chosen samples' perturbed vertices."""
    B, dev = vertices.shape[0], vertices.device
    chosen = _chosen(B, cfg.prob, gen)
    if chosen is None:
        return vertices
    strength = torch.rand(B, generator=gen) * chosen
    s = strength.to(dev)
    bone_std = torch.full(params.pose.shape[1:2], cfg.pose_std)
    bone_std[0] *= ROOT_POSE_SHARE
    pose_noise = torch.randn(params.pose.shape, generator=gen) * bone_std[None, :, None]
    phen_noise = torch.randn(params.phenotype.shape, generator=gen) * cfg.phenotype_std
    shift = torch.randn(params.transl.shape, generator=gen) * cfg.shift_std
    noisy = BodyParams(
        (params.phenotype + s[:, None] * phen_noise.to(dev)).clamp(0, 1),
        params.pose + s[:, None, None] * pose_noise.to(dev),
        params.transl + s[:, None] * shift.to(dev),
    )
    out = body(noisy).vertices.to(vertices.dtype)
    return torch.where(chosen.to(dev)[:, None, None], out, vertices)


def _gaussian_blur(images: Tensor, sigma: Tensor) -> Tensor:
    """images (B, 3, H, W), sigma (B,) pixels -> each image blurred by its own sigma (0: unchanged)."""
    radius = max(1, math.ceil(3 * float(sigma.max())))
    x = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    k = torch.exp(-0.5 * (x[None] / sigma.clamp_min(1e-3)[:, None]) ** 2)
    k = k / k.sum(1, keepdim=True)  # (B, 2r+1); sigma ~0 gives a delta
    B, C, H, W = images.shape
    flat = images.reshape(1, B * C, H, W)
    kx = k.repeat_interleave(C, 0)[:, None, None, :]
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="replicate"), kx, groups=B * C)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="replicate"), kx.transpose(2, 3), groups=B * C)
    return flat.reshape(B, C, H, W)


def _move_matte_edge(images: Tensor, masks: Tensor, px: Tensor, gen: torch.Generator) -> Tensor:
    """px (B,) signed pixels: < 0 erodes (white eats into the person), > 0 dilates (a band of one background
    colour around them, as a matte that keeps some of the scene)."""
    radius = int(px.abs().max())
    if radius == 0:
        return images
    m = (masks > 0.5).float()
    dev = images.device
    # grown[r] / shrunk[r]: the matte moved out / in by r pixels, r = 0..radius
    grown = torch.stack([m] + [F.max_pool2d(m, 2 * r + 1, 1, r) for r in range(1, radius + 1)])
    shrunk = torch.stack([m] + [1 - F.max_pool2d(1 - m, 2 * r + 1, 1, r) for r in range(1, radius + 1)])
    pick = lambda stack, r: stack[r.to(dev), torch.arange(len(r), device=dev)]  # noqa: E731  (B, 1, H, W)
    eaten = (m - pick(shrunk, (-px).clamp_min(0))) > 0.5
    band = (pick(grown, px.clamp_min(0)) - m) > 0.5
    colour = torch.rand(len(px), 3, 1, 1, generator=gen).to(dev, images.dtype)
    out = torch.where(eaten, torch.ones_like(images), images)
    return torch.where(band, colour.expand_as(images), out)


@torch.no_grad()
def degrade_photo(images: Tensor, masks: Tensor, cfg: PhotoNoiseConfig, gen: torch.Generator) -> Tensor:
    """images (B, 3, H, W) in [0, 1] on white, masks (B, 1, H, W) -> the chosen samples degraded, in [0, 1]."""
    B, dev = images.shape[0], images.device
    chosen = _chosen(B, cfg.prob, gen)
    if chosen is None:
        return images
    c = chosen.float()
    px = torch.randint(-cfg.matte_px, cfg.matte_px + 1, (B,), generator=gen) * chosen
    sigma = torch.rand(B, generator=gen) * cfg.blur_sigma * c
    noise_std = torch.rand(B, generator=gen) * cfg.noise_std * c
    noise = torch.randn(images.shape, generator=gen) * noise_std[:, None, None, None]
    out = _move_matte_edge(images, masks, px, gen)
    out = _gaussian_blur(out, sigma.to(dev, images.dtype)) if float(sigma.max()) > 0 else out
    out = (out + noise.to(dev, images.dtype)).clamp(0, 1)
    if cfg.jpeg_min_quality > 0:  # drawn last: runs without JPEG keep their random streams
        quality = torch.randint(cfg.jpeg_min_quality, cfg.jpeg_max_quality + 1, (B,), generator=gen) * chosen
        out = jpeg_roundtrip(out, quality)
    return out


def jpeg_roundtrip(images: Tensor, quality: Tensor) -> Tensor:
    """images (B, 3, H, W) in [0, 1], quality (B,) in [0, 100] -> each image with quality > 0 saved as a JPEG at
    that quality (Pillow, 4:2:0 chroma) and read back; quality 0 leaves it unchanged."""
    out = images.clone()
    for i in torch.nonzero(quality > 0).flatten().tolist():
        pixels = (images[i].permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=int(quality[i]))
        back = np.asarray(Image.open(buffer).convert("RGB"))
        out[i] = torch.from_numpy(back.copy()).to(images.device, images.dtype).permute(2, 0, 1) / 255
    return out
