"""Loose surfaces of synthetic subjects: skirts and dress skirts, coat tails, long hair, ponytails and
buns, hat brims, and objects held in a hand (bag, ball, box, phone).

Skirts, coat tails and long hair hang from a ring around the body and fall clear of it: ring by ring,
their radius in every direction is the body's reach in that direction (``ring_hull``) plus a gap, never
shrinking on the way down (a skirt does not follow the legs between them) and widened by a flare. Every
subject gets every part with a fixed number of surfels, so a batch is one tensor; parts a subject does not
wear have opacity 0 and cost the renderer nothing.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from humansplat.body.parts import CLASS_ID as C
from humansplat.data.device import constant
from humansplat.data.dressing import is_seated, label_mask
from humansplat.data.subjects import BOTTOMS, HAIR_STYLES, HATS, M, OBJECTS, Outfit
from humansplat.data.surfels import Surfels, box_surfels, grid_surfels, ring_hull, smooth_circular, sphere_surfels
from humansplat.keypoints import EARS, HIPS, NOSE, SHOULDERS

__all__ = ["loose_surfels", "GRID"]

# Grid sizes at detail 1 (512 px renders); scaled by sqrt(detail) per side.
GRID = {"skirt": (128, 56), "coat": (128, 56), "hair": (80, 48), "tail": (16, 24), "bun": 14, "brim": (72, 6), "ball": 20}
OBJECT_SPACING = 0.012  # metres between samples on boxes at detail 1
SECTORS = 48
_UP = (0.0, 1.0, 0.0)


def _n(x: int, detail: float, lo: int = 4) -> int:
    return max(lo, int(round(x * math.sqrt(detail))))


def _frame(lateral: Tensor, down: Tensor) -> Tensor:
    """Rows (lateral, down, forward), orthonormal, lateral made perpendicular to down."""
    down = F.normalize(down, dim=-1)
    lat = F.normalize(lateral - (lateral * down).sum(-1, keepdim=True) * down, dim=-1)
    return torch.stack([lat, down, torch.cross(down, lat, dim=-1)], 1)


def _circ_interp(r: Tensor, theta: Tensor) -> Tensor:
    """Sample per-sector radii r (B,R,S) (sector k centred at 2 pi k / S) at angles theta (U,) or
    (B,U) -> (B,R,U)."""
    B, R, S = r.shape
    theta = theta.expand(B, -1) if theta.dim() == 1 else theta
    x = (theta % (2 * math.pi)) / (2 * math.pi) * S
    i0 = x.floor().long() % S
    w = (x - x.floor())[:, None]
    idx = i0[:, None].expand(B, R, -1)
    return r.gather(2, idx) * (1 - w) + r.gather(2, (idx + 1) % S) * w


def _ring_points(origin, frame, t, r, theta) -> Tensor:
    """Points origin + t * down + r * (sin theta * lateral + cos theta * forward): t (B,U,V) or (B,1,V),
    r (B,U,V), theta (U,) -> (B,U,V,3)."""
    lat, down, fwd = frame[:, 0], frame[:, 1], frame[:, 2]
    radial = torch.sin(theta)[None, :, None, None] * lat[:, None, None] + torch.cos(theta)[None, :, None, None] * fwd[:, None, None]
    return origin[:, None, None] + t[..., None] * down[:, None, None] + r[..., None] * radial


def _draped(points, mask, origin, frame, length, gap, flare, U, V):
    """A tube hanging from ``origin`` along the frame's down axis, clear of ``points``: (B,U,V,3) and
    the ring levels t (B,1,V)."""
    B = points.shape[0]
    dev = points.device
    v = torch.linspace(0, 1, V, device=dev)
    levels = v[None] * length[:, None]  # (B,V)
    hull = ring_hull(points, mask, origin, frame, levels, SECTORS, slab=0.01)
    hull = smooth_circular(hull, 5) + gap[:, None, None]
    hull = torch.cummax(hull, dim=1).values + flare[:, None, None] * levels[..., None]
    theta = torch.arange(U, device=dev) / U * 2 * math.pi
    r = _circ_interp(hull, theta).transpose(1, 2)  # (B,U,V)
    return _ring_points(origin, frame, levels[:, None, :].expand(B, U, V), r, theta), levels, theta, hull


def _tube_coords(theta: Tensor, t: Tensor, y0: Tensor, radius: float = 0.15) -> Tensor:
    """Texture coordinates on a cylinder continuing the body's rest coordinates below height y0."""
    B, U, V = t.shape
    s, c = torch.sin(theta)[None, :, None].expand(B, U, V), torch.cos(theta)[None, :, None].expand(B, U, V)
    return torch.stack([s * radius, y0[:, None, None] - t, c * radius], -1)


def loose_surfels(posed, rest, vertex_labels: Tensor, surface: Tensor, surface_labels: Tensor, outfit: Outfit, detail: float = 1.0) -> Surfels:
    """All loose parts of a batch. posed/rest: BodyOutput; vertex_labels (Nv,) the body's Sapiens ids;
    surface (B,N,3) the dressed body surface (tight surfel centres) and surface_labels (N,) the body
    part under each: loose parts hang clear of it."""
    o = outfit
    dev = posed.vertices.device
    B = posed.vertices.shape[0]
    kp, kr = posed.keypoints, rest.keypoints
    V_all = surface
    lab = surface_labels
    trunk = label_mask(lab, "Torso", "Left_Upper_Leg", "Left_Lower_Leg", "Right_Upper_Leg", "Right_Lower_Leg")
    upper = label_mask(lab, "Torso", "Face_Neck")
    head_v = lab == C["Face_Neck"]
    up = constant(_UP, dev).expand(B, 3)
    hip, sh = kp[:, HIPS].mean(1), kp[:, SHOULDERS].mean(1)
    lateral = kp[:, 11] - kp[:, 12]
    torso_down = F.normalize(hip - sh, dim=-1)
    skirt_down = F.normalize(torso_down - up, dim=-1)
    frame = _frame(lateral, skirt_down)
    rest_hip_y, rest_sh_y = kr[:, HIPS, 1].mean(1), kr[:, SHOULDERS, 1].mean(1)
    # on sitting and crouching bodies a tube would become a tent: skirts and coat tails lie on the
    # thighs as tight layers instead (see dressing)
    seated = is_seated(kp)
    parts = []

    # skirts and dress skirts, from the waist
    Us, Vs = (_n(x, detail) for x in GRID["skirt"])
    waist = hip + (sh - hip) * o.waist[:, None]
    skirt = ((o.bottom == BOTTOMS.index("skirt")) | (o.bottom == BOTTOMS.index("dress"))) & ~seated
    P, t, theta, _ = _draped(V_all, trunk[None].expand(B, -1), waist, frame, o.skirt_len, 0.012 + o.bottom_thick, o.skirt_flare, Us, Vs)
    coords = _tube_coords(theta, t[:, None].expand(B, Us, Vs), rest_hip_y + (rest_sh_y - rest_hip_y) * o.waist)
    is_dress = o.bottom == BOTTOMS.index("dress")
    parts.append(grid_surfels(P, coords, torch.where(is_dress, M["top"], M["bottom"]), torch.full_like(o.hair, C["Lower_Clothing"]), skirt, wrap_u=True, outward=waist))
    skirt_pts = P.reshape(B, -1, 3)

    # coat tails, from the hips, outside any skirt
    Uc, Vc = (_n(x, detail) for x in GRID["coat"])
    coat = (o.outer == 2) & ~seated
    start = hip + (sh - hip) * 0.05
    pts = torch.cat([V_all, skirt_pts], 1)
    mask = torch.cat([trunk[None].expand(B, -1), skirt[:, None].expand(B, skirt_pts.shape[1])], 1)
    P, t, theta, _ = _draped(pts, mask, start, frame, o.coat_len, 0.01 + o.outer_thick, 0.35 * o.skirt_flare, Uc, Vc)
    coords = _tube_coords(theta, t[:, None].expand(B, Uc, Vc), rest_hip_y + (rest_sh_y - rest_hip_y) * 0.05)
    parts.append(grid_surfels(P, coords, torch.full_like(o.hair, M["outer"]), torch.full_like(o.hair, C["Upper_Clothing"]), coat, wrap_u=True, outward=start))

    # long hair and bobs: a sheet falling from around the head, clear of head, neck and shoulders
    ears = kp[:, EARS].mean(1)
    head_h = _head_height(rest, vertex_labels == C["Face_Neck"])
    hframe = _frame(kp[:, 3] - kp[:, 4], -up)
    Uh, Vh = (_n(x, detail) for x in GRID["hair"])
    long_hair = o.hair == HAIR_STYLES.index("long")
    bob = o.hair == HAIR_STYLES.index("bob")
    gap0 = 0.6 * o.hair_thick + 0.004
    length_back = torch.where(bob, 0.04 + 0.2 * o.hair_len.clamp_max(0.4), o.hair_len)
    length_side = torch.where(bob, length_back, torch.minimum(length_back, 0.06 + 0.25 * o.hair_len))
    t0 = -0.45 * head_h
    vh = torch.linspace(0, 1, Vh, device=dev)
    opening = torch.where(bob, 0.85, 1.0)  # half-angle of the face opening (rad)
    theta = opening[:, None] + (2 * math.pi - 2 * opening[:, None]) * (torch.arange(Uh, device=dev) + 0.5)[None] / Uh  # (B,U)
    back = (1 - (theta - math.pi).abs() / 1.2).clamp_min(0) ** 0.5  # 1 straight behind, 0 from 70 deg off
    L = length_side[:, None] + (length_back - length_side)[:, None] * back  # (B,U)
    t = t0[:, None, None] + (L - t0[:, None])[..., None] * vh[None, None]  # (B,U,V)
    levels = torch.linspace(0, 1, 32, device=dev)[None] * (length_back - t0)[:, None] + t0[:, None]
    hull = ring_hull(V_all, upper[None].expand(B, -1), ears, hframe, levels, SECTORS, slab=0.012)
    hull = torch.cummax(smooth_circular(hull, 5) + gap0[:, None, None], dim=1).values
    # sample the hull at each (theta, t)
    ri = ((t - levels[:, :1, None]) / (levels[:, 1:2, None] - levels[:, :1, None])).clamp(0, 31)
    r_theta = _circ_interp(hull, theta)  # (B,32,U)
    i0 = ri.floor().long().clamp_max(30)
    w = ri - i0
    rt = r_theta.transpose(1, 2)  # (B,U,32)
    r = rt.gather(2, i0) * (1 - w) + rt.gather(2, i0 + 1) * w
    radial = torch.sin(theta)[..., None, None] * hframe[:, None, None, 0] + torch.cos(theta)[..., None, None] * hframe[:, None, None, 2]
    P = ears[:, None, None] + t[..., None] * hframe[:, None, None, 1] + r[..., None] * radial
    coords = torch.stack([theta[..., None].expand_as(t) * 0.1, t * 0.2, torch.zeros_like(t)], -1)
    parts.append(grid_surfels(P, coords, torch.full_like(o.hair, M["hair"]), torch.full_like(o.hair, C["Hair"]), long_hair | bob, outward=ears))

    # ponytail (a tapering tube behind the head) and bun (a ball on the back of the head)
    back_r = hull[:, 0, SECTORS // 2]
    Ut, Vt = (_n(x, detail) for x in GRID["tail"])
    s = torch.linspace(0, 1, Vt, device=dev)
    tail_len = 0.12 + 0.35 * o.hair_len.clamp_max(0.5)
    centre_t = -0.35 * head_h[:, None] + tail_len[:, None] * s[None]  # (B,V) below the ears
    tail_hull = ring_hull(V_all, upper[None].expand(B, -1), ears, hframe, centre_t, SECTORS, slab=0.015)[..., SECTORS // 2]
    rho = 0.03 * (1.1 - 0.6 * s)[None].expand(B, -1)
    behind = torch.cummax(torch.maximum(tail_hull + rho, back_r[:, None] + 0.5 * rho), dim=1).values + 0.01 * s
    centre = ears[:, None] + centre_t[..., None] * hframe[:, None, 1] - behind[..., None] * hframe[:, None, 2]
    phi = torch.arange(Ut, device=dev) / Ut * 2 * math.pi
    ring = torch.cos(phi)[None, :, None, None] * hframe[:, None, None, 0] + torch.sin(phi)[None, :, None, None] * hframe[:, None, None, 2]  # (B,U,1,3)
    P = centre[:, None] + rho[:, None, :, None] * ring
    coords = torch.stack([phi[None, :, None].expand(B, Ut, Vt) * 0.03, centre_t[:, None].expand(B, Ut, Vt) * 0.2, torch.zeros(B, Ut, Vt, device=dev)], -1)
    parts.append(grid_surfels(P, coords, torch.full_like(o.hair, M["hair"]), torch.full_like(o.hair, C["Hair"]), o.hair == HAIR_STYLES.index("ponytail"), wrap_u=True, outward=centre[:, None]))
    bun_c = ears - hframe[:, 1] * 0.55 * head_h[:, None] - hframe[:, 2] * (0.7 * back_r[:, None])
    parts.append(sphere_surfels(bun_c, 0.04 + 0.02 * o.hair_len.clamp_max(0.5), _n(GRID["bun"], detail), torch.full_like(o.hair, M["hair"]), torch.full_like(o.hair, C["Hair"]), o.hair == HAIR_STYLES.index("bun")))

    parts.append(_brims(posed, V_all, head_v, head_h, o, detail))
    parts.append(_held_objects(kp, o, detail))
    return Surfels.cat(parts)


def _head_height(rest, head_v: Tensor) -> Tensor:
    """Height of the head top above the ears in the zero pose (B,)."""
    y = torch.where(head_v[None], rest.vertices[..., 1], torch.full_like(rest.vertices[..., 1], -1e3)).amax(1)
    return (y - rest.keypoints[:, EARS, 1].mean(1)).clamp_min(0.05)


def _head_frame(kp: Tensor) -> Tensor:
    """Rows (lateral, down, forward) of the posed head from ears and nose."""
    lat = kp[:, 3] - kp[:, 4]
    fwd = kp[:, NOSE] - kp[:, EARS].mean(1)
    up = torch.cross(fwd, lat, dim=-1)
    return _frame(lat, -up)


def _brims(posed, V_all, head_v, head_h, o: Outfit, detail: float) -> Surfels:
    """Cap visors and sun-hat brims at the hat's front line, around the head."""
    dev = V_all.device
    B = V_all.shape[0]
    kp = posed.keypoints
    ears = kp[:, EARS].mean(1)
    frame = _head_frame(kp)
    U, V = (_n(x, detail) for x in GRID["brim"])
    h = o.hatline[:, 0] * head_h
    level = -h[:, None] - 0.005
    hull = ring_hull(V_all, head_v[None].expand(B, -1), ears, frame, torch.cat([level - 0.01, level], 1), SECTORS, slab=0.012).amax(1, keepdim=True)
    hull = smooth_circular(hull, 5)[:, 0] + 0.02  # (B,S): just outside hair and crown
    theta = (torch.arange(U, device=dev) + 0.5) / U * 2 * math.pi - math.pi
    r_in = _circ_interp(hull[:, None], theta)[:, 0]  # (B,U)
    cap = o.hat == HATS.index("cap")
    width = torch.where(cap[:, None], o.brim[:, None] * torch.cos(theta).clamp_min(0) ** 0.7 * (torch.cos(theta) > 0.35), o.brim[:, None].expand(B, U))
    v = torch.linspace(0, 1, V, device=dev)
    r = r_in[..., None] + width[..., None] * v
    droop = torch.where(cap, 0.15, 0.35)[:, None, None] * width[..., None] * v**2
    t = level[..., None].expand(B, U, V) + droop
    P = _ring_points(ears, frame, t, r, theta)
    coords = torch.stack([torch.sin(theta)[None, :, None] * r, torch.zeros_like(r), torch.cos(theta)[None, :, None] * r], -1)
    present = (o.hat == HATS.index("cap")) | (o.hat == HATS.index("sunhat"))
    below = ears + frame[:, 1]  # a metre below the head: brim normals face up
    s = grid_surfels(P, coords, torch.full_like(o.hat, M["hat"]), torch.full_like(o.hat, C["Apparel"]), present, outward=below)
    s.opacity = s.opacity * (width[..., None].expand(B, U, V) > 0.004).reshape(B, -1).float()
    return s


def _held_objects(kp: Tensor, o: Outfit, detail: float) -> Surfels:
    """A bag, ball, box or phone in the chosen hand (only the subject's own kind is present)."""
    B = kp.shape[0]
    dev = kp.device
    left = (o.hand == 0)[:, None]
    wrist = torch.where(left, kp[:, 9], kp[:, 10])
    elbow = torch.where(left, kp[:, 7], kp[:, 8])
    fore = F.normalize(wrist - elbow, dim=-1)
    hand = wrist + 0.07 * fore
    hip, sh = kp[:, HIPS].mean(1), kp[:, SHOULDERS].mean(1)
    axis = F.normalize(sh - hip, dim=-1)
    rel = hand - hip
    out = rel - (rel * axis).sum(-1, keepdim=True) * axis
    side = torch.where(left, kp[:, 11] - kp[:, 12], kp[:, 12] - kp[:, 11])
    out = F.normalize(torch.where(out.norm(dim=-1, keepdim=True) < 0.05, side, out), dim=-1)
    up = constant(_UP, dev).expand(B, 3)
    mat, lab = torch.full_like(o.obj, M["object"]), torch.full_like(o.obj, C["Apparel"])
    size = o.obj_size
    kind = {k: o.obj == OBJECTS.index(k) for k in OBJECTS}
    parts = []
    # ball
    r = 0.08 + 0.06 * size
    parts.append(sphere_surfels(hand + out * (0.8 * r[:, None]) + fore * (0.4 * r[:, None]), r, _n(GRID["ball"], detail), mat, lab, kind["ball"]))
    # phone: long side along the forearm, screen facing out
    phone_ax = _orthonormal(fore, out)
    phone_half = constant((0.075, 0.0045, 0.036), dev).expand(B, 3)
    # box held at the side
    box_half = (0.07 + 0.09 * size)[:, None] * constant((1.0, 0.8, 0.9), dev)
    box_ax = _orthonormal(up, out)
    # bag hanging from the hand, beside the leg, with its strap
    bag_half = torch.stack([0.1 + 0.06 * size, 0.13 + 0.05 * size, 0.045 + 0.02 * size], -1)
    bag_ax = torch.stack([box_ax[:, 2], box_ax[:, 0], box_ax[:, 1]], 1)  # width across, height up, depth out
    bag_centre = hand - up * (0.06 + bag_half[:, 1:2]) + out * (bag_half[:, 2:3] + 0.02)
    strap_half = constant((0.012, 0.045, 0.006), dev).expand(B, 3)
    centres = [hand + out * 0.02, hand + out * (box_half[:, 1:2] + 0.03), bag_centre, hand - up * 0.035 + out * 0.01]
    res = [_box_res(m, detail) for m in ((0.15, 0.009, 0.072), (0.32, 0.26, 0.29), (0.32, 0.36, 0.13), (0.024, 0.09, 0.012))]
    parts.append(box_surfels(torch.stack(centres, 1), torch.stack([phone_ax, box_ax, bag_ax, bag_ax], 1), torch.stack([phone_half, box_half, bag_half, strap_half], 1),
                             res, mat, lab, torch.stack([kind["phone"], kind["box"], kind["bag"], kind["bag"]], 1)))  # fmt: skip
    return Surfels.cat(parts)


def _box_res(max_size: tuple[float, float, float], detail: float) -> tuple[int, int, int]:
    """Samples along each axis of a box of at most ``max_size`` (metres)."""
    s = OBJECT_SPACING / math.sqrt(detail)
    return tuple(max(2, math.ceil(m / s)) for m in max_size)


def _orthonormal(a: Tensor, b: Tensor) -> Tensor:
    """Rows (a, b', a x b') with b' the part of b perpendicular to a."""
    a = F.normalize(a, dim=-1)
    b = F.normalize(b - (a * b).sum(-1, keepdim=True) * a, dim=-1)
    return torch.stack([a, b, torch.cross(a, b, dim=-1)], 1)
