"""Cameras of the synthetic data: orbit views, handheld-photo input views and the benchmark protocol.

Subjects are centred (the posed body's bounding-box centre at the origin) and given by sample points
of their visible surfaces (``points`` (B,P,3) with ``valid`` (B,P)). Every camera is fitted so the
subject fills a chosen fraction of the frame (see ``fit_distance``).
Random draws come from a CPU ``torch.Generator``, all of a call's draws first, and reach the device of
the points in one copy; the cameras are made there (the GPU during training) without reading anything
back to the host.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from humansplat.cameras import Cameras, look_at, orbit_positions
from humansplat.data.device import constant, to_device
from humansplat.keypoints import HIPS, NOSE, SHOULDERS

__all__ = ["orbit_views", "input_views", "benchmark_views", "fit_distance"]


PORTRAIT_CUT = (-0.3, 0.6)  # head-only framing: the lowest kept height, from the shoulders (0) to the nose (1)


def _u(shape, g, lo: float, hi: float) -> Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=g)


def fit_distance(points: Tensor, valid: Tensor, target: Tensor, direction: Tensor, fov_deg: Tensor | float, fill: Tensor | float) -> Tensor:
    """Smallest distance from ``target`` along unit ``direction`` (towards the camera) at which every valid
    point lies within ``fill`` of the half field of view (vertically and horizontally, square images).

    points (B,P,3), valid (B,P); target, direction (B,V,3); fov_deg, fill broadcast to (B,V) (tensors on
    the points' device or numbers) -> (B,V), on the points' device.
    """
    dev = points.device
    fwd, target = -direction.to(dev), target.to(dev)
    right = F.normalize(torch.cross(fwd, constant((0.0, 1.0, 0.0), dev).expand_as(fwd), dim=-1), dim=-1)
    up = torch.cross(right, fwd, dim=-1)
    rel = points[:, None] - target[:, :, None]  # (B,V,P,3)
    x = (rel * right[:, :, None]).sum(-1).abs()
    y = (rel * up[:, :, None]).sum(-1).abs()
    z = (rel * fwd[:, :, None]).sum(-1)  # > 0: beyond the target
    T = (torch.tan(torch.deg2rad(torch.as_tensor(fov_deg, device=dev)) / 2) * fill).expand(target.shape[:2])
    need = torch.maximum(x, y) / T[..., None] - z
    return need.masked_fill(~valid[:, None], float("-inf")).amax(-1).clamp_min(0.3)


def _cameras(eye: Tensor, target: Tensor, fov_deg: Tensor, res: int, roll_deg: Tensor | None = None) -> Cameras:
    w2c = look_at(eye, target, up=constant((0.0, 1.0, 0.0), eye.device))
    if roll_deg is not None:
        r = torch.deg2rad(roll_deg)
        c, s, z, o = r.cos(), r.sin(), torch.zeros_like(r), torch.ones_like(r)
        Rz = torch.stack([c, -s, z, s, c, z, z, z, o], -1).reshape(*r.shape, 3, 3)
        w2c = w2c.clone()
        w2c[..., :3, :] = Rz @ w2c[..., :3, :]
    f = res / (2 * torch.tan(torch.deg2rad(fov_deg) / 2))
    K = torch.zeros(*fov_deg.shape, 3, 3, device=fov_deg.device)
    K[..., 0, 0], K[..., 1, 1], K[..., 0, 2], K[..., 1, 2], K[..., 2, 2] = f, f, res / 2, res / 2, 1.0
    return Cameras(K, w2c, res, res)


def orbit_views(
    points: Tensor,
    valid: Tensor,
    views: int,
    resolution: int,
    generator: torch.Generator,
    fov_deg: float = 39.6,
    elevation: tuple[float, float] = (-10.0, 30.0),
    fill: tuple[float, float] = (0.75, 0.92),
) -> Cameras:
    """``views`` cameras per subject evenly around it (random start azimuth), each at a random
    elevation, all at one distance per subject, looking at the origin: batch (B, views)."""
    points, valid = points.detach().float(), valid.detach()
    B, dev = points.shape[0], points.device
    g = generator
    start, el, f = to_device((_u((B, 1), g, 0.0, 360.0), _u((B, views), g, *elevation), _u((B, 1), g, *fill)), dev)
    az = start + torch.arange(views, device=dev) * (360.0 / views)
    fov = torch.full((B, views), float(fov_deg), device=dev)
    direction = orbit_positions(az, el, torch.ones(B, views, device=dev))
    target = torch.zeros(B, views, 3, device=dev)
    d = fit_distance(points, valid, target, direction, fov, f).amax(1, keepdim=True)
    eye = direction * d[..., None]
    return _cameras(eye, target, fov, resolution)


def input_views(
    points: Tensor,
    valid: Tensor,
    keypoints: Tensor,
    resolution: int,
    generator: torch.Generator,
    fov: tuple[float, float] = (30.0, 65.0),
    elevation: tuple[float, float] = (-10.0, 25.0),
    azimuth_std: float = 25.0,
    any_azimuth: float = 0.15,
    fill: tuple[float, float] = (0.7, 0.95),
    half_body: float = 0.2,
    roll_std: float = 3.0,
    head_only: float = 0.0,
) -> Cameras:
    """One camera per subject placed like a handheld photo: mostly from the front, a random field of
    view, elevation, distance and roll, the subject a little off-centre; with probability ``half_body``
    framed from the head down to around the hips (what lies lower may leave the frame), with probability
    ``head_only`` from the head down to between the upper chest and the chin (a portrait; it takes
    precedence). Batch (B, 1). ``head_only`` 0 draws nothing, so older configs keep their cameras."""
    g = generator
    points, valid, kp = points.detach().float(), valid.detach(), keypoints.detach().float()
    B, dev = points.shape[0], points.device
    draws = [torch.rand(B, generator=g) < any_azimuth, _u(B, g, -180.0, 180.0), torch.randn(B, generator=g) * azimuth_std]
    draws += [_u(B, g, *elevation), _u(B, g, *fov), _u(B, g, *fill), torch.rand(B, generator=g) < half_body]
    draws += [_u(B, g, -0.1, 0.3), _u(B, g, -0.6, 0.6), _u(B, g, -0.6, 0.6), torch.randn(B, generator=g) * roll_std]
    if head_only > 0:
        draws += [torch.rand(B, generator=g) < head_only, _u(B, g, *PORTRAIT_CUT)]
    anywhere, az_any, az_front, el, fov_deg, f, crop, below, shift_x, shift_y, roll, *portrait = to_device(tuple(draws), dev)
    az = torch.where(anywhere, az_any, az_front)
    hip_y, sh_y = kp[:, HIPS, 1].mean(1), kp[:, SHOULDERS, 1].mean(1)
    bottom = torch.where(crop, hip_y - below * (sh_y - hip_y), -1e3)
    if portrait:
        head, cut = portrait
        bottom = torch.where(head, sh_y + cut * (kp[:, NOSE, 1] - sh_y), bottom)
    keep = valid & (points[..., 1] >= bottom[:, None])
    lo = torch.where(keep[..., None], points, 1e3).amin(1)
    hi = torch.where(keep[..., None], points, -1e3).amax(1)
    target = (lo + hi) / 2
    direction = orbit_positions(az, el, torch.ones(B, device=dev))
    # off-centre framing: move the aim by up to 60% of the slack the fill leaves
    half = (hi - lo).amax(1) / 2
    right = F.normalize(torch.cross(direction, constant((0.0, 1.0, 0.0), dev).expand(B, 3), dim=-1), dim=-1)
    slack = (1 - f) * half
    target = target + right * (slack * shift_x)[:, None]
    target[:, 1] += slack * shift_y
    d = fit_distance(points, keep, target[:, None], direction[:, None], fov_deg[:, None], f[:, None])[:, 0]
    eye = target + direction * d[:, None]
    return _cameras(eye[:, None], target[:, None], fov_deg[:, None], resolution, roll[:, None])


def benchmark_views(points: Tensor, valid: Tensor, resolution: int = 512, views: int = 36, fov_deg: float = 39.6, fill: float = 0.9) -> Cameras:
    """The peers' evaluation protocol: ``views`` cameras at 0 deg elevation, azimuth 0, 360/views, ...
    (view 0 frontal: the input view), one distance per subject fitted so the subject spans ``fill`` of
    the frame, looking at the origin. Batch (B, views), on the points' device."""
    points, valid = points.detach().float(), valid.detach()
    B, dev = points.shape[0], points.device
    az = (torch.arange(views, device=dev) * (360.0 / views)).expand(B, views)
    el = torch.zeros(B, views, device=dev)
    fov = torch.full((B, views), float(fov_deg), device=dev)
    direction = orbit_positions(az, el, torch.ones(B, views, device=dev))
    target = torch.zeros(B, views, 3, device=dev)
    d = fit_distance(points, valid, target, direction, fov, fill).amax(1, keepdim=True)
    return _cameras(direction * d[..., None], target, fov, resolution)
