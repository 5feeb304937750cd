"""Joint limits and a sampler of plausible poses, shared by fitting and the synthetic data engine.

Every bone gets an anatomical frame built from the zero-pose skeleton, so that limits read the same on
both sides and for any phenotype. With ``t`` the bone's direction (head to child head) the three
anatomical angles of a bone's rotation are:

- ``flex``: about ``t x Z``; positive moves the bone's far end forward (+Z). Hip and shoulder flexion,
  spine and neck bending forward, ankle dorsiflexion are positive; the knee bends with negative flex.
  Fingers and thumbs use the curl axis instead: positive closes the hand (towards the palm).
- ``abd``: positive moves the far end outwards, away from the body's midline (arm raised sideways,
  leg spread); for the spine, neck and head, towards the subject's left.
- ``twist``: about the bone itself, mirrored between the sides.

``pose = frames @ angles`` per bone (frames are orthonormal), so the prior works on the axis-angle
``BodyParams.pose`` directly. Bone 0 (global orientation) is neither limited nor sampled here.

:func:`sample_poses` draws randomised templates of six kinds of pose within the limits (``POSE_KINDS``, the
data engine's default), and of three dynamic kinds (``DYNAMIC_KINDS``: tucked jumps, kicks and raised knees,
kneeling). The density that fitting regularises with is a 16-component diagonal Gaussian mixture over the
anatomical angles, fitted by EM to the sampler's own poses of all nine kinds (:meth:`PosePrior.fit_mixture`),
like SMPLify's pose GMM. Lying and upside-down bodies are these poses turned (``humansplat.body.evaluate``).
"""

from __future__ import annotations

import copy
import functools
import math

import torch
from torch import Tensor

from humansplat.body.model import BONE_NAMES, BONE_PARENTS, BodyModel, BodyParams

__all__ = ["POSE_KINDS", "DYNAMIC_KINDS", "PosePrior", "default_pose_prior", "sample_poses", "template_poses", "ground_params"]

POSE_KINDS = ("standing", "walking", "arms_raised", "sitting", "crouching", "reaching")
DYNAMIC_KINDS = ("jumping", "kicking", "kneeling")  # in the fit's prior, not in the data engine's default

# (flex, abd, twist) limits in degrees per bone type (side suffix removed).
_LIMITS = {
    "Root": ((-180, 180), (-180, 180), (-180, 180)),
    "pelvis": ((-15, 15), (-10, 10), (-10, 10)),
    "spine": ((-20, 35), (-20, 20), (-20, 20)),
    "neck": ((-40, 45), (-30, 30), (-45, 45)),
    "head": ((-30, 30), (-25, 25), (-35, 35)),
    "clavicle": ((-15, 15), (-10, 25), (-10, 10)),
    "upperarm": ((-50, 140), (-60, 135), (-80, 80)),
    "lowerarm": ((-5, 150), (-5, 5), (-80, 80)),
    "hand": ((-70, 70), (-30, 30), (-20, 20)),
    "finger1": ((-10, 90), (-15, 15), (-5, 5)),
    "finger2": ((0, 100), (-3, 3), (-3, 3)),
    "finger3": ((0, 80), (-3, 3), (-3, 3)),
    "thumb": ((-30, 60), (-30, 30), (-30, 30)),
    "thigh": ((-30, 125), (-30, 70), (-40, 40)),
    "calf": ((-150, 5), (-3, 3), (-20, 20)),
    "foot": ((-45, 25), (-20, 20), (-20, 20)),
    "ball": ((-30, 40), (-5, 5), (-5, 5)),
}
_CHILD = {"Root": "pelvis", "pelvis": "spine_01", "spine_03": "neck_01", "hand_l": "middle_01_l", "hand_r": "middle_01_r"}
_FINGERS = ("index", "middle", "ring", "pinky")


def bone_type(name: str) -> str:
    stem = name.split("_")[0]
    if stem in _FINGERS:
        return "finger" + name.split("_")[1][-1]
    return {"spine": "spine", "neck": "neck"}.get(stem, stem)


def bone_side(name: str) -> float:
    return {"l": 1.0, "r": -1.0}.get(name.rsplit("_", 1)[-1], 0.0)


class PosePrior:
    """Anatomical frames and joint limits of one skeleton; with :meth:`fit_mixture`, a pose density."""

    def __init__(self, joints: Tensor) -> None:
        """joints: (J, 3) zero-pose bone heads (world frame)."""
        joints = joints.detach().float().cpu()
        J = len(BONE_NAMES)
        idx = {n: i for i, n in enumerate(BONE_NAMES)}
        parents = BONE_PARENTS
        direction = torch.zeros(J, 3)
        for j, name in enumerate(BONE_NAMES):
            child = _CHILD.get(name) or next((c for c in BONE_NAMES if parents[idx[c]] == j), None)
            direction[j] = joints[idx[child]] - joints[j] if child else torch.tensor([0.0, 1.0, 0.0])
        for j, name in enumerate(BONE_NAMES):  # end bones continue their parent's direction
            if not any(p == j for p in parents) and name not in _CHILD:
                direction[j] = direction[parents[j]] if name != "head" else torch.tensor([0.0, 1.0, 0.0])
        t = torch.nn.functional.normalize(direction, dim=-1)
        Z = torch.tensor([0.0, 0.0, 1.0]).expand_as(t)
        f = torch.linalg.cross(t, Z)
        f = torch.where(f.norm(dim=-1, keepdim=True) > 0.3, f, torch.tensor([-1.0, 0.0, 0.0]))
        for s in "lr":  # the elbow bends in the plane of the (already bent) zero-pose arm
            upper, lower = idx[f"upperarm_{s}"], idx[f"lowerarm_{s}"]
            f[lower] = torch.linalg.cross(t[upper], t[lower])
        for side, s in (("l", 1.0), ("r", -1.0)):  # finger curl axes: from the knuckle line and palm normal
            hand = joints[idx[f"hand_{side}"]]
            d = joints[idx[f"middle_01_{side}"]] - hand
            k = joints[idx[f"index_01_{side}"]] - joints[idx[f"pinky_01_{side}"]]
            palm = s * torch.linalg.cross(d, k)
            for j, name in enumerate(BONE_NAMES):
                if name.endswith(f"_{side}") and bone_type(name).startswith(("finger", "thumb")):
                    f[j] = torch.linalg.cross(t[j], palm)  # rotating about t x n moves the tip along n
        f = torch.nn.functional.normalize(f - (f * t).sum(-1, keepdim=True) * t, dim=-1)
        side = torch.tensor([bone_side(n) or -1.0 for n in BONE_NAMES])[:, None]
        twist_sign = torch.tensor([bone_side(n) or 1.0 for n in BONE_NAMES])[:, None]
        abd = -side * torch.linalg.cross(t, f)
        self.frames = torch.stack([f, abd, twist_sign * t], -1)  # (J, 3, 3), columns flex/abd/twist
        types = [bone_type(n) for n in BONE_NAMES]
        lim = torch.tensor([_LIMITS[ty] for ty in types], dtype=torch.float32)
        self.lower, self.upper = torch.deg2rad(lim[..., 0]), torch.deg2rad(lim[..., 1])
        self.mean = self.to_pose(standing_mean()[None])[0]

    def to(self, device: str | torch.device) -> "PosePrior":
        """This prior with its tensors on ``device``; the copy is kept, so later calls return the same object."""
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if self.frames.device == device:
            return self
        moved = self.__dict__.setdefault("_moved", {})
        if device not in moved:
            p = copy.copy(self)
            p.__dict__.update({k: v.to(device) for k, v in vars(self).items() if isinstance(v, Tensor)}, _moved={})
            moved[device] = p
        return moved[device]

    def to_angles(self, pose: Tensor) -> Tensor:
        """(…, J, 3) axis-angle -> (…, J, 3) anatomical (flex, abd, twist) in radians."""
        return torch.einsum("jab,...ja->...jb", self.frames.to(pose), pose)

    def to_pose(self, angles: Tensor) -> Tensor:
        return torch.einsum("jab,...jb->...ja", self.frames.to(angles), angles)

    def limit_loss(self, pose: Tensor) -> Tensor:
        """(B,) squared excess over the joint limits (radians²), zero inside them."""
        a = self.to_angles(pose)[..., 1:, :]
        lo, hi = self.lower[1:].to(a), self.upper[1:].to(a)
        return ((a - hi).clamp(min=0) ** 2 + (lo - a).clamp(min=0) ** 2).flatten(-2).sum(-1)

    def fit_mixture(self, components: int = 16, per_kind: int = 384, min_spread_deg: float = 5.0, seed: int = 0,
                    kinds: tuple[str, ...] = POSE_KINDS + DYNAMIC_KINDS) -> "PosePrior":  # fmt: skip
        """Fit a diagonal Gaussian mixture over the anatomical angles to this sampler's own poses of ``kinds`` (EM,
        with a floor on the spread): the density fitting regularises with, like SMPLify's pose GMM."""
        g = torch.Generator().manual_seed(seed)
        x = self.to_angles(sample_poses(per_kind * len(kinds), g, kinds=kinds, prior=self))[:, 1:].flatten(1)  # (N, D)
        x2 = x**2
        floor = math.radians(min_spread_deg) ** 2
        mu = x[torch.randperm(x.shape[0], generator=g)[:components]].clone()
        var = x.var(0).expand(components, -1).clone()
        logw = torch.full((components,), -math.log(components), dtype=x.dtype)
        for _ in range(30):
            iv = 1 / var  # (K, D); the E step as matrix products
            ll = -0.5 * (x2 @ iv.T - 2 * x @ (mu * iv).T + (mu**2 * iv + var.log()).sum(-1)) + logw  # (N, K)
            r = torch.softmax(ll, dim=1)
            nk = r.sum(0) + 1e-9
            mu = (r.T @ x) / nk[:, None]
            var = ((r.T @ x2) / nk[:, None] - mu**2).clamp(min=floor)
            logw = (nk / nk.sum()).log()
        J = len(BONE_NAMES)
        pad = torch.zeros(components, 1, 3, dtype=x.dtype)
        self.mix_mean = torch.cat([pad, mu.reshape(components, J - 1, 3)], 1)  # (K, J, 3), root unused
        self.mix_std = torch.cat([pad + 1, var.sqrt().reshape(components, J - 1, 3)], 1)
        self.mix_logw = logw
        return self

    def mixture_loss(self, pose: Tensor, bones: Tensor | None = None) -> Tensor:
        """(B,) -2 log of the pose mixture density over ``bones`` (default: all but the root), up to a
        constant; the mixture's marginal over those bones."""
        idx = torch.arange(1, len(BONE_NAMES), device=pose.device) if bones is None else bones
        a = self.to_angles(pose)[:, idx]  # (B, n, 3)
        mu, sd = self.mix_mean.to(a)[:, idx], self.mix_std.to(a)[:, idx]  # (K, n, 3)
        e = (((a[:, None] - mu) / sd) ** 2 + 2 * sd.log()).flatten(2).sum(-1)  # (B, K)
        return -2 * torch.logsumexp(-0.5 * e + self.mix_logw.to(a), dim=1)

    def clamp(self, pose: Tensor) -> Tensor:
        a = self.to_angles(pose)
        a = torch.maximum(torch.minimum(a, self.upper.to(a)), self.lower.to(a))
        out = self.to_pose(a)
        return torch.cat([pose[..., :1, :], out[..., 1:, :]], -2)


def _set(a: Tensor, name: str, flex=0.0, abd=0.0, twist=0.0) -> None:
    """Set anatomical angles (degrees; scalars or (n,) tensors) of a bone in an (n, J, 3) tensor."""
    j = BONE_NAMES.index(name)
    for k, v in enumerate((flex, abd, twist)):
        a[:, j, k] = torch.deg2rad(torch.as_tensor(v, dtype=a.dtype))


def standing_mean() -> Tensor:
    """(J, 3) anatomical angles (radians) of a relaxed stand: arms down by the sides, elbows soft."""
    a = torch.zeros(1, len(BONE_NAMES), 3)
    for s in "lr":
        _set(a, f"upperarm_{s}", abd=-35.0)
        _set(a, f"lowerarm_{s}", flex=10.0)
        for finger in _FINGERS:
            for k in "123":
                _set(a, f"{finger}_0{k}_{s}", flex=10.0)
    return a[0]


@functools.lru_cache(maxsize=1)
def default_pose_prior() -> PosePrior:
    body = BodyModel.load()
    with torch.no_grad():
        return PosePrior(body(BodyParams.neutral()).joints[0]).fit_mixture()


def sample_poses(n: int, generator: torch.Generator | None = None, kinds=None, prior: PosePrior | None = None) -> Tensor:
    """(n, J, 3) plausible poses (axis-angle, global orientation zero: facing +Z).

    ``kinds``: None (all of ``POSE_KINDS`` equally often), one kind, or a list to draw from. Each kind is a
    randomised template plus small noise on every joint, clamped to the joint limits. Sitting and
    crouching bodies float: use :func:`ground_params` to put their lowest point on the floor.
    """
    prior = prior or default_pose_prior()
    g = generator
    kinds = POSE_KINDS if kinds is None else ([kinds] if isinstance(kinds, str) else list(kinds))
    unknown = set(kinds) - set(POSE_KINDS + DYNAMIC_KINDS)
    if unknown:
        raise ValueError(f"unknown pose kinds {sorted(unknown)}; choose from {POSE_KINDS + DYNAMIC_KINDS}")
    choice = torch.randint(len(kinds), (n,), generator=g)

    def u(lo: float, hi: float) -> Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=g)

    a = standing_mean().expand(n, -1, -1).clone()
    a += torch.deg2rad(torch.tensor(3.0)) * torch.randn(a.shape, generator=g)
    curl = u(0, 45)
    for s in "lr":
        for finger in _FINGERS:
            for k in "123":
                _set(a, f"{finger}_0{k}_{s}", flex=curl + u(-5, 5))
        _set(a, f"thumb_02_{s}", flex=curl / 2)
    templates = {name: a.clone() for name in set(kinds)}
    # The six kinds always draw, in this order, and the dynamic ones only when asked: seeded poses stay as they were.
    for name in POSE_KINDS + (DYNAMIC_KINDS if set(kinds) & set(DYNAMIC_KINDS) else ()):
        _TEMPLATES[name](templates.get(name, a.clone()), u)
    out = torch.stack([templates[k] for k in kinds], 0)[choice, torch.arange(n)]
    out[:, 0] = 0.0
    return prior.clamp(prior.to_pose(out))


def template_poses(kind: str, phase: Tensor | None = None, prior: PosePrior | None = None) -> Tensor:
    """(n, J, 3) the noise-free middle of a pose kind's template (what :func:`sample_poses` randomises):
    every range at its midpoint, both arms raised, the right arm reaching. ``phase`` (n,) radians: the
    gait phase of walking poses (default one pose at phase 0); ignored by the other kinds."""
    if kind not in POSE_KINDS + DYNAMIC_KINDS:
        raise ValueError(f"unknown pose kind {kind!r}; choose from {POSE_KINDS + DYNAMIC_KINDS}")
    prior = prior or default_pose_prior()
    phase = torch.zeros(1) if phase is None else torch.as_tensor(phase, dtype=torch.float32).reshape(-1)
    n = phase.numel() if kind == "walking" else 1

    def u(lo: float, hi: float) -> Tensor:
        return torch.full((n,), (lo + hi) / 2)

    a = standing_mean().expand(n, -1, -1).clone()
    for s in "lr":
        for finger in _FINGERS:
            for k in "123":
                _set(a, f"{finger}_0{k}_{s}", flex=22.5)
        _set(a, f"thumb_02_{s}", flex=11.25)
    if kind == "walking":
        _walking(a, u, phase)
    else:
        _TEMPLATES[kind](a, u)
    return prior.clamp(prior.to_pose(a))


def _standing(a: Tensor, u) -> None:
    for s in "lr":
        _set(a, f"upperarm_{s}", flex=u(-10, 15), abd=u(-40, 0), twist=u(-20, 20))
        _set(a, f"lowerarm_{s}", flex=u(0, 40), twist=u(-30, 30))
        _set(a, f"thigh_{s}", flex=u(-5, 8), abd=u(-3, 8))
        _set(a, f"calf_{s}", flex=u(-10, 0))
    _set(a, "neck_01", flex=u(-10, 10), twist=u(-20, 20))
    _set(a, "head", flex=u(-10, 10), abd=u(-8, 8))


def _walking(a: Tensor, u, phase: Tensor | None = None) -> None:
    phase = 2 * math.pi * u(0, 1) if phase is None else phase
    swing, step = u(15, 30), torch.sin(phase)
    for s, sign in (("l", 1.0), ("r", -1.0)):
        _set(a, f"thigh_{s}", flex=sign * swing * step, abd=u(-2, 4))
        _set(a, f"calf_{s}", flex=-(5 + 45 * torch.sin(phase + sign * 1.2).clamp(min=0)))
        _set(a, f"foot_{s}", flex=u(-10, 10))
        _set(a, f"upperarm_{s}", flex=-sign * swing * step * 0.8, abd=u(-38, -25))
        _set(a, f"lowerarm_{s}", flex=u(10, 45))
    _set(a, "spine_02", twist=u(-6, 6), flex=u(0, 6))


def _arms_raised(a: Tensor, u) -> None:
    both = u(0, 1) < 0.6
    left = u(0, 1) < 0.5
    for s in "lr":
        up = both | (left if s == "l" else ~left)
        raised_abd, raised_flex = u(80, 130), u(-10, 40)
        _set(a, f"upperarm_{s}", flex=torch.where(up, raised_flex, u(-5, 10)), abd=torch.where(up, raised_abd, u(-38, -20)), twist=u(-30, 30))
        _set(a, f"lowerarm_{s}", flex=torch.where(up, u(0, 60), u(0, 30)))
    _set(a, "head", flex=u(-20, 5))


def _sitting(a: Tensor, u) -> None:
    for s in "lr":
        _set(a, f"thigh_{s}", flex=u(75, 100), abd=u(0, 15), twist=u(-10, 10))
        _set(a, f"calf_{s}", flex=-u(70, 105))
        _set(a, f"foot_{s}", flex=u(-10, 15))
        _set(a, f"upperarm_{s}", flex=u(10, 45), abd=u(-38, -15))
        _set(a, f"lowerarm_{s}", flex=u(30, 80))
    _set(a, "spine_01", flex=u(-5, 15))
    _set(a, "spine_02", flex=u(-5, 10))


def _crouching(a: Tensor, u) -> None:
    for s in "lr":
        _set(a, f"thigh_{s}", flex=u(100, 125), abd=u(5, 25))
        _set(a, f"calf_{s}", flex=-u(115, 145))
        _set(a, f"foot_{s}", flex=u(10, 25))
        _set(a, f"upperarm_{s}", flex=u(20, 70), abd=u(-30, 0))
        _set(a, f"lowerarm_{s}", flex=u(20, 90))
    _set(a, "spine_01", flex=u(10, 30))
    _set(a, "spine_02", flex=u(5, 20))
    _set(a, "neck_01", flex=u(-30, -10))


def _reaching(a: Tensor, u) -> None:
    left = u(0, 1) < 0.5
    for s in "lr":
        reach = left if s == "l" else ~left
        _set(a, f"upperarm_{s}", flex=torch.where(reach, u(50, 120), u(-5, 15)), abd=torch.where(reach, u(-20, 45), u(-38, -20)))
        _set(a, f"lowerarm_{s}", flex=torch.where(reach, u(0, 25), u(5, 35)))
        _set(a, f"clavicle_{s}", abd=torch.where(reach, u(0, 15), u(0, 1)))
    _set(a, "spine_02", flex=u(0, 20), twist=torch.where(left, u(0, 15), u(-15, 0)))
    _set(a, "spine_03", flex=u(0, 10))


def _jumping(a: Tensor, u) -> None:
    """Mid-air: legs tucked (both knees up, shins back or under), arms up or out."""
    for s in "lr":
        _set(a, f"thigh_{s}", flex=u(60, 125), abd=u(0, 30))
        _set(a, f"calf_{s}", flex=-u(80, 145))
        _set(a, f"upperarm_{s}", flex=u(-20, 60), abd=u(20, 130), twist=u(-30, 30))
        _set(a, f"lowerarm_{s}", flex=u(10, 110))
    _set(a, "spine_01", flex=u(-10, 25))


def _kicking(a: Tensor, u) -> None:
    """One leg kicking or its knee raised (forwards or sideways), the other standing; arms out for balance."""
    left = u(0, 1) < 0.5
    for s in "lr":
        kick = left if s == "l" else ~left
        _set(a, f"thigh_{s}", flex=torch.where(kick, u(40, 115), u(-10, 10)), abd=torch.where(kick, u(0, 60), u(-3, 10)))
        _set(a, f"calf_{s}", flex=torch.where(kick, -u(0, 130), -u(0, 20)))
        _set(a, f"upperarm_{s}", flex=u(-20, 60), abd=u(10, 110))
        _set(a, f"lowerarm_{s}", flex=u(10, 120))
    _set(a, "spine_01", flex=u(-15, 20), abd=u(-15, 15))


def _kneeling(a: Tensor, u) -> None:
    """On both knees, or on one with the other foot forward (thigh up, shin down)."""
    one = u(0, 1) < 0.5
    left = u(0, 1) < 0.5
    for s in "lr":
        up = one & (left if s == "l" else ~left)
        _set(a, f"thigh_{s}", flex=torch.where(up, u(70, 100), u(-15, 25)), abd=u(0, 15))
        _set(a, f"calf_{s}", flex=-u(80, 120))
        _set(a, f"foot_{s}", flex=u(-30, 10))
        _set(a, f"upperarm_{s}", flex=u(-10, 50), abd=u(-38, 0))
        _set(a, f"lowerarm_{s}", flex=u(10, 70))


_TEMPLATES = {"standing": _standing, "walking": _walking, "arms_raised": _arms_raised, "sitting": _sitting, "crouching": _crouching,
              "reaching": _reaching, "jumping": _jumping, "kicking": _kicking, "kneeling": _kneeling}  # fmt: skip


def ground_params(body: BodyModel, params: BodyParams) -> BodyParams:
    """The same bodies moved vertically so that their lowest vertex touches y = 0."""
    with torch.no_grad():
        low = body(params).vertices[..., 1].amin(-1)
    out = params.clone()
    out.transl[:, 1] = out.transl[:, 1] - low
    return out
