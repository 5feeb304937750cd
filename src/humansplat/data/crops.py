"""Zoomed crops of the face and the hands, for the hierarchical losses at a higher resolution (HumanSplat
supervises the head and hands on close-up renders, not only through their weights in the full views).

Per subject, each region of ``CROP_REGIONS`` is boxed where its body vertices project in two views (the
input view and one orbit view drawn per subject), enlarged by ``CROP_MARGIN`` on each side, made square, and
rendered again through a camera that sees only that box at ``size`` px: a face that covers 20 px of a 256 px
view fills a 128 px crop. Whatever lies in the box (a hand in front of the face) is simply what that camera
sees, so occlusion needs no special case. A crop is invalid (and not supervised) when its region is behind
the camera, outside the view, or under ``MIN_BOX_PX`` pixels across.

    boxes, valid = region_boxes(vertices[:, mask], cameras)     # (B, V, 3) x0, y0, side; (B, V)
    crops = crop_cameras(cameras, boxes, 128)                   # Cameras (B, V), 128 x 128
"""

from __future__ import annotations

import torch
from torch import Tensor

from humansplat.body.parts import CLASS_ID
from humansplat.cameras import Cameras, crop_intrinsics, project_points, resize_intrinsics

__all__ = ["CROP_REGIONS", "region_boxes", "crop_cameras", "region_vertex_masks"]

CROP_REGIONS: dict[str, tuple[str, ...]] = {  # one crop per region and view; both hands together would span the arms
    "face": ("Face_Neck", "Lower_Lip", "Upper_Lip"),
    "left_hand": ("Left_Hand",),
    "right_hand": ("Right_Hand",),
}
CROP_MARGIN = 0.15  # the box grows by this share of its side on each side
MIN_BOX_PX = 6.0  # regions smaller than this (in the view's pixels) are not cropped


def region_vertex_masks(vertex_labels: Tensor) -> Tensor:
    """(R, Nv) bool: the body vertices of each of ``CROP_REGIONS`` (vertex_labels (Nv,) part ids)."""
    ids = [torch.tensor([CLASS_ID[n] for n in names], device=vertex_labels.device) for names in CROP_REGIONS.values()]
    return torch.stack([torch.isin(vertex_labels, i) for i in ids])


def region_boxes(points: Tensor, cameras: Cameras, margin: float = CROP_MARGIN) -> tuple[Tensor, Tensor]:
    """points (B, N, 3) of one region per subject, cameras (B, V) -> square boxes (B, V, 3) as x0, y0, side in
    the view's pixels, and valid (B, V): the region is in front of the camera, its box centre inside the
    image and its side at least ``MIN_BOX_PX``."""
    uv, z = project_points(points[:, None].float(), cameras)  # (B, V, N, 2), (B, V, N)
    front = (z > 1e-3)[..., None]
    lo = torch.where(front, uv, torch.full_like(uv, float("inf"))).amin(-2)
    hi = torch.where(front, uv, torch.full_like(uv, float("-inf"))).amax(-2)
    seen = front.any(-2)[..., 0]
    lo, hi = torch.where(seen[..., None], lo, 0.0), torch.where(seen[..., None], hi, 0.0)
    centre, extent = (lo + hi) / 2, (hi - lo).amax(-1)
    side = extent * (1 + 2 * margin)
    inside = (centre[..., 0] >= 0) & (centre[..., 0] < cameras.width) & (centre[..., 1] >= 0) & (centre[..., 1] < cameras.height)
    valid = seen & inside & (extent >= MIN_BOX_PX)
    side = side.clamp_min(MIN_BOX_PX)
    return torch.cat([centre - side[..., None] / 2, side[..., None]], -1), valid


def crop_cameras(cameras: Cameras, boxes: Tensor, size: int) -> Cameras:
    """The cameras (any batch shape) seeing only ``boxes`` (same batch, 3: x0, y0, side in their pixels), at
    ``size`` x ``size`` px: a point at pixel (u, v) of a camera is at ((u - x0), (v - y0)) * size / side."""
    K = resize_intrinsics(crop_intrinsics(cameras.K, boxes[..., 0], boxes[..., 1]), size / boxes[..., 2:3])
    return Cameras(K, cameras.w2c, size, size)
