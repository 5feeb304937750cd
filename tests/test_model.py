"""The reconstructor: shapes, projection-aware attention windows, anchors, files, gradients."""

from __future__ import annotations

import json

import pytest
import torch

from humansplat.cameras import Cameras, orbit_cameras, project_points
from humansplat.gaussians import render
from humansplat.models import (
    AutoencoderConfig,
    Reconstructor,
    ReconstructorConfig,
    farthest_point_indices,
)
from humansplat.models.attention import WindowCrossAttention, window_indices

SIZE = 64


def tiny_config(**kw) -> ReconstructorConfig:
    base = {"image_size": SIZE, "dim": 32, "heads": 2, "depth": 1, "num_anchors": 64, "gaussians_per_anchor": 2, "head_hidden": 8,
            "pixel_skip_channels": 8, "feature_dim": 4, "autoencoder": AutoencoderConfig(latent_channels=4, channels=(8, 8, 16, 16))}
    base.update(kw)
    return ReconstructorConfig(**base)


def cameras(azimuths, size=SIZE) -> Cameras:
    c = orbit_cameras(torch.tensor(azimuths, dtype=torch.float32), 0.0, 2.5, target=(0.0, 0.9, 0.0), fov_deg=40, size=size)
    return Cameras(c.K[None], c.w2c[None], size, size)


def body_like(n=400, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    pts = torch.rand(1, n, 3, generator=g) * torch.tensor([0.5, 1.7, 0.3]) + torch.tensor([-0.25, 0.0, -0.15])
    return pts


def make_model(**kw) -> Reconstructor:
    torch.manual_seed(0)
    m = Reconstructor(tiny_config(**kw))
    m.set_anchor_template(body_like()[0])
    return m


def test_forward_shapes_and_counts():
    m = make_model()
    cams = cameras([0.0, 90.0])
    verts, labels = body_like(), torch.randint(0, 28, (400,))
    g = m(torch.rand(1, 2, 3, SIZE, SIZE), cams, m.body_anchors(verts, labels))
    n_pixel = 2 * (SIZE // 2) ** 2
    assert g.means.shape == (1, n_pixel + 64 * 2, 3)
    assert g.features.shape[-1] == 4 and g.sh.shape[-2:] == (1, 3)
    assert torch.isfinite(g.means).all() and torch.isfinite(g.log_scales).all()
    # anchor Gaussians stay within the bounded offset of their anchor
    anchors = m.body_anchors(verts, labels).xyz
    child = g.means[0, n_pixel:].reshape(64, 2, 3)
    assert ((child - anchors[0, :, None]).abs() <= m.config.anchor_offset + 1e-5).all()
    # pixel Gaussians of view 0 project back onto their own pixel grid (up to the bounded 3D offset)
    uv, z = project_points(g.means[:, : n_pixel // 2], cams[:, 0])
    grid = (torch.stack(torch.meshgrid(torch.arange(32), torch.arange(32), indexing="xy"), -1).reshape(-1, 2) + 0.5) * 2
    assert (z > 0).all() and (uv[0] - grid).abs().max() < 4.0
    logits = m.decode_semantics(g.features)
    assert logits.shape == (1, g.num, 28)


def test_input_resized_to_model_size():
    m = make_model().eval()
    cams_small, cams_big = cameras([0.0]), cameras([0.0], size=2 * SIZE)
    img = torch.rand(1, 1, 3, SIZE, SIZE)
    big = torch.nn.functional.interpolate(img[0], scale_factor=2, mode="nearest")[None]
    a = m.template_free_anchors(cams_small[:, 0])
    with torch.no_grad():
        g1, g2 = m(img, cams_small, a), m(big, cams_big, a)
    assert torch.allclose(g1.means, g2.means, atol=1e-4)


def test_window_indices():
    idx, inside = window_indices(torch.tensor([[2.3, 4.7]]), (8, 8), 3)
    rows, cols = idx[0] // 8, idx[0] % 8
    assert sorted(set(rows.tolist())) == [3, 4, 5] and sorted(set(cols.tolist())) == [1, 2, 3] and inside.all()
    idx, inside = window_indices(torch.tensor([[0.2, 0.2]]), (8, 8), 3)
    assert inside.sum() == 4  # a corner: only the 2x2 in-grid part of the window counts
    idx, _ = window_indices(torch.tensor([[5.9, 1.1]]), (8, 8), 1)
    assert idx.tolist() == [[1 * 8 + 5]]


def test_window_attention_sees_only_its_window_and_visible_views():
    torch.manual_seed(0)
    att = WindowCrossAttention(16, 2, window=3)
    anchors = torch.randn(1, 2, 16)
    tokens = torch.randn(1, 2, 64, 16)
    uv = torch.tensor([[[[2.5, 2.5], [6.5, 6.5]], [[2.5, 2.5], [6.5, 6.5]]]])  # (B,V,A,2)
    visible = torch.tensor([[[True, False], [True, False]]])  # anchor 1 seen by no view
    out = att(anchors, tokens, uv, visible, (8, 8))
    t2 = tokens.clone()
    t2[:, :, 7 * 8 + 7] += 5.0 * torch.randn(16)  # far from anchor 0's window, inside anchor 1's (which is invisible)
    out2 = att(anchors, t2, uv, visible, (8, 8))
    assert torch.allclose(out, out2, atol=1e-6)
    t3 = tokens.clone()
    t3[:, 1, 2 * 8 + 3] += 5.0 * torch.randn(16)  # inside anchor 0's window in view 1
    out3 = att(anchors, t3, uv, visible, (8, 8))
    assert not torch.allclose(out3[:, 0], out[:, 0]) and torch.allclose(out3[:, 1], out[:, 1])
    assert torch.isfinite(out).all()


def test_template_free_anchors_fill_the_silhouette():
    m = make_model(anchor_mode="template_free")
    cams = cameras([30.0])
    mask = torch.zeros(1, 1, SIZE, SIZE)
    mask[..., 8:56, 24:40] = 1
    a = m.template_free_anchors(cams[:, 0], mask)
    assert (a.labels == 28).all()
    uv, z = project_points(a.xyz, cams[:, 0])
    assert (z > 0).all()
    centre = uv[0].mean(0)
    assert (centre - torch.tensor([32.0, 32.0])).abs().max() < 3.0
    assert 40 < float(uv[0, :, 1].max() - uv[0, :, 1].min()) < 56


def test_silhouette_anchors_are_a_volume_with_a_back():
    """An L-shaped matte (a torso and a leg kicked sideways): every anchor projects into it, and they span
    a body's depth about the mid-plane, limbs about as deep as wide, the torso shallower."""
    from humansplat.models.anchors import template_free_anchors
    from humansplat.models.silhouette import TORSO_DEPTH_RATIO

    cams = cameras([0.0])
    mask = torch.zeros(1, SIZE, SIZE)
    mask[:, 4:60, 24:40] = 1  # torso, 16 px wide
    mask[:, 40:46, 40:60] = 1  # a leg out to the side, 6 px thick
    a = template_free_anchors(cams[:, 0], mask, 512, 28, height=1.7, shape="silhouette")
    uv, z = project_points(a.xyz, cams[:, 0])
    u, v = uv[0].long().T
    assert (mask[0, v.clamp(0, SIZE - 1), u.clamp(0, SIZE - 1)] > 0.5).all()
    depth = z[0] - z[0].median()
    assert depth.min() < -0.1 and depth.max() > 0.1  # a front and a back
    metres = 1.7 / 56  # per pixel at the mid-plane: the silhouette is 1.7 m tall
    torso, leg = (u < 40) & (v < 40), u >= 44
    assert depth[torso].abs().max() < 0.16 + 1e-4 and depth[torso].abs().max() > 0.1
    assert depth[torso].abs().max() / (8 * metres) == pytest.approx(TORSO_DEPTH_RATIO, abs=0.1)
    assert depth[leg].abs().max() / (3 * metres) > 0.8  # a limb: about round
    cylinder = template_free_anchors(cams[:, 0], mask, 512, 28, height=1.7, shape="cylinder")
    uv, _ = project_points(cylinder.xyz, cams[:, 0])
    u, v = uv[0].long().T.clamp(0, SIZE - 1)
    assert (mask[0, v, u] > 0.5).float().mean() < 0.9  # the old cylinder spills out of the silhouette


@pytest.mark.parametrize("shape", ["silhouette", "cylinder"])
def test_template_free_anchors_take_one_height_per_item(shape):
    """A (B,) height places each item as that item's scalar height does; half the height, half the distance."""
    from humansplat.models.anchors import template_free_anchors

    cams = Cameras.cat([cameras([0.0])[:, 0], cameras([0.0])[:, 0]])
    mask = torch.zeros(2, SIZE, SIZE)
    mask[:, 8:56, 24:40] = 1
    both = template_free_anchors(cams, mask, 256, 28, height=torch.tensor([1.7, 0.3]), shape=shape)
    for i, h in enumerate((1.7, 0.3)):
        one = template_free_anchors(cams[i : i + 1], mask[i : i + 1], 256, 28, height=h, shape=shape)
        assert torch.allclose(both.xyz[i], one.xyz[0], atol=1e-5)
    half = template_free_anchors(cams[:1], mask[:1], 256, 28, height=0.85, shape=shape)
    depth = lambda a: project_points(a.xyz, cams[:1])[1].median()  # noqa: E731
    full = template_free_anchors(cams[:1], mask[:1], 256, 28, height=1.7, shape=shape)
    assert float(depth(half) / depth(full)) == pytest.approx(0.5, abs=0.02)


def test_farthest_point_subsample_is_deterministic_and_spread():
    pts = body_like(1000)[0]
    i1, i2 = farthest_point_indices(pts, 50), farthest_point_indices(pts.clone(), 50)
    assert torch.equal(i1, i2) and len(set(i1.tolist())) == 50
    d = torch.cdist(pts[i1], pts[i1]) + torch.eye(50) * 9
    rand = pts[torch.randperm(1000, generator=torch.Generator().manual_seed(0))[:50]]
    d_rand = torch.cdist(rand, rand) + torch.eye(50) * 9
    assert d.min() > d_rand.min()


def test_every_trainable_parameter_gets_a_gradient():
    m = make_model()
    cams = cameras([0.0, 180.0])
    g = m(torch.rand(1, 2, 3, SIZE, SIZE), cams, m.body_anchors(body_like(), torch.randint(0, 28, (400,))))
    out = render(g, cams, backend="torch")
    loss = out.rgb.mean() + out.alpha.mean() + m.decode_semantics(out.features).logsumexp(-1).mean()
    loss.backward()
    missing = [n for n, p in m.named_parameters() if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)]
    assert not missing
    assert all(p.grad is None for p in m.encoder.parameters())  # frozen


def test_save_and_load_roundtrip(tmp_path):
    m = make_model().eval()
    m.save_pretrained(tmp_path / "w")
    m2 = Reconstructor.from_pretrained(tmp_path / "w")
    assert torch.equal(m2.anchor_index, m.anchor_index)
    cams = cameras([0.0])
    imgs = torch.rand(1, 1, 3, SIZE, SIZE)
    a = m.body_anchors(body_like(), torch.zeros(400, dtype=torch.long))
    with torch.no_grad():
        assert torch.equal(m(imgs, cams, a).means, m2(imgs, cams, a).means)
    m.save_pretrained(tmp_path / "h", dtype=torch.float16)
    assert (tmp_path / "h" / "model.safetensors").stat().st_size < (tmp_path / "w" / "model.safetensors").stat().st_size * 0.6
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_load_rejects_mismatched_config(tmp_path):
    m = make_model()
    m.save_pretrained(tmp_path / "w")
    cfg = json.loads((tmp_path / "w" / "config.json").read_text())
    cfg["dim"] = 48
    (tmp_path / "w" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="do not match"):
        Reconstructor.from_pretrained(tmp_path / "w")
    cfg["dim"] = 32
    cfg["window_size"] = 3
    (tmp_path / "w" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="unknown keys"):
        Reconstructor.from_pretrained(tmp_path / "w")
    with pytest.raises(ValueError, match="missing"):
        Reconstructor.from_pretrained(tmp_path / "nothing")


def test_body_anchors_need_a_template():
    m = Reconstructor(tiny_config())
    with pytest.raises(RuntimeError, match="set_anchor_template"):
        m.body_anchors(body_like(), torch.zeros(400, dtype=torch.long))


def test_anchor_depth_map_takes_the_front_surface_and_fills_holes():
    from humansplat.models.heads import anchor_depth_map

    # two layers of anchors over the left half of a 64 px view: front at z=2, back at z=3
    ys, xs = torch.meshgrid(torch.arange(4, 64, 8.0), torch.arange(2, 30, 8.0), indexing="ij")
    uv = torch.stack([xs.flatten(), ys.flatten()], -1)
    uv = torch.cat([uv, uv])[None, None]
    z = torch.cat([torch.full((uv.shape[2] // 2,), 2.0), torch.full((uv.shape[2] // 2,), 3.0)])[None, None]
    visible = torch.ones_like(z, dtype=torch.bool)
    hidden = uv.shape[2] // 2  # a back-layer anchor moved closer but hidden changes nothing
    visible[..., hidden] = False
    z[..., hidden] = 0.5
    d = anchor_depth_map(uv, z, visible, (8, 8), (64, 64), (32, 32), torch.tensor([[5.0]]), fill_steps=2)
    assert d.shape == (1, 1, 32, 32)
    assert torch.allclose(d[0, 0, :, :12], torch.tensor(2.0))  # the nearer layer wins where anchors are
    assert torch.allclose(d[0, 0, :, -4:], torch.tensor(5.0))  # beyond the fill distance: the fallback
    assert (d[0, 0, :, 16:18] - 2.0).abs().max() < 1e-5  # one cell beyond the anchors: filled from the neighbour


def test_surface_reference_puts_pixel_gaussians_on_the_anchors_front():
    m = make_model(depth_reference="surface", depth_range=0.5)
    cams = cameras([0.0])
    verts, labels = body_like(), torch.randint(0, 28, (400,))
    anchors = m.body_anchors(verts, labels)
    with torch.no_grad():
        g = m(torch.rand(1, 1, 3, SIZE, SIZE), cams, anchors)
    n_pixel = (SIZE // 2) ** 2
    uv, z = project_points(g.means[:, :n_pixel], cams[:, 0])
    _, za = project_points(anchors.xyz, cams[:, 0])
    # near-zero raw depth at init: pixel Gaussians start at the anchors' front depth, not their centroid
    centre = (uv[0] - SIZE / 2).abs().amax(-1) < 6
    assert (z[0][centre] - za.min()).abs().max() < 0.1
    assert (z[0][centre] - za.mean()).abs().min() > 0.05


def test_photo_colors_start_at_the_photos_pixels_and_the_anchors_projection():
    from humansplat.gaussians import sh_to_rgb
    from humansplat.models.anchors import UNSEEN_COLOR, anchor_color_prior

    m = make_model(photo_colors=True)
    m.load_state_dict(m.colors_at_prior(m.state_dict()))
    cams = cameras([0.0])
    photo = torch.zeros(1, 1, 3, SIZE, SIZE)
    photo[..., : SIZE // 2] = torch.tensor([0.1, 0.8, 0.2])[:, None, None]  # a vivid green left half
    photo[..., SIZE // 2 :] = torch.tensor([0.9, 0.8, 0.1])[:, None, None]  # a yellow right half
    anchors = m.body_anchors(body_like(), torch.randint(0, 28, (400,)))
    with torch.no_grad():
        g = m(photo, cams, anchors)
    rgb = sh_to_rgb(g.sh[0, :, 0])
    n_pixel = (SIZE // 2) ** 2
    # per-pixel Gaussians carry exactly their pixel's colour (2x2 average; the halves are uniform)
    pixel = rgb[:n_pixel].reshape(SIZE // 2, SIZE // 2, 3)
    assert torch.allclose(pixel[:, 0], torch.tensor([0.1, 0.8, 0.2]).expand(SIZE // 2, 3), atol=1e-4)
    assert torch.allclose(pixel[:, -1], torch.tensor([0.9, 0.8, 0.1]).expand(SIZE // 2, 3), atol=1e-4)
    # anchor Gaussians (front and back alike) take the photo's colour where their anchor projects
    uv, z = project_points(anchors.xyz, cams[:, 0])
    visible = (z > 0.05) & (uv >= 0).all(-1) & (uv < SIZE).all(-1)
    expected = anchor_color_prior(photo[:, 0], uv, visible)[0]
    assert torch.allclose(rgb[n_pixel:].reshape(64, 2, 3), expected[:, None].expand(64, 2, 3), atol=1e-4)
    far_left = visible[0] & (uv[0, :, 0] < SIZE / 2 - 6)
    assert far_left.any() and (expected[far_left, 1] > 0.7).all() and (expected[far_left, 0] < 0.2).all()
    # an anchor outside the photo gets the neutral prior
    assert torch.allclose(anchor_color_prior(photo[:, 0], torch.tensor([[[-50.0, 10.0]]]), torch.tensor([[False]])),
                          torch.full((1, 1, 3), UNSEEN_COLOR))


def test_hidden_anchors_take_their_parts_seen_colour_not_the_colour_in_front_of_them():
    from humansplat.models.anchors import OCCLUSION_MARGIN_M, UNSEEN_COLOR, anchor_color_prior, occluded_anchors

    S = 64
    photo = torch.zeros(1, 3, S, S)
    photo[:, :, :, : S // 2] = torch.tensor([0.8, 0.2, 0.1])[:, None, None]  # a red beard on the left
    photo[:, :, :, S // 2 :] = torch.tensor([0.2, 0.2, 0.7])[:, None, None]  # blue hair on the right
    # anchors 0, 1: the face (label 3) in front of the red half, one of them on the same ray 0.3 m behind;
    # 2: hair (label 5), seen on the blue half; 3: hair behind the red face; 4: an unlabelled hidden anchor
    uv = torch.tensor([[[10.0, 30.0], [10.5, 30.5], [50.0, 30.0], [11.0, 31.0], [9.0, 29.0]]])
    z = torch.tensor([[2.0, 2.3, 2.0, 2.3, 2.4]])
    labels = torch.tensor([[3, 3, 5, 5, 28]])
    visible = torch.ones(1, 5, dtype=torch.bool)
    hidden = occluded_anchors(uv, z, visible, S)
    assert hidden.tolist() == [[False, True, False, True, True]]
    assert not occluded_anchors(uv, z.clamp_max(2.0 + OCCLUSION_MARGIN_M / 2), visible, S).any()  # within the margin: seen
    plain = anchor_color_prior(photo, uv, visible)
    aware = anchor_color_prior(photo, uv, visible, z, labels)
    red, blue = torch.tensor([0.8, 0.2, 0.1]), torch.tensor([0.2, 0.2, 0.7])
    assert torch.allclose(plain[0, 3], red, atol=1e-4)  # without occlusion the hair behind the face turns red
    assert torch.allclose(aware[0, 3], blue, atol=1e-4)  # with it, the seen hair's colour
    assert torch.allclose(aware[0, 1], red, atol=1e-4)  # the hidden face anchor: the seen face's colour
    assert torch.allclose(aware[0, 4], (red + blue) / 2, atol=1e-4)  # no seen anchor of its label: all seen ones
    assert torch.allclose(aware[0, [0, 2]], plain[0, [0, 2]])  # seen anchors keep the photo's colour
    none_seen = anchor_color_prior(photo, uv, torch.zeros(1, 5, dtype=torch.bool), z, labels)
    assert torch.allclose(none_seen, torch.full_like(none_seen, UNSEEN_COLOR))
    with pytest.raises(ValueError, match="labels"):
        anchor_color_prior(photo, uv, visible, z)


def test_the_occlusion_option_changes_only_hidden_anchors_colours():
    from humansplat.gaussians import sh_to_rgb

    photo = torch.rand(1, 1, 3, SIZE, SIZE)
    cams = cameras([0.0])
    anchors = make_model().body_anchors(body_like(), torch.randint(0, 28, (400,)))
    out = []
    for occlusion in (False, True):
        m = make_model(photo_colors=True, anchor_prior_occlusion=occlusion)
        m.load_state_dict(m.colors_at_prior(m.state_dict()))
        with torch.no_grad():
            out.append(sh_to_rgb(m(photo, cams, anchors).sh[0, :, 0]))
    n_pixel = (SIZE // 2) ** 2
    assert torch.equal(out[0][:n_pixel], out[1][:n_pixel])  # per-pixel Gaussians: untouched
    changed = (out[0][n_pixel:] - out[1][n_pixel:]).abs().amax(-1) > 1e-3
    assert 0 < changed.sum() < len(changed)  # some anchors (the body's far side) are hidden, not all


def test_photo_color_prior_reads_prior_images_when_given():
    from humansplat.gaussians import sh_to_rgb

    m = make_model(photo_colors=True)
    m.load_state_dict(m.colors_at_prior(m.state_dict()))
    cams = cameras([0.0])
    grey = torch.full((1, 1, 3, SIZE, SIZE), 0.5)
    green = torch.tensor([0.1, 0.8, 0.2])[:, None, None].expand(1, 1, 3, SIZE, SIZE)
    anchors = m.body_anchors(body_like(), torch.randint(0, 28, (400,)))
    with torch.no_grad():
        plain, primed = m(grey, cams, anchors), m(grey, cams, anchors, prior_images=green)
    n_pixel = (SIZE // 2) ** 2
    assert torch.allclose(sh_to_rgb(primed.sh[0, :n_pixel, 0]), torch.tensor([0.1, 0.8, 0.2]).expand(n_pixel, 3), atol=1e-4)
    assert torch.allclose(sh_to_rgb(plain.sh[0, :n_pixel, 0]), torch.full((n_pixel, 3), 0.5), atol=1e-4)
    assert torch.equal(plain.means, primed.means)  # only the colour prior reads them
    with pytest.raises(ValueError, match="prior_images"):
        m(grey, cams, anchors, prior_images=green[..., :8])


def test_colors_at_prior_needs_the_prior():
    m = make_model()
    with pytest.raises(ValueError, match="photo_colors"):
        m.colors_at_prior(m.state_dict())


def test_a_finer_pixel_path_keeps_every_pixel_of_the_larger_photo():
    """pixel_size 2x image_size: the transformer sees the photo at image_size, the per-pixel Gaussians sit on the
    rays of the larger photo's pixels and carry their own colours (a 1-px checker that image_size averages away)."""
    from humansplat.gaussians import sh_to_rgb

    big = 2 * SIZE
    m = make_model(photo_colors=True, pixel_size=big, gaussian_stride=1)
    m.load_state_dict(m.colors_at_prior(m.state_dict()))
    assert m.config.pixel_grid == big
    ys, xs = torch.meshgrid(torch.arange(big), torch.arange(big), indexing="ij")
    checker = ((ys + xs) % 2).float()
    green, red = torch.tensor([0.1, 0.8, 0.2]), torch.tensor([0.9, 0.2, 0.1])
    photo = (green[:, None, None] * checker + red[:, None, None] * (1 - checker))[None, None]
    cams = cameras([0.0], size=big)
    anchors = m.body_anchors(body_like(), torch.randint(0, 28, (400,)))
    with torch.no_grad():
        g = m(photo, cams, anchors)
    n_pixel = big**2
    assert g.num == n_pixel + 64 * 2
    rgb = sh_to_rgb(g.sh[0, :n_pixel, 0]).reshape(big, big, 3)
    assert torch.allclose(rgb, photo[0, 0].permute(1, 2, 0), atol=1e-4)
    uv, z = project_points(g.means[:, :n_pixel], cams[:, 0])
    grid = torch.stack([xs, ys], -1).reshape(-1, 2) + 0.5
    assert (z > 0).all() and (uv[0] - grid).abs().max() < 2.0
    # the same weights without the finer path: every tensor has the same shape, only the grid changes
    coarse = Reconstructor(tiny_config(photo_colors=True, gaussian_stride=1))
    coarse.load_state_dict(m.state_dict())
    with pytest.raises(ValueError, match="pixel_size"):
        tiny_config(pixel_size=SIZE + 16)
