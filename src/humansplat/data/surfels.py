"""Oriented surface samples ("surfels") of a batch of subjects, and the geometry helpers that make them.

Every visible surface of a synthetic subject -- skin, tight garments, skirts, hair, hats, held objects --
becomes a set of flat, anisotropic Gaussians lying in the surface: a surfel has a centre, a unit normal,
a unit tangent and two in-plane standard deviations. Parametric surfaces are sampled on a (U, V) grid and
each surfel is stretched along the grid directions to its cell size, so a render is hole-free however
the surface is stretched.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor

from humansplat.data.device import constant

__all__ = ["Surfels", "grid_surfels", "box_surfels", "sphere_surfels", "ring_hull", "smooth_circular", "matrix_to_quat", "COVER"]

COVER = 0.7  # Gaussian sigma as a fraction of the sample spacing: neighbours overlap into an opaque sheet
THIN = 0.08  # thickness sigma as a fraction of the smaller in-plane sigma


@dataclass
class Surfels:
    """(B, N) surfels. ``coords`` are texture coordinates (metres), ``material`` indexes the subject's
    material slots, ``labels`` are Sapiens class ids, ``opacity`` is 0 for unused slots."""

    means: Tensor
    normals: Tensor
    tangents: Tensor
    scales: Tensor  # (B, N, 2) sigma along tangent and bitangent
    coords: Tensor
    material: Tensor
    labels: Tensor
    opacity: Tensor

    @property
    def shape(self) -> torch.Size:
        return self.means.shape[:-1]

    @staticmethod
    def cat(items: list["Surfels"]) -> "Surfels":
        return Surfels(**{f.name: torch.cat([getattr(s, f.name) for s in items], 1) for f in fields(Surfels)})

    def rotations(self) -> Tensor:
        """Unit quaternions (w, x, y, z) of the frames [tangent, bitangent, normal]."""
        t = F.normalize(self.tangents - (self.tangents * self.normals).sum(-1, keepdim=True) * self.normals, dim=-1)
        b = torch.cross(self.normals, t, dim=-1)
        return matrix_to_quat(torch.stack([t, b, self.normals], -1))

    def scales3(self) -> Tensor:
        s = self.scales.clamp_min(1e-5)
        return torch.cat([s, THIN * s.min(-1, keepdim=True).values], -1)


def matrix_to_quat(R: Tensor) -> Tensor:
    """Rotation matrices (..., 3, 3) -> unit quaternions (w, x, y, z), stable for every rotation."""
    m = R
    t = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    cands = torch.stack(
        [
            torch.stack([1 + t, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1),
            torch.stack([m[..., 2, 1] - m[..., 1, 2], 1 + 2 * m[..., 0, 0] - t, m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0]], -1),
            torch.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0], 1 + 2 * m[..., 1, 1] - t, m[..., 1, 2] + m[..., 2, 1]], -1),
            torch.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1], 1 + 2 * m[..., 2, 2] - t], -1),
        ],
        -2,
    )  # (..., 4, 4): each row is 4*q*q_k for the k-th largest-component choice
    diag = torch.stack([t, m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]], -1)
    best = diag.argmax(-1)
    q = cands.gather(-2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    return F.normalize(q, dim=-1)


def _diff(P: Tensor, dim: int, wrap: bool) -> Tensor:
    """Central differences along ``dim`` (one-sided at open ends), in units of one grid step."""
    if wrap:
        return (P.roll(-1, dim) - P.roll(1, dim)) / 2
    n = P.shape[dim]
    fwd = P.narrow(dim, 1, n - 1) - P.narrow(dim, 0, n - 1)
    first, last = fwd.narrow(dim, 0, 1), fwd.narrow(dim, n - 2, 1)
    mid = (fwd.narrow(dim, 0, n - 2) + fwd.narrow(dim, 1, n - 2)) / 2
    return torch.cat([first, mid, last], dim)


def grid_surfels(
    P: Tensor,
    coords: Tensor,
    material: Tensor,
    label: Tensor,
    present: Tensor,
    wrap_u: bool = False,
    outward: Tensor | None = None,
) -> Surfels:
    """Surfels of a parametric surface sampled on a grid: P (B, U, V, 3) positions, coords (B, U, V, 3)
    texture coordinates; material, label and present are per subject (B,). Normals are flipped to point
    away from ``outward`` when given: a point per subject (B, 3) or per grid sample (B, U or 1, V, 3)."""
    B, U, V, _ = P.shape
    du, dv = _diff(P, 1, wrap_u), _diff(P, 2, False)
    n = torch.cross(du, dv, dim=-1)
    good = n.norm(dim=-1, keepdim=True) > 1e-12
    n = F.normalize(torch.where(good, n, constant((0.0, 1.0, 0.0), P.device).expand_as(n)), dim=-1)
    if outward is not None:
        ref = outward if outward.dim() == 4 else outward[:, None, None]
        flip = ((P - ref) * n).sum(-1, keepdim=True) < 0
        n = torch.where(flip, -n, n)
    t = F.normalize(du + 1e-9, dim=-1)
    b = torch.cross(n, t, dim=-1)
    su = du.norm(dim=-1)
    sv = (dv * b).sum(-1).abs().maximum(0.3 * dv.norm(dim=-1))
    scales = torch.stack([su, sv], -1) * COVER
    N = U * V
    return Surfels(
        means=P.reshape(B, N, 3),
        normals=n.reshape(B, N, 3),
        tangents=t.reshape(B, N, 3),
        scales=scales.reshape(B, N, 2),
        coords=coords.reshape(B, N, 3),
        material=material[:, None].expand(B, N),
        labels=label[:, None].expand(B, N),
        opacity=present.float()[:, None].expand(B, N),
    )


def sphere_surfels(center: Tensor, radius: Tensor, res: int, material, label, present) -> Surfels:
    """A sphere (B,3), (B,) on a (2 res) x res latitude-longitude grid (poles excluded)."""
    dev = center.device
    lon = (torch.arange(2 * res, device=dev) + 0.5) / (2 * res) * 2 * math.pi
    lat = ((torch.arange(res, device=dev) + 0.5) / res - 0.5) * math.pi
    lo, la = torch.meshgrid(lon, lat, indexing="ij")
    d = torch.stack([la.cos() * lo.sin(), la.sin(), la.cos() * lo.cos()], -1)  # (U,V,3)
    P = center[:, None, None] + radius[:, None, None, None] * d
    coords = d[None] * radius[:, None, None, None]
    return grid_surfels(P, coords, material, label, present, wrap_u=True, outward=center)


@functools.lru_cache(maxsize=64)
def _box_faces(res: tuple[tuple[int, int, int], ...], device: torch.device) -> tuple[Tensor, ...]:
    """The faces of K boxes with ``res`` samples per axis, box by box, faces in the order (-x, +x, -y,
    +y, -z, +z), each sampled at cell centres on a (res[k+1], res[k+2]) grid. Per sample: unit local
    position (N, 3) in [-1, 1], box index, the rows of the stacked (K*3) box axes that are the face's grid
    axes (i, j) (N, 2) and normal axis k, the side (-1 or +1) and the cell size along (i, j) (N, 2)."""
    unit, box, rows_ij, row_k, side, cell = [], [], [], [], [], []
    for m, r in enumerate(res):
        for k in range(3):
            i, j = (k + 1) % 3, (k + 2) % 3
            a, b = torch.meshgrid(*((torch.arange(r[x]) + 0.5) / r[x] * 2 - 1 for x in (i, j)), indexing="ij")
            for s in (-1.0, 1.0):
                local = torch.zeros(r[i], r[j], 3)
                local[..., i], local[..., j], local[..., k] = a, b, s
                unit.append(local.reshape(-1, 3))
                n = r[i] * r[j]
                box += [m] * n
                rows_ij += [(3 * m + i, 3 * m + j)] * n
                row_k += [3 * m + k] * n
                side += [s] * n
                cell += [(2 / r[i], 2 / r[j])] * n
    return (torch.cat(unit).to(device), *(torch.tensor(x, device=device) for x in (box, rows_ij, row_k, side, cell)))


def box_surfels(center: Tensor, axes: Tensor, half: Tensor, res: list[tuple[int, int, int]], material: Tensor, label: Tensor, present: Tensor) -> Surfels:
    """K boxes per subject: centres (B,K,3), axes (B,K,3,3) rows = box axes (unit, right-handed), half
    sizes (B,K,3), ``res`` samples along each axis of each box (choose them from the box's size: surfels
    span one sample spacing), material and label per subject (B,), present (B,K). Faces are flat, so
    their frames and cell sizes are exact: the surfels ``grid_surfels`` makes of each face, without
    finite differences."""
    B = center.shape[0]
    unit, box, rows_ij, row_k, side, cell = _box_faces(tuple(tuple(r) for r in res), center.device)
    N = unit.shape[0]
    loc = unit * half[:, box]  # (B,N,3)
    P = center[:, box] + torch.einsum("bnk,bnkj->bnj", loc, axes[:, box])
    rows = axes.reshape(B, -1, 3)
    return Surfels(
        means=P,
        normals=rows[:, row_k] * side[:, None],  # outward
        tangents=rows[:, rows_ij[:, 0]],
        scales=half.reshape(B, -1)[:, rows_ij] * cell * COVER,  # sample spacing along the face's grid axes
        coords=loc,
        material=material[:, None].expand(B, N),
        labels=label[:, None].expand(B, N),
        opacity=present.float()[:, box],
    )


def ring_hull(
    points: Tensor,
    mask: Tensor,
    origin: Tensor,
    frame: Tensor,
    levels: Tensor,
    sectors: int,
    slab: float,
) -> Tensor:
    """How far a point set reaches from an axis, ring by ring and sector by sector.

    points (B,N,3) with mask (B,N); origin (B,3); frame (B,3,3) rows (lateral, axis, forward) with the
    axis pointing along increasing ``levels`` (B,R) (distances from the origin). Returns (B,R,S): the
    largest distance from the axis of masked points within ``slab`` of each ring, in each of S angular
    sectors (sector 0 centred on +forward, increasing towards +lateral); 0 where no point falls.
    """
    B, N, _ = points.shape
    R = levels.shape[1]
    local = torch.einsum("bij,bnj->bni", frame, points - origin[:, None])
    x, a, z = local.unbind(-1)
    step = (levels[:, 1:] - levels[:, :-1]).mean(1, keepdim=True) if R > 1 else torch.ones(B, 1, device=points.device)
    r = torch.round((a - levels[:, :1]) / step).long()
    near = (r >= 0) & (r < R)
    r = r.clamp(0, R - 1)
    dist_to_ring = (a - levels.gather(1, r)).abs()
    ok = mask & near & (dist_to_ring <= max(slab, 0.0) + 0.5 * step.abs())
    theta = torch.atan2(x, z)
    s = torch.floor((theta / (2 * math.pi) + 0.5 / sectors) * sectors).long() % sectors
    rad = torch.sqrt(x * x + z * z) * ok
    out = torch.zeros(B, R * sectors, device=points.device, dtype=points.dtype)
    return out.scatter_reduce(1, r * sectors + s, rad, reduce="amax").reshape(B, R, sectors)


def smooth_circular(x: Tensor, width: int) -> Tensor:
    """Running max then mean over ``width`` neighbouring sectors of the last (circular) dim."""
    if width <= 1:
        return x
    pad = width // 2
    xp = torch.cat([x[..., -pad:], x, x[..., :pad]], -1)
    mx = xp.unfold(-1, 2 * pad + 1, 1).amax(-1)
    mp = torch.cat([mx[..., -pad:], mx, mx[..., :pad]], -1)
    return mp.unfold(-1, 2 * pad + 1, 1).mean(-1)
