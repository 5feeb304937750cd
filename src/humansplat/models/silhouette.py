"""The input silhouette inflated into a body-like volume: template-free anchors with a front and a back.

Every horizontal run of the matte (a row's stretch of foreground: a leg, an arm, the torso) is taken as
the outline of an elliptic cross-section centred on the subject's mid-plane, as deep as a body part of that
width is: limbs are about round, the torso (with the arms against it) much wider than deep. The anchors
fill these sections uniformly, so seen from the side they span the body's depth, and from behind they
show a back instead of the photo's front. The depth-to-width ratios are those of an adult body (thigh
and upper arm about round, the chest about 0.55 as deep as wide, shoulder to shoulder): the body prior's
cross-sections, reduced to two numbers.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["silhouette_volume", "run_half_widths"]

LIMB_HALF_WIDTH_M = 0.06  # runs this narrow (half width, metres) are limbs: round sections
TORSO_HALF_WIDTH_M = 0.18  # runs this wide are a torso: sections TORSO_DEPTH_RATIO as deep as wide
TORSO_DEPTH_RATIO = 0.55
MAX_HALF_DEPTH_M = 0.16  # no section is deeper than this either side of the mid-plane
MIN_HALF_DEPTH_M = 0.01
_GOLDEN = (math.sqrt(5) - 1) / 2


def run_half_widths(fg: Tensor) -> tuple[Tensor, Tensor]:
    """For each pixel of a (h, w) bool mask: the half width (pixels) of the horizontal foreground run it
    lies in, and its offset from that run's centre (pixels); both 0 off the mask."""
    h, w = fg.shape
    idx = torch.arange(w, device=fg.device).expand(h, w)
    last_off = torch.cummax(torch.where(~fg, idx, -1), dim=1).values  # last background pixel at or left of x
    rev = torch.where(~fg, w - 1 - idx, -1).flip(1)
    next_off = w - 1 - torch.cummax(rev, dim=1).values.flip(1)  # first background pixel at or right of x (w: none)
    half = (next_off - last_off - 1).float() / 2
    offset = (idx + 0.5) - (last_off + 1 + next_off).float() / 2
    return torch.where(fg, half, 0.0), torch.where(fg, offset, 0.0)


def _depth_ratio(half_width_m: Tensor) -> Tensor:
    t = ((half_width_m - LIMB_HALF_WIDTH_M) / (TORSO_HALF_WIDTH_M - LIMB_HALF_WIDTH_M)).clamp(0, 1)
    return 1.0 + t * (TORSO_DEPTH_RATIO - 1.0)


def silhouette_volume(mask: Tensor, K: Tensor, depth: Tensor, num: int, size: tuple[int, int]) -> Tensor:
    """``num`` points (camera frame, metres) filling the inflated silhouette of ``mask`` (h, w) in [0, 1],
    its mid-plane at camera depth ``depth``; ``K`` (3, 3) the intrinsics of a ``size`` (W, H) image (the
    mask may be at another resolution). Deterministic (a stratified, low-discrepancy fill)."""
    W, H = size
    fg = mask > 0.5
    if not fg.any():
        fg = torch.ones_like(fg)
    h, w = fg.shape
    sx, sy = W / w, H / h
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    half_px, offset_px = run_half_widths(fg)
    metres = sx / fx * depth  # metres per mask pixel across, at the mid-plane
    half_m = half_px * metres
    profile = (1 - (offset_px / half_px.clamp_min(0.5)).square()).clamp_min(0).sqrt()
    half_depth = (_depth_ratio(half_m) * half_m).clamp(MIN_HALF_DEPTH_M, MAX_HALF_DEPTH_M) * profile
    half_depth = torch.where(fg, half_depth.clamp_min(MIN_HALF_DEPTH_M), 0.0)
    # stratified over the volume: each pixel gets anchors in proportion to its section's depth
    cum = half_depth.flatten().cumsum(0)
    i = torch.arange(num, device=mask.device, dtype=torch.float64)
    targets = ((i + 0.5) / num * float(cum[-1])).to(cum.dtype)
    pix = torch.searchsorted(cum, targets).clamp_max(cum.numel() - 1)
    row, col = pix // w, pix % w
    jx, jy, jz = (torch.frac(i * _GOLDEN * k).float() for k in (1.0, math.sqrt(2), math.sqrt(3)))
    u = (col.float() + jx) * sx
    v = (row.float() + jy) * sy
    z = depth + (2 * jz - 1) * half_depth[row, col]
    return torch.stack([(u - cx) / fx * z, (v - cy) / fy * z, z], -1)
