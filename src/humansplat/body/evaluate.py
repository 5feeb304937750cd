"""The fitting round trip: random people in random cameras, their keypoints as a detector would give
them, and the 3D error of a fit. Shared by tests/test_fit.py and benchmarks/fit.py."""

from __future__ import annotations

import torch
from torch import Tensor

from humansplat.body.model import BONE_NAMES, BodyModel, BodyOutput, BodyParams
from humansplat.body.phenotypes import sample_phenotypes
from humansplat.body.pose_prior import sample_poses
from humansplat.body.starts import turn
from humansplat.cameras import Cameras, orbit_cameras, project_points
from humansplat.keypoints import HIPS

__all__ = ["EVAL_JOINTS", "random_scene", "simulate_keypoints", "joint_error", "keypoint_error"]

# The 16 body joints of the error (bone heads), aligned at the pelvis joint.
EVAL_JOINTS = ["pelvis", "spine_02", "neck_01", "head", "upperarm_l", "upperarm_r", "lowerarm_l", "lowerarm_r",
               "hand_l", "hand_r", "thigh_l", "thigh_r", "calf_l", "calf_r", "foot_l", "foot_r"]  # fmt: skip
STANDING_KINDS = ("standing", "walking", "arms_raised", "reaching")
# Scene kinds that are a pose kind turned about the view axis (degrees, about the pelvis): lying on a side, upside down.
TURNED_KINDS = {"lying": ("standing", 90.0), "inverted": ("arms_raised", 180.0)}


def random_scene(
    n: int, generator: torch.Generator, kinds=STANDING_KINDS, size: int = 512, years=(18.0, 80.0)
) -> tuple[BodyParams, Cameras]:
    """Adults in sampled poses, turned up to +-43 degrees, seen from 3-4 m by cameras up to 30 degrees
    off their front and 10 degrees above or below, 40 degree field of view. ``kinds``: pose kinds
    (humansplat.body.pose_prior) and ``TURNED_KINDS`` (lying, inverted)."""
    g = generator
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    p = BodyParams.neutral(n)
    p.phenotype = sample_phenotypes(n, g, years=years)
    if not set(kinds) & set(TURNED_KINDS):
        p.pose = sample_poses(n, g, kinds=kinds)
        p.pose[:, 0, 1] = (torch.rand(n, generator=g) - 0.5) * 1.5
    else:
        p.pose = _turned_poses(n, g, kinds)
    azimuth = (torch.rand(n, generator=g) - 0.5) * 60
    elevation = (torch.rand(n, generator=g) - 0.5) * 20
    radius = 3 + torch.rand(n, generator=g)
    cams = [orbit_cameras(azimuth[i : i + 1], float(elevation[i]), radius=float(radius[i]), target=(0, 0.9, 0), fov_deg=40, size=size) for i in range(n)]
    return p, Cameras.cat(cams)


def _turned_poses(n: int, g: torch.Generator, kinds: list[str]) -> Tensor:
    """(n, J, 3) poses of ``kinds`` drawn per person, turned +-43 degrees about the up axis, then those of
    ``TURNED_KINDS`` about the view axis."""
    choice = torch.randint(len(kinds), (n,), generator=g)
    pose = torch.zeros(n, len(BONE_NAMES), 3)
    roll = torch.zeros(n)
    for i, kind in enumerate(kinds):
        pick = choice == i
        base, roll[pick] = TURNED_KINDS.get(kind, (kind, 0.0))
        pose[pick] = sample_poses(int(pick.sum()), g, kinds=base)
    heading = torch.zeros(n, 3)
    heading[:, 1] = (torch.rand(n, generator=g) - 0.5) * 1.5
    view = torch.zeros(n, 3)
    view[:, 2] = torch.deg2rad(roll)
    pose[:, 0] = turn(heading, view)
    return pose


def simulate_keypoints(
    keypoints: Tensor, cameras: Cameras, noise_px: float = 3.0, dropout: float = 0.15, generator=None
) -> tuple[Tensor, Tensor]:
    """Projected 3D keypoints (B, 17, 3) with Gaussian pixel noise and random misses: (B, 17, 2), (B, 17)."""
    uv, _ = project_points(keypoints, cameras)
    uv = uv + noise_px * torch.randn(uv.shape, generator=generator)
    confidence = (torch.rand(uv.shape[:2], generator=generator) >= dropout).float()
    return uv, confidence


def joint_error(a: BodyOutput, b: BodyOutput) -> Tensor:
    """(B,) mean distance of the EVAL_JOINTS after moving both pelvis joints to the origin (metres)."""
    idx = [BONE_NAMES.index(n) for n in EVAL_JOINTS]
    ja, jb = a.joints[:, idx], b.joints[:, idx]
    return ((ja - ja[:, :1]) - (jb - jb[:, :1])).norm(dim=-1).mean(-1)


def keypoint_error(a: BodyOutput, b: BodyOutput) -> Tensor:
    """(B,) mean distance of the 17 COCO keypoints after aligning the hip midpoints (metres)."""
    ka, kb = a.keypoints, b.keypoints
    ca, cb = ka[:, HIPS].mean(1, keepdim=True), kb[:, HIPS].mean(1, keepdim=True)
    return ((ka - ca) - (kb - cb)).norm(dim=-1).mean(-1)


def round_trip(body: BodyModel, n: int = 20, seed: int = 0, kinds=STANDING_KINDS, **fit_kwargs):
    """Sample ``n`` scenes, fit them in one batch; returns (truth, cameras, observations, FitResult)."""
    from humansplat.body.fit import fit_body

    g = torch.Generator().manual_seed(seed)
    params, cams = random_scene(n, g, kinds)
    with torch.no_grad():
        truth = body(params)
    obs, conf = simulate_keypoints(truth.keypoints, cams, generator=g)
    return truth, cams, (obs, conf), fit_body(obs, conf, cams, body=body, **fit_kwargs)
