"""The parametric body: anny (pinned to 0.6.2) behind a small, batched, differentiable interface.

Rig: anny's 53-bone ``game_engine`` rig (Unreal-style names: Root, pelvis, spine_01..03, neck_01, head,
clavicle/upperarm/lowerarm/hand and three bones per finger on each side, thigh/calf/foot/ball). It has
the fingers but no face, toe or twist bones, which is what a reconstructor can observe and what an
animation retarget expects. Mesh: anny's default topology (13,718 vertices, 27,420 triangles, eyes and
tongue included). Phenotype: anny's six default phenotypes in [0, 1], order ``PHENOTYPE_NAMES``.

Frame (see :mod:`humansplat.cameras`): metres, +Y up, the body faces +Z, the subject's left at +X.
anny's own frame (Z up, facing -Y) is rotated into it. Placement: with zero pose and zero ``transl``
every body, whatever its phenotype, stands with its lowest sole vertex on y = 0 and its pelvis joint
on the Y axis (x = z = 0). ``transl`` then moves it.

Pose: ``pose[:, j]`` is bone j's rotation relative to its parent as an axis-angle vector written in
world axes of the zero pose (anny's ``local-ref`` parameterisation, turned into our frame). Bone 0
(``Root``, weightless in anny) carries the global orientation instead, applied about the pelvis joint
of the zero pose, so turning the body does not move its hips.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from humansplat.keypoints import COCO_KEYPOINTS

__all__ = ["BONE_NAMES", "BONE_PARENTS", "PHENOTYPE_NAMES", "COCO_KEYPOINTS", "NEUTRAL_PHENOTYPE", "BodyParams", "BodyOutput", "BodyModel"]

BONE_NAMES: list[str] = [
    "Root", "pelvis", "spine_01", "spine_02", "spine_03",
    "clavicle_l", "upperarm_l", "lowerarm_l", "hand_l",
    "index_01_l", "index_02_l", "index_03_l", "middle_01_l", "middle_02_l", "middle_03_l",
    "pinky_01_l", "pinky_02_l", "pinky_03_l", "ring_01_l", "ring_02_l", "ring_03_l",
    "thumb_01_l", "thumb_02_l", "thumb_03_l",
    "clavicle_r", "upperarm_r", "lowerarm_r", "hand_r",
    "index_01_r", "index_02_r", "index_03_r", "middle_01_r", "middle_02_r", "middle_03_r",
    "pinky_01_r", "pinky_02_r", "pinky_03_r", "ring_01_r", "ring_02_r", "ring_03_r",
    "thumb_01_r", "thumb_02_r", "thumb_03_r",
    "neck_01", "head", "thigh_l", "calf_l", "foot_l", "ball_l", "thigh_r", "calf_r", "foot_r", "ball_r",
]  # fmt: skip
# Each bone's parent (index into BONE_NAMES; the root's is -1), as in anny's game_engine rig.
BONE_PARENTS: list[int] = [-1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 8, 12, 13, 8, 15, 16, 8, 18, 19, 8, 21, 22, 4, 24, 25, 26, 27, 28,
                           29, 27, 31, 32, 27, 34, 35, 27, 37, 38, 27, 40, 41, 4, 43, 1, 45, 46, 47, 1, 49, 50, 51]  # fmt: skip
PHENOTYPE_NAMES: list[str] = ["gender", "age", "muscle", "weight", "height", "proportions"]
# An adult of about 40 (anny maps age 0.77 to 18 years, 0.83 to 64), 1.72 m tall; all else mid-range.
NEUTRAL_PHENOTYPE: dict[str, float] = {"gender": 0.5, "age": 0.8, "muscle": 0.5, "weight": 0.5, "height": 0.4, "proportions": 0.5}
# anny (x, y, z) -> ours (x, z, -y): Z-up/facing -Y into Y-up/facing +Z; a proper rotation.
ANNY_TO_WORLD = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


@dataclass
class BodyParams:
    """phenotype (B, P) in [0, 1]; pose (B, J, 3) axis-angle per bone; transl (B, 3) metres."""

    phenotype: Tensor
    pose: Tensor
    transl: Tensor

    @staticmethod
    def neutral(batch: int = 1, device=None, dtype: torch.dtype = torch.float32) -> "BodyParams":
        ph = torch.tensor([NEUTRAL_PHENOTYPE[n] for n in PHENOTYPE_NAMES], device=device, dtype=dtype)
        return BodyParams(
            ph.expand(batch, -1).clone(),
            torch.zeros(batch, len(BONE_NAMES), 3, device=device, dtype=dtype),
            torch.zeros(batch, 3, device=device, dtype=dtype),
        )

    @property
    def batch_size(self) -> int:
        return self.pose.shape[0]

    def _map(self, fn) -> "BodyParams":
        return BodyParams(*(fn(getattr(self, f.name)) for f in fields(self)))

    def to(self, device=None, dtype=None) -> "BodyParams":
        return self._map(lambda t: t.to(device, dtype))

    def detach(self) -> "BodyParams":
        return self._map(lambda t: t.detach())

    def clone(self) -> "BodyParams":
        return self._map(lambda t: t.clone())

    def __getitem__(self, index) -> "BodyParams":
        if isinstance(index, int):
            index = slice(index, index + 1)
        return self._map(lambda t: t[index])

    @staticmethod
    def cat(items: list["BodyParams"]) -> "BodyParams":
        return BodyParams(*(torch.cat([getattr(p, f.name) for p in items]) for f in fields(BodyParams)))

    def to_dict(self) -> dict:
        """JSON-friendly record with named phenotypes and bones."""
        return {
            "phenotype_names": PHENOTYPE_NAMES,
            "bone_names": BONE_NAMES,
            "pose_convention": "axis-angle per bone, local, world axes of the zero pose; bone 0 = global orientation about the pelvis",
            "phenotype": self.phenotype.detach().cpu().double().tolist(),
            "pose": self.pose.detach().cpu().double().tolist(),
            "transl": self.transl.detach().cpu().double().tolist(),
        }

    @staticmethod
    def from_dict(d: dict) -> "BodyParams":
        if d.get("bone_names", BONE_NAMES) != BONE_NAMES or d.get("phenotype_names", PHENOTYPE_NAMES) != PHENOTYPE_NAMES:
            raise ValueError("body parameters were saved for another rig or phenotype set")
        return BodyParams(*(torch.tensor(d[k], dtype=torch.float32) for k in ("phenotype", "pose", "transl")))


@dataclass
class BodyOutput:
    """vertices (B, Nv, 3); joints (B, J, 3) bone heads; keypoints (B, 17, 3) COCO-17;
    bone_transforms (B, J, 4, 4): maps the zero-pose body (same phenotype, zero transl) to this one,
    vertex-wise blended by ``BodyModel.skinning_weights`` (what reposing needs)."""

    vertices: Tensor
    joints: Tensor
    keypoints: Tensor
    bone_transforms: Tensor


@functools.lru_cache(maxsize=4)
def _read_cache(path: str | None):
    from humansplat.body import cache

    return cache.load(path)


class BodyModel(torch.nn.Module):
    """Posed, phenotyped Anny bodies in the world frame of :mod:`humansplat.cameras`."""

    bone_names: list[str] = BONE_NAMES
    bone_parents: list[int] = BONE_PARENTS
    phenotype_names: list[str] = PHENOTYPE_NAMES
    keypoint_names: tuple[str, ...] = COCO_KEYPOINTS

    def __init__(self, tensors: dict[str, Tensor], meta: dict[str, str]) -> None:
        super().__init__()
        import warnings

        from anny import Anny

        from humansplat.body.cache import model_data

        data = model_data(tensors, meta)
        if list(data.metadata.bone_labels) != BONE_NAMES or list(data.metadata.bone_parents) != BONE_PARENTS:
            raise ValueError("body cache: unexpected skeleton (rebuild the cache)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # anny warns about warp when it is absent; we skin in torch
            make = functools.partial(Anny.from_model_data, skinning_method="lbs", pose_parameterization="local-ref",
                                     bone_orientation="blender", root_identity_orientation=True)  # fmt: skip
            self.anny = make(data)
            # The vertices that keypoints and placement need: the fast path for fitting.
            kp_idx = tensors["hs.keypoint_indices"].long()
            sole = tensors["hs.sole_indices"].long()
            subset, inverse = torch.unique(torch.cat([kp_idx.flatten(), sole]), return_inverse=True)
            self.anny_keypoints = make(_subset(data, subset))
        n = kp_idx.numel()
        self.register_buffer("faces", data.faces.long(), persistent=False)
        self.register_buffer("vertex_labels", tensors["hs.vertex_labels"].long(), persistent=False)
        self.register_buffer("scalp_mask", tensors["hs.scalp_mask"].bool(), persistent=False)
        self.register_buffer("sole_indices", sole, persistent=False)
        self.register_buffer("keypoint_indices", kp_idx, persistent=False)
        self.register_buffer("keypoint_weights", tensors["hs.keypoint_weights"].float(), persistent=False)
        self.register_buffer("_kp_local", inverse[:n].reshape(kp_idx.shape), persistent=False)
        self.register_buffer("_sole_local", inverse[n:], persistent=False)
        self.register_buffer("_C", ANNY_TO_WORLD.clone(), persistent=False)
        self.stage_solvers: OrderedDict = OrderedDict()  # the fit's solvers by problem shape (humansplat.body.solver)

    @classmethod
    def load(cls, device: str | torch.device = "cpu", path: str | None = None) -> "BodyModel":
        """The body model from the cache file (built on first use; ``HUMANSPLAT_BODY_CACHE`` overrides)."""
        return cls(*_read_cache(str(path) if path else None)).to(device)

    @property
    def device(self) -> torch.device:
        return self.faces.device

    @property
    def num_vertices(self) -> int:
        return self.vertex_labels.shape[0]

    @property
    def skinning_weights(self) -> Tensor:
        """(Nv, J) dense linear-blend-skinning weights, rows summing to 1."""
        return self.anny.dense_vertex_bone_weights

    def forward(self, params: BodyParams) -> BodyOutput:
        return self._output(params, self.rest_state(params.phenotype, self.anny))

    def posed_and_rest(self, params: BodyParams) -> tuple[BodyOutput, BodyOutput]:
        """``self(params)`` and the same bodies in the zero pose (same phenotype and transl), in one
        evaluation of the rest model and one of the skinning (a batch of 2B)."""
        B = params.batch_size
        rest = {k: torch.cat([v, v]) for k, v in self.rest_state(params.phenotype, self.anny).items()}
        out = self._output(BodyParams.cat([params, BodyParams(params.phenotype, torch.zeros_like(params.pose), params.transl)]), rest)
        posed, zero = (BodyOutput(*(getattr(out, f.name)[s] for f in fields(BodyOutput))) for s in (slice(None, B), slice(B, None)))
        return posed, zero

    def _output(self, params: BodyParams, rest: dict[str, Tensor]) -> BodyOutput:
        v, joints, transforms = self._pose(self.anny, rest, params, self.sole_indices, with_transforms=True)
        kps = torch.einsum("ks,bksd->bkd", self.keypoint_weights, v[:, self.keypoint_indices])
        return BodyOutput(v, joints, kps, transforms)

    def keypoints(self, params: BodyParams, rest: dict[str, Tensor] | None = None) -> Tensor:
        """COCO-17 keypoints (B, 17, 3) without skinning the whole mesh (the fitting path); equal to
        ``self(params).keypoints``. ``rest``: ``self.rest_state(params.phenotype)``, when the caller
        keeps the phenotype fixed over several calls."""
        return self.keypoint_support(params, rest)[1]

    def keypoint_support(self, params: BodyParams, rest: dict[str, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """The posed vertices the keypoints and the floor placement depend on (B, S, 3), and the keypoints."""
        if rest is None:
            rest = self.rest_state(params.phenotype)
        v, _, _ = self._pose(self.anny_keypoints, rest, params, self._sole_local)
        return v, torch.einsum("ks,bksd->bkd", self.keypoint_weights, v[:, self._kp_local])

    def rest_state(self, phenotype: Tensor, net=None) -> dict[str, Tensor]:
        """anny's rest model (rest vertices, bone heads and poses, anny's frame) for phenotypes (B, P);
        by default for the keypoint vertices only."""
        net = self.anny_keypoints if net is None else net
        if phenotype.shape[-1] != len(PHENOTYPE_NAMES):
            raise ValueError(f"BodyParams: expected phenotype (B,{len(PHENOTYPE_NAMES)}), got {tuple(phenotype.shape)}")
        return net.get_rest_model(_phenotype_coefficients(net, phenotype) @ net.phenotype_blendshape_projection)

    def _pose(self, net, rest: dict[str, Tensor], params: BodyParams, sole: Tensor, with_transforms: bool = False):
        import roma

        C = self._C.to(params.pose.dtype)
        B, J = params.pose.shape[:2]
        if J != len(BONE_NAMES):
            raise ValueError(f"BodyParams: expected pose (B,{len(BONE_NAMES)},3), got {tuple(params.pose.shape)}")
        R = roma.rotvec_to_rotmat(params.pose)  # (B, J, 3, 3) in our frame
        delta = torch.eye(4, dtype=R.dtype, device=R.device).repeat(B, J, 1, 1)
        delta[:, 1:, :3, :3] = C.T @ R[:, 1:] @ C  # the same rotations written in anny's frame
        T, bone_poses = net.get_bone_transforms(delta, rest["rest_bone_poses"])
        posed = net.get_skinned_vertices(rest["rest_vertices"].expand(B, -1, -1), T)
        h0 = rest["rest_bone_heads"][:, :1]  # identity root: the root head lands on anny's origin
        zero_sole = (rest["rest_vertices"][:, sole] - h0) @ C.T
        pelvis = (rest["rest_bone_heads"][:, 1] - h0[:, 0]) @ C.T
        offset = torch.stack([-pelvis[:, 0], -zero_sole[..., 1].amin(1), -pelvis[:, 2]], -1).expand(B, 3)
        centre = (pelvis + offset).expand(B, 3)  # the pelvis joint of the zero pose: (0, y, 0)
        R0, t = R[:, 0], params.transl

        def place(x: Tensor) -> Tensor:  # (B, N, 3) anny-posed -> world
            return (x @ C.T + (offset - centre)[:, None]) @ R0.transpose(-1, -2) + (centre + t)[:, None]

        vertices = place(posed)
        joints = place(bone_poses[..., :3, 3])
        if not with_transforms:
            return vertices, joints, None
        # Skinning transforms from the zero-pose body: x -> R0 C A (C^T (x - o) + h0) + C b + ...
        A, b = T[..., :3, :3], T[..., :3, 3]
        lin = R0[:, None] @ C @ A @ C.T
        h0c = h0 - (offset @ C)[:, None]  # C^T(-o) + h0 in anny's frame
        trans = place((A @ h0c[..., None])[..., 0] + b)
        M = torch.zeros(B, J, 4, 4, dtype=R.dtype, device=R.device)
        M[..., :3, :3], M[..., :3, 3], M[..., 3, 3] = lin, trans, 1.0
        return vertices, joints, M


def _phenotype_coefficients(net, phenotype: Tensor) -> Tensor:
    """anny's phenotype blendshape coefficients (B, K), the same numbers as
    ``anny.models.phenotype.phenotype_blendshape_weights`` but made on the phenotype's device only (anny
    indexes with a host tensor), so the fit can capture them in a CUDA graph."""
    from anny.models.model_data import PHENOTYPE_VARIATIONS

    B, dev = phenotype.shape[0], phenotype.device
    labels = list(net.phenotype_labels)

    def value(label: str) -> Tensor:  # phenotypes the model does not expose stay at 0.5
        return phenotype[:, labels.index(label)] if label in labels else phenotype.new_full((B,), 0.5)

    # Blendshape k is the product of the variations mask[k] selects, at most one per feature: multiplied
    # feature by feature (torch.prod's backward checks for zeros on the host).
    mask, coefficients, start = net.stacked_phenotype_blend_shapes_mask, None, 0
    for feature, names in PHENOTYPE_VARIATIONS.items():  # the mask's columns, feature after feature
        if feature == "race":  # proportions of the three, evenly split when all are 0
            w = torch.stack([value(n) for n in names], 1)
            w = torch.nan_to_num(w / w.sum(1, keepdim=True), 1 / 3, 1 / 3, 1 / 3)
        else:  # hat functions between the feature's anchors
            anchors, v = net.anchors[feature], value(feature)
            if not net.extrapolate_phenotypes:
                v = torch.where(v < anchors[0], anchors[0], v)
                v = torch.where(v > anchors[-1], anchors[-1], v)
            upper = torch.searchsorted(anchors, v.contiguous()).clamp(1, len(anchors) - 1)
            t = (v - anchors[upper - 1]) / (anchors[upper] - anchors[upper - 1])
            slot = torch.arange(len(anchors), device=dev)
            w = (slot == upper[:, None] - 1) * (1 - t)[:, None] + (slot == upper[:, None]) * t[:, None]
        m = mask[:, start : start + len(names)]
        factor = w @ m.T + (1 - m.sum(1))
        coefficients = factor if coefficients is None else coefficients * factor
        start += len(names)
    return coefficients


def _subset(data, index: Tensor):
    """anny ModelData restricted to some vertices (no faces): for evaluating a few points only."""
    import dataclasses

    return dataclasses.replace(
        data,
        template_vertices=data.template_vertices[index],
        blendshapes=data.blendshapes[:, index],
        vertex_bone_weights=data.vertex_bone_weights[index],
        vertex_bone_indices=data.vertex_bone_indices[index],
        base_mesh_vertex_indices=data.base_mesh_vertex_indices[index],
        faces=torch.zeros(0, 3, dtype=torch.long),
        texture_coordinates=None,
        face_texture_coordinate_indices=None,
    )
