"""On CUDA: the PyTorch rasterizer (the reference) and gsplat agree in images and gradients."""

from __future__ import annotations

import pytest
import torch

from humansplat.cameras import orbit_cameras
from humansplat.gaussians import Gaussians, gsplat_available, render
from humansplat.gaussians.sh import sh_to_color

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
    pytest.mark.skipif(not gsplat_available(), reason="needs gsplat"),
]


def random_scene(n: int, seed: int, degree: int = 3, n_features: int = 5) -> Gaussians:
    g = torch.Generator().manual_seed(seed)
    return Gaussians(
        means=(torch.rand(n, 3, generator=g) - 0.5) * torch.tensor([0.8, 1.6, 0.5]),
        quats=torch.randn(n, 4, generator=g),
        log_scales=torch.log(0.005 + 0.04 * torch.rand(n, 3, generator=g)),
        opacity_logits=torch.randn(n, generator=g) * 1.5,
        sh=torch.randn(n, (degree + 1) ** 2, 3, generator=g) * 0.3,
        features=torch.randn(n, n_features, generator=g),
    ).to("cuda")


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().norm() / b.detach().norm().clamp_min(1e-12))


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.detach().flatten().double(), b.detach().flatten().double(), dim=0))


@pytest.mark.parametrize("seed, n, size", [(0, 2000, (96, 128)), (1, 20000, (160, 200))])
def test_torch_matches_gsplat_images_and_gradients(seed, n, size):
    scene = random_scene(n, seed)
    cams = orbit_cameras(torch.tensor([0.0, 75.0, 200.0]), torch.tensor([0.0, 20.0, -10.0]), 2.2, fov_deg=50, size=size).to("cuda")
    bg = torch.tensor([0.2, 0.5, 0.9], device="cuda")
    gen = torch.Generator(device="cuda").manual_seed(seed)
    results = {}
    for backend in ("torch", "gsplat"):
        params = [t.detach().clone().requires_grad_(True) for t in (scene.means, scene.quats, scene.log_scales, scene.opacity_logits, scene.sh, scene.features)]
        out = render(Gaussians(*params), cams, background=bg, backend=backend)
        if "weights" not in results:
            results["weights"] = [torch.randn(o.shape, device="cuda", generator=gen) for o in (out.rgb, out.alpha, out.depth, out.features)]
        loss = sum((o * w).sum() for o, w in zip((out.rgb, out.alpha, out.depth, out.features), results["weights"]))
        loss.backward()
        results[backend] = (out, [p.grad for p in params])
    (ot, gt), (og, gg) = results["torch"], results["gsplat"]
    assert 0.05 < ot.alpha.mean() < 0.95  # a scene with content and empty space
    errors = {name: rel_err(getattr(ot, name), getattr(og, name)) for name in ("rgb", "alpha", "depth", "features")}
    names = ("means", "quats", "log_scales", "opacity_logits", "sh (colours)", "features")
    cosines = {name: cosine(a, b) for name, a, b in zip(names, gt, gg)}
    print(f"n={n} size={size}: relative errors", {k: f"{v:.1e}" for k, v in errors.items()}, "gradient cosines", {k: f"{v:.5f}" for k, v in cosines.items()})
    for name, err in errors.items():
        assert err <= 1e-3, f"{name}: relative error {err:.2e}"
    for name, c in cosines.items():
        assert c >= 0.99, f"gradient of {name}: cosine {c:.4f}"


def test_sh_matches_gsplat():
    from gsplat import spherical_harmonics

    g = torch.Generator(device="cuda").manual_seed(0)
    sh = torch.randn(1000, 16, 3, device="cuda", generator=g)
    dirs = torch.randn(1000, 3, device="cuda", generator=g)
    for degree in range(4):
        ref = torch.clamp_min(spherical_harmonics(degree, dirs, sh) + 0.5, 0.0)
        torch.testing.assert_close(sh_to_color(sh, dirs, degree), ref, atol=1e-5, rtol=1e-5)
