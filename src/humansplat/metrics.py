"""Image metrics shared by the evaluations: PSNR, and a sharpness figure that PSNR hides.

A sharp guess and a blur can score alike in PSNR; ``sharpness_ratio`` (Laplacian energy inside the subject's
mask, rendered over ground truth) tells them apart: 1 is as sharp as the truth, blur is below 1. Neither sees a
hue shift at low luminance (a dark green sweater rendered navy costs little PSNR); ``color_scores`` does: the
CIELAB colour difference and the chroma ratio of the subject's coarse colours.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["color_scores", "laplacian_energy", "psnr", "rgb_to_lab", "sharpness_ratio"]

MIN_MSE = 1e-10
LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
EPS = 1e-8
SRGB_TO_XYZ = torch.tensor([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
D65_WHITE = torch.tensor([0.95047, 1.0, 1.08883])
COLOR_CELL = 8  # colours are compared on cells of this many pixels a side: garments, not texture or alignment


def laplacian_energy(images: Tensor, masks: Tensor) -> Tensor:
    """Mean squared Laplacian of images (N,3,H,W) over the pixels where masks (N,1,H,W) hold -> (N,)."""
    gray = images.float().mean(1, keepdim=True)
    lap = F.conv2d(F.pad(gray, (1, 1, 1, 1), mode="replicate"), LAPLACIAN.to(gray)[None, None])
    m = masks.float()
    return (lap.square() * m).sum(dim=(1, 2, 3)) / m.sum(dim=(1, 2, 3)).clamp_min(1)


def sharpness_ratio(pred: Tensor, target: Tensor, masks: Tensor) -> Tensor:
    """Laplacian energy of pred over target's, inside masks; (N,3,H,W), (N,3,H,W), (N,1,H,W) -> (N,)."""
    return laplacian_energy(pred, masks) / (laplacian_energy(target, masks) + EPS)


def psnr(mse: Tensor) -> Tensor:
    """PSNR (dB) of images in [0, 1] from their mean squared errors."""
    return -10 * torch.log10(mse.clamp_min(MIN_MSE))


def rgb_to_lab(images: Tensor) -> Tensor:
    """sRGB images (N,3,H,W) in [0, 1] -> CIELAB (N,3,H,W) under D65: L in [0, 100], a and b around 0."""
    x = images.float().clamp(0, 1)
    linear = torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)
    xyz = torch.einsum("ij,njhw->nihw", SRGB_TO_XYZ.to(x), linear) / D65_WHITE.to(x)[None, :, None, None]
    delta = 6 / 29
    f = torch.where(xyz > delta**3, xyz.clamp_min(1e-12) ** (1 / 3), xyz / (3 * delta**2) + 4 / 29)
    return torch.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], 1)


def color_scores(pred: Tensor, target: Tensor, masks: Tensor, cell: int = COLOR_CELL) -> dict[str, Tensor]:
    """Coarse colour fidelity inside the subject: images (N,3,H,W) in [0,1], masks (N,1,H,W). Both are
    averaged over ``cell``-pixel cells, and only cells wholly inside the mask count. Returns (N,) tensors:
    ``delta_e`` the mean CIE76 colour difference (about 2.3 is just noticeable), ``chroma_ratio`` the mean
    chroma of pred over target's (1: as colourful; below 1: washed out towards grey)."""
    inside = F.avg_pool2d(masks.float(), cell) > 0.999
    lab_p, lab_t = rgb_to_lab(F.avg_pool2d(pred.float(), cell)), rgb_to_lab(F.avg_pool2d(target.float(), cell))
    m = inside.float()
    n = m.sum(dim=(1, 2, 3)).clamp_min(1)
    mean = lambda t: (t * m).sum(dim=(1, 2, 3)) / n  # noqa: E731
    delta_e = mean((lab_p - lab_t).norm(dim=1, keepdim=True))
    chroma = lambda lab: lab[:, 1:].norm(dim=1, keepdim=True)  # noqa: E731
    return {"delta_e": delta_e, "chroma_ratio": mean(chroma(lab_p)) / (mean(chroma(lab_t)) + EPS)}
