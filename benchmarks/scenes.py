"""Synthetic benchmark scenes: a person-sized surface of Gaussians, like a reconstruction produces."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from humansplat.gaussians import Gaussians

# (centre xyz, radii xyz) of ellipsoids forming a rough 1.7 m standing figure centred at the origin
_BODY = [
    ((0.0, 0.62, 0.0), (0.10, 0.12, 0.11)),  # head
    ((0.0, 0.20, 0.0), (0.19, 0.30, 0.12)),  # torso
    ((-0.10, -0.45, 0.0), (0.08, 0.40, 0.08)),  # legs
    ((0.10, -0.45, 0.0), (0.08, 0.40, 0.08)),
    ((-0.30, 0.15, 0.0), (0.05, 0.32, 0.05)),  # arms
    ((0.30, 0.15, 0.0), (0.05, 0.32, 0.05)),
]


def body_scene(n: int, sh_degree: int = 0, seed: int = 0, device="cpu") -> Gaussians:
    """``n`` surfel-like Gaussians on a body-shaped union of ellipsoids (about 2 m^2 of surface)."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.tensor([c for c, _ in _BODY])
    radii = torch.tensor([r for _, r in _BODY])
    # area-weighted choice of ellipsoid (Knud Thomsen's approximation)
    p = 1.6075
    a, b, c = radii.unbind(-1)
    area = 4 * math.pi * (((a * b) ** p + (a * c) ** p + (b * c) ** p) / 3) ** (1 / p)
    part = torch.multinomial(area / area.sum(), n, replacement=True, generator=gen)
    d = F.normalize(torch.randn(n, 3, generator=gen), dim=-1)
    means = centres[part] + d * radii[part]
    normal = F.normalize(d / radii[part], dim=-1)
    # rotation whose z axis is the normal: flat along the surface
    tangent = F.normalize(torch.cross(normal, torch.randn(n, 3, generator=gen), dim=-1), dim=-1)
    R = torch.stack([tangent, torch.cross(normal, tangent, dim=-1), normal], -1)
    quats = _rotmat_to_quat(R)
    s = math.sqrt(float(area.sum()) / n)
    scales = torch.stack([s * (0.5 + torch.rand(n, generator=gen)), s * (0.5 + torch.rand(n, generator=gen)), torch.full((n,), s * 0.1)], -1)
    opac = 0.5 + 0.5 * torch.rand(n, generator=gen)
    K = (sh_degree + 1) ** 2
    sh = torch.randn(n, K, 3, generator=gen) * 0.1
    sh[:, 0] = (torch.rand(n, 3, generator=gen) - 0.5) / 0.28209479177387814
    g = Gaussians.from_activated(means, quats, scales, opac.clamp(max=0.99), sh=sh)
    return g.to(device)


def _rotmat_to_quat(R: torch.Tensor) -> torch.Tensor:
    """Unit quaternions (w, x, y, z) of proper rotation matrices (robust branch-free form)."""
    m = R
    w = torch.sqrt((1 + m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]).clamp_min(0)) / 2
    x = torch.sqrt((1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2]).clamp_min(0)) / 2
    y = torch.sqrt((1 - m[:, 0, 0] + m[:, 1, 1] - m[:, 2, 2]).clamp_min(0)) / 2
    z = torch.sqrt((1 - m[:, 0, 0] - m[:, 1, 1] + m[:, 2, 2]).clamp_min(0)) / 2
    x = torch.copysign(x, m[:, 2, 1] - m[:, 1, 2])
    y = torch.copysign(y, m[:, 0, 2] - m[:, 2, 0])
    z = torch.copysign(z, m[:, 1, 0] - m[:, 0, 1])
    return F.normalize(torch.stack([w, x, y, z], -1), dim=-1)
