"""Colour refinement against the photo: it fits what the camera sees and leaves geometry alone."""

import torch

from humansplat.cameras import orbit_cameras, project_points
from humansplat.gaussians import Gaussians, render
from humansplat.refine import RefineConfig, photo_psnr, refine_colors


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
