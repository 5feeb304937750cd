"""Colour refinement against the photo: it fits what the camera sees and leaves geometry alone."""

import torch

from humansplat.cameras import orbit_cameras, project_points
from humansplat.gaussians import Gaussians, render
from humansplat.refine import RefineConfig, photo_psnr, refine, refine_colors


def scene(colors: torch.Tensor) -> Gaussians:
    g = torch.Generator().manual_seed(0)
    n = colors.shape[0]
    means = (torch.rand(n, 3, generator=g) - 0.5) * torch.tensor([0.6, 1.2, 0.3])
    quats = torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=-1)
    return Gaussians.from_activated(means, quats, torch.full((n, 3), 0.05), torch.full((n,), 0.9), colors=colors)


def test_refine_fits_the_photo_and_keeps_geometry():
    n = 200
    truth = scene(torch.rand(n, 3, generator=torch.Generator().manual_seed(1)))
    guess = scene(torch.full((n, 3), 0.5))
    cam = orbit_cameras(torch.tensor([0.0]), 0.0, 2.5, fov_deg=40, size=64)
    photo = render(truth, cam).rgb[0].permute(2, 0, 1)
    before = photo_psnr(guess, cam, photo, resolution=64)
    refined = refine_colors(guess, cam, photo, RefineConfig(steps=60, resolution=64, prior_weight=0.0))
    after = photo_psnr(refined, cam, photo, resolution=64)
    assert after > before + 6
    for name in ("means", "quats", "log_scales", "opacity_logits"):
        assert torch.equal(getattr(refined, name), getattr(guess, name))
    # the far side of the subject keeps its predicted colours exactly
    z = project_points(guess.means, cam[0])[1]
    w = guess.opacities
    far = z > (z * w).sum() / w.sum()
    assert far.sum() > 50 and torch.equal(refined.sh[far], guess.sh[far])
    # seen from behind, Gaussians the photo cannot see keep their predicted colour: the back changes less
    back = orbit_cameras(torch.tensor([180.0]), 0.0, 2.5, fov_deg=40, size=64)
    front_change = (render(refined, cam).rgb - render(guess, cam).rgb).abs().mean()
    back_change = (render(refined, back).rgb - render(guess, back).rgb).abs().mean()
    assert back_change < front_change


def test_zero_steps_is_a_no_op():
    g = scene(torch.rand(10, 3))
    cam = orbit_cameras(torch.tensor([0.0]), 0.0, 2.5, size=32)
    assert refine_colors(g, cam, torch.ones(3, 32, 32), RefineConfig(steps=0)) is g


def test_seeded_refinement_is_bit_identical():
    """Render gradients sum repeated indices in a fixed order (rasterize_torch._take), so refining twice
    gives the same bits (before, ~40 colours differed by 2e-7 between runs of the pipeline)."""
    n = 400
    guess = scene(torch.full((n, 3), 0.5))
    cam = orbit_cameras(torch.tensor([0.0]), 0.0, 2.5, fov_deg=40, size=48)
    photo = render(scene(torch.rand(n, 3, generator=torch.Generator().manual_seed(2))), cam).rgb[0].permute(2, 0, 1)
    cfg = RefineConfig(steps=4, resolution=48, mode="full")
    a, b = (refine(guess, cam, photo, torch.ones(48, 48), cfg) for _ in range(2))
    for name in ("means", "log_scales", "opacity_logits", "sh"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_full_refinement_fits_matte_and_colours_and_stays_near_the_prediction():
    n = 300
    truth = scene(torch.rand(n, 3, generator=torch.Generator().manual_seed(1)))
    shifted = Gaussians(truth.means + torch.tensor([0.02, 0.0, 0.0]), truth.quats, truth.log_scales, truth.opacity_logits,
                        scene(torch.full((n, 3), 0.5)).sh)  # fmt: skip
    cam = orbit_cameras(torch.tensor([0.0]), 0.0, 2.5, fov_deg=40, size=64)
    out = render(truth, cam)
    photo, matte = out.rgb[0].permute(2, 0, 1), out.alpha[0, ..., 0]
    cfg = RefineConfig(steps=40, resolution=64, mode="full")
    colors_only = refine(shifted, cam, photo, matte, RefineConfig(steps=40, resolution=64, mode="colors"))
    full = refine(shifted, cam, photo, matte, cfg)
    assert photo_psnr(full, cam, photo, 64) > photo_psnr(colors_only, cam, photo, 64) + 0.5
    near = z_near(shifted, cam)
    drift = (full.means - shifted.means).norm(dim=-1)
    assert drift[near].max() < 0.05 and torch.equal(full.means[~near], shifted.means[~near])
    ratio = (full.log_scales - shifted.log_scales).abs().max()
    assert ratio <= cfg.max_log_scale_change + 1e-6


def z_near(g: Gaussians, cam) -> torch.Tensor:
    z = project_points(g.means, cam[0])[1]
    return z <= (z * g.opacities).sum() / g.opacities.sum()


def test_extra_target_views_are_fitted_too():
    """With extra views (e.g. generated ones at the back) every Gaussian may move: the back view's error
    falls, which the photo alone cannot do (its far side stays frozen); the photo still fits."""
    n = 120
    truth = scene(torch.rand(n, 3, generator=torch.Generator().manual_seed(4)))
    guess = scene(torch.full((n, 3), 0.5))
    cam = orbit_cameras(torch.tensor([0.0]), 0.0, 2.5, fov_deg=40, size=32)
    views = orbit_cameras(torch.tensor([150.0, 210.0]), 0.0, 2.5, fov_deg=40, size=32)
    photo = render(truth, cam).rgb[0].permute(2, 0, 1)
    targets = render(truth, views).rgb.permute(0, 3, 1, 2)
    err = lambda g: float((render(g, views).rgb.permute(0, 3, 1, 2) - targets).square().mean())  # noqa: E731
    cfg = RefineConfig(steps=20, resolution=32, mode="full")
    photo_only = refine(guess, cam, photo, None, cfg)
    both = refine(guess, cam, photo, None, cfg, targets, views)
    assert err(both) < 0.6 * err(guess) and err(both) < 0.8 * err(photo_only)
    assert photo_psnr(both, cam, photo, resolution=32) > photo_psnr(guess, cam, photo, resolution=32) + 3
    z = project_points(guess.means, cam[0])[1]
    far = z > (z * guess.opacities).sum() / guess.opacities.sum()
    assert torch.equal(photo_only.sh[far], guess.sh[far]) and not torch.equal(both.sh[far], guess.sh[far])
    # a higher weight on the views fits them closer
    heavy = refine(guess, cam, photo, None, RefineConfig(steps=20, resolution=32, mode="full", view_weight=2.0), targets, views)
    assert err(heavy) < err(both)
    import pytest

    with pytest.raises(ValueError, match="go together"):
        refine(guess, cam, photo, None, cfg, targets, None)


def test_color_scores_see_a_hue_shift_that_psnr_hardly_sees():
    """A dark green garment rendered dark navy: a small PSNR cost, a large colour difference and lost chroma."""
    from humansplat.metrics import color_scores, psnr, rgb_to_lab

    white_lab = rgb_to_lab(torch.ones(1, 3, 1, 1)).flatten()
    assert torch.allclose(white_lab, torch.tensor([100.0, 0.0, 0.0]), atol=0.05)
    green = torch.tensor([0.05, 0.25, 0.12])[None, :, None, None].expand(1, 3, 32, 32)
    navy = torch.tensor([0.08, 0.12, 0.2])[None, :, None, None].expand(1, 3, 32, 32)
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    photo = torch.where(mask > 0, green, torch.ones_like(green))
    render = torch.where(mask > 0, navy, torch.ones_like(navy))
    assert float(psnr((render - photo).square().mean())) > 22  # PSNR barely minds
    same, shifted = color_scores(photo, photo, mask), color_scores(render, photo, mask)
    assert float(same["delta_e"][0]) < 1e-3 and abs(float(same["chroma_ratio"][0]) - 1) < 1e-5
    assert float(shifted["delta_e"][0]) > 20  # far beyond just noticeable (about 2.3)
    grey = torch.where(mask > 0, photo.mean(1, keepdim=True).expand_as(photo), photo)
    assert float(color_scores(grey, photo, mask)["chroma_ratio"][0]) < 0.05


def test_colour_refinement_on_the_sparse_operator_matches_rendering(monkeypatch):
    """On the CPU the colour mode renders through gaussians.render.color_operator; the result is that of
    rasterizing every step (forced here by making refine think gsplat renders)."""
    import humansplat.refine as rf

    n = 300
    guess = scene(torch.full((n, 3), 0.5))
    cam = orbit_cameras(torch.tensor([0.0]), 0.0, 2.5, fov_deg=40, size=48)
    photo = render(scene(torch.rand(n, 3, generator=torch.Generator().manual_seed(3))), cam).rgb[0].permute(2, 0, 1)
    cfg = RefineConfig(steps=8, resolution=48)
    fast = refine(guess, cam, photo, None, cfg)
    monkeypatch.setattr(rf, "auto_backend", lambda device: "gsplat")  # render() itself still picks torch on the CPU
    slow = refine(guess, cam, photo, None, cfg)
    torch.testing.assert_close(fast.sh, slow.sh, atol=1e-5, rtol=1e-4)
    assert (fast.sh - guess.sh).abs().max() > 0.05  # it did fit something
