"""A watertight, coloured triangle mesh from Gaussians: depth fusion and marching cubes.

Render depth and alpha of the Gaussians from ``VIEWS`` cameras around them, fuse them into a truncated
signed distance volume (a voxel is outside where any view sees background through it; otherwise the
average truncated ``depth - z`` over the views that see it or its surface; unseen voxels behind every
surface are inside), extract the zero level with scikit-image's marching cubes on a volume padded with
outside, keep the largest piece, and colour each vertex from its nearest opaque Gaussians.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from humansplat.gaussians import Gaussians

__all__ = ["gaussians_to_mesh"]

AZIMUTHS = 9  # views per ring (the default; ``gaussians_to_mesh(azimuths=)``)
ELEVATIONS = (-35.0, 0.0, 35.0, 75.0)  # degrees (rings shifted in azimuth against each other)
VIEW_SIZE = 192  # pixels
GRID = 128  # voxels along the longest side
TRUNCATION_VOXELS = 3.0
ALPHA_SOLID = 0.5
COLOR_NEIGHBOURS = 4
VIEW_BATCH = 12  # views rendered in one rasterizer call (much faster on CPU than one at a time)


def _fusion_cameras(centre: Tensor, radius: float, size: int, azimuths: int = AZIMUTHS):
    from humansplat.cameras import Cameras, orbit_cameras

    cams = [orbit_cameras(torch.arange(azimuths) * (360.0 / azimuths) + 15.0 * k, el, radius * 2.6, target=tuple(centre.tolist()),
                          fov_deg=50.0, size=(size, size)) for k, el in enumerate(ELEVATIONS)]  # fmt: skip
    return Cameras.cat(cams)


@torch.no_grad()
def gaussians_to_mesh(gaussians: Gaussians, grid: int = GRID, size: int = VIEW_SIZE, progress_bar: bool = True, azimuths: int = AZIMUTHS):
    """Unbatched Gaussians -> ``trimesh.Trimesh`` (watertight where marching cubes closes it, which the
    padding makes the usual case) with per-vertex RGBA colours, in the Gaussians' frame (metres).
    ``grid`` voxels along the longest side, ``size`` px fusion views, ``azimuths`` views on each of the
    ``len(ELEVATIONS)`` rings (fewer and smaller: faster and coarser, as in the tests)."""
    import trimesh
    from skimage.measure import marching_cubes

    from humansplat.gaussians import render
    from humansplat.media import frame_points
    from humansplat.utils import progress

    g = gaussians.to("cpu", torch.float32)
    centre, radius = frame_points(g.means, g.opacities, quantile=0.001)
    cams = _fusion_cameras(centre, radius, size, azimuths)
    lo, hi = centre - radius * 1.05, centre + radius * 1.05
    voxel = float((hi - lo).max()) / grid
    axes = [torch.arange(int(torch.ceil((hi[i] - lo[i]) / voxel)) + 1) * voxel + lo[i] for i in range(3)]
    pts = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    trunc = TRUNCATION_VOXELS * voxel
    total, count = torch.zeros(len(pts)), torch.zeros(len(pts))
    outside = torch.zeros(len(pts), dtype=torch.bool)
    batches = [(b, min(b + VIEW_BATCH, len(cams))) for b in range(0, len(cams), VIEW_BATCH)]
    for b0, b1 in progress(batches, desc="fuse", unit="batch", disable=None if progress_bar else True):
        out = render(g, cams[b0:b1], background=1.0)
        for v in range(b0, b1):
            _fuse_view(pts, cams[v : v + 1], out.depth[v - b0, :, :, 0], out.alpha[v - b0, :, :, 0], size, trunc, total, count, outside)
    field = torch.where(count > 0, total / count.clamp_min(1), -trunc)
    field = torch.where(outside, trunc, field).reshape(*(len(a) for a in axes)).numpy()
    field = np.pad(field, 1, constant_values=trunc)  # closed at the box
    verts, faces, _, _ = marching_cubes(field, level=0.0, spacing=(voxel,) * 3, gradient_direction="descent")
    verts = verts - voxel + lo.numpy()
    mesh = trimesh.Trimesh(verts, faces, process=True)
    pieces = mesh.split(only_watertight=False)
    if len(pieces) > 1:
        mesh = max(pieces, key=lambda m: len(m.faces))
    mesh.visual.vertex_colors = _vertex_colors(g, torch.from_numpy(np.asarray(mesh.vertices)).float())
    return mesh


def _fuse_view(pts, cam, depth, alpha, size, trunc, total, count, outside) -> None:
    """Accumulate one view's truncated ``depth - z`` into ``total``/``count`` and its background into ``outside`` (in place)."""
    cam_pts = pts @ cam.w2c[0, :3, :3].T + cam.w2c[0, :3, 3]
    z = cam_pts[:, 2]
    uv = cam_pts @ cam.K[0].T
    u = (uv[:, 0] / z.clamp_min(1e-6)).floor().long()
    w = (uv[:, 1] / z.clamp_min(1e-6)).floor().long()
    seen = (z > 0) & (u >= 0) & (u < size) & (w >= 0) & (w < size)
    pixel = w.clamp(0, size - 1) * size + u.clamp(0, size - 1)
    a = torch.where(seen, alpha.reshape(-1)[pixel], 0.0)
    d = torch.where(seen, depth.reshape(-1)[pixel], 0.0)
    outside |= seen & (a < ALPHA_SOLID)
    sdf = d - z
    near = seen & (a >= ALPHA_SOLID) & (sdf > -trunc)
    total += torch.where(near, sdf.clamp(max=trunc), 0.0)
    count += near


def _vertex_colors(g: Gaussians, vertices: Tensor) -> np.ndarray:
    """(V, 4) uint8 colours: the opacity-weighted colour of the nearest opaque Gaussians."""
    from scipy.spatial import cKDTree

    solid = g.opacities > 0.2
    means, colors, op = g.means[solid], g.colors().clamp(0, 1)[solid], g.opacities[solid]
    dist, idx = cKDTree(means.numpy()).query(vertices.numpy(), k=COLOR_NEIGHBOURS)
    w = op[torch.from_numpy(idx)] / torch.from_numpy(dist).float().clamp_min(1e-4)
    rgb = (w[..., None] * colors[torch.from_numpy(idx)]).sum(1) / w.sum(1, keepdim=True)
    return np.concatenate([(rgb.numpy() * 255).round().astype(np.uint8), np.full((len(rgb), 1), 255, np.uint8)], 1)
