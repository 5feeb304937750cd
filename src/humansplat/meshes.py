"""Triangle-mesh utilities shared by the body, the synthetic data engine and export.

Meshes are ``vertices (*B, V, 3)`` with one shared ``faces (F, 3)`` int64 topology (counter-clockwise
seen from outside, so normals point out). Everything is batched over ``*B`` and runs on any device.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from humansplat.utils import atomic_path

__all__ = [
    "face_normals",
    "vertex_normals",
    "face_areas",
    "sample_surface",
    "interpolate",
    "mesh_to_gaussians",
    "surfels",
    "save_obj",
]


def face_normals(vertices: Tensor, faces: Tensor, unit: bool = True) -> Tensor:
    """(*B, F, 3) face normals; with ``unit=False`` their length is twice the face area."""
    v0, v1, v2 = (vertices[..., faces[:, k], :] for k in range(3))
    n = torch.linalg.cross(v1 - v0, v2 - v0)
    return F.normalize(n, dim=-1) if unit else n


def face_areas(vertices: Tensor, faces: Tensor) -> Tensor:
    return 0.5 * face_normals(vertices, faces, unit=False).norm(dim=-1)


def vertex_normals(vertices: Tensor, faces: Tensor) -> Tensor:
    """(*B, V, 3) unit vertex normals: the area-weighted mean of the adjacent face normals."""
    fn = face_normals(vertices, faces, unit=False)
    lead = vertices.shape[:-2]
    flat = fn.reshape(-1, fn.shape[-2], 3)
    vn = torch.zeros(flat.shape[0], vertices.shape[-2], 3, dtype=vertices.dtype, device=vertices.device)
    for k in range(3):
        vn.index_add_(1, faces[:, k], flat)
    return F.normalize(vn, dim=-1).reshape(*lead, -1, 3)


def sample_surface(
    vertices: Tensor, faces: Tensor, n: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Area-uniform surface samples: face indices (*B, n) and barycentric weights (*B, n, 3).

    Stratified along the cumulative area, so every face gets within one sample of its share
    (lower variance, fewer gaps than independent draws); uniform inside each triangle.
    The generator must live on the vertices' device (or be None).
    """
    lead = vertices.shape[:-2]
    areas = face_areas(vertices, faces).reshape(-1, faces.shape[0]).float()
    cdf = areas.cumsum(-1)
    cdf = cdf / cdf[:, -1:]
    B, dev = cdf.shape[0], vertices.device
    u = (torch.arange(n, device=dev) + torch.rand(B, n, generator=generator, device=dev)) / n
    face = torch.searchsorted(cdf.contiguous(), u.contiguous()).clamp(max=faces.shape[0] - 1)
    r1 = torch.rand(B, n, generator=generator, device=dev).sqrt()
    r2 = torch.rand(B, n, generator=generator, device=dev)
    bary = torch.stack([1 - r1, r1 * (1 - r2), r1 * r2], -1).to(vertices.dtype)
    return face.reshape(*lead, n), bary.reshape(*lead, n, 3)


def interpolate(values: Tensor, faces: Tensor, face: Tensor, bary: Tensor) -> Tensor:
    """Per-vertex ``values`` (*B, V, C) (or shared (V, C)) at surface samples: (*B, n, C)."""
    corners = faces[face]  # (*B, n, 3)
    if values.dim() == 2:
        picked = values[corners]  # (*B, n, 3, C)
    else:
        lead = corners.shape[:-2]
        flat_v = values.reshape(-1, *values.shape[-2:])
        flat_c = corners.reshape(flat_v.shape[0], -1)
        picked = torch.gather(flat_v, 1, flat_c[..., None].expand(-1, -1, values.shape[-1]))
        picked = picked.reshape(*lead, corners.shape[-2], 3, values.shape[-1])
    return (picked * bary[..., None].to(picked.dtype)).sum(-2)


def mesh_to_gaussians(
    vertices: Tensor,
    faces: Tensor,
    vertex_colors: Tensor | None = None,
    vertex_features: Tensor | None = None,
    points: int | None = None,
    density: float | None = None,
    generator: torch.Generator | None = None,
    opacity: float = 0.99,
    coverage: float = 1.0,
    thickness: float = 0.1,
    nearest_features: bool = False,
):
    """Flat, surfel-like Gaussians covering a mesh.

    ``points`` samples in all, or ``density`` samples per square metre (of the first item's area).
    Each Gaussian lies in the tangent plane (its local z is the interpolated vertex normal) with an
    in-plane standard deviation of ``coverage`` times the mean sample spacing sqrt(area / points) and
    ``thickness`` times that along the normal. Renders are hole-free (alpha > 0.97 inside the surface)
    when that spacing is below the pixel footprint. ``vertex_colors`` (V, 3) or (*B, V, 3) in [0, 1]
    (default light grey) become SH degree 0; ``vertex_features`` (V, C) or (*B, V, C) are interpolated
    (or, with ``nearest_features``, copied from the nearest corner, which keeps one-hot labels crisp).
    Returns :class:`humansplat.gaussians.Gaussians` with the vertices' batch shape.
    """
    if (points is None) == (density is None):
        raise ValueError("mesh_to_gaussians: give exactly one of points or density")
    area = face_areas(vertices, faces).reshape(-1, faces.shape[0]).sum(-1)  # (B,)
    if points is None:
        points = max(1, int(math.ceil(density * float(area[0]))))
    face, bary = sample_surface(vertices, faces, points, generator)
    means = interpolate(vertices, faces, face, bary)
    normals = interpolate(vertex_normals(vertices, faces), faces, face, bary)
    colors = None if vertex_colors is None else interpolate(vertex_colors.to(vertices.dtype), faces, face, bary)
    features = None
    if vertex_features is not None:
        weights = torch.zeros_like(bary).scatter_(-1, bary.argmax(-1, keepdim=True), 1.0) if nearest_features else bary
        features = interpolate(vertex_features.to(vertices.dtype), faces, face, weights)
    spacing = (area / points).sqrt().reshape(*vertices.shape[:-2], 1).to(vertices.dtype)
    return surfels(means, normals, spacing, colors, features, opacity, coverage, thickness)


def surfels(
    means: Tensor,
    normals: Tensor,
    spacing: Tensor | float,
    colors: Tensor | None = None,
    features: Tensor | None = None,
    opacity: float = 0.99,
    coverage: float = 1.0,
    thickness: float = 0.1,
):
    """Flat Gaussians at surface points (*B, n, 3) facing ``normals``: in-plane std ``coverage * spacing``
    (spacing (*B, 1) or a float, in metres), ``thickness`` times that along the normal."""
    from humansplat.gaussians import Gaussians

    n = means.shape[-2]
    s = torch.as_tensor(spacing, dtype=means.dtype, device=means.device)
    s = (coverage * s).reshape(*s.shape, 1) if s.dim() else coverage * s
    in_plane = torch.ones_like(means[..., :2]) * s
    scales = torch.cat([in_plane, in_plane[..., :1] * thickness], -1)
    if colors is None:
        colors = torch.full_like(means, 0.75)
    return Gaussians.from_activated(
        means=means,
        rotations=_quat_z_to(F.normalize(normals, dim=-1)),
        scales=scales,
        opacities=torch.full((*means.shape[:-2], n), opacity, dtype=means.dtype, device=means.device),
        colors=colors.clamp(0, 1),
        features=features,
    )


def _quat_z_to(n: Tensor) -> Tensor:
    """Unit quaternions (w, x, y, z) rotating +Z onto the unit vectors ``n`` (the shortest arc)."""
    w = 1.0 + n[..., 2]
    q = torch.stack([w, -n[..., 1], n[..., 0], torch.zeros_like(w)], -1)
    flip = torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=n.dtype, device=n.device)
    return torch.where((w < 1e-6)[..., None], flip, F.normalize(q, dim=-1))


def save_obj(path: str | os.PathLike, vertices: Tensor, faces: Tensor, vertex_colors: Tensor | None = None) -> Path:
    """Write a triangle mesh as Wavefront OBJ (vertex colours as the common ``v x y z r g b`` extension)."""
    import numpy as np

    v = vertices.detach().reshape(-1, 3).cpu().double().numpy()
    f = faces.detach().cpu().long().numpy() + 1
    if vertex_colors is not None:
        c = vertex_colors.detach().reshape(-1, 3).cpu().double().numpy()
        if c.max() > 1.0:
            c = c / 255.0
        v = np.concatenate([v, c], 1)
    with atomic_path(path) as tmp:
        with open(tmp, "w") as fh:
            fh.write("# humansplat mesh\n")
            np.savetxt(fh, v, fmt="v" + " %.6f" * v.shape[1])
            np.savetxt(fh, f, fmt="f %d %d %d")
    return Path(path)
