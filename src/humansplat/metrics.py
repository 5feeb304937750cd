"""Image metrics shared by the evaluations: PSNR, and a sharpness figure that PSNR hides.

A sharp guess and a blur can score alike in PSNR; ``sharpness_ratio`` (Laplacian energy inside the subject's
mask, rendered over ground truth) tells them apart: 1 is as sharp as the truth, blur is below 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["psnr", "laplacian_energy", "sharpness_ratio"]

MIN_MSE = 1e-10
LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
EPS = 1e-8


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
