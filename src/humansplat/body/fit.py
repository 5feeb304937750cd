"""Fitting the body to 2D COCO keypoints (and optionally a person mask) by optimisation.

Unknowns: translation, global orientation, the anatomical angles of the 15 bones that move COCO
keypoints (spine, neck, head, clavicles, upper and lower arms and legs) and the six phenotypes.
Hands, feet and fingers stay at the pose prior's relaxed stand.

Energy per person, in pixels of a 512-pixel image:
  sum_k w_k GM(|proj(X_k) - x_k|), w_k = ((c_k - 0.2) / 0.6)^2 capped at 1 (guessed keypoints, e.g. hands
  in pockets at c ~ 0.3, count little), GM(e) = s^2 e^2 / (e^2 + s^2) (a wrong keypoint costs at most s^2);
  plus sigma^2 times (-2 log) of the priors, sigma the expected keypoint noise: the pose mixture (restricted
  to the fitted bones; it covers jumps, kicks and kneeling too); upright under gravity (world +Y, or the
  photo's own hips-to-shoulders line when that leans over ``tilted_deg``: lying, inverted bodies;
  :func:`humansplat.body.starts.body_axis`): the pelvis' lean (3 degrees), the hips-to-shoulders lean
  (5 degrees), and a hinge on the feet of straight-looking legs behind the hips (2D keypoints cannot see a
  lean in depth: without these the fit bends forward at the hips); a phenotype mixture over age bands;
  a hinge on the joint limits; with a mask, the squared distance outside it of the keypoint-region vertices.
  Missing keypoints cost nothing, so with only a head or half a body the unseen parts stay at the prior.

Initialisation (:mod:`humansplat.body.starts`): along that up direction, facing the camera (or turning its
back, when the left keypoints appear on the other side of the body's axis), at the depth where the mean
adult's shoulder, hip and head distances match the observed ones. Adam in stages, each keeping the lowest
energy of several starts: placement from six headings (the facing direction is ambiguous in 2D); then the
pose (phenotype frozen, its rest state computed once) from a child's, a pre-teen's and an adult's phenotype
(moved along the camera rays to keep their image size) and, when a knee or ankle is far from the placed
body's, also the leg starts (sitting, crouching, a knee up, kicks, a knee raised sideways, kneeling); when
an elbow or wrist is still far, a round of arm starts (raised, hands on the head, reaching); then pose and
phenotype together; and when a limb's sure keypoints are still far after that, a grid search over that limb's
pose (forward kinematics only) and a refit from it, kept when its energy is lower. On CPU the fit runs on one thread (many tiny ops); on CUDA
every stage replays a captured graph (:mod:`humansplat.body.solver`).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from humansplat.body.model import BONE_NAMES, BodyModel, BodyOutput, BodyParams
from humansplat.body.phenotypes import mixture_nll, phenotype_mixture
from humansplat.body.pose_prior import PosePrior, default_pose_prior
from humansplat.body.solver import solve_stage
from humansplat.body.starts import arm_starts, body_axis, initialise, limb_grid_starts, pose_starts, straight_legs, turn
from humansplat.cameras import Cameras, project_points
from humansplat.keypoints import ANKLES, HIPS, SHOULDERS

__all__ = ["FIT_BONES", "FitConfig", "FitResult", "fit_body"]

FIT_BONES = ["spine_01", "spine_02", "spine_03", "neck_01", "head", "clavicle_l", "clavicle_r", "upperarm_l", "upperarm_r",
             "lowerarm_l", "lowerarm_r", "thigh_l", "thigh_r", "calf_l", "calf_r"]  # fmt: skip


@dataclass
class FitConfig:
    iters: tuple[int, int, int] = (30, 70, 40)  # placement, pose, pose + phenotype
    lr: float = 0.04
    robust_px: tuple[float, float, float] = (100.0, 40.0, 25.0)  # Geman-McClure scale per stage (512-px units)
    keypoint_sigma_px: float = 5.0  # expected keypoint noise (512-px units): weighs every prior against the data
    limit_weight: float = 1e4
    upright_deg: tuple[float, float] = (3.0, 3.0)  # spread of the pelvis' lean from the world's +Y: towards the camera, sideways
    torso_deg: float = 5.0  # spread of the torso's (hips to shoulders) lean from the world's +Y
    feet_back_m: tuple[float, float] = (0.03, 0.02)  # ankles behind the hips: free up to, then spread of (metres)
    phenotype_lr: float = 0.1
    headings_deg: tuple[float, ...] = (0.0, 60.0, -60.0, 120.0, -120.0, 180.0)  # start turns about the up axis
    mask_weight: float = 1.0
    min_confidence: float = 0.2
    full_confidence: float = 0.8  # weight ((c - min) / (full - min))^2, capped at 1: guessed keypoints count little
    ages_years: tuple[float, ...] = (6.0, 11.0, 30.0)  # phenotype starts tried in the pose stage
    hypothesis_iters: int = 25  # pose-stage iterations spent on every start before keeping the best
    bent_leg_px: float = 30.0  # a knee or ankle this far off after placement: also try the leg starts
    dynamic_leg_px: float = 60.0  # this far off: the kick, sideways-knee and kneeling starts too
    far_arm_px: float = 50.0  # an elbow or wrist this far off after the leg starts: also try the arm starts
    tilted_deg: float = 35.0  # hips-to-shoulders this far from the photo's vertical: the priors' up is that line (lying, inverted)
    straight_leg_deg: float = 35.0  # legs bent more than this in the photo are not held to the feet-behind-hips prior
    converged_px: float = 5.0  # 512-px units
    cuda_graphs: bool = True  # on CUDA, replay each stage's iteration as a captured graph (humansplat.body.solver)
    compile: bool = False  # torch.compile the objective: the same fit, ~3x faster once warm, but the first call
    # compiles for a minute or more: for servers and batches that keep one process (``reconstruct --compile-fit``)


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
    three stages to that total. ``init`` replaces the automatic initialisation (and its several starts)."""
    cfg = config or FitConfig()
    body = body or BodyModel.load(keypoints_px.device)
    prior = (prior or default_pose_prior()).to(keypoints_px.device)
    B = keypoints_px.shape[0]
    if keypoints_px.shape != (B, 17, 2) or confidence.shape != (B, 17) or len(cameras) != B or cameras.K.dim() != 3:
        raise ValueError("fit_body: expected keypoints (B,17,2), confidence (B,17) and cameras of batch (B,)")
    stages = cfg.iters
    if iters is not None:
        total = sum(stages)
        stages = tuple(max(1, round(iters * s / total)) for s in stages)
    dev = keypoints_px.device
    conf = confidence.float()
    seen = conf >= cfg.min_confidence
    weight = ((conf - cfg.min_confidence) / (cfg.full_confidence - cfg.min_confidence)).clamp(0, 1).square()
    weight = torch.where(seen, weight.clamp(min=1e-3), torch.zeros_like(weight))
    problem = _Problem(body, prior, cfg, keypoints_px.float(), weight, cameras.to(dev, torch.float32), mask)
    with _few_threads(dev):
        if init is not None:
            final, loss = problem.optimise(init.to(dev).clone(), [(stages[0], 0), (stages[1], 1), (stages[2], 2)])
        else:
            with torch.no_grad():
                start = initialise(body, prior, problem.obs, weight, problem.cams, problem.up)
            # The facing direction is ambiguous in 2D: place the body from six headings, keep the best.
            heading = torch.deg2rad(torch.tensor(cfg.headings_deg, device=dev))
            hyp = start[torch.arange(B, device=dev).repeat_interleave(len(heading))]
            hyp.pose[:, 0] = turn(hyp.pose[:, 0], problem.up.repeat_interleave(len(heading), 0) * heading.repeat(B)[:, None])
            start = problem.best_of(hyp, [(stages[0], 0)])
            # Proportions, not size, tell a child from an adult; bent legs are local minima: pose from
            # several phenotypes and leg starts, keep the lowest energy.
            n_hyp = min(cfg.hypothesis_iters, stages[1])
            start = problem.best_of(pose_starts(body, prior, problem, start, cfg), [(n_hyp, 1)])
            arms = arm_starts(body, prior, problem, start, cfg)  # arms still far: a round of arm starts
            if arms is not None:
                start = problem.best_of(arms, [(n_hyp, 1)])
            final, loss = problem.optimise(start, [(stages[1] - n_hyp, 1), (stages[2], 2)])
            retry = limb_grid_starts(body, prior, problem, final, cfg)  # a limb still far: search its pose, refit
            if retry is not None:
                final = problem.best_of(retry, [(n_hyp, 1), (stages[2], 2)])
        with torch.no_grad():
            output = body(final)
            uv, _ = project_points(output.keypoints, problem.cams)
    err = (uv - problem.obs).norm(dim=-1)
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
        self.ph_mix = tuple(t.to(dev) for t in phenotype_mixture())
        self.bone_idx = torch.tensor([BONE_NAMES.index(n) for n in FIT_BONES], device=dev)
        # Gravity is the world's +Y (humansplat.cameras), whatever the cameras' own tilt, unless the photo shows
        # the torso far from upright (lying, inverted: humansplat.body.starts.body_axis).
        self.up = body_axis(obs, conf, cams, cfg.tilted_deg)
        self.straight = straight_legs(obs, conf, cfg.straight_leg_deg, 1e-3)  # (B, 2) legs held to feet-not-behind-hips
        towards = -cams.c2w[:, :3, 2]  # from the subject to the camera, made horizontal
        self.towards = F.normalize(towards - (towards * self.up).sum(-1, keepdim=True) * self.up, dim=-1)
        self.right = torch.linalg.cross(self.up, self.towards)

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
        R0 = _rotvec_to_matrix(p.pose[:, 0])
        body_up, body_front = R0[..., 1], R0[..., 2]
        # Upright under gravity: the pelvis (towards the camera and sideways), the torso over it, the feet
        # not behind the hips (2D keypoints cannot see a lean in depth; without these the fit bends forward).
        pitch = torch.atan2((body_up * self.towards).sum(-1), (body_up * self.up).sum(-1))
        roll = torch.asin((body_up * self.right).sum(-1).clamp(-1, 1))
        torso = F.normalize(kps[:, SHOULDERS].mean(1) - kps[:, HIPS].mean(1), dim=-1)  # hips to shoulders
        torso2 = 2 * (1 - (torso * self.up).sum(-1)).clamp(min=0)  # ~ its lean squared
        front = F.normalize(body_front - (body_front * self.up).sum(-1, keepdim=True) * self.up, dim=-1)
        held = self.straight.sum(-1, keepdim=True)  # the straight-looking legs' ankles (both for a stand)
        ankles = (kps[:, ANKLES] * self.straight[..., None]).sum(1) / held.clamp(min=1)
        feet_back = ((kps[:, HIPS].mean(1) - ankles) * front).sum(-1)
        lean = (pitch / math.radians(cfg.upright_deg[0])).square() + (roll / math.radians(cfg.upright_deg[1])).square()
        pose_term = pose_term + lean + torso2 / math.radians(cfg.torso_deg) ** 2
        feet = ((feet_back - cfg.feet_back_m[0]).clamp(min=0) / cfg.feet_back_m[1]).square()
        pose_term = pose_term + feet * (held[:, 0] > 0)
        shape_term = mixture_nll(p.phenotype, *self.ph_mix)
        total = total + cfg.keypoint_sigma_px**2 * (pose_term + shape_term) + cfg.limit_weight * prior.limit_loss(p.pose)
        total = total + 1e3 * (0.1 - z).clamp(min=0).sum(-1)  # stay in front of the camera
        if self.dist_out is not None:
            total = total + cfg.mask_weight * _mask_term(verts, self.cams, self.dist_out)
        return total

    def params(self, base_angles: Tensor, root: Tensor, d_angles: Tensor, ph_logit: Tensor, transl: Tensor) -> BodyParams:
        """Body parameters from the unknowns: fitted-bone angle changes, global orientation, logit phenotype."""
        angles = base_angles.index_add(1, self.bone_idx, d_angles)
        pose = torch.cat([root[:, None], self.prior.to_pose(angles)[:, 1:]], 1)
        return BodyParams(torch.sigmoid(ph_logit), pose, transl)

    def objective(self, base_angles: Tensor, root: Tensor, d_angles: Tensor, ph_logit: Tensor, transl: Tensor, rest,
                  robust: float) -> Tensor:  # fmt: skip
        """The summed energy as a function of the unknowns (what Adam minimises; compiled when asked)."""
        return self.energy(self.params(base_angles, root, d_angles, ph_logit, transl), rest, robust).sum()

    def best_of(self, starts: BodyParams, stages: list[tuple[int, int]]) -> BodyParams:
        """Optimise ``starts`` (B * k, the k starts of each person together) and keep each person's best."""
        B = self.obs.shape[0]
        k = starts.batch_size // B
        if k == 1:
            return self.optimise(starts, stages)[0]
        found, loss = self.repeat(k).optimise(starts, stages)
        return found[loss.reshape(B, k).argmin(1) + torch.arange(B, device=loss.device) * k]

    def optimise(self, start: BodyParams, stages: list[tuple[int, int]]) -> tuple[BodyParams, Tensor]:
        """Adam over stages (iterations, level): level 0 moves the body, 1 also poses it, 2 also shapes it."""
        base_angles = self.prior.to_angles(start.pose).detach()
        x = [start.pose[:, 0], start.transl, torch.zeros(start.batch_size, len(FIT_BONES), 3, device=start.pose.device),
             torch.logit(start.phenotype.clamp(1e-3, 1 - 1e-3))]  # fmt: skip
        objective = _compiled_objective() if self.cfg.compile else _Problem.objective
        level, energy = 0, None
        for n_iter, level in stages:
            energy = None
            if n_iter > 0:
                x, energy = solve_stage(self, level, self.cfg.robust_px[level], n_iter, x, base_angles, objective, self.cfg.cuda_graphs)
        with torch.no_grad():
            root, transl, d_angles, ph_logit = x
            final = self.params(base_angles, root, d_angles, ph_logit, transl)
            return final, energy if energy is not None else self.energy(final, None, self.cfg.robust_px[level])

    def tensors(self) -> list[Tensor]:
        """The observation tensors (what ``clone`` copies and a stage solver loads)."""
        return [t for t in (self.obs, self.conf, self.cams.K, self.cams.w2c, self.dist_out, self.up, self.towards, self.right,
                            self.straight) if t is not None]  # fmt: skip

    def clone(self) -> "_Problem":
        p = copy.copy(self)
        p.obs, p.conf, p.cams = self.obs.clone(), self.conf.clone(), Cameras(self.cams.K.clone(), self.cams.w2c.clone(), self.cams.width, self.cams.height)
        p.dist_out = None if self.dist_out is None else self.dist_out.clone()
        p.up, p.towards, p.right, p.straight = self.up.clone(), self.towards.clone(), self.right.clone(), self.straight.clone()
        return p


@functools.lru_cache(maxsize=1)
def _compiled_objective():
    return torch.compile(_Problem.objective)


def _rotvec_to_matrix(v: Tensor) -> Tensor:
    import roma

    return roma.rotvec_to_rotmat(v)


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
