"""The synthetic data engine: textures, surfels, dressing, cameras, batches, shards and the CLI (CPU, tiny)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from humansplat.body import CLASS_ID
from humansplat.cameras import project_points
from humansplat.data import EngineConfig, SyntheticEngine
from humansplat.data import textures as tx
from humansplat.data.surfels import grid_surfels, matrix_to_quat, ring_hull

TINY = EngineConfig(resolution=48, views=2, points=1500, detail=0.02)


@pytest.fixture(scope="module")
def engine() -> SyntheticEngine:
    return SyntheticEngine(TINY, device="cpu")


@pytest.fixture(scope="module")
def batch(engine):
    return engine.sample(2, torch.Generator().manual_seed(3))


# ---------------------------------------------------------------- textures and surfels


def test_textures_are_seeded_and_varied():
    a = tx.sample_textures((64,), torch.Generator().manual_seed(0))
    b = tx.sample_textures((64,), torch.Generator().manual_seed(0))
    assert torch.equal(a.kind, b.kind) and torch.equal(a.colors, b.colors)
    assert len(a.kind.unique()) >= 5  # most kinds occur in 64 draws
    p = torch.rand(64, 500, 3, generator=torch.Generator().manual_seed(1))
    t = tx.Texture(**{k: v[:, None].expand(64, 500, *v.shape[1:]) for k, v in vars(a).items()})
    col = tx.evaluate(t, p)
    assert col.shape == (64, 500, 3) and col.min() >= 0 and col.max() <= 1
    solid = a.kind == tx.KINDS.index("solid")
    patterned = ~solid & (a.kind != tx.KINDS.index("heather"))
    # patterns vary over the surface far more than solids (whose only variation is the fabric grain)
    assert col[patterned].std(1).mean() > 2 * col[solid].std(1).mean()


def test_value_noise_is_smooth_and_bounded():
    seed = torch.tensor(7)
    x = torch.linspace(0, 4, 401)
    p = torch.stack([x, torch.full_like(x, 0.3), torch.full_like(x, 0.6)], -1)
    n = tx.value_noise(p, seed.expand(401))
    assert n.min() >= 0 and n.max() <= 1 and n.std() > 0.05
    assert (n[1:] - n[:-1]).abs().max() < 0.05  # continuous at a 0.01 step


def test_matrix_to_quat_round_trip():
    from humansplat.gaussians.rasterize_torch import quat_to_rotmat

    q = torch.nn.functional.normalize(torch.randn(1000, 4, generator=torch.Generator().manual_seed(0)), dim=-1)
    R = quat_to_rotmat(q)
    assert torch.allclose(quat_to_rotmat(matrix_to_quat(R)), R, atol=1e-5)


def test_grid_surfels_of_a_sphere_face_out_and_cover_it():
    U, V = 40, 20
    lon = torch.arange(U) / U * 2 * math.pi
    lat = ((torch.arange(V) + 0.5) / V - 0.5) * math.pi
    lo, la = torch.meshgrid(lon, lat, indexing="ij")
    d = torch.stack([la.cos() * lo.sin(), la.sin(), la.cos() * lo.cos()], -1)[None]
    one = torch.ones(1, dtype=torch.long)
    s = grid_surfels(d * 2.0, d, one, one, torch.ones(1, dtype=torch.bool), wrap_u=True, outward=torch.zeros(1, 3))
    assert ((s.normals * s.means).sum(-1) > 0.95 * 2.0).all()
    # sigma along the equator close to COVER * spacing
    eq = s.scales.reshape(U, V, 2)[:, V // 2, 0]
    assert torch.allclose(eq, torch.full_like(eq, 0.7 * 2 * math.pi * 2.0 / U), rtol=0.05)


def test_box_surfels_lie_on_the_faces_with_the_frames_of_a_grid():
    """Boxes are built in one pass with exact face frames: each face is a grid of cell centres on the
    box's surface, with the normals, tangents and sizes that ``grid_surfels`` finds by differences."""
    from humansplat.data.loose import _orthonormal
    from humansplat.data.surfels import box_surfels

    g = torch.Generator().manual_seed(0)
    B, res = 3, [(3, 5, 4), (2, 3, 2)]
    c = torch.randn(B, 2, 3, generator=g)
    axes = _orthonormal(torch.randn(B * 2, 3, generator=g), torch.randn(B * 2, 3, generator=g)).reshape(B, 2, 3, 3)
    half = torch.rand(B, 2, 3, generator=g) + 0.1
    m, present = torch.arange(B), torch.tensor([[True, False], [False, True], [True, True]])
    fast = box_surfels(c, axes, half, res, m, m, present)
    assert fast.means.shape[1] == sum(2 * (r[0] * r[1] + r[1] * r[2] + r[2] * r[0]) for r in res)
    start = 0
    for box, r in enumerate(res):
        for k, side in [(k, s) for k in range(3) for s in (-1.0, 1.0)]:
            U, V = r[(k + 1) % 3], r[(k + 2) % 3]
            part = slice(start, start + U * V)
            start += U * V
            P = fast.means[:, part].reshape(B, U, V, 3)
            local = torch.einsum("buvj,bkj->buvk", P - c[:, box, None, None], axes[:, box])
            assert torch.allclose(local[..., k], side * half[:, box, None, None, k], atol=1e-5)  # on the face
            assert torch.allclose(fast.coords[:, part].reshape(B, U, V, 3), local, atol=1e-5)
            ref = grid_surfels(P, local, m, m, present[:, box], outward=c[:, box])
            for name in ("normals", "tangents", "scales", "material", "labels", "opacity"):
                assert torch.allclose(getattr(fast, name)[:, part].float(), getattr(ref, name).float(), atol=1e-5), name
    assert start == fast.means.shape[1]


def test_ring_hull_measures_reach_per_sector():
    theta = torch.linspace(0, 2 * math.pi, 721)[:-1]
    y = torch.linspace(0, -1, 11)
    r = 0.3 + 0.1 * torch.cos(theta)  # reaches further in front (+Z)
    pts = torch.stack([(r * theta.sin())[None].expand(11, -1), y[:, None].expand(11, 720), (r * theta.cos())[None].expand(11, -1)], -1).reshape(1, -1, 3)
    frame = torch.eye(3)[None] * torch.tensor([1.0, -1.0, 1.0])[None, :, None]  # lateral x, axis down, forward z
    hull = ring_hull(pts, torch.ones(1, pts.shape[1], dtype=torch.bool), torch.zeros(1, 3), frame, (-y)[None], 8, 0.01)
    assert hull.shape == (1, 11, 8)
    assert torch.allclose(hull[0, :, 0], torch.full((11,), 0.4), atol=0.005)  # front sector
    assert torch.allclose(hull[0, :, 4], torch.full((11,), 0.21), atol=0.015)  # back sector


# ---------------------------------------------------------------- the engine


def test_batch_follows_the_contract(engine, batch):
    B, V1, R = 2, 1 + TINY.views, TINY.resolution
    assert batch["images"].shape == (B, V1, 3, R, R) and batch["images"].dtype == torch.float32
    assert batch["masks"].shape == (B, V1, 1, R, R) and batch["depths"].shape == (B, V1, 1, R, R)
    assert batch["normals"].shape == (B, V1, 3, R, R) and batch["labels"].shape == (B, V1, R, R)
    assert batch["labels"].dtype == torch.int64
    assert batch["cameras"].batch_shape == (B, V1) and batch["cameras"].width == R
    assert batch["body_vertices"].shape[0] == B and batch["body_keypoints"].shape == (B, 17, 3)
    fg = batch["masks"][:, :, 0] > 0.5
    assert fg.float().mean() > 0.05  # the subject is in the frame
    assert torch.equal(batch["labels"] > 0, fg)
    assert (batch["depths"][:, :, 0][fg] > 0.3).all() and (batch["depths"][:, :, 0][~fg] == 0).all()
    n = batch["normals"].norm(dim=2)
    assert torch.allclose(n[fg], torch.ones_like(n[fg]), atol=1e-3) and (n[~fg] == 0).all()
    empty = batch["masks"][:, :, 0] < 1e-3
    assert (batch["images"].permute(0, 1, 3, 4, 2)[empty] > 0.99).all()  # white background
    assert batch["images"].min() >= 0 and batch["images"].max() <= 1


def test_body_params_reproduce_the_body_and_the_subject_is_centred(engine, batch):
    out = engine.body(batch["body_params"])
    assert torch.allclose(out.vertices, batch["body_vertices"], atol=1e-4)
    centre = (batch["body_vertices"].amin(1) + batch["body_vertices"].amax(1)) / 2
    assert centre.abs().max() < 1e-4


def test_keypoints_project_into_every_view(batch):
    uv, z = project_points(batch["body_keypoints"][:, None].expand(-1, batch["cameras"].batch_shape[1], -1, -1), batch["cameras"])
    R = TINY.resolution
    inside = (uv >= 0).all(-1) & (uv <= R).all(-1) & (z > 0)
    # orbit views hold the whole body; the input view may crop the legs (half-body framing)
    assert inside[:, 1:].all()
    assert inside[:, 0, :7].all()  # face and shoulders are always in the input view


def test_portrait_framing_keeps_the_head_and_crops_the_body(engine):
    """head_only 1: every input view holds the nose and the eyes, zoomed in (the head fills far more of the
    frame than in full-body framing) and the hips mostly below the frame (a portrait with the arms spread
    wide may still show one)."""
    from humansplat.data import views as vw
    from humansplat.keypoints import COCO_KEYPOINTS, HIPS, NOSE, SHOULDERS

    s = engine.subjects(3, torch.Generator().manual_seed(5))
    R = TINY.resolution

    def framed(**kw):
        cams = vw.input_views(s.points, s.valid, s.keypoints, R, torch.Generator().manual_seed(0), half_body=0.0, **kw)
        uv, z = project_points(s.keypoints[:, None, :, :3].float(), cams)
        return ((uv >= 0).all(-1) & (uv <= R).all(-1) & (z > 0))[:, 0], uv[:, 0]

    inside, uv = framed(head_only=1.0)
    face = [COCO_KEYPOINTS.index(n) for n in ("nose", "left_eye", "right_eye")]
    assert inside[:, face].all() and (~inside[:, HIPS]).float().mean() > 0.5
    full, uv_full = framed(head_only=0.0)
    assert full[:, HIPS].all()
    neck = lambda uv: (uv[:, SHOULDERS, 1].mean(1) - uv[:, NOSE, 1]).abs()  # noqa: E731
    zoom = neck(uv) / neck(uv_full)
    assert (zoom > 1.4).all() and zoom.mean() > 2  # raised or spread arms above the cut stay in the frame


def test_orbit_cameras_surround_the_subject(batch):
    c = batch["cameras"][:, 1:].centers  # (B, V, 3)
    r = c.norm(dim=-1)
    assert torch.allclose(r, r[:, :1].expand_as(r), rtol=1e-4)  # one distance per subject
    az = torch.rad2deg(torch.atan2(c[..., 0], c[..., 2]))
    step = (az[:, 1] - az[:, 0]) % 360
    assert torch.allclose(step, torch.full_like(step, 360.0 / TINY.views), atol=1e-3)


def test_same_seed_same_batch(engine, batch):
    again = engine.sample(2, torch.Generator().manual_seed(3))
    assert torch.equal(again["images"], batch["images"]) and torch.equal(again["labels"], batch["labels"])
    other = engine.sample(2, torch.Generator().manual_seed(4))
    assert not torch.equal(other["images"], batch["images"])


def test_subjects_wear_clothes_hair_and_shoes(engine):
    s = engine.subjects(5, torch.Generator().manual_seed(11))
    labels = s.gaussians.features[..., 3:].argmax(-1)
    from humansplat.data import LABEL_CHANNELS

    ids = torch.tensor(LABEL_CHANNELS)[labels]
    visible = s.gaussians.opacities > 0.5
    present = set(ids[visible].unique().tolist())
    for name in ("Upper_Clothing", "Lower_Clothing", "Face_Neck", "Hair"):
        assert CLASS_ID[name] in present, name
    assert {CLASS_ID["Left_Shoe"], CLASS_ID["Right_Shoe"]} & present
    # clothing sits outside the skin: each garment surfel is farther from the body's nearest vertex
    # than the skin surfels are (which lie on it)
    d = torch.cdist(s.gaussians.means, s.vertices[:, ::2]).amin(-1)
    skin = visible & torch.isin(ids, torch.tensor([CLASS_ID["Torso"], CLASS_ID["Left_Upper_Leg"], CLASS_ID["Right_Upper_Leg"]]))
    cloth = visible & (ids == CLASS_ID["Lower_Clothing"])
    assert d[cloth].median() > d[skin].median() + 0.002
    # many colours, not mannequins
    rgb = s.gaussians.colors()
    assert rgb[visible].std(0).mean() > 0.1


def test_skirts_hang_clear_of_the_legs(engine):
    from humansplat.data.subjects import BOTTOMS

    s = None
    for seed in range(40):
        cand = engine.subjects(4, torch.Generator().manual_seed(seed))
        if (cand.outfit.bottom == BOTTOMS.index("skirt")).any():
            s = cand
            break
    assert s is not None
    b = int(torch.nonzero(s.outfit.bottom == BOTTOMS.index("skirt"))[0])
    from humansplat.data import LABEL_CHANNELS

    ids = torch.tensor(LABEL_CHANNELS)[s.gaussians.features[b, :, 3:].argmax(-1)]
    means = s.gaussians.means[b]
    loose = (s.gaussians.opacities[b] > 0.5) & (ids == CLASS_ID["Lower_Clothing"])
    # the loose skirt's lowest ring is wider than the legs at that height
    skirt = means[loose]
    low = skirt[:, 1] < skirt[:, 1].min() + 0.03
    legs = s.vertices[b][(s.vertices[b][:, 1] - skirt[low, 1].mean()).abs() < 0.03]
    centre = skirt[low].mean(0)
    r_skirt = (skirt[low] - centre)[:, [0, 2]].norm(dim=-1).mean()
    if len(legs):
        r_legs = (legs - centre)[:, [0, 2]].norm(dim=-1).max()
        assert r_skirt > 0.8 * r_legs
    assert r_skirt > 0.08


def test_engine_config_round_trips_through_json():
    cfg = EngineConfig(resolution=128, views=4, pose_kinds=("standing",))
    back = EngineConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg


# ---------------------------------------------------------------- shards, benchmark set, CLI


def test_shards_round_trip_and_resume(tmp_path, engine, batch):
    from humansplat.data.shards import ShardDataset, ShardWriter, batch_to_subjects, collate

    meta = {"kind": "test", "subjects": 3, "shard_size": 2, "views": 3, "resolution": 48, "seed": 0}
    w = ShardWriter(tmp_path / "ds", meta)
    assert w.missing() == [0, 1]
    subjects = batch_to_subjects(batch, 0)
    w.write(0, subjects)
    assert ShardWriter(tmp_path / "ds", meta).missing() == [1]  # resumes
    w.write(1, subjects[:1])
    w.finish()
    with pytest.raises(FileExistsError):
        ShardWriter(tmp_path / "ds", {**meta, "seed": 1})
    ds = ShardDataset(tmp_path / "ds")
    assert len(ds) == 3
    b = collate([ds[0], ds[1]])
    assert set(b) == set(batch)
    for k in ("images", "masks", "depths", "normals", "labels"):
        assert b[k].shape == batch[k].shape and b[k].dtype == batch[k].dtype, k
    assert (b["images"] - batch["images"]).abs().max() <= 0.5 / 255 + 1e-6
    assert torch.equal(b["labels"], batch["labels"])
    assert torch.allclose(b["depths"], batch["depths"], rtol=2e-3)
    fg = batch["masks"][:, :, 0] > 0.5
    cos = (b["normals"] * batch["normals"]).sum(2)[fg]
    assert cos.min() > 0.99
    assert torch.allclose(b["cameras"].K, batch["cameras"].K) and torch.allclose(b["cameras"].w2c, batch["cameras"].w2c)
    assert torch.allclose(b["body_params"].pose, batch["body_params"].pose)


def test_benchmark_set_is_byte_identical_and_frontal(tmp_path):
    from humansplat.data.benchmark import make_benchmark
    from humansplat.data.shards import ShardDataset

    tiny = {"resolution": 32, "views": 4}
    a = make_benchmark(tmp_path / "a", device="cpu", subjects=2, batch_size=2, protocol=tiny, show_progress=False)
    b = make_benchmark(tmp_path / "b", device="cpu", subjects=2, batch_size=2, protocol=tiny, show_progress=False)
    assert a.read_text() == b.read_text()
    assert (tmp_path / "a" / "dataset.json").read_bytes() == (tmp_path / "b" / "dataset.json").read_bytes()
    item = ShardDataset(tmp_path / "a")[1]
    cams = item["cameras"]
    assert cams.batch_shape == (5,) and torch.allclose(cams.w2c[0], cams.w2c[1])
    c = cams.centers
    assert c[:, 1].abs().max() < 1e-4  # 0 deg elevation
    assert c[0, 2] > 0 and c[0, [0]].abs().max() < 1e-4  # input view in front (+Z)


def test_cli_synth_writes_and_resumes(tmp_path, monkeypatch):
    from humansplat.cli import main
    from humansplat.data.shards import ShardDataset

    out = tmp_path / "synth"
    args = ["data", "synth", "-n", "3", "-o", str(out), "--views", "1", "--res", "32", "--seed", "5", "--shard-size", "2", "--device", "cpu"]
    assert main(args) == 0
    first = (out / "SHA256SUMS").read_text()
    (out / "shard-00001.npz").unlink()  # as if interrupted
    (out / "SHA256SUMS").unlink()
    assert main(args) == 0
    assert (out / "SHA256SUMS").read_text() == first  # the same shard again
    assert len(ShardDataset(out)) == 3
    assert main([*args[:-6], "--seed", "6", "--shard-size", "2", "--device", "cpu"]) == 2  # a different plan in the same folder
    assert main(["data", "synth", "-n", "0", "-o", str(tmp_path / "x")]) == 2


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_engine_matches_the_cpu_reference():
    """The same subjects (built on the CPU) rendered by gsplat on CUDA and by the torch rasterizer."""
    cfg = EngineConfig(resolution=96, views=3)
    gpu = SyntheticEngine(cfg, device="cuda", build_device="cpu")
    cpu = SyntheticEngine(cfg, device="cpu", body=gpu.body)
    subjects = gpu.subjects(2, torch.Generator().manual_seed(0))
    cams = gpu.cameras(subjects, torch.Generator().manual_seed(1))
    a = {k: v.cpu() for k, v in gpu.render(subjects, cams.to("cuda")).items()}
    b = cpu.render(subjects, cams)
    assert (a["images"] - b["images"]).abs().mean() < 0.01
    assert (a["masks"] - b["masks"]).abs().mean() < 0.01
    fg = (a["masks"][:, :, 0] > 0.5) & (b["masks"][:, :, 0] > 0.5)
    assert (a["labels"][fg] == b["labels"][fg]).float().mean() > 0.98
    assert (a["depths"][:, :, 0][fg] - b["depths"][:, :, 0][fg]).abs().median() < 0.005
    full = SyntheticEngine(EngineConfig(resolution=256, views=8), device="cuda").sample(4, torch.Generator().manual_seed(2))
    assert full["images"].is_cuda and full["labels"].shape == (4, 9, 256, 256)
    assert (full["labels"] > 0).float().mean() > 0.05


def test_free_colours_cover_the_hue_circle_and_are_not_grey():
    from humansplat.data.textures import GARMENT_PALETTE, sample_free_colors

    c = sample_free_colors((4000,), torch.Generator().manual_seed(0))
    mx, mn = c.max(-1).values, c.min(-1).values
    assert c.min() >= 0 and c.max() <= 1
    assert ((mx - mn) / mx.clamp_min(1e-6)).min() >= 0.35 - 1e-5  # saturation
    hue_bins = torch.bincount((_hue(c) * 6).long().clamp_max(5), minlength=6).float() / len(c)
    assert hue_bins.min() > 0.12, hue_bins  # every sixth of the circle, about evenly
    # the palette alone leaves vivid greens out: no palette colour near pure green at high saturation
    p = GARMENT_PALETTE
    vivid_green = (_hue(p) > 0.25) & (_hue(p) < 0.42) & ((p.max(-1).values - p.min(-1).values) / p.max(-1).values > 0.5)
    assert not vivid_green.any()


def _hue(c):
    mx, idx = c.max(-1)
    d = (mx - c.min(-1).values).clamp_min(1e-6)
    r, g, b = c.unbind(-1)
    h = torch.where(idx == 0, ((g - b) / d) % 6, torch.where(idx == 1, (b - r) / d + 2, (r - g) / d + 4))
    return h / 6


def test_engine_free_colours_recolour_garments_only_and_default_draws_nothing():
    from humansplat.data import EngineConfig, SyntheticEngine
    from humansplat.body.model import PHENOTYPE_NAMES
    from humansplat.data.subjects import GARMENT_MATERIALS, M, recolor_garments, sample_outfits

    g = torch.Generator().manual_seed(4)
    phen = torch.rand(6, len(PHENOTYPE_NAMES), generator=torch.Generator().manual_seed(1))
    outfit = sample_outfits(phen, g)
    before = outfit.materials.colors.clone()
    state = g.get_state()
    recolor_garments(outfit, 0.0, g)
    assert torch.equal(g.get_state(), state) and torch.equal(outfit.materials.colors, before)
    recolor_garments(outfit, 1.0, g)
    after = outfit.materials.colors
    garments = [M[m] for m in GARMENT_MATERIALS]
    others = [i for i in range(after.shape[1]) if i not in garments]
    assert torch.equal(after[:, others], before[:, others])  # skin, hair, eyes keep their colours
    assert not torch.equal(after[:, garments], before[:, garments])
    batch = SyntheticEngine(EngineConfig(resolution=32, views=1, free_colors=0.5), torch.device("cpu")).sample(2, torch.Generator().manual_seed(0))
    assert torch.isfinite(batch["images"]).all()


def test_rare_parts_show_bare_feet_socks_on_feet_a_midriff_a_bare_torso_and_default_draws_nothing():
    from humansplat.body.model import PHENOTYPE_NAMES
    from humansplat.data import LABEL_CHANNELS
    from humansplat.data.subjects import BOTTOMS, NO_TOP_HEM, SHOES, expose_rare_parts, sample_outfits

    g = torch.Generator().manual_seed(4)
    outfit = sample_outfits(torch.rand(40, len(PHENOTYPE_NAMES), generator=torch.Generator().manual_seed(1)), g)
    state, shoes = g.get_state(), outfit.shoes.clone()
    expose_rare_parts(outfit, 0.0, g)
    assert torch.equal(g.get_state(), state) and torch.equal(outfit.shoes, shoes) and not outfit.sock_feet.any()
    hem = outfit.hem.clone()
    expose_rare_parts(outfit, 1.0, g)
    barefoot = outfit.shoes == SHOES.index("barefoot")
    shirtless = outfit.hem >= NO_TOP_HEM
    midriff = (outfit.hem > outfit.waist) & ~shirtless
    assert outfit.sock_feet.any() and (barefoot & ~outfit.sock_feet).any() and midriff.any() and shirtless.any()
    assert (outfit.sleeve[shirtless] < 0).all() and (outfit.outer[shirtless | midriff] == 0).all()
    assert (outfit.sock_feet <= barefoot).all()  # socks on feet only without shoes
    dress = outfit.bottom == BOTTOMS.index("dress")
    assert torch.equal(outfit.hem[dress], hem[dress])
    assert (barefoot | midriff | shirtless | dress).all()  # every subject shows one, but a dress keeps its bodice

    # dressed: socks now cover the feet of a subject in socks, bare skin shows between top and waistband
    engine = SyntheticEngine(EngineConfig(resolution=48, views=1, points=3000, detail=0.02, rare_parts=1.0), device="cpu")
    s = engine.subjects(8, torch.Generator().manual_seed(2))
    ids = torch.tensor(LABEL_CHANNELS)[s.gaussians.features[..., 3:].argmax(-1)]
    seen = s.gaussians.opacities > 0.5
    socks = torch.isin(ids, torch.tensor([CLASS_ID["Left_Sock"], CLASS_ID["Right_Sock"]])) & seen
    feet = torch.isin(ids, torch.tensor([CLASS_ID["Left_Foot"], CLASS_ID["Right_Foot"]])) & seen
    torso = (ids == CLASS_ID["Torso"]) & seen
    sock_feet, bare = s.outfit.sock_feet, s.outfit.shoes == SHOES.index("barefoot")
    assert sock_feet.any() and (bare & ~sock_feet).any()
    for b in range(8):
        if sock_feet[b]:
            assert socks[b].sum() > feet[b].sum()  # the foot itself wears the sock
        elif bare[b]:
            assert feet[b].any() and not socks[b].any()
    shown = s.outfit.hem > s.outfit.waist
    assert shown.any() and torso[shown].sum(-1).min() > torso[~shown].sum(-1).float().mean()
    top = (ids == CLASS_ID["Upper_Clothing"]) & seen
    bare = s.outfit.hem >= NO_TOP_HEM
    assert bare.any() and not top[bare].any()  # no top and no jacket: nothing on the torso or arms is clothing
