"""Mesh utilities: normals, area-uniform sampling, surfel Gaussians that render hole-free, OBJ export."""

from __future__ import annotations

import math

import pytest
import torch

from humansplat.cameras import look_at, intrinsics_from_fov, Cameras
from humansplat.meshes import face_areas, interpolate, mesh_to_gaussians, sample_surface, save_obj, vertex_normals


def grid(n: int = 8, size: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """A flat n x n square in the z = 0 plane centred at the origin, facing +Z (counter-clockwise)."""
    s = torch.linspace(-size / 2, size / 2, n + 1)
    y, x = torch.meshgrid(s, s, indexing="ij")
    v = torch.stack([x, y, torch.zeros_like(x)], -1).reshape(-1, 3)
    i = torch.arange(n)
    a = (i[:, None] * (n + 1) + i[None]).reshape(-1)
    faces = torch.cat([torch.stack([a, a + 1, a + n + 2], -1), torch.stack([a, a + n + 2, a + n + 1], -1)])
    return v, faces


def octahedron() -> tuple[torch.Tensor, torch.Tensor]:
    v = torch.tensor([[1.0, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]])
    f = torch.tensor([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]])
    return v, f


def test_vertex_normals_point_outwards_and_batch():
    v, f = octahedron()
    n = vertex_normals(v, f)
    assert torch.allclose(n, v, atol=1e-6)  # each vertex normal is the vertex direction
    nb = vertex_normals(torch.stack([v, 2 * v]), f)
    assert nb.shape == (2, 6, 3) and torch.allclose(nb[1], v, atol=1e-6)
    assert torch.allclose(face_areas(v, f), torch.full((8,), math.sqrt(3) / 2))


def test_sampling_is_area_uniform_and_seeded():
    v = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [3, 0, 0], [3, 3, 0]])
    f = torch.tensor([[0, 1, 2], [1, 3, 4]])  # areas 0.5 and 3.0
    face, bary = sample_surface(v, f, 7000, torch.Generator().manual_seed(0))
    share = (face == 0).float().mean()
    assert abs(float(share) - 0.5 / 3.5) < 0.002  # stratified: within one sample of the exact share
    assert (bary >= 0).all() and torch.allclose(bary.sum(-1), torch.ones(7000))
    p = interpolate(v, f, face, bary)
    inside0 = (p[face == 0, 0] + p[face == 0, 1] <= 1 + 1e-6).all()
    assert inside0 and p[face == 0, 0].mean().sub(1 / 3).abs() < 0.02  # uniform: centroid at 1/3
    again, _ = sample_surface(v, f, 7000, torch.Generator().manual_seed(0))
    assert torch.equal(face, again)
    fb, bb = sample_surface(torch.stack([v, v * 2]), f, 100)
    assert fb.shape == (2, 100) and bb.shape == (2, 100, 3)


def test_surfels_face_the_normal_and_features():
    v, f = grid(4)
    colors = torch.rand(v.shape[0], 3, generator=torch.Generator().manual_seed(0))
    onehot = torch.nn.functional.one_hot((v[:, 0] > 0).long(), 2).float()
    g = mesh_to_gaussians(v, f, vertex_colors=colors, vertex_features=onehot, points=500, nearest_features=True,
                          generator=torch.Generator().manual_seed(1))  # fmt: skip
    assert g.means.shape == (500, 3) and g.features.shape == (500, 2)
    assert torch.allclose(g.means[:, 2], torch.zeros(500), atol=1e-6)
    s = g.scales
    assert torch.allclose(s[:, 0], s[:, 1]) and (s[:, 2] < 0.2 * s[:, 0]).all()
    from humansplat.gaussians.rasterize_torch import quat_to_rotmat

    local_z = quat_to_rotmat(g.rotations)[..., :, 2]
    assert torch.allclose(local_z, torch.tensor([0.0, 0.0, 1.0]).expand(500, 3), atol=1e-5)
    assert set(g.features.unique().tolist()) == {0.0, 1.0}  # nearest-vertex features stay one-hot
    with pytest.raises(ValueError):
        mesh_to_gaussians(v, f)


def test_surfels_render_hole_free():
    from humansplat.gaussians import render

    v, f = grid(6, size=1.0)
    g = mesh_to_gaussians(v, f, density=4000.0, generator=torch.Generator().manual_seed(0))
    size = 64
    K = intrinsics_from_fov(40.0, size, size)
    w2c = look_at(torch.tensor([0.3, 0.2, 2.0]), torch.zeros(3))
    cams = Cameras(K[None], w2c[None], size, size)
    alpha = render(g, cams, background=0.0, backend="torch").alpha[0, ..., 0]
    # pixels whose ray hits the square well inside its border must be opaque, far outside empty
    from humansplat.cameras import pixel_rays

    o, d = pixel_rays(cams)
    t = -o[0, ..., 2] / d[0, ..., 2]
    hit = o[0] + t[..., None] * d[0]
    inside = (hit[..., :2].abs() < 0.45).all(-1)
    outside = (hit[..., :2].abs() > 0.56).any(-1)
    assert inside.sum() > 300 and alpha[inside].min() > 0.97
    assert alpha[outside].max() < 0.05


def test_save_obj(tmp_path):
    v, f = octahedron()
    path = save_obj(tmp_path / "m.obj", v, f, vertex_colors=torch.rand(6, 3))
    lines = path.read_text().splitlines()
    vs = [l for l in lines if l.startswith("v ")]
    fs = [l for l in lines if l.startswith("f ")]
    assert len(vs) == 6 and len(fs) == 8 and len(vs[0].split()) == 7
    assert fs[0].split()[1:] == ["1", "3", "5"]  # 1-based
    assert list(tmp_path.iterdir()) == [path]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_mesh_to_gaussians_cuda():
    v, f = grid(8)
    g = mesh_to_gaussians(v.cuda()[None].expand(4, -1, -1), f.cuda(), points=10_000,
                          generator=torch.Generator("cuda").manual_seed(0))  # fmt: skip
    assert g.means.shape == (4, 10_000, 3) and g.means.is_cuda
