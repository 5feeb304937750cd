"""The Gaussian container, SH, and the PyTorch rasterizer against a brute-force per-pixel reference."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.spatial.transform import Rotation

from humansplat.cameras import Cameras, look_at, orbit_cameras
from humansplat.gaussians import Gaussians, render
from humansplat.gaussians.sh import SH_C0, rgb_to_sh, sh_basis, sh_to_color, sh_to_rgb


def random_gaussians(n: int, seed: int = 0, degree: int = 0, n_features: int = 0, spread: float = 0.3, dtype=torch.float32) -> Gaussians:
    g = torch.Generator().manual_seed(seed)
    return Gaussians(
        means=torch.randn(n, 3, generator=g, dtype=dtype) * spread,
        quats=torch.randn(n, 4, generator=g, dtype=dtype),
        log_scales=torch.log(0.03 + 0.08 * torch.rand(n, 3, generator=g, dtype=dtype)),
        opacity_logits=torch.randn(n, generator=g, dtype=dtype),
        sh=torch.randn(n, (degree + 1) ** 2, 3, generator=g, dtype=dtype) * 0.5,
        features=torch.randn(n, n_features, generator=g, dtype=dtype) if n_features else None,
    )


# ---------------------------------------------------------------- container


def test_activations_and_inverse():
    n = 7
    means, rot = torch.randn(n, 3), torch.nn.functional.normalize(torch.randn(n, 4), dim=-1)
    scales, opac, rgb = torch.rand(n, 3) + 0.01, torch.rand(n) * 0.9 + 0.05, torch.rand(n, 3)
    g = Gaussians.from_activated(means, rot, scales, opac, colors=rgb)
    torch.testing.assert_close(g.scales, scales)
    torch.testing.assert_close(g.opacities, opac)
    torch.testing.assert_close(g.rotations, rot)
    torch.testing.assert_close(sh_to_rgb(g.sh[:, 0]), rgb)
    assert g.sh_degree == 0 and g.num == n and g.batch_shape == ()
    # raw quaternions are normalised on activation; scale of the raw value does not matter
    g2 = Gaussians(means, rot * 3.0, g.log_scales, g.opacity_logits, g.sh)
    torch.testing.assert_close(g2.rotations, rot)


def test_container_shapes_select_cat():
    g = random_gaussians(10, degree=1, n_features=4)
    assert g.sh_degree == 1 and g.features.shape == (10, 4)
    sel = g.select(torch.arange(10) % 2 == 0)
    assert sel.num == 5 and sel.features.shape == (5, 4)
    torch.testing.assert_close(sel.means, g.means[::2])
    g0 = random_gaussians(3, degree=0, n_features=4)
    both = Gaussians.cat([g, g0])
    assert both.num == 13 and both.sh.shape == (13, 4, 3)
    assert torch.all(both.sh[10:, 1:] == 0)
    batched = Gaussians(*(t.expand(2, *t.shape) for t in (g.means, g.quats, g.log_scales, g.opacity_logits, g.sh, g.features)))
    assert batched.batch_shape == (2,) and batched.select(slice(0, 4)).means.shape == (2, 4, 3)
    first = batched[1]
    assert first.batch_shape == () and first.num == 10
    torch.testing.assert_close(first.sh, g.sh)
    with pytest.raises(IndexError):
        g[0]
    with pytest.raises(ValueError):
        Gaussians(g.means, g.quats[:5], g.log_scales, g.opacity_logits, g.sh)
    with pytest.raises(ValueError):
        Gaussians(g.means, g.quats, g.log_scales, g.opacity_logits, torch.zeros(10, 5, 3))


# ---------------------------------------------------------------- SH


def test_sh_basis_is_orthonormal():
    # Monte-Carlo integral of Y_i Y_j over the sphere is the identity
    d = torch.nn.functional.normalize(torch.randn(400_000, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64), dim=-1)
    Y = sh_basis(d, 3)
    gram = 4 * math.pi * (Y.T @ Y) / len(d)
    torch.testing.assert_close(gram, torch.eye(16, dtype=torch.float64), atol=0.03, rtol=0)


def test_sh_known_values_and_rgb():
    assert SH_C0 == pytest.approx(0.28209479177387814)
    d = torch.tensor([[0.0, 0.0, 1.0]])
    Y = sh_basis(d, 1)[0]
    # degree-1 INRIA order is (-y, z, -x) times sqrt(3 / 4 pi)
    torch.testing.assert_close(Y[1:], torch.tensor([0.0, 0.4886025, 0.0]))
    rgb = torch.tensor([0.2, 0.5, 0.9])
    torch.testing.assert_close(sh_to_color(rgb_to_sh(rgb)[None], None, 0), rgb)
    # colours are clamped at 0 (not at 1) like INRIA
    assert sh_to_color(torch.full((1, 3), -10.0), None, 0).min() == 0
    assert sh_to_color(torch.full((1, 3), 10.0), None, 0).max() > 1


# ---------------------------------------------------------------- brute-force reference


def reference_render(g: Gaussians, cams: Cameras, background, near=0.01, far=100.0):
    """Per pixel, every Gaussian in depth order, float64, projection written independently
    (scipy quaternions, Jacobian by autograd). Valid for Gaussians inside the view frustum."""
    g = g.detach().to(dtype=torch.float64)
    rgb_all, alpha_all, depth_all, feat_all = [], [], [], []
    for v in range(len(cams)):
        K, w2c = cams.K[v].double(), cams.w2c[v].double()
        H, W = cams.height, cams.width
        R, t = w2c[:3, :3], w2c[:3, 3]
        centre = -R.T @ t
        ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64) + 0.5, torch.arange(W, dtype=torch.float64) + 0.5, indexing="ij")
        pix = torch.stack([xs, ys], -1).reshape(-1, 2)
        deg = g.sh_degree
        C = 3 + (g.features.shape[-1] if g.features is not None else 0)
        out = torch.zeros(len(pix), C, dtype=torch.float64)
        T = torch.ones(len(pix), dtype=torch.float64)
        done = torch.zeros(len(pix), dtype=torch.bool)
        dsum = torch.zeros(len(pix), dtype=torch.float64)
        mc = g.means @ R.T + t
        for i in torch.argsort(mc[:, 2]).tolist():
            z = mc[i, 2]
            if not (near <= z <= far):
                continue
            rot = torch.from_numpy(Rotation.from_quat(g.quats[i, [1, 2, 3, 0]].numpy()).as_matrix())
            cov3 = rot @ torch.diag(g.scales[i] ** 2) @ rot.T
            proj = lambda p: (K @ p)[:2] / p[2]  # noqa: E731
            J = torch.autograd.functional.jacobian(proj, mc[i])
            cov2 = J @ (R @ cov3 @ R.T) @ J.T + 0.3 * torch.eye(2, dtype=torch.float64)
            mu = proj(mc[i])
            d = pix - mu
            q = 0.5 * (d @ torch.linalg.inv(cov2) * d).sum(-1)
            a = (g.opacities[i] * torch.exp(-q)).clamp(max=0.999)
            a = torch.where(a >= 1 / 255, a, torch.zeros_like(a))
            a = torch.where(done, torch.zeros_like(a), a)
            nxt = T * (1 - a)
            stop = (nxt <= 1e-4) & (a > 0)
            done |= stop
            a = torch.where(stop, torch.zeros_like(a), a)
            w = a * T
            col = sh_to_color(g.sh[i], g.means[i] - centre, deg) if deg else sh_to_color(g.sh[i], None, 0)
            feat = torch.cat([col, g.features[i]]) if g.features is not None else col
            out += w[:, None] * feat
            dsum += w * z
            T = T * (1 - a)
        alpha = 1 - T
        bg = torch.as_tensor(background, dtype=torch.float64).expand(3)
        rgb_all.append((out[:, :3] + T[:, None] * bg).reshape(H, W, 3))
        alpha_all.append(alpha.reshape(H, W, 1))
        depth_all.append(torch.where(alpha > 0, dsum / alpha.clamp_min(1e-10), torch.zeros_like(dsum)).reshape(H, W, 1))
        feat_all.append(out[:, 3:].reshape(H, W, -1))
    return torch.stack(rgb_all), torch.stack(alpha_all), torch.stack(depth_all), torch.stack(feat_all)


def small_cameras(size=(40, 32)) -> Cameras:
    return orbit_cameras(torch.tensor([0.0, 120.0]), torch.tensor([10.0, -20.0]), 2.5, fov_deg=40, size=size)


@pytest.mark.parametrize("degree", [0, 3])
def test_torch_rasterizer_matches_brute_force(degree):
    g = random_gaussians(60, seed=1, degree=degree, n_features=2)
    g.opacity_logits[:5] = 8.0  # some nearly opaque ones exercise the 0.999 clamp and early termination
    cams = small_cameras()
    bg = torch.tensor([0.1, 0.7, 0.3])
    out = render(g.to(dtype=torch.float64), cams.to(dtype=torch.float64), background=bg, backend="torch")
    rgb, alpha, depth, feat = reference_render(g, cams, bg)
    assert out.rgb.shape == (2, 32, 40, 3) and out.features.shape == (2, 32, 40, 2)
    assert alpha.max() > 0.99 and (alpha < 1e-6).any()  # the scene has both empty and saturated pixels
    torch.testing.assert_close(out.rgb, rgb, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.alpha, alpha, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.features, feat, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.depth, depth, atol=1e-5, rtol=0)


def test_float32_and_many_tiles_match_reference():
    # an image of several 16 px tiles, with Gaussians spanning tile borders
    g = random_gaussians(150, seed=2, spread=0.4)
    cams = orbit_cameras(torch.tensor([30.0]), 0.0, 2.5, fov_deg=45, size=(70, 50))
    out = render(g, cams, background=0.0, backend="torch")
    rgb, alpha, _, _ = reference_render(g, cams, 0.0)
    torch.testing.assert_close(out.rgb.double(), rgb, atol=2e-4, rtol=0)
    torch.testing.assert_close(out.alpha.double(), alpha, atol=2e-4, rtol=0)


def test_single_gaussian_geometry_depth_and_background():
    # one isotropic Gaussian straight ahead: peak at the projected centre, expected depth = its z
    cams = Cameras(torch.tensor([[[50.0, 0, 16], [0, 50.0, 16], [0, 0, 1]]]), look_at(torch.tensor([[0.0, 0, -2]]), torch.zeros(1, 3)), 32, 32)
    g = Gaussians.from_activated(
        torch.tensor([[0.1, 0.0, 0.0]]), torch.tensor([[1.0, 0, 0, 0]]), torch.full((1, 3), 0.05), torch.tensor([0.8]), colors=torch.tensor([[1.0, 0.0, 0.0]])
    )
    out = render(g, cams, background=torch.tensor([0.0, 0.0, 1.0]), backend="torch")
    a = out.alpha[0, ..., 0]
    iy, ix = divmod(int(a.argmax()), 32)
    # look_at from -Z towards +Z: camera x points to world -X, so world +X lands left of centre
    assert (iy, ix) == (15, 13) or (iy, ix) == (16, 13), (iy, ix)
    # footprint sigma = f s / z = 1.25 px, dilated by 0.3 px^2; the nearest pixel centre is 0.5 px off in y
    assert a.max() == pytest.approx(0.8 * math.exp(-0.5 * 0.25 / (1.25**2 + 0.3)), rel=1e-5)
    assert torch.allclose(out.depth[0][a > 0], torch.tensor(2.0))
    assert torch.all(out.depth[0][a == 0] == 0)
    corner = out.rgb[0, 0, 0]
    torch.testing.assert_close(corner, torch.tensor([0.0, 0.0, 1.0]))  # background where empty
    peak = out.rgb[0, iy, ix]
    torch.testing.assert_close(peak, torch.tensor([1.0, 0.0, 0.0]) * a.max() + torch.tensor([0.0, 0.0, 1.0]) * (1 - a.max()))


def test_batched_scenes_and_culling():
    g1, g2 = random_gaussians(30, seed=3), random_gaussians(30, seed=4)
    batched = Gaussians(*(torch.stack([a, b]) for a, b in zip(
        (g1.means, g1.quats, g1.log_scales, g1.opacity_logits, g1.sh), (g2.means, g2.quats, g2.log_scales, g2.opacity_logits, g2.sh))))
    cams = small_cameras()
    cams_b = Cameras(cams.K.expand(2, 2, 3, 3), cams.w2c.expand(2, 2, 4, 4), cams.width, cams.height)
    out = render(batched, cams_b, backend="torch")
    assert out.rgb.shape == (2, 2, 32, 40, 3)
    torch.testing.assert_close(out.rgb[1], render(g2, cams, backend="torch").rgb)
    # shared (V,) cameras broadcast over the scene batch
    torch.testing.assert_close(render(batched, cams, backend="torch").rgb, out.rgb)
    # everything behind the near plane (or beyond far) renders nothing
    assert render(g1, cams, near=10.0, backend="torch").alpha.max() == 0
    assert render(g1, cams, far=1.0, backend="torch").alpha.max() == 0
    empty = render(g1.select(torch.zeros(30, dtype=torch.bool)), cams, background=0.3, backend="torch")
    assert torch.all(empty.rgb == 0.3) and torch.all(empty.depth == 0)


def test_gradients_match_finite_differences():
    g = random_gaussians(6, seed=5, degree=1, n_features=1, spread=0.2, dtype=torch.float64)
    cams = orbit_cameras(torch.tensor([20.0]), 10.0, 2.0, fov_deg=40, size=(20, 16)).to(dtype=torch.float64)
    weights = [torch.randn(1, 16, 20, c, generator=torch.Generator().manual_seed(c), dtype=torch.float64) for c in (3, 1, 1, 1)]

    def f(means, quats, log_scales, opac, sh, feats):
        out = render(Gaussians(means, quats, log_scales, opac, sh, feats), cams, background=0.5, backend="torch")
        return sum((o * w).sum() for o, w in zip((out.rgb, out.alpha, out.depth, out.features), weights))

    inputs = tuple(t.clone().requires_grad_(True) for t in (g.means, g.quats, g.log_scales, g.opacity_logits, g.sh, g.features))
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=True)


@pytest.mark.parametrize("degree", [0, 2])
def test_color_operator_is_the_torch_render_with_geometry_frozen(degree):
    """color_operator's sparse product gives the torch rasterizer's colours and their SH gradients, on
    non-square views (rows past the width), with opaque Gaussians (early termination) and a coloured background."""
    from humansplat.gaussians.render import color_operator

    g = random_gaussians(80, seed=3, degree=degree, dtype=torch.float64)
    g.opacity_logits[:6] = 8.0
    cams = small_cameras().to(dtype=torch.float64)
    bg = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
    op = color_operator(g, cams, background=bg)
    sh = [g.sh.clone().requires_grad_(True) for _ in range(2)]
    ref = render(Gaussians(g.means, g.quats, g.log_scales, g.opacity_logits, sh[0]), cams, background=bg, backend="torch").rgb
    out = op(sh[1])
    torch.testing.assert_close(out, ref)
    probe = torch.rand(ref.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ((ref * probe).sum() + (out * probe).sum()).backward()
    torch.testing.assert_close(sh[1].grad, sh[0].grad)
    assert sh[0].grad.abs().sum() > 0 and op.matrix._nnz() > cams.width * cams.height  # several Gaussians per pixel
    with pytest.raises(ValueError, match="one subject"):
        color_operator(g._map(lambda x: x[None]), cams)


def test_chunked_and_recomputed_paths_agree(monkeypatch):
    # tiny blocks force many groups, and the recompute-in-backward path; results must not change
    import humansplat.gaussians.rasterize_torch as rt

    g = random_gaussians(40, seed=6, degree=0, dtype=torch.float64)
    cams = small_cameras().to(dtype=torch.float64)
    results = []
    for max_elements, recompute_above in ((None, rt._RECOMPUTE_ELEMENTS), (4096, 0)):
        monkeypatch.setattr(rt, "_RECOMPUTE_ELEMENTS", recompute_above)
        ps = [t.clone().requires_grad_(True) for t in (g.means, g.log_scales, g.opacity_logits)]
        scene = Gaussians(ps[0], g.quats, ps[1], ps[2], g.sh)
        args = (scene.means[None], scene.rotations[None], scene.scales[None], scene.opacities[None], scene.colors()[None],
                cams.w2c[None], cams.K[None], cams.width, cams.height, torch.zeros(1, 2, 3, dtype=torch.float64))
        rgb, alpha, depth = rt.rasterize_torch(*args, max_elements=max_elements)
        (rgb.square().sum() + alpha.sum() + depth.sum()).backward()
        results.append([rgb.detach(), alpha.detach()] + [p.grad for p in ps])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b)
    assert results[0][2].abs().sum() > 0
