"""Where a body fit starts: the body's axis under the priors, the first placement, and the pose-stage starts.

The gravity priors of :mod:`humansplat.body.fit` hold the pelvis and torso along an ``up`` direction per
person (:func:`body_axis`): the world's +Y, unless the photo's hips-to-shoulders line leans more than
``FitConfig.tilted_deg`` from the image's vertical (a lying, diving, cartwheeling or upside-down body),
when it is that line lifted into the camera's image plane. The priors then still hold the lean in depth,
which 2D keypoints cannot see, and the first placement is along that axis (head down when the photo's
head is below its hips).

Pose-stage starts (:func:`pose_starts`): the placed body with each of ``FitConfig.ages_years``' phenotypes
and, when a knee or ankle is far from where the placed body puts it, legs from ``LEG_STARTS`` (sitting,
crouching or a tucked jump, one knee raised) and, further off, ``DYNAMIC_LEG_STARTS`` (a kick, a knee raised
sideways, kneeling). Arms far from the placed body get their own round of starts (``ARM_STARTS``: raised,
hands on the head, reaching forward), from the best legs (:func:`arm_starts`). A limb still far after the
whole fit gets a grid search over its pose and a refit (:func:`limb_grid_starts`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from humansplat.body.limbs import LIMBS
from humansplat.body.model import BONE_NAMES, BodyModel, BodyParams
from humansplat.body.phenotypes import AGE_BANDS, adult_phenotype, phenotype_mixture
from humansplat.body.pose_prior import PosePrior
from humansplat.cameras import Cameras, project_points
from humansplat.keypoints import ANKLES, ELBOWS, HIPS, KNEES, SHOULDERS, WRISTS

if TYPE_CHECKING:
    from humansplat.body.fit import FitConfig, _Problem

__all__ = ["LEG_STARTS", "DYNAMIC_LEG_STARTS", "ARM_STARTS", "body_axis", "straight_legs", "initialise", "pose_starts", "arm_starts", "limb_grid_starts",
           "turn"]  # fmt: skip

# Keypoint pairs whose 3D distance changes little with pose: they set the initial depth.
_RIGID_PAIRS = [(5, 6), (11, 12), (5, 11), (6, 12), (1, 2), (3, 4), (0, 5), (0, 6)]
_LEFT, _RIGHT = [1, 3, 5, 11], [2, 4, 6, 12]
AXIS_CONFIDENCE = 0.5  # shoulders and hips this sure before their line may set the body's axis
SURE_WEIGHT = 0.25  # a keypoint's fit weight at confidence 0.5 (humansplat.body.fit): only sure keypoints trigger a limb search

# Leg starts: per side (thigh flex, thigh abd, calf flex[, thigh twist]) in degrees, None = as placed.
Leg = tuple[float, ...] | None
LEG_STARTS: tuple[tuple[Leg, Leg], ...] = (
    ((90, 0, -95), (90, 0, -95)),  # sitting
    ((115, 0, -120), (115, 0, -120)),  # crouching, a tucked jump
    ((90, 0, -95), None), (None, (90, 0, -95)),  # one knee up
)
DYNAMIC_LEG_STARTS: tuple[tuple[Leg, Leg], ...] = (  # only for a knee or ankle further off (FitConfig.dynamic_leg_px)
    ((95, 0, -5), None), (None, (95, 0, -5)),  # a front kick
    ((45, 55, -100), None), (None, (45, 55, -100)),  # a knee raised sideways
    ((0, 0, -100), (0, 0, -100)),  # kneeling
)  # fmt: skip
# Arm starts: per side (upperarm flex, upperarm abd, lowerarm flex) in degrees, None = as placed.
ARM_STARTS: tuple[tuple[Leg, Leg], ...] = (
    ((20, 130, 20), (20, 130, 20)),  # both raised
    ((10, 120, 130), (10, 120, 130)),  # hands on the head
    ((20, 130, 20), None), (None, (20, 130, 20)),  # one raised
    ((90, 0, 10), None), (None, (90, 0, 10)),  # one reaching forward
)  # fmt: skip


def body_axis(obs: Tensor, conf: Tensor, cams: Cameras, tilted_deg: float) -> Tensor:
    """(B, 3) the up direction the gravity priors hold a body to: world +Y, or the image's hips-to-shoulders
    line lifted into the camera's image plane when it leans more than ``tilted_deg`` from the vertical."""
    B, dev = obs.shape[0], obs.device
    up = torch.tensor([0.0, 1.0, 0.0], device=dev).expand(B, 3)
    def centre(pair: slice) -> tuple[Tensor, Tensor]:  # the mean of a pair's sure keypoints, and whether there is one
        w = (conf[:, pair] >= AXIS_CONFIDENCE).float()
        return (obs[:, pair] * w[..., None]).sum(1) / w.sum(1, keepdim=True).clamp(min=1), w.sum(1) > 0

    (shoulders, seen_s), (hips, seen_h) = centre(SHOULDERS), centre(HIPS)
    line = shoulders - hips  # image pixels, v down
    sure = seen_s & seen_h & (line.norm(dim=-1) > 1)
    lean = torch.rad2deg(torch.atan2(line[:, 0].abs(), -line[:, 1]))  # 0 upright, 180 upside down
    cam_dir = F.pad(F.normalize(line, dim=-1), (0, 1))  # OpenCV camera frame: x right, y down
    lifted = F.normalize((cams.c2w[:, :3, :3] @ cam_dir[..., None])[..., 0], dim=-1)
    return torch.where((sure & (lean > tilted_deg))[:, None], lifted, up)


def straight_legs(obs: Tensor, conf: Tensor, bent_deg: float, min_confidence: float) -> Tensor:
    """(B, 2) 1 for a leg whose hip-knee-ankle bend in the photo is under ``bent_deg`` or unseen (a keypoint under
    ``min_confidence``), else 0: only straight-looking legs are held to the feet-not-behind-the-hips prior (a
    tucked or kneeling leg is not a lean)."""
    thigh = obs[:, KNEES] - obs[:, HIPS]
    shin = obs[:, ANKLES] - obs[:, KNEES]
    cos = (F.normalize(thigh, dim=-1) * F.normalize(shin, dim=-1)).sum(-1).clamp(-1, 1)
    seen = torch.stack([conf[:, HIPS], conf[:, KNEES], conf[:, ANKLES]], -1).amin(-1) >= min_confidence
    return (~seen | (torch.rad2deg(torch.acos(cos)) < bent_deg)).float()


def turn(rotvec: Tensor, axis_angle: Tensor) -> Tensor:
    """Rotation vectors of R(axis_angle) @ R(rotvec)."""
    import roma

    return roma.rotmat_to_rotvec(roma.rotvec_to_rotmat(axis_angle) @ roma.rotvec_to_rotmat(rotvec))


def initialise(body: BodyModel, prior: PosePrior, obs: Tensor, conf: Tensor, cams: Cameras, up: Tensor) -> BodyParams:
    """Facing (or backing onto) the camera along ``up`` (B, 3), at the depth the keypoint spread implies."""
    import roma

    B, dev = obs.shape[0], obs.device
    p = BodyParams.neutral(B, device=dev)
    p.phenotype = adult_phenotype().to(dev).expand(B, -1).clone()
    p.pose = prior.mean.to(dev).expand(B, -1, -1).clone()
    c2w = cams.c2w
    towards = -c2w[:, :3, 2]
    # > 0: the subject's left appears on the image's right of the body's axis (facing us)
    up_img = F.normalize((c2w[:, :3, :3].transpose(1, 2) @ up[..., None])[..., 0][:, :2], dim=-1)
    across = torch.stack([-up_img[:, 1], up_img[:, 0]], -1)
    lr = torch.zeros(B, device=dev)
    for left, right in zip(_LEFT, _RIGHT, strict=True):
        lr = lr + torch.minimum(conf[:, left], conf[:, right]) * ((obs[:, left] - obs[:, right]) * across).sum(-1)
    front = torch.where((lr >= 0)[:, None], towards, -towards)
    front = F.normalize(front - (front * up).sum(-1, keepdim=True) * up, dim=-1)
    R0 = torch.stack([torch.linalg.cross(up, front), up, front], -1)  # columns: body left, up, front
    p.pose[:, 0] = roma.rotmat_to_rotvec(R0)
    kps = body.keypoints(p)  # transl 0
    # depth: neutral 3D distances over observed 2D distances of pose-stable keypoint pairs
    f = 0.5 * (cams.K[:, 0, 0] + cams.K[:, 1, 1])
    ratios, weights = [], []
    for i, j in _RIGID_PAIRS:
        d2 = (obs[:, i] - obs[:, j]).norm(dim=-1)
        d3 = (kps[:, i] - kps[:, j]).norm(dim=-1)
        ratios.append(f * d3 / d2.clamp(min=1e-3))
        weights.append(torch.minimum(conf[:, i], conf[:, j]) * (d2 > 2.0))
    ratios, weights = torch.stack(ratios, 1), torch.stack(weights, 1)
    depth = torch.where(weights.sum(1) > 0, _weighted_median(ratios, weights), torch.full((B,), 3.0, device=dev))
    w = conf / conf.sum(1, keepdim=True).clamp(min=1e-6)
    centre_2d = (obs * w[..., None]).sum(1)
    centre_3d = (kps * w[..., None]).sum(1)
    K = cams.K
    ray = torch.stack([(centre_2d[:, 0] - K[:, 0, 2]) / K[:, 0, 0], (centre_2d[:, 1] - K[:, 1, 2]) / K[:, 1, 1], torch.ones(B, device=dev)], -1)
    target = (c2w[:, :3, :3] @ (ray * depth[:, None])[..., None])[..., 0] + c2w[:, :3, 3]
    p.transl = torch.where(conf.sum(1, keepdim=True) > 0, target - centre_3d, c2w[:, :3, 3] + 3.0 * towards - kps.mean(1))
    return p


def _far(body: BodyModel, problem: _Problem, placed: BodyParams, points: slice | list[int], px: float) -> bool:
    """Whether any person's seen keypoints among ``points`` lie more than ``px`` (512-px units) from the placed body's."""
    uv, _ = project_points(body.keypoints(placed), problem.cams)
    off = (uv[:, points] - problem.obs[:, points]).norm(dim=-1) / problem.scale * (problem.conf[:, points] > 0.05)
    return bool((off > px).any())


def _with_limbs(prior: PosePrior, angles: Tensor, starts: tuple[tuple[Leg, Leg], ...], bones: tuple[str, str]) -> list[Tensor]:
    """Anatomical angles (B, J, 3) with each start's (flex, abd, child flex) set on ``bones`` (upper, lower) per side."""
    out = []
    for start in starts:
        a = angles.clone()
        for side, limb in zip("lr", start, strict=True):
            if limb is not None:
                upper, lower = BONE_NAMES.index(f"{bones[0]}_{side}"), BONE_NAMES.index(f"{bones[1]}_{side}")
                a[:, upper, 0], a[:, upper, 1], a[:, lower, 0] = (math.radians(v) for v in limb[:3])
                if len(limb) > 3:
                    a[:, upper, 2] = math.radians(limb[3])
        out.append(a)
    return out


def _person_major(stacked: BodyParams, B: int) -> BodyParams:
    k = stacked.batch_size // B
    order = torch.arange(k * B, device=stacked.pose.device).reshape(k, B).T.flatten()
    return stacked[order]


def pose_starts(body: BodyModel, prior: PosePrior, problem: _Problem, placed: BodyParams, cfg: FitConfig) -> BodyParams:
    """Starts for the pose stage, (B * k), person-major: the placed body with the phenotype of each of
    ``cfg.ages_years`` (moved along the camera rays to keep its image size) and, when a knee or ankle is
    far from where the placed body puts it, also the legs of ``LEG_STARTS`` (and of ``DYNAMIC_LEG_STARTS``, when
    further than ``cfg.dynamic_leg_px``)."""
    B, dev = placed.batch_size, placed.pose.device
    with torch.no_grad():
        kps = body.keypoints(placed)
        a = prior.to_angles(placed.pose)
        legs_k = [a]
        if _far(body, problem, placed, slice(13, 17), cfg.bent_leg_px):
            far = _far(body, problem, placed, slice(13, 17), cfg.dynamic_leg_px)
            legs_k += _with_limbs(prior, a, LEG_STARTS + (DYNAMIC_LEG_STARTS if far else ()), ("thigh", "calf"))
        # Phenotypes: the mean of each age band the requested ages fall in (adults: the adult mean).
        mean, _, _ = phenotype_mixture()
        phs = []
        for years in cfg.ages_years:
            band = next((i for i, (lo, hi) in enumerate(AGE_BANDS) if lo <= years < hi), len(AGE_BANDS) - 1)
            phs.append(adult_phenotype() if years >= 18.0 else mean[band])
        root = placed.pose[:, :1]
        stacked = BodyParams.cat([BodyParams(ph.to(dev).expand(B, -1), torch.cat([root, prior.to_pose(ang)[:, 1:]], 1), placed.transl)
                                  for ph in phs for ang in legs_k])  # (k * B), start-major  # fmt: skip
        k = stacked.batch_size // B
        k0 = body.keypoints(BodyParams(stacked.phenotype, stacked.pose, torch.zeros_like(stacked.transl)))
        s = (_stable_size(k0) / _stable_size(kps).repeat(k))[:, None]  # a smaller body comes nearer, by its size ratio
        cam_centre = problem.cams.c2w[:, :3, 3].repeat(k, 1)
        stacked.transl = cam_centre + s * (kps.mean(1).repeat(k, 1) - cam_centre) - k0.mean(1)
    return _person_major(stacked, B)


def arm_starts(body: BodyModel, prior: PosePrior, problem: _Problem, posed: BodyParams, cfg: FitConfig) -> BodyParams | None:
    """Starts (B * k, person-major) with the arms of ``ARM_STARTS`` on the posed body, when an elbow or wrist
    is still more than ``cfg.far_arm_px`` from the posed body's; None when every arm is close."""
    with torch.no_grad():
        arms = [i for s in (ELBOWS, WRISTS) for i in range(s.start, s.stop)]
        if not _far(body, problem, posed, arms, cfg.far_arm_px):
            return None
        a = prior.to_angles(posed.pose)
        root = posed.pose[:, :1]
        starts = [BodyParams(posed.phenotype, torch.cat([root, prior.to_pose(ang)[:, 1:]], 1), posed.transl)
                  for ang in [a, *_with_limbs(prior, a, ARM_STARTS, ("upperarm", "lowerarm"))]]  # fmt: skip
        return _person_major(BodyParams.cat(starts), posed.batch_size)


# Limb grids: (upper bone, lower bone, keypoints of the limb's end) and the (flex, abd, twist, lower flex) degrees searched.
_GRIDS = {
    "leg": (("thigh", "calf"), (range(-20, 121, 20), range(-10, 61, 20), (-35, 0, 35), (0, -35, -70, -105, -140))),
    "arm": (("upperarm", "lowerarm"), (range(-40, 141, 30), range(-40, 131, 34), (-60, 0, 60), (0, 35, 70, 105, 140))),
}


def limb_grid_starts(body: BodyModel, prior: PosePrior, problem: _Problem, fitted: BodyParams, cfg: FitConfig) -> BodyParams | None:
    """(B * 2) person-major: the fitted body, and the fitted body with each limb whose sure end keypoints (weight >=
    ``SURE_WEIGHT``) are still more than ``cfg.bent_leg_px`` off set to the grid pose (``_GRIDS``, about 500 per limb, by forward kinematics alone)
    that best meets its keypoints, the pose prior weighed in. None when no limb is off (the usual case)."""
    with torch.no_grad():
        uv, _ = project_points(body.keypoints(fitted), problem.cams)
        err = (uv - problem.obs).norm(dim=-1) / problem.scale * (problem.conf >= SURE_WEIGHT)  # (B, 17), 512-px units
        a = prior.to_angles(fitted.pose)
        moved = a.clone()
        grids = {kind: torch.cartesian_prod(*(torch.tensor(list(v), dtype=a.dtype) for v in axes)).to(a.device)
                 for kind, (_, axes) in _GRIDS.items()}  # fmt: skip
        for name, idx in LIMBS.items():
            side, kind = name.split("_")
            (upper, lower), _ = _GRIDS[kind]
            grid = grids[kind]
            for b in torch.nonzero(err[:, list(idx)].amax(1) > cfg.bent_leg_px).flatten().tolist():
                cand = moved[b : b + 1].repeat(len(grid), 1, 1)
                iu, il = BONE_NAMES.index(f"{upper}_{side[0]}"), BONE_NAMES.index(f"{lower}_{side[0]}")
                cand[:, iu], cand[:, il, 0] = torch.deg2rad(grid[:, :3]), torch.deg2rad(grid[:, 3])
                p = fitted[[b] * len(grid)]
                p.pose = torch.cat([p.pose[:, :1], prior.to_pose(cand)[:, 1:]], 1)
                kuv, _ = project_points(body.keypoints(p), problem.cams[[b] * len(grid)])
                e2 = ((kuv[:, list(idx)] - problem.obs[b, list(idx)]) / problem.scale).square().sum(-1)
                data = (problem.conf[b, list(idx)] * e2).sum(-1)
                score = data + cfg.keypoint_sigma_px**2 * prior.mixture_loss(p.pose) + cfg.limit_weight * prior.limit_loss(p.pose)
                moved[b] = cand[int(score.argmin())]
        if torch.equal(moved, a):
            return None
        retry = fitted.clone()
        retry.pose = torch.cat([fitted.pose[:, :1], prior.to_pose(moved)[:, 1:]], 1)
        return _person_major(BodyParams.cat([fitted, retry]), fitted.batch_size)


def _stable_size(kps: Tensor) -> Tensor:
    """(B,) mean 3D length of the pose-stable keypoint pairs: a body's size."""
    return torch.stack([(kps[:, i] - kps[:, j]).norm(dim=-1) for i, j in _RIGID_PAIRS], 1).mean(1)


def _weighted_median(values: Tensor, weights: Tensor) -> Tensor:
    order = values.argsort(1)
    v, w = values.gather(1, order), weights.gather(1, order)
    cw = w.cumsum(1)
    idx = (cw < 0.5 * cw[:, -1:]).sum(1, keepdim=True).clamp(max=values.shape[1] - 1)
    return v.gather(1, idx)[:, 0]
