"""Skinned Gaussians, poses, motion files and `humansplat animate` on a result folder built from a
posed Anny body (Gaussians sampled on its surface), so the tests need no reconstructor."""

import json
import math

import pytest
import torch

from humansplat.animate import (POSE_NAMES, Motion, MotionError, ResultError, bind, load_motion, load_result, named_pose, save_motion,
                                subject_params, transform_gaussians, walk_cycle)  # fmt: skip
from humansplat.body import BONE_NAMES, BodyParams, colorize_labels
from humansplat.gaussians import Gaussians, load_ply, save_ply
from humansplat.utils import MANIFEST
from humansplat.meshes import mesh_to_gaussians

POINTS = 3000


def nearest_cm(points: torch.Tensor, surface: torch.Tensor) -> torch.Tensor:
    return 100 * torch.cdist(points.float(), surface.float()).amin(1)


def make_result(body, path, pose_name="walking", turn=0.4, transl=(0.1, -0.05, 0.2)) -> tuple:
    """A result folder: Gaussians on the surface of a posed, turned, moved body, and its report.json."""
    params = BodyParams.neutral()
    params.pose[0] = named_pose(pose_name)
    params.pose[0, 0] = torch.tensor([0.0, turn, 0.0])
    params.transl[0] = torch.tensor(transl)
    with torch.no_grad():
        v = body(params).vertices
    colors = colorize_labels(body.vertex_labels).float() / 255
    g = mesh_to_gaussians(v, body.faces, vertex_colors=colors[None], points=POINTS, generator=torch.Generator().manual_seed(0))[0]
    path.mkdir(parents=True, exist_ok=True)
    save_ply(g, path / "gaussians.ply")
    report = {"structure_prior": "body", "body_fit": {"params": params.to_dict()}, "world_offset": [0.0, 0.0, 0.0]}
    (path / "report.json").write_text(json.dumps(report))
    return params, g


@pytest.fixture(scope="module")
def result(body, tmp_path_factory):
    path = tmp_path_factory.mktemp("result") / "subject"
    params, g = make_result(body, path)
    return path, params, g


def test_named_poses_are_distinct_and_t_pose_levels_the_arms(body):
    poses = {n: named_pose(n, body) for n in POSE_NAMES}
    assert all(p.shape == (len(BONE_NAMES), 3) for p in poses.values())
    for a in POSE_NAMES:
        for b in POSE_NAMES:
            assert a == b or (poses[a] - poses[b]).abs().max() > 0.1
    params = BodyParams.neutral()
    params.pose[0] = poses["t_pose"]
    with torch.no_grad():
        j = body(params).joints[0]
    arm = j[BONE_NAMES.index("hand_l")] - j[BONE_NAMES.index("upperarm_l")]
    assert arm[0] > 0.4 and abs(float(arm[1])) < 0.03  # out to the subject's left, level
    leg = j[BONE_NAMES.index("foot_l")] - j[BONE_NAMES.index("thigh_l")]
    assert leg[1] < -0.75 and abs(float(leg[0])) < 0.05  # straight down


def test_sample_poses_stream_unchanged():
    """template_poses reuses the sampler's templates; the sampler's draws must not have moved."""
    from humansplat.body import sample_poses

    a = sample_poses(6, torch.Generator().manual_seed(3))
    b = sample_poses(6, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == (6, len(BONE_NAMES), 3)


def test_transform_gaussians_rotates_covariance():
    import roma

    g = Gaussians.from_activated(torch.zeros(1, 3), torch.tensor([[1.0, 0, 0, 0]]), torch.tensor([[0.3, 0.1, 0.05]]),
                                 torch.tensor([0.9]), colors=torch.full((1, 3), 0.5))  # fmt: skip
    T = torch.eye(4)[None].clone()
    T[0, :3, :3] = roma.rotvec_to_rotmat(torch.tensor([0.0, 0.0, math.pi / 2]))
    T[0, :3, 3] = torch.tensor([1.0, 2.0, 3.0])
    out = transform_gaussians(g, T)
    R = roma.unitquat_to_rotmat(out.rotations[:, [1, 2, 3, 0]])[0]
    cov = R @ torch.diag(out.scales[0] ** 2) @ R.T
    assert torch.allclose(out.means[0], torch.tensor([1.0, 2.0, 3.0]))
    assert torch.allclose(cov, torch.diag(torch.tensor([0.1, 0.3, 0.05]) ** 2), atol=1e-6)  # x and y swapped


def test_skinned_gaussians_unpose_and_repose_onto_the_body(body, result):
    path, params, g = result
    skinned = bind(g, body, params)
    assert torch.allclose(skinned.weights.sum(1), torch.ones(POINTS), atol=1e-5)
    with torch.no_grad():
        zero = body(BodyParams(params.phenotype, torch.zeros_like(params.pose), torch.zeros(1, 3))).vertices[0]
    with torch.no_grad():
        base = nearest_cm(g.means, body(params).vertices[0])  # points on the surface, to the nearest vertex
    canon = nearest_cm(skinned.canonical().means, zero)
    assert canon.median() < base.median() + 0.1 and canon.quantile(0.99) < base.quantile(0.99) + 0.5
    for name in ("sitting", "arms_raised", "t_pose"):
        target = subject_params(body, params, Motion(named_pose(name, body)[None]))
        with torch.no_grad():
            surface = body(target).vertices[0]
        posed = skinned.posed(body, target)[0]
        d = nearest_cm(posed.means, surface)
        assert d.median() < base.median() + 0.1 and d.quantile(0.99) < base.quantile(0.99) + 1.5, name  # smoothed weights: off at the shoulders
        assert torch.allclose(posed.scales.prod(-1), g.scales.prod(-1), rtol=1e-3), name  # volumes kept, deep bends (sitting) too
        assert float(surface[:, 1].min()) == pytest.approx(float(body(params).vertices[0, :, 1].min()), abs=1e-4)  # same floor


def test_reposing_out_of_a_deep_bend_keeps_the_crease_on_the_body(body, tmp_path):
    """Bound in a crouch (bones 90° apart blend into a near-singular transform in the crease), reposed
    standing: every Gaussian stays near the body and keeps its volume (plain LBS flung them metres)."""
    params, g = make_result(body, tmp_path / "crouch", pose_name="crouching", turn=0.0, transl=(0.0, 0.0, 0.0))
    skinned = bind(g, body, params)
    target = subject_params(body, params, Motion(named_pose("standing", body)[None]))
    with torch.no_grad():
        base = nearest_cm(g.means, body(params).vertices[0])
        d = nearest_cm(skinned.posed(body, target)[0].means, body(target).vertices[0])
        zero = body(BodyParams(params.phenotype, torch.zeros_like(params.pose), torch.zeros(1, 3))).vertices[0]
    canon = skinned.canonical()
    for dist, moved in ((d, skinned.posed(body, target)[0]), (nearest_cm(canon.means, zero), canon)):
        assert dist.median() < base.median() + 0.1 and dist.max() < base.max() + 3.0
        assert torch.allclose(moved.scales.prod(-1), g.scales.prod(-1), rtol=1e-3)


def test_motion_json_roundtrip_and_errors(tmp_path):
    walk = walk_cycle(6)
    assert walk.frames == 6 and (walk.poses[0] - walk.poses[3]).abs().max() > 0.2
    f = save_motion(walk, tmp_path / "walk.json")
    back = load_motion(f)
    assert torch.allclose(back.poses, walk.poses) and back.fps == walk.fps
    subset = {"format": "humansplat-motion", "bone_names": ["head"], "poses": [[[0.3, 0, 0]]], "offsets": [[0, 0, 1]]}
    (tmp_path / "sub.json").write_text(json.dumps(subset))
    m = load_motion(tmp_path / "sub.json")
    assert m.poses[0, BONE_NAMES.index("head"), 0] == pytest.approx(0.3) and m.poses.abs().sum() == pytest.approx(0.3)
    bad = {"x.json": "{not json", "y.json": json.dumps({"format": "humansplat-motion", "poses": [[[0, 0]]]}),
           "z.json": json.dumps({"format": "other"}), "w.bvh": "HIERARCHY ROOT Hips { OFFSET 0 0"}  # fmt: skip
    for name, text in bad.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(MotionError, match=name):
            load_motion(tmp_path / name)


def _bvh(body, rest_t_pose: bool, angle_deg: float) -> str:
    """A tiny game_engine-named BVH (pelvis, spine, left arm chain) with the left upper arm raised by
    ``angle_deg`` about +Z in frame 1, in cm; its rest pose is anny's zero pose or a T-pose."""
    params = BodyParams.neutral()
    if rest_t_pose:
        params.pose[0] = named_pose("t_pose", body)
    with torch.no_grad():
        j = body(params).joints[0] * 100
    chain = ["pelvis", "spine_01", "spine_02", "spine_03", "clavicle_l", "upperarm_l", "lowerarm_l", "hand_l"]
    idx = [BONE_NAMES.index(n) for n in chain]
    lines, prev = ["HIERARCHY"], None
    for k, (n, i) in enumerate(zip(chain, idx)):
        off = j[i] - (j[prev] if prev is not None else 0)
        if k == 0:
            lines += [f"ROOT {n}", "{", f"OFFSET {off[0]:.5f} {off[1]:.5f} {off[2]:.5f}", "CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation"]
        else:
            lines += [f"JOINT {n}", "{", f"OFFSET {off[0]:.5f} {off[1]:.5f} {off[2]:.5f}", "CHANNELS 3 Zrotation Xrotation Yrotation"]
        prev = i
    lines += ["End Site", "{", "OFFSET 0 0 5", "}"] + ["}"] * len(chain)
    n_ch = 6 + 3 * (len(chain) - 1)
    f0 = [0.0] * n_ch
    f1 = list(f0)
    f1[1] = 10.0  # root up 10 cm
    f1[6 + 3 * (chain.index("upperarm_l") - 1)] = angle_deg  # upperarm_l Zrotation
    lines += ["MOTION", "Frames: 2", "Frame Time: 0.04", " ".join(map(str, f0)), " ".join(map(str, f1))]
    return "\n".join(lines)


@pytest.mark.parametrize("rest_t_pose", [False, True])
def test_bvh_rotations_and_rest_retarget(body, tmp_path, rest_t_pose):
    import roma

    f = tmp_path / "m.bvh"
    f.write_text(_bvh(body, rest_t_pose, 30.0))
    m = load_motion(f)
    assert m.frames == 2 and m.fps == pytest.approx(25.0)
    ua = BONE_NAMES.index("upperarm_l")
    # the parents do not move, so the upper arm's world rotation is the BVH one (after the rest alignment)
    expected = roma.rotvec_to_rotmat(torch.tensor([0.0, 0.0, math.radians(30.0)]))
    if rest_t_pose:
        expected = expected @ roma.rotvec_to_rotmat(named_pose("t_pose", body)[ua])
    got = roma.rotvec_to_rotmat(m.poses[1, ua])
    clav = roma.rotvec_to_rotmat(m.poses[1, BONE_NAMES.index("clavicle_l")])
    if rest_t_pose:  # compare bone directions: the retarget is a swing, the T-pose may hold a twist
        params = BodyParams.neutral()
        params.pose[0] = m.poses[1]
        params.pose[0, 0] = 0
        ref = BodyParams.neutral()
        ref.pose[0] = named_pose("t_pose", body)
        with torch.no_grad():
            a, b = body(params).joints[0], body(ref).joints[0]
        d = lambda j: torch.nn.functional.normalize(j[ua + 1] - j[ua], dim=0)  # noqa: E731
        turn = roma.rotvec_to_rotmat(torch.tensor([0.0, 0.0, math.radians(30.0)]))
        assert torch.allclose(d(a), turn @ d(b), atol=0.03)
    else:
        assert torch.allclose(clav @ got, expected, atol=1e-4)
    assert m.offsets[1, 1] == pytest.approx(0.10, rel=0.02) and m.offsets[1, [0, 2]].abs().max() < 1e-6  # cm -> m by the hip height


def test_result_errors(tmp_path, result):
    path, params, g = result
    with pytest.raises(ResultError, match="not a reconstruction folder"):
        load_result(tmp_path)
    tf = tmp_path / "tf"
    tf.mkdir()
    save_ply(g, tf / "gaussians.ply")
    (tf / "report.json").write_text(json.dumps({"structure_prior": "template_free", "body_fit": None}))
    with pytest.raises(ResultError, match="template-free"):
        load_result(tf)
    assert load_result(path).params.pose.shape == (1, len(BONE_NAMES), 3)


def test_animate_cli(result, tmp_path, capsys):
    from humansplat.cli import main

    path, params, g = result
    out = tmp_path / "anim"
    motion = save_motion(walk_cycle(3), tmp_path / "w.json")
    assert main(["animate", str(path), "--motion", str(motion), "-o", str(out), "--size", "64", "--orbit"]) == 0
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert names == [MANIFEST, "animation.json", "canonical.ply", "frames/0000.ply", "frames/0001.ply", "frames/0002.ply", "motion.gif", "motion.mp4"]
    assert load_ply(out / "frames/0001.ply").num == g.num
    assert main(["animate", str(path), "--pose", "sitting", "-o", str(tmp_path / "sit"), "--no-video"]) == 0
    assert (tmp_path / "sit" / "frames" / "0000.ply").is_file()
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2")
    capsys.readouterr()
    assert main(["animate", str(path), "--motion", str(bad), "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.json" in err and not (tmp_path / "x").exists()
    assert main(["animate", str(path), "--motion", "walk", "--frame", "99", "-o", str(tmp_path / "y"), "--no-video"]) == 2
    assert not (tmp_path / "y").exists()
