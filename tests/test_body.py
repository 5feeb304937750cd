"""The Anny body wrapper: frame and placement, agreement with anny, part labels, the cache, conditions."""

from __future__ import annotations

import pytest
import torch

from humansplat.body import (
    BONE_NAMES,
    CLASS_ID,
    COCO_KEYPOINTS,
    SAPIENS_CLASSES,
    SAPIENS_PALETTE,
    BodyModel,
    BodyParams,
)
from humansplat.body.parts import BODY_CLASSES


def random_params(batch: int, seed: int = 0, angle: float = 0.3) -> BodyParams:
    g = torch.Generator().manual_seed(seed)
    p = BodyParams.neutral(batch)
    p.phenotype = torch.rand(batch, 6, generator=g)
    p.pose = angle * torch.randn(batch, len(BONE_NAMES), 3, generator=g)
    p.transl = torch.randn(batch, 3, generator=g)
    return p


def test_sapiens_taxonomy():
    assert len(SAPIENS_CLASSES) == 28 and SAPIENS_CLASSES[0] == "Background"
    assert SAPIENS_CLASSES[8] == "Left_Shoe" and SAPIENS_CLASSES[21] == "Torso" and SAPIENS_CLASSES[27] == "Tongue"
    assert SAPIENS_PALETTE.shape == (28, 3) and len({tuple(c) for c in SAPIENS_PALETTE.tolist()}) == 28


def test_zero_pose_placement_and_frame(body):
    p = BodyParams.neutral(2)
    p.phenotype[1] = torch.tensor([1.0, 0.4, 0.2, 0.9, 0.1, 0.8])  # a different body, same placement rule
    out = body(p)
    assert out.vertices.shape == (2, body.num_vertices, 3) and out.joints.shape == (2, 53, 3)
    assert out.keypoints.shape == (2, 17, 3) and body.faces.shape[1] == 3 and body.faces.dtype == torch.int64
    low = out.vertices[..., 1].amin(-1)
    assert torch.allclose(low, torch.zeros(2), atol=1e-5)  # feet on y = 0
    pelvis = out.joints[:, BONE_NAMES.index("pelvis")]
    assert pelvis[:, [0, 2]].abs().max() < 1e-5  # pelvis on the Y axis
    k = {n: out.keypoints[0, i] for i, n in enumerate(COCO_KEYPOINTS)}
    assert k["nose"][2] > pelvis[0, 2] + 0.05  # faces +Z
    assert k["left_shoulder"][0] > 0.1 and k["right_shoulder"][0] < -0.1  # subject's left at +X
    assert 1.6 < float(out.vertices[0, :, 1].max()) < 1.85  # the neutral adult is about 1.72 m


def test_translation_and_global_orientation(body):
    p = random_params(1, angle=0.0)
    p.transl.zero_()
    base = body(p)
    q = p.clone()
    q.transl = torch.tensor([[0.3, -0.2, 1.0]])
    assert torch.allclose(body(q).vertices, base.vertices + q.transl[:, None], atol=1e-5)
    r = p.clone()
    r.pose[0, 0] = torch.tensor([0.0, torch.pi / 2, 0.0])  # turn to face +X
    turned = body(r)
    pelvis = BONE_NAMES.index("pelvis")
    assert torch.allclose(turned.joints[0, pelvis], base.joints[0, pelvis], atol=1e-5)  # about the pelvis
    nose = turned.keypoints[0, 0] - turned.joints[0, pelvis]
    assert nose[0] > 0.05 and abs(float(nose[2])) < 0.03


def test_agrees_with_anny_forward(body):
    """Our pose/placement wrapper reproduces anny's own forward up to the documented frame change."""
    p = random_params(3, seed=1)
    out = body(p)
    C = torch.tensor([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])
    Rw = __import__("roma").rotvec_to_rotmat(p.pose)
    delta = torch.eye(4).repeat(3, 53, 1, 1)
    delta[:, 1:, :3, :3] = C.T @ Rw[:, 1:] @ C
    ref = body.anny(delta, phenotype_kwargs=p.phenotype)["vertices"] @ C.T  # anny, turned into our axes
    zero = body(BodyParams(p.phenotype, torch.zeros_like(p.pose), torch.zeros_like(p.transl)))
    pelvis = zero.joints[:, BONE_NAMES.index("pelvis")]
    # ours = R0 (ref + offset - pelvis) + pelvis + transl, with the offset fixed by the zero pose
    offset = zero.vertices[:, :1] - (body.anny(None, phenotype_kwargs=p.phenotype)["vertices"] @ C.T)[:, :1]
    expected = (ref + offset - pelvis[:, None]) @ Rw[:, 0].transpose(-1, -2) + (pelvis + p.transl)[:, None]
    assert torch.allclose(out.vertices, expected, atol=2e-5)


def test_phenotype_coefficients_match_anny(body):
    """Our device-clean phenotype coefficients (capturable in a CUDA graph) equal anny's, gradients too."""
    from anny.models.phenotype import phenotype_blendshape_weights

    from humansplat.body.model import _phenotype_coefficients

    net = body.anny
    ph = torch.cat([torch.rand(5, 6, generator=torch.Generator().manual_seed(4)), torch.tensor([[0.0, 1.0, 0.5, 0.25, 1.0, 0.0]]),
                    torch.tensor([[-0.2, 1.3, 0.77, 0.83, 0.5, 0.5]])]).requires_grad_(True)  # fmt: skip
    ours = _phenotype_coefficients(net, ph)
    ref = phenotype_blendshape_weights(ph, net.phenotype_labels, net.anchors, net.stacked_phenotype_blend_shapes_mask,
                                       extrapolate=net.extrapolate_phenotypes)  # fmt: skip
    assert torch.allclose(ours, ref, atol=1e-7)
    w = torch.randn_like(ref)
    g_ours, g_ref = (torch.autograd.grad((x * w).sum(), ph)[0] for x in (ours, ref))
    assert torch.allclose(g_ours, g_ref, atol=1e-6)


def test_keypoint_path_bone_transforms_and_batching(body):
    p = random_params(3, seed=2)
    out = body(p)
    assert torch.allclose(body.keypoints(p), out.keypoints, atol=1e-5)
    zero = body(BodyParams(p.phenotype, torch.zeros_like(p.pose), torch.zeros_like(p.transl)))
    M = torch.einsum("nj,bjik->bnik", body.skinning_weights, out.bone_transforms)
    rebuilt = (M[..., :3, :3] @ zero.vertices[..., None])[..., 0] + M[..., :3, 3]
    assert torch.allclose(rebuilt, out.vertices, atol=1e-4)
    one = body(p[1])
    assert torch.allclose(one.vertices[0], out.vertices[1], atol=1e-5)


def test_gradients_flow(body):
    p = random_params(1, seed=3)
    for t in (p.phenotype, p.pose, p.transl):
        t.requires_grad_(True)
    body.keypoints(p).square().sum().backward()
    for t in (p.phenotype, p.pose, p.transl):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


def test_vertex_labels(body):
    labels = body.vertex_labels
    assert labels.shape == (body.num_vertices,)
    assert set(labels.unique().tolist()) == {CLASS_ID[c] for c in BODY_CLASSES}
    v = body(BodyParams.neutral()).vertices[0]
    for side, sign in (("Left", 1), ("Right", -1)):
        for part in ("Upper_Arm", "Lower_Arm", "Hand", "Upper_Leg", "Lower_Leg", "Foot"):
            x = v[labels == CLASS_ID[f"{side}_{part}"], 0]
            assert (sign * x > 0).float().mean() > 0.99, (side, part)
    y = {c: v[labels == CLASS_ID[c], 1].mean() for c in ("Upper_Lip", "Lower_Lip", "Face_Neck", "Torso", "Left_Foot")}
    assert y["Upper_Lip"] > y["Lower_Lip"] > y["Torso"] > y["Left_Foot"]
    lips = v[(labels == CLASS_ID["Upper_Lip"]) | (labels == CLASS_ID["Lower_Lip"])]
    nose = body(BodyParams.neutral()).keypoints[0, 0]
    assert (lips - nose).norm(dim=-1).max() < 0.08  # the lips sit just below the nose
    assert body.scalp_mask.sum() > 200 and (labels[body.scalp_mask] == CLASS_ID["Face_Neck"]).all()


def test_cache_export_and_env_override(body, tmp_path, monkeypatch):
    from humansplat.body import cache

    dest = tmp_path / "body.safetensors"
    assert cache.main(["export", str(dest)]) == 0 and dest.stat().st_size < 30 * 2**20
    monkeypatch.setenv(cache.ENV_VAR, str(dest))
    assert cache.cache_path() == dest
    other = BodyModel(*cache.read(dest))
    assert torch.equal(other.faces, body.faces) and torch.equal(other.vertex_labels, body.vertex_labels)
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path / "missing.safetensors"))
    with pytest.raises(FileNotFoundError):
        cache.load()


def test_params_dict_roundtrip():
    p = random_params(2)
    q = BodyParams.from_dict(p.to_dict())
    assert all(torch.allclose(a, b) for a, b in zip((p.phenotype, p.pose, p.transl), (q.phenotype, q.pose, q.transl), strict=True))


def test_conditions_front_view(body):
    from humansplat.body.conditions import render_body_conditions
    from humansplat.cameras import orbit_cameras

    out = body(BodyParams.neutral())
    cams = orbit_cameras(torch.tensor([0.0]), 0.0, radius=3.0, target=(0, 0.86, 0), fov_deg=40, size=64)
    maps = render_body_conditions(out, body.faces, body.vertex_labels, cams, points=20_000,
                                  generator=torch.Generator().manual_seed(0))  # fmt: skip
    mask, labels, depth, normal = maps["mask"][0, 0, ..., 0], maps["labels"][0, 0], maps["depth"][0, 0, ..., 0], maps["normal"][0, 0]
    on = mask > 0.5
    assert 0.08 < on.float().mean() < 0.5 and (labels[~on] == 0).all() and (labels[on] > 0).all()
    assert set(labels[on].unique().tolist()) <= {CLASS_ID[c] for c in BODY_CLASSES}
    cols = torch.arange(64)[None].expand(64, 64)
    left_hand = labels == CLASS_ID["Left_Hand"]
    assert left_hand.any() and (cols[left_hand] > 32).all()  # the subject's left shows on the image's right
    assert 2.6 < float(depth[on].median()) < 3.2 and (normal[on][:, 2] < 0).float().mean() > 0.8
