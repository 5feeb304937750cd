"""Does a reconstruction have a volume, or is it a flat cut-out? (GeneMAN's template-free results must have a back.)

The input-view PSNR cannot tell: a billboard of the photo reproduces the photo. Two numbers can:

- ``side_ratio``: the silhouette area (alpha > 0.5) seen from the subject's left and right, 90 degrees
  from the photo's camera at the same distance, over the area seen from the photo's camera. A standing
  person scores about 0.5-0.7, a cut-out under 0.2 (a sliver).
- ``depth_ratio``: the extent along the photo camera's viewing axis of the opaque Gaussians (5th to 95th
  percentile, opacity-weighted) over their extent across it: about 0.4 for a standing person, near 0 for a
  cut-out.

``is_cutout`` flags either under its bar. Used by benchmarks/volume.py on the synthetic benchmark and the
shared photos.
"""

from __future__ import annotations

import torch
from torch import Tensor

from humansplat.cameras import Cameras, look_at
from humansplat.gaussians import Gaussians, render

__all__ = ["volume_measures", "is_cutout", "SIDE_RATIO_MIN", "DEPTH_RATIO_MIN"]

SIDE_RATIO_MIN = 0.25  # side silhouette / front silhouette below this: a cut-out
DEPTH_RATIO_MIN = 0.15  # depth extent / width below this: a cut-out
OPAQUE = 0.5  # silhouette threshold on the rendered alpha, and the opacity counted in the extents
RENDER_SIZE = 128


def _orbit_view(camera: Cameras, azimuth_deg: float, size: int) -> Cameras:
    """``camera`` (batch 1) turned about the world's vertical axis through the origin by ``azimuth_deg``."""
    eye = camera.c2w[0, :3, 3]
    a = torch.deg2rad(torch.tensor(azimuth_deg, dtype=eye.dtype, device=eye.device))
    rot = torch.stack([torch.stack([a.cos(), a.new_zeros(()), a.sin()]), torch.tensor([0.0, 1.0, 0.0], device=eye.device),
                       torch.stack([-a.sin(), a.new_zeros(()), a.cos()])])
    w2c = look_at((rot @ eye)[None], torch.zeros(1, 3, device=eye.device))
    return Cameras(camera.K.clone(), w2c, camera.width, camera.height).resized(size, size)


def _percentile_extent(x: Tensor, w: Tensor) -> float:
    order = x.argsort()
    cum = w[order].cumsum(0) / w.sum()
    lo, hi = x[order][torch.searchsorted(cum, torch.tensor([0.05, 0.95], device=x.device)).clamp_max(len(x) - 1)]
    return float(hi - lo)


@torch.no_grad()
def volume_measures(gaussians: Gaussians, camera: Cameras, size: int = RENDER_SIZE) -> dict[str, float]:
    """``side_ratio`` and ``depth_ratio`` of ``gaussians`` (N,), the subject near the world origin, seen
    from the photo's ``camera`` (batch 1), see the module docstring."""
    camera = camera.to(gaussians.device)
    areas = []
    for az in (0.0, 90.0, -90.0):
        alpha = render(gaussians, _orbit_view(camera, az, size)).alpha
        areas.append(float((alpha > OPAQUE).float().sum()))
    w = gaussians.opacities.float()
    keep = w >= OPAQUE
    cam_pts = (camera.w2c[0, :3, :3] @ gaussians.means[keep].float().T).T  # camera axes: x across, z along the view
    wk = w[keep].float()
    width = _percentile_extent(cam_pts[:, 0], wk) if keep.sum() > 1 else 0.0
    depth = _percentile_extent(cam_pts[:, 2], wk) if keep.sum() > 1 else 0.0
    return {
        "side_ratio": (areas[1] + areas[2]) / 2 / max(areas[0], 1.0),
        "depth_ratio": depth / max(width, 1e-6),
    }


def is_cutout(measures: dict[str, float]) -> bool:
    return measures["side_ratio"] < SIDE_RATIO_MIN or measures["depth_ratio"] < DEPTH_RATIO_MIN
