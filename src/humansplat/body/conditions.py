"""Condition renders of a body: normal map, depth, Sapiens part labels and mask, in any cameras.

The mesh is turned into flat surfel Gaussians (:func:`humansplat.meshes.mesh_to_gaussians`' sampling,
normals interpolated, part labels copied from the nearest vertex as one-hot features) and rendered
with :func:`humansplat.gaussians.render`, so conditions and reconstructions share one rasteriser
(gsplat on CUDA, the PyTorch reference elsewhere).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from humansplat.body.model import BodyOutput
from humansplat.body.parts import SAPIENS_CLASSES
from humansplat.cameras import Cameras
from humansplat.meshes import face_areas, interpolate, sample_surface, surfels, vertex_normals

__all__ = ["render_body_conditions"]


def render_body_conditions(
    body: BodyOutput | Tensor,
    faces: Tensor,
    labels: Tensor,
    cameras: Cameras,
    points: int = 100_000,
    normal_space: str = "camera",
    generator: torch.Generator | None = None,
    backend: str = "auto",
) -> dict[str, Tensor]:
    """Render bodies (B, Nv, 3) (or a BodyOutput) through cameras of batch (B, V) or (V,).

    Returns channels-last maps of shape (B, V, H, W, ·):
    ``normal`` (3) unit normals in the camera frame (OpenCV: x right, y down, z forward; a surface
    facing the camera has z < 0) or, with ``normal_space="world"``, in the world frame; zero off the body.
    ``depth`` (1) camera z in metres, 0 off the body. ``labels`` (no channel) Sapiens ids, 0
    (Background) off the body. ``mask`` (1) the rendered alpha in [0, 1].
    ``points`` surfels per body: 100k cover a body hole-free at 512 pixels for a full-body framing.
    """
    from humansplat.gaussians import render

    if normal_space not in ("camera", "world"):
        raise ValueError(f"normal_space must be 'camera' or 'world', got {normal_space!r}")
    vertices = body.vertices if isinstance(body, BodyOutput) else body
    if vertices.dim() == 2:
        vertices = vertices[None]
    B = vertices.shape[0]
    faces, labels = faces.to(vertices.device), labels.to(vertices.device)
    face, bary = sample_surface(vertices, faces, points, generator)
    means = interpolate(vertices, faces, face, bary)
    normals = F.normalize(interpolate(vertex_normals(vertices, faces), faces, face, bary), dim=-1)
    nearest = faces[face].gather(-1, bary.argmax(-1, keepdim=True))[..., 0]  # (B, n) vertex ids
    onehot = F.one_hot(labels[nearest], len(SAPIENS_CLASSES)).to(vertices.dtype)
    spacing = (face_areas(vertices, faces).sum(-1, keepdim=True) / points).sqrt()
    gauss = surfels(means, normals, spacing, features=torch.cat([normals, onehot], -1))
    out = render(gauss, cameras, background=0.0, backend=backend)
    alpha = out.alpha
    feats = out.features / alpha.clamp(min=1e-6)
    on = alpha > 0.5
    n = F.normalize(feats[..., :3], dim=-1)
    if normal_space == "camera":
        R = cameras.w2c[..., :3, :3].to(n)
        R = R.expand(B, *R.shape[-3:]) if R.dim() == 3 else R  # (B, V, 3, 3)
        n = torch.einsum("bvij,bvhwj->bvhwi", R, n)
    return {
        "normal": torch.where(on, n, torch.zeros_like(n)),
        "depth": torch.where(on, out.depth, torch.zeros_like(out.depth)),
        "labels": torch.where(on[..., 0], feats[..., 3:].argmax(-1), torch.zeros_like(alpha[..., 0], dtype=torch.long)),
        "mask": alpha,
    }
