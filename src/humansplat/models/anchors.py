"""3D anchors, the structure prior's tokens: where they are and the colour they start from.

- ``Anchors``: points in world space with a part label each (body vertices, or "none" when template-free);
- ``farthest_point_indices``: the fixed subsample of the body template that becomes the body anchors;
- ``template_free_anchors``: anchors placed from the input view alone (a cylinder or the inflated silhouette);
- ``anchor_color_prior``: the photo's colour where each anchor projects (``photo_colors``), optionally with
  hidden anchors taking their part's seen colour (``occluded_anchors``, ``label_mean_colors``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from humansplat.body.parts import NUM_CLASSES
from humansplat.cameras import Cameras
from humansplat.models.silhouette import silhouette_volume

ANCHOR_COLOR_GRID = 64  # the photo is area-averaged to this grid before anchors sample their colour prior
UNSEEN_COLOR = 0.5  # the colour prior of an anchor outside the photo
OCCLUSION_GRID = 16  # cells per side of the anchors' coarse z-buffer over the photo (16 px at 256: 10-20 anchors in a body cell)
OCCLUSION_MARGIN_M = 0.08  # an anchor this far behind the nearest one of its cell is hidden (a torso is ~0.25 m deep)


def anchor_color_prior(photo: Tensor, uv: Tensor, visible: Tensor, z: Tensor | None = None, labels: Tensor | None = None,
                       num_labels: int = NUM_CLASSES + 1) -> Tensor:
    """photo (B,3,S,S) in [0,1]; uv (B,A,2) pixels in it; visible (B,A) -> (B,A,3) the blurred photo's colour
    at each anchor's projection (``UNSEEN_COLOR`` where it does not project into the photo). With ``z`` (B,A)
    depths and ``labels`` (B,A) part ids in [0, num_labels): anchors that ``occluded_anchors`` finds hidden take
    the mean colour of the seen anchors of their label (of all seen anchors where none of their label is seen)."""
    S = photo.shape[-1]
    small = F.adaptive_avg_pool2d(photo.float(), ANCHOR_COLOR_GRID)
    grid = (uv.float() / S * 2 - 1)[:, :, None]  # (B,A,1,2), align_corners=False convention
    rgb = F.grid_sample(small, grid, mode="bilinear", padding_mode="border", align_corners=False)[..., 0].transpose(1, 2)
    rgb = torch.where(visible[..., None], rgb, torch.full_like(rgb, UNSEEN_COLOR))
    if z is None:
        return rgb
    if labels is None:
        raise ValueError("anchor_color_prior: occlusion needs the anchors' labels")
    hidden = occluded_anchors(uv, z, visible, S)
    return torch.where(hidden[..., None], label_mean_colors(rgb, labels, visible & ~hidden, num_labels), rgb)


def occluded_anchors(uv: Tensor, z: Tensor, visible: Tensor, size: int) -> Tensor:
    """(B,A) True where an anchor that projects into the photo (``visible``) lies more than
    ``OCCLUSION_MARGIN_M`` behind the nearest anchor of its cell (an ``OCCLUSION_GRID``² z-buffer over the photo)."""
    cell = (uv.float() / size * OCCLUSION_GRID).long().clamp(0, OCCLUSION_GRID - 1)
    idx = cell[..., 1] * OCCLUSION_GRID + cell[..., 0]
    depth = torch.where(visible, z.float(), torch.full_like(z, float("inf"), dtype=torch.float32))
    nearest = depth.new_full((z.shape[0], OCCLUSION_GRID**2), float("inf")).scatter_reduce(1, idx, depth, "amin")
    return visible & (depth > nearest.gather(1, idx) + OCCLUSION_MARGIN_M)


def label_mean_colors(rgb: Tensor, labels: Tensor, seen: Tensor, num_labels: int) -> Tensor:
    """rgb (B,A,3), labels (B,A) int in [0, num_labels), seen (B,A) bool -> (B,A,3): for every anchor, the mean
    ``rgb`` of the seen anchors with its label; of all seen anchors where none has it; ``UNSEEN_COLOR`` where none is seen."""
    B, A = labels.shape
    w = seen.float()
    sums = rgb.new_zeros(B, num_labels, 3).scatter_add(1, labels[..., None].expand(B, A, 3), rgb * w[..., None])
    counts = rgb.new_zeros(B, num_labels).scatter_add(1, labels, w)
    overall = torch.where(w.sum(1, keepdim=True) > 0, (rgb * w[..., None]).sum(1) / w.sum(1, keepdim=True).clamp_min(1), UNSEEN_COLOR)
    means = torch.where(counts[..., None] > 0, sums / counts.clamp_min(1)[..., None], overall[:, None])
    return means.gather(1, labels[..., None].expand(B, A, 3))


@dataclass
class Anchors:
    """3D anchor points in world space: xyz (B, A, 3); labels (B, A) int64 part ids, ``num_classes`` = none."""

    xyz: Tensor
    labels: Tensor


def farthest_point_indices(points: Tensor, n: int) -> Tensor:
    """Deterministic farthest-point subsample (starting from the point nearest the centroid)."""
    points = points.float()
    dist = torch.full((points.shape[0],), float("inf"), device=points.device)
    idx = torch.empty(n, dtype=torch.long, device=points.device)
    cur = int((points - points.mean(0)).norm(dim=-1).argmin())
    for i in range(n):
        idx[i] = cur
        dist = torch.minimum(dist, (points - points[cur]).square().sum(-1))
        cur = int(dist.argmax())
    return idx


def unit_cylinder_points(n: int) -> Tensor:
    """n points filling the cylinder x^2 + z^2 <= 1, y in [-0.5, 0.5], from a fixed low-discrepancy lattice."""
    i = torch.arange(n, dtype=torch.float64) + 0.5
    golden = (math.sqrt(5) - 1) / 2
    y = i / n - 0.5
    r = torch.sqrt(torch.frac(i * golden * math.sqrt(2)))
    theta = 2 * math.pi * torch.frac(i * golden)
    return torch.stack([r * torch.cos(theta), y, r * torch.sin(theta)], -1).float()


def _silhouette_box(masks: Tensor, W: int, H: int) -> Tensor:
    """(B, 4) x0, y0, x1, y1 in camera pixels of each (B, h, w) mask's foreground (the whole image if empty)."""
    sy, sx = H / masks.shape[-2], W / masks.shape[-1]
    boxes = []
    for m in masks > 0.5:
        rows, cols = torch.nonzero(m.any(1)).flatten(), torch.nonzero(m.any(0)).flatten()
        if rows.numel() == 0:
            boxes.append(torch.tensor([0.0, 0.0, W, H], device=masks.device))
        else:
            boxes.append(torch.stack([cols[0] * sx, rows[0] * sy, (cols[-1] + 1) * sx, (rows[-1] + 1) * sy]).float())
    return torch.stack(boxes)


def template_free_anchors(cameras: Cameras, masks: Tensor | None, num: int, num_classes: int, height: float | Tensor = 1.7,
                          shape: str = "cylinder") -> Anchors:
    """Body-prior-free anchors placed from the input view alone. The silhouette's bounding box gives the
    distance (assuming it shows ``height`` metres of person: one for all, or (B,)) and centre; without a mask the whole image is
    the person. ``shape``: "cylinder" (the default; weights up to v5 were trained with it) fills an upright
    elliptic cylinder of the silhouette's width; "silhouette" fills the silhouette inflated into a
    body-like volume (``silhouette_volume``: front and back, as thick as a body's cross-sections).

    cameras: the input view per item, batch (B,); masks (B,1,H,W) or (B,H,W) foreground in [0,1] or None.
    """
    if shape not in ("silhouette", "cylinder"):
        raise ValueError(f"template-free anchor shape must be 'silhouette' or 'cylinder', got {shape!r}")
    B = cameras.K.shape[0]
    H, W = cameras.height, cameras.width
    dev = cameras.K.device
    height = torch.as_tensor(height, dtype=torch.float32, device=dev).expand(B)  # one per item
    if masks is None:
        masks = torch.ones(B, H, W, device=dev)
    masks = masks.reshape(B, *masks.shape[-2:]).float()
    box = _silhouette_box(masks, W, H)  # (B,4) x0,y0,x1,y1 in pixels
    K = cameras.K.float()
    fy, fx = K[:, 1, 1], K[:, 0, 0]
    depth = fy * height / (box[:, 3] - box[:, 1]).clamp_min(1.0)
    c2w = cameras.c2w.float()
    labels = torch.full((B, num), num_classes, dtype=torch.long, device=dev)
    if shape == "silhouette":
        cam_pts = torch.stack([silhouette_volume(m, k, d, num, (W, H)) for m, k, d in zip(masks, K, depth)])
        return Anchors((c2w[:, None, :3, :3] @ cam_pts[..., None])[..., 0] + c2w[:, None, :3, 3], labels)
    u, v = (box[:, 0] + box[:, 2]) / 2, (box[:, 1] + box[:, 3]) / 2
    cam_pt = torch.stack([(u - K[:, 0, 2]) / fx * depth, (v - K[:, 1, 2]) / fy * depth, depth], -1)
    center = (c2w[:, :3, :3] @ cam_pt[..., None])[..., 0] + c2w[:, :3, 3]
    half_width = ((box[:, 2] - box[:, 0]) / fx * depth / 2).clamp(0.15, 0.9)
    up = torch.tensor([0.0, 1.0, 0.0], device=dev).expand(B, 3)
    forward = c2w[:, :3, 2] - (c2w[:, :3, 2] * up).sum(-1, keepdim=True) * up
    forward = F.normalize(forward + 1e-6 * torch.tensor([0.0, 0.0, 1.0], device=dev), dim=-1)
    right = torch.cross(up, forward, dim=-1)
    p = unit_cylinder_points(num).to(dev)  # (A,3)
    xyz = (center[:, None] + p[None, :, 0:1] * half_width[:, None, None] * right[:, None]
           + p[None, :, 1:2] * height[:, None, None] * up[:, None] + p[None, :, 2:3] * 0.15 * height[:, None, None] * forward[:, None])
    return Anchors(xyz, labels)
