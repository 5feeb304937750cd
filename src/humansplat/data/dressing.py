"""The body surface of synthetic subjects, dressed in its tight layers.

Tight garments are layers of the body surface itself: every surface sample knows where it lies on the
body (height between hips and shoulders, position along its arm or leg, angle and height on the head, all
measured on the zero-pose body of the same phenotype, see ``BodyCoords``) and each garment is a rule over
those coordinates (a t-shirt covers the torso above its hem and the arms down to its sleeve length).
Covered samples move out along the normal by the garment's thickness and take its material and part
label; the outermost layer wins. One set of samples (face ids and barycentric weights) serves a whole
batch, so every subject has the same number of surfels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from humansplat.body.parts import CLASS_ID as C
from humansplat.data.device import constant, to_device
from humansplat.data.subjects import BOTTOMS, HAIR_STYLES, M, Outfit
from humansplat.data.surfels import COVER, Surfels
from humansplat.meshes import face_areas, interpolate, vertex_normals
from humansplat.keypoints import EARS, HIPS, KNEES, SHOULDERS

__all__ = ["BodySurface", "BodyCoords", "body_coords", "body_surfels", "is_seated"]


def is_seated(keypoints: Tensor) -> Tensor:
    """(B,) sitting or crouching: knees less than half a thigh below the hips (COCO-17 keypoints)."""
    thigh = (keypoints[:, HIPS] - keypoints[:, KNEES]).norm(dim=-1).mean(1)
    return (keypoints[:, HIPS, 1].mean(1) - keypoints[:, KNEES, 1].mean(1)) < 0.5 * thigh


class BodySurface:
    """What the engine needs from the body mesh, computed once per body model: the faces worth sampling
    (the tongue, hidden behind closed lips, is left out) and which vertices belong to the eyeballs."""

    def __init__(self, body) -> None:
        faces, labels = body.faces, body.vertex_labels
        self.faces = faces
        self.vertex_labels = labels
        comp = _components(faces, labels.shape[0])
        size = torch.bincount(comp, minlength=labels.shape[0])[comp]
        small = (size < 200) & (labels == C["Face_Neck"])  # the two eyeballs
        rest_x = body(_neutral_params(body)).vertices[0, :, 0]
        self.eye_side = torch.where(small, torch.where(rest_x > 0, 1, 2), 0)  # 1 left (+X), 2 right
        self.sample_faces = torch.nonzero((labels[faces] != C["Tongue"]).all(1)).squeeze(1)

    def sample(self, rest_vertices: Tensor, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """n surface samples shared by a batch: face ids (n,) and barycentric weights (n, 3).

        Systematic sampling along the cumulative mean face area of the batch (every face gets the floor
        or the ceiling of its share, unbiased), placed in each face by a randomly shifted 2D
        low-discrepancy sequence."""
        faces = self.faces[self.sample_faces]
        dev = faces.device
        area = face_areas(rest_vertices, faces).mean(0).double()
        cdf = torch.cumsum(area, 0) / area.sum()
        u = (torch.arange(n, dtype=torch.double, device=dev) + torch.rand((), generator=generator, dtype=torch.double).item()) / n
        fid = torch.searchsorted(cdf, u).clamp_max(len(faces) - 1)  # non-decreasing
        k = torch.arange(n, device=dev) - torch.searchsorted(fid, fid)  # rank within the face
        shift = to_device(torch.rand(len(faces), 2, generator=generator), dev)[fid]
        r = (shift + k[:, None] * constant((0.7548776662, 0.5698402910), dev)) % 1.0
        flip = r.sum(1, keepdim=True) > 1
        r = torch.where(flip, 1 - r, r)
        bary = torch.stack([1 - r[:, 0] - r[:, 1], r[:, 0], r[:, 1]], 1)
        return self.sample_faces[fid], bary


def _neutral_params(body):
    from humansplat.body import BodyParams

    return BodyParams.neutral(1, device=body.device)


def _components(faces: Tensor, nv: int) -> Tensor:
    """Connected-component id (the smallest vertex index) of every vertex."""
    src = torch.cat([faces[:, 0], faces[:, 1], faces[:, 2], faces[:, 1], faces[:, 2], faces[:, 0]])
    dst = torch.cat([faces[:, 1], faces[:, 2], faces[:, 0], faces[:, 0], faces[:, 1], faces[:, 2]])
    lab = torch.arange(nv, device=faces.device)
    while True:
        new = lab.scatter_reduce(0, dst, lab[src], reduce="amin")
        new = new[new]  # pointer jumping
        if torch.equal(new, lab):
            return lab
        lab = new


@dataclass
class BodyCoords:
    """Where each surface sample lies on the zero-pose body, (B, N) each: ``h`` torso height (0 hip
    joints, 1 shoulders), ``drop`` metres below the shoulders, ``arm_t``/``leg_t`` position along the
    limb (0 shoulder/hip, 0.5 elbow/knee, 1 wrist/ankle), ``head_u`` height above the ears in head
    heights, ``head_theta`` angle around the head (0 in front, + towards the subject's left),
    ``lateral`` x offset from the midline, ``front`` whether the rest normal faces forward."""

    h: Tensor
    drop: Tensor
    arm_t: Tensor
    leg_t: Tensor
    head_u: Tensor
    head_theta: Tensor
    lateral: Tensor
    front: Tensor


def _chain_t(p: Tensor, a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    """Position of points (B,N,3) along K two-segment chains a-b-c (B,K,3): 0 at a, 0.5 at b, 1 at c
    -> (B,K,N)."""
    p, a, b, c = p[:, None], a[:, :, None], b[:, :, None], c[:, :, None]
    ab, bc = b - a, c - b
    s1 = ((p - a) * ab).sum(-1) / (ab * ab).sum(-1)
    s2 = ((p - b) * bc).sum(-1) / (bc * bc).sum(-1)
    d1 = (p - a - s1.clamp(0, 1)[..., None] * ab).norm(dim=-1)
    d2 = (p - b - s2.clamp_min(0)[..., None] * bc).norm(dim=-1)
    return torch.where(d1 <= d2, 0.5 * s1.clamp_max(1), 0.5 + 0.5 * s2.clamp_min(0))


def body_coords(rest_p: Tensor, rest_n: Tensor, labels: Tensor, kp: Tensor, head_top: Tensor) -> BodyCoords:
    """BodyCoords of samples at rest positions/normals (B,N,3) with labels (N,), from the zero-pose
    COCO keypoints kp (B,17,3) and the top of the head (B,) (y)."""
    left = torch.zeros(len(C), dtype=torch.bool, device=labels.device)
    for name in ("Left_Upper_Arm", "Left_Lower_Arm", "Left_Hand", "Left_Upper_Leg", "Left_Lower_Leg", "Left_Foot"):
        left[C[name]] = True
    is_left = left[labels][None]
    # the four limbs at once: COCO shoulder/elbow/wrist (5..10) and hip/knee/ankle (11..16), left then right
    joints = [torch.cat([kp[:, k : k + 2], kp[:, k + 6 : k + 8]], 1) for k in (5, 7, 9)]
    t = _chain_t(rest_p, *joints)  # (B,4,N): left arm, right arm, left leg, right leg
    arm_t = torch.where(is_left, t[:, 0], t[:, 1])
    leg_t = torch.where(is_left, t[:, 2], t[:, 3])
    sh_y, hip_y = kp[:, SHOULDERS, 1].mean(1), kp[:, HIPS, 1].mean(1)
    y = rest_p[..., 1]
    ears = kp[:, EARS].mean(1)
    d = rest_p - ears[:, None]
    return BodyCoords(
        h=(y - hip_y[:, None]) / (sh_y - hip_y)[:, None],
        drop=sh_y[:, None] - y,
        arm_t=arm_t,
        leg_t=leg_t,
        head_u=d[..., 1] / (head_top - ears[:, 1]).clamp_min(0.05)[:, None],
        head_theta=torch.atan2(d[..., 0], d[..., 2]),
        lateral=rest_p[..., 0] - kp[:, HIPS, 0].mean(1)[:, None],
        front=rest_n[..., 2] > 0.2,
    )


def _line(params: Tensor, theta: Tensor) -> Tensor:
    """A closed line on the head through heights (front, side, back) (B,3), at angles theta (B,N)."""
    f, s, b = params[:, 0:1], params[:, 1:2], params[:, 2:3]
    A = ((f + b) / 2 + s) / 2
    return A + (f - b) / 2 * torch.cos(theta) + ((f + b) / 2 - s) / 2 * torch.cos(2 * theta)


def label_mask(labels: Tensor, *names: str) -> Tensor:
    """Whether each Sapiens class id in ``labels`` is one of the classes ``names`` (a table lookup)."""
    return constant(tuple(name in names for name in C), labels.device)[labels]


def body_surfels(surface: BodySurface, posed, rest, outfit: Outfit, n: int, generator: torch.Generator) -> tuple[Surfels, BodyCoords, Tensor]:
    """Surfels of the posed bodies (``posed``/``rest``: BodyOutput of the same phenotypes in their pose
    and in the zero pose) dressed in their tight layers: skin, lips, eyes, brows, socks, trousers /
    shorts / skirt slips, tops and dress bodices, jackets, shoes, hair on the scalp and hats. Also returns
    where each sample lies (BodyCoords) and the body part under it (N,) (Sapiens id of the naked body)."""
    fid, bary = surface.sample(rest.vertices, n, generator)
    faces = surface.faces
    vp, vr = posed.vertices, rest.vertices
    B = vp.shape[0]
    fb, bb = fid.expand(B, -1), bary.expand(B, -1, -1)
    p = interpolate(vp, faces, fb, bb)
    nrm = F.normalize(interpolate(vertex_normals(vp, faces), faces, fb, bb), dim=-1)
    pr = interpolate(vr, faces, fb, bb)
    nr = F.normalize(interpolate(vertex_normals(vr, faces), faces, fb, bb), dim=-1)
    tri = faces[fid]
    vid = tri.gather(1, bary.argmax(1, keepdim=True)).squeeze(1)
    labels = surface.vertex_labels[vid]
    eye_side = surface.eye_side[vid]
    head_v = surface.vertex_labels == C["Face_Neck"]
    head_top = torch.where(head_v[None], vr[..., 1], torch.full_like(vr[..., 1], -1e3)).amax(1)
    co = body_coords(pr, nr, labels, rest.keypoints, head_top)
    o = outfit

    def per(x: Tensor) -> Tensor:
        return x[:, None]

    is_torso = (labels == C["Torso"])[None]
    is_arm = label_mask(labels, "Left_Upper_Arm", "Left_Lower_Arm", "Left_Hand", "Right_Upper_Arm", "Right_Lower_Arm", "Right_Hand")[None]
    is_leg = label_mask(labels, "Left_Upper_Leg", "Left_Lower_Leg", "Right_Upper_Leg", "Right_Lower_Leg")[None]
    is_shin = label_mask(labels, "Left_Lower_Leg", "Right_Lower_Leg")[None]
    is_foot = label_mask(labels, "Left_Foot", "Right_Foot")[None]
    is_left = label_mask(labels, "Left_Lower_Leg", "Left_Upper_Leg", "Left_Foot")[None]
    is_face = (labels == C["Face_Neck"])[None] & (eye_side == 0)[None]
    is_eye = (eye_side > 0)[None].expand(B, -1)
    trunk = is_torso | is_leg

    lab = labels[None].expand(B, -1).clone()
    mat = torch.full_like(lab, M["skin"])
    off = torch.zeros_like(p[..., 0])

    def apply(mask: Tensor, thick, material, label=None) -> None:
        nonlocal lab, mat, off
        mask = mask.expand(B, -1)
        # python numbers stay scalars: no copy to the device
        off = torch.where(mask, torch.maximum(off, thick) if isinstance(thick, Tensor) else off.clamp_min(thick), off)
        mat = torch.where(mask, material, mat)
        if label is not None:
            lab = torch.where(mask, label, lab)

    # face details (colour only)
    apply(label_mask(labels, "Upper_Lip", "Lower_Lip")[None], 0.0, M["lips"])
    apply(is_eye, 0.0, M["eyes"])
    apply(is_face & _brows(pr, rest.keypoints), 0.0003, M["brows"])

    # lower garments and tops, with the tuck deciding who is outside
    dress = per(o.bottom == BOTTOMS.index("dress"))
    skirt_like = per(o.bottom >= BOTTOMS.index("skirt"))
    hem = torch.where(dress, per(o.waist), per(o.hem))
    neck_cut = is_torso & co.front & (co.drop < per(o.neck_depth) - co.lateral.abs() * per(o.neck_slope))
    top = (trunk & (co.h > hem) & ~neck_cut) | (is_arm & (co.arm_t < per(o.sleeve)))
    # skirts and coat tails hang as loose surfaces, except on seated bodies: there they lie on the thighs
    seated = per(is_seated(posed.keypoints))
    leg_len = torch.where(skirt_like, torch.where(seated, 0.45, 0.12), per(o.leg_len))
    lower = (is_torso & (co.h < per(o.waist))) | (is_leg & (co.leg_t < leg_len))
    lower_thick = torch.where(skirt_like, torch.where(seated, 0.012, 0.003), per(o.bottom_thick) + per(o.wide) * co.leg_t.clamp(0, 1) ** 2 * is_leg)
    top_wins = top & ~(lower & per(o.tucked))
    sock_band = is_shin & (co.leg_t > per(o.sock_top))
    sock = ((per(o.socks & (o.shoes > 0)) & sock_band) | (per(o.sock_feet) & (sock_band | is_foot))) & ~lower
    apply(sock, 0.002, M["socks"], torch.where(is_left, C["Left_Sock"], C["Right_Sock"]))
    apply(lower & ~top_wins, torch.maximum(lower_thick, per(o.top_thick) * top), torch.where(dress, M["top"], M["bottom"]), C["Lower_Clothing"])
    apply(top_wins, torch.maximum(per(o.top_thick), lower_thick * lower), M["top"], C["Upper_Clothing"])

    # jackets and coats (the coat's tail is a loose surface)
    open_cut = per(o.open_front) & co.front & (co.lateral.abs() < per(o.open_width) * 0.5 + (co.h - 0.6).clamp_min(0) * 0.3)
    coat_lap = per(o.outer == 2) & seated & is_leg & (co.leg_t < 0.42)
    outer = per(o.outer > 0) & ((((trunk & (co.h > per(o.outer_hem))) | coat_lap) & ~open_cut) | (is_arm & (co.arm_t < 0.96)))
    apply(outer, per(o.outer_thick), M["outer"], C["Upper_Clothing"])

    # shoes: thicker soles and toes
    shoe = per(o.shoes > 0) & (is_foot | (is_shin & (co.leg_t > per(o.shoe_top))))
    shoe_thick = 0.007 + 0.016 * (nr[..., 1] < -0.5) + 0.008 * (is_foot & (nr[..., 2] > 0.5))
    apply(shoe, shoe_thick, M["shoes"], torch.where(is_left, C["Left_Shoe"], C["Right_Shoe"]))

    # hair on the scalp and hats over it
    head = (is_face | label_mask(labels, "Upper_Lip", "Lower_Lip")[None]) & (co.head_u > -1.5)
    hair = per(o.hair > 0) & head & (co.head_u > _line(o.hairline, co.head_theta))
    afro = per(o.hair == HAIR_STYLES.index("afro"))
    hair_thick = per(o.hair_thick) * torch.where(afro, 0.8 + 0.2 * co.head_u.clamp(0, 1), 0.45 + 0.55 * co.head_u.clamp(0, 1))
    apply(hair, hair_thick, M["hair"], C["Hair"])
    hat = per(o.hat > 0) & head & (co.head_u > _line(o.hatline, co.head_theta))
    apply(hat, torch.where(hair, hair_thick, 0.0) + torch.where(per(o.hat == 1), 0.01, 0.005), M["hat"], C["Apparel"])

    # texture coordinates: rest positions; eyeballs get their direction from the eyeball centre
    coords = pr
    eye_c = torch.stack([_masked_mean(vr, surface.eye_side == k) for k in (1, 2)], 1)  # (B,2,3)
    centre = eye_c[:, (eye_side - 1).clamp_min(0)]  # (B,N,3)
    coords = torch.where(is_eye[..., None], F.normalize(pr - centre, dim=-1), coords)
    coords = torch.where((mat == M["hair"])[..., None], coords * constant((1.0, 0.15, 1.0), coords.device), coords)  # streaks

    # the samples are area-uniform, so one spacing per subject: sqrt(area / n)
    spacing = (face_areas(vp, faces[surface.sample_faces]).sum(1) / n).sqrt()
    sigma = (COVER * 1.1 * spacing)[:, None].expand(B, n)
    t = F.normalize(vp[:, tri[:, 1]] - vp[:, tri[:, 0]], dim=-1)
    surf = Surfels(
        means=p + nrm * off[..., None],
        normals=nrm,
        tangents=t,
        scales=torch.stack([sigma, sigma], -1),
        coords=coords,
        material=mat,
        labels=lab,
        opacity=torch.ones_like(off),
    )
    return surf, co, labels


def _masked_mean(v: Tensor, mask: Tensor) -> Tensor:
    w = mask.to(v.dtype)
    return (v * w[None, :, None]).sum(1) / w.sum().clamp_min(1)


def _brows(pr: Tensor, kp: Tensor) -> Tensor:
    """Samples on the eyebrows: an arch above each eye keypoint, in the zero pose."""
    out = torch.zeros_like(pr[..., 0], dtype=torch.bool)
    for k, side in ((1, 1.0), (2, -1.0)):
        e = kp[:, k][:, None]
        dx = (pr[..., 0] - e[..., 0]) * side - 0.004
        dy = pr[..., 1] - e[..., 1]
        arch = 0.021 + 0.005 * (1 - (dx / 0.024).clamp(-1, 1) ** 2)
        out |= (dx.abs() < 0.024) & ((dy - arch).abs() < 0.0032 + 0.001 * (dx < 0)) & (pr[..., 2] > e[..., 2] - 0.01)
    return out
