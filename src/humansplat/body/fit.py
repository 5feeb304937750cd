"""Fitting the body to 2D COCO keypoints (and optionally a person mask) by optimisation.

Unknowns: translation, global orientation, the anatomical angles of the 15 bones that move COCO
keypoints (spine, neck, head, clavicles, upper and lower arms and legs) and the six phenotypes.
Hands, feet and fingers stay at the pose prior's relaxed stand.

Energy per person, in pixels of a 512-pixel image:
  sum_k c_k GM(|proj(X_k) - x_k|), with the Geman-McClure penalty GM(e) = s^2 e^2 / (e^2 + s^2), so a
  wrong keypoint costs at most s^2; plus sigma^2 times (-2 log) of the priors, sigma being the expected
  keypoint noise: the pose prior's Gaussian mixture (fitted to the pose sampler, restricted to the
  fitted bones), a Gaussian on the body's lean away from the cameras' up axis, and a Gaussian on the
  phenotypes (adults' moments under anny's calibrated distributions); a hinge on the joint limits; and,
  with a mask, the squared distance outside it of the keypoint-region vertices. Missing keypoints
  (confidence 0) cost nothing, so with only a head or half a body the unseen parts stay at the prior.

Initialisation: upright along the cameras' up axis, facing the camera (or turning its back, when the
left keypoints appear left of the right ones), at the depth where the mean body's shoulder, hip and
head distances match the observed ones. Three Adam stages follow: placement only, from six headings at
once (the facing direction is ambiguous in 2D), keeping the best; pose with the phenotype frozen (its
rest state computed once: the cheap iterations); then everything. On CPU the fit runs on one thread
(many tiny ops: faster than several, much faster on a busy machine); see benchmarks/fit.py.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from humansplat.body.model import BONE_NAMES, BodyModel, BodyOutput, BodyParams
from humansplat.body.pose_prior import PosePrior, default_pose_prior
from humansplat.cameras import Cameras, project_points

__all__ = ["FIT_BONES", "FitConfig", "FitResult", "fit_body"]

FIT_BONES = ["spine_01", "spine_02", "spine_03", "neck_01", "head", "clavicle_l", "clavicle_r", "upperarm_l", "upperarm_r",
             "lowerarm_l", "lowerarm_r", "thigh_l", "thigh_r", "calf_l", "calf_r"]  # fmt: skip
# Keypoint pairs whose 3D distance changes little with pose: they set the initial depth.
_RIGID_PAIRS = [(5, 6), (11, 12), (5, 11), (6, 12), (1, 2), (3, 4), (0, 5), (0, 6)]
_LEFT, _RIGHT = [1, 3, 5, 11], [2, 4, 6, 12]


@dataclass
class FitConfig:
    iters: tuple[int, int, int] = (30, 70, 40)  # placement, pose, pose + phenotype
    lr: float = 0.04
    robust_px: tuple[float, float, float] = (100.0, 40.0, 25.0)  # Geman-McClure scale per stage (512-px units)
    keypoint_sigma_px: float = 5.0  # expected keypoint noise (512-px units): weighs every prior against the data
    limit_weight: float = 1e4
    upright_deg: float = 8.0  # spread of the body's lean from the cameras' up axis
    headings_deg: tuple[float, ...] = (0.0, 60.0, -60.0, 120.0, -120.0, 180.0)  # start turns about the up axis
    mask_weight: float = 1.0
    min_confidence: float = 0.2
    converged_px: float = 5.0  # 512-px units


@dataclass
class FitResult:
    """params and the full body ``output`` at the solution; ``keypoints_2d`` (B, 17, 2) their projection;
    ``reprojection_px`` (B,) mean pixel error over keypoints with confidence >= min_confidence;
    ``converged`` (B,) that error under ``converged_px`` (scaled to the image); ``loss`` (B,) final energy."""

    params: BodyParams
    output: BodyOutput
    keypoints_2d: Tensor
    reprojection_px: Tensor
    converged: Tensor
    loss: Tensor


def fit_body(
    keypoints_px: Tensor,
    confidence: Tensor,
    cameras: Cameras,
    mask: Tensor | None = None,
    iters: int | None = None,
    init: BodyParams | None = None,
    body: BodyModel | None = None,
    prior: PosePrior | None = None,
    config: FitConfig | None = None,
) -> FitResult:
    """Fit one body per image: keypoints_px (B, 17, 2) COCO-17 pixels, confidence (B, 17) in [0, 1]
    (0 = missing), cameras of batch (B,), optional person masks (B, H, W). ``iters`` rescales the
    three stages to that total. ``init`` replaces the automatic initialisation."""
    cfg = config or FitConfig()
    body = body or BodyModel.load(keypoints_px.device)
    prior = prior or default_pose_prior()
    B = keypoints_px.shape[0]
    if keypoints_px.shape != (B, 17, 2) or confidence.shape != (B, 17) or len(cameras) != B or cameras.K.dim() != 3:
        raise ValueError("fit_body: expected keypoints (B,17,2), confidence (B,17) and cameras of batch (B,)")
    stages = cfg.iters
    if iters is not None:
        total = sum(stages)
        stages = tuple(max(1, round(iters * s / total)) for s in stages)
    dev = keypoints_px.device
    conf = confidence.float()
    conf = torch.where(conf >= cfg.min_confidence, conf, torch.zeros_like(conf))
    problem = _Problem(body, prior, cfg, keypoints_px.float(), conf, cameras.to(dev, torch.float32), mask)
    with _few_threads(dev):
        if init is not None:
            start = init.to(dev).clone()
        else:
            with torch.no_grad():
                start = _initialise(body, prior, problem.obs, conf, problem.cams)
            # Several headings at once (the facing direction is ambiguous in 2D); keep the best placement.
            K = len(cfg.headings_deg)
            many = problem.repeat(K)
            hyp = start[torch.arange(B, device=dev).repeat_interleave(K)]
            turn = torch.deg2rad(torch.tensor(cfg.headings_deg, device=dev)).repeat(B)
            hyp.pose[:, 0] = _turn(hyp.pose[:, 0], many.up * turn[:, None])
            hyp, loss = many.optimise(hyp, [(stages[0], 0)])
            best = loss.reshape(B, K).argmin(1) + torch.arange(B, device=dev) * K
            start = hyp[best]
            stages = (0, *stages[1:])
        final, loss = problem.optimise(start, [(stages[0], 0), (stages[1], 1), (stages[2], 2)])
        with torch.no_grad():
            output = body(final)
            uv, _ = project_points(output.keypoints, problem.cams)
    err = (uv - problem.obs).norm(dim=-1)
    seen = conf > 0
    reproj = (err * seen).sum(-1) / seen.sum(-1).clamp(min=1)
    return FitResult(final, output, uv, reproj, reproj <= cfg.converged_px * problem.scale, loss)


class _Problem:
    """The fitting energy of a batch of observations, and its minimisation in stages."""

    def __init__(self, body: BodyModel, prior: PosePrior, cfg: FitConfig, obs: Tensor, conf: Tensor, cams: Cameras,
                 mask: Tensor | None = None, dist_out: Tensor | None = None) -> None:  # fmt: skip
        self.body, self.prior, self.cfg, self.obs, self.conf, self.cams = body, prior, cfg, obs, conf, cams
        dev = obs.device
        self.scale = max(cams.width, cams.height) / 512.0
        self.dist_out = _outside_distance(mask, self.scale) if mask is not None else dist_out
        self.ph_mean, self.ph_spread = (t.to(dev) for t in _phenotype_moments())
        self.bone_idx = torch.tensor([BONE_NAMES.index(n) for n in FIT_BONES], device=dev)
        self.up = -cams.c2w[:, :3, 1]

    def repeat(self, k: int) -> "_Problem":
        idx = torch.arange(self.obs.shape[0], device=self.obs.device).repeat_interleave(k)
        d = self.dist_out[idx] if self.dist_out is not None else None
        return _Problem(self.body, self.prior, self.cfg, self.obs[idx], self.conf[idx], self.cams[idx], dist_out=d)

    def energy(self, p: BodyParams, rest, robust: float) -> Tensor:
        cfg, prior = self.cfg, self.prior
        verts, kps = self.body.keypoint_support(p, rest)
        uv, z = project_points(kps, self.cams)
        e2 = ((uv - self.obs) / self.scale).square().sum(-1)
        total = (self.conf * robust**2 * e2 / (e2 + robust**2)).sum(-1)
        pose_term = prior.mixture_loss(p.pose, self.bone_idx)
        body_up = _rotvec_to_matrix(p.pose[:, 0])[..., 1]
        lean2 = 2 * (1 - (body_up * self.up).sum(-1)).clamp(min=0)  # ~ lean angle^2
        pose_term = pose_term + lean2 / torch.deg2rad(torch.tensor(cfg.upright_deg)) ** 2
        shape_term = ((p.phenotype - self.ph_mean) / self.ph_spread).square().sum(-1)
        total = total + cfg.keypoint_sigma_px**2 * (pose_term + shape_term) + cfg.limit_weight * prior.limit_loss(p.pose)
        total = total + 1e3 * (0.1 - z).clamp(min=0).sum(-1)  # stay in front of the camera
        if self.dist_out is not None:
            total = total + cfg.mask_weight * _mask_term(verts, self.cams, self.dist_out)
        return total

    def optimise(self, start: BodyParams, stages: list[tuple[int, int]]) -> tuple[BodyParams, Tensor]:
        """Adam over stages (iterations, level): level 0 moves the body, 1 also poses it, 2 also shapes it."""
        prior, B, dev = self.prior, start.batch_size, start.pose.device
        base_angles = prior.to_angles(start.pose).detach()
        ph_logit = torch.logit(start.phenotype.clamp(1e-3, 1 - 1e-3)).clone().requires_grad_(True)
        root = start.pose[:, 0].clone().requires_grad_(True)
        d_angles = torch.zeros(B, len(FIT_BONES), 3, device=dev, requires_grad=True)
        transl = start.transl.clone().requires_grad_(True)

        def params() -> BodyParams:
            angles = base_angles.index_add(1, self.bone_idx, d_angles)
            pose = torch.cat([root[:, None], prior.to_pose(angles)[:, 1:]], 1)
            return BodyParams(torch.sigmoid(ph_logit), pose, transl)

        free = [[root, transl], [root, transl, d_angles], [root, transl, d_angles, ph_logit]]
        for n_iter, level in stages:
            if n_iter <= 0:
                continue
            opt = torch.optim.Adam(free[level], lr=self.cfg.lr)
            rest = None
            if level < 2:  # the phenotype is fixed: compute its rest state once
                with torch.no_grad():
                    rest = self.body.rest_state(params().phenotype)
            for _ in range(n_iter):
                opt.zero_grad(set_to_none=True)
                self.energy(params(), rest, self.cfg.robust_px[level]).sum().backward()
                opt.step()
        with torch.no_grad():
            final = params().detach()
            return final, self.energy(final, None, self.cfg.robust_px[-1])


@functools.lru_cache(maxsize=1)
def _phenotype_moments() -> tuple[Tensor, Tensor]:
    """Mean and spread of adult phenotypes (anny's calibrated distributions, 18 to 80 years)."""
    from humansplat.body.phenotypes import sample_phenotypes

    ph = sample_phenotypes(4096, torch.Generator().manual_seed(0), years=(18.0, 80.0))
    return ph.mean(0), ph.std(0).clamp(min=0.05)


def _turn(rotvec: Tensor, axis_angle: Tensor) -> Tensor:
    """Rotation vectors of R(axis_angle) @ R(rotvec)."""
    import roma

    return roma.rotmat_to_rotvec(roma.rotvec_to_rotmat(axis_angle) @ roma.rotvec_to_rotmat(rotvec))


def _initialise(body: BodyModel, prior: PosePrior, obs: Tensor, conf: Tensor, cams: Cameras) -> BodyParams:
    """Facing (or backing onto) the camera, upright, at the depth the keypoint spread implies."""
    import roma

    B, dev = obs.shape[0], obs.device
    p = BodyParams.neutral(B, device=dev)
    p.phenotype = _phenotype_moments()[0].to(dev).expand(B, -1).clone()
    p.pose = prior.mean.to(dev).expand(B, -1, -1).clone()
    c2w = cams.c2w
    up, towards = -c2w[:, :3, 1], -c2w[:, :3, 2]
    lr = torch.zeros(B, device=dev)  # > 0: the subject's left appears on the image's right (facing us)
    for left, right in zip(_LEFT, _RIGHT, strict=True):
        lr = lr + torch.minimum(conf[:, left], conf[:, right]) * (obs[:, left, 0] - obs[:, right, 0])
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


def _rotvec_to_matrix(v: Tensor) -> Tensor:
    import roma

    return roma.rotvec_to_rotmat(v)


def _weighted_median(values: Tensor, weights: Tensor) -> Tensor:
    order = values.argsort(1)
    v, w = values.gather(1, order), weights.gather(1, order)
    cw = w.cumsum(1)
    idx = (cw < 0.5 * cw[:, -1:]).sum(1, keepdim=True).clamp(max=values.shape[1] - 1)
    return v.gather(1, idx)[:, 0]


def _outside_distance(mask: Tensor, scale: float, size: int = 128) -> Tensor:
    """(B, 1, h, w) chessboard distance to the mask, in 512-px units, 0 inside (a coarse grid)."""
    m = mask.float()[:, None]
    h = size
    w = max(1, round(size * m.shape[-1] / m.shape[-2]))
    m = (F.interpolate(m, size=(h, w), mode="area") > 0.5).float()
    dist = torch.zeros_like(m)
    covered = m
    step = mask.shape[-2] / h / scale
    for i in range(1, max(h, w)):
        grown = F.max_pool2d(covered, 3, stride=1, padding=1)
        dist = dist + (grown - covered) * i * step
        if bool((grown == covered).all()):
            break
        covered = grown
    return dist


def _mask_term(verts: Tensor, cams: Cameras, dist: Tensor) -> Tensor:
    uv, _ = project_points(verts, cams)
    grid = torch.stack([uv[..., 0] / cams.width, uv[..., 1] / cams.height], -1) * 2 - 1
    d = F.grid_sample(dist, grid[:, None], mode="bilinear", padding_mode="border", align_corners=False)[:, 0, 0]
    return d.square().mean(-1)


@contextlib.contextmanager
def _few_threads(device: torch.device):
    """One CPU thread for the many tiny ops of a fit: faster than several, much faster on a busy machine."""
    if torch.device(device).type != "cpu":
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)
