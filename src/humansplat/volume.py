"""Does a reconstruction have a volume, or is it a flat cut-out? (GeneMAN's template-free results must have a back.)

The input-view PSNR cannot tell: a billboard of the photo reproduces the photo. Two numbers can:

- ``side_ratio``: the silhouette area (alpha > 0.5) seen from the subject's left and right, 90 degrees
  from the photo's camera at the same distance, over the area seen from the photo's camera. A standing
  person scores about 0.5-0.7, a cut-out under 0.2 (a sliver).
- ``depth_ratio``: the extent along the photo camera's viewing axis of the rendered surface seen from the
  photo's camera and from behind (every pixel with alpha > 0.5, unprojected at its rendered depth; 5th to
  95th percentile) over the front surface's extent across it: about 0.3-0.6 for a standing person, near 0
  for a cut-out (the camera behind it sees the same plane). It counts pixels, not Gaussians, so it does not
  change with how densely a surface is sampled (until v7 it counted opaque Gaussians, and a 4x denser
  per-pixel grid made every body look flat: docs/model.md, v8).

``is_cutout`` flags either under its bar. Used by benchmarks/real_photos.py on the shared photos.
"""

from __future__ import annotations

import torch
from torch import Tensor

from humansplat.cameras import Cameras, look_at, unproject_depth
from humansplat.gaussians import Gaussians, render

__all__ = ["volume_measures", "is_cutout", "SIDE_RATIO_MIN", "DEPTH_RATIO_MIN"]

SIDE_RATIO_MIN = 0.25  # side silhouette / front silhouette below this: a cut-out
DEPTH_RATIO_MIN = 0.15  # depth extent / width below this: a cut-out
OPAQUE = 0.5  # silhouette threshold on the rendered alpha
RENDER_SIZE = 128


def _orbit_view(camera: Cameras, azimuth_deg: float, size: int) -> Cameras:
    """``camera`` (batch 1) turned about the world's vertical axis through the origin by ``azimuth_deg``."""
    eye = camera.c2w[0, :3, 3]
    a = torch.deg2rad(torch.tensor(azimuth_deg, dtype=eye.dtype, device=eye.device))
    rot = torch.stack([torch.stack([a.cos(), a.new_zeros(()), a.sin()]), torch.tensor([0.0, 1.0, 0.0], device=eye.device),
                       torch.stack([-a.sin(), a.new_zeros(()), a.cos()])])
    w2c = look_at((rot @ eye)[None], torch.zeros(1, 3, device=eye.device))
    return Cameras(camera.K.clone(), w2c, camera.width, camera.height).resized(size, size)


def _percentile_extent(x: Tensor) -> float:
    if x.numel() < 2:
        return 0.0
    lo, hi = torch.quantile(x.float(), torch.tensor([0.05, 0.95], device=x.device))
    return float(hi - lo)


def _surface_points(gaussians: Gaussians, camera: Cameras) -> tuple[float, Tensor]:
    """The silhouette area (pixels with alpha > ``OPAQUE``) of ``gaussians`` seen by ``camera`` (batch 1), and
    those pixels unprojected at their rendered depth: world points (P,3) of the surface the camera sees."""
    out = render(gaussians, camera)
    seen = out.alpha[0, ..., 0] > OPAQUE
    return float(seen.sum()), unproject_depth(camera, out.depth[..., 0])[0][seen]


@torch.no_grad()
def volume_measures(gaussians: Gaussians, camera: Cameras, size: int = RENDER_SIZE) -> dict[str, float]:
    """``side_ratio`` and ``depth_ratio`` of ``gaussians`` (N,), the subject near the world origin, seen
    from the photo's ``camera`` (batch 1), see the module docstring."""
    camera = camera.to(gaussians.device)
    (front, front_pts), (left, _), (right, _), (_, back_pts) = (
        _surface_points(gaussians, _orbit_view(camera, az, size)) for az in (0.0, 90.0, -90.0, 180.0))
    w2c = camera.w2c[0].float()  # the photo camera's axes: x across, z along the view
    across = (front_pts @ w2c[0, :3]).flatten()
    along = (torch.cat([front_pts, back_pts]) @ w2c[2, :3]).flatten()
    return {
        "side_ratio": (left + right) / 2 / max(front, 1.0),
        "depth_ratio": _percentile_extent(along) / max(_percentile_extent(across), 1e-6),
    }


def is_cutout(measures: dict[str, float]) -> bool:
    return measures["side_ratio"] < SIDE_RATIO_MIN or measures["depth_ratio"] < DEPTH_RATIO_MIN
