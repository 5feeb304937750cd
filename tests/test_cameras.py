import math

import torch

from humansplat.cameras import (
    Cameras,
    crop_intrinsics,
    intrinsics_from_fov,
    look_at,
    orbit_cameras,
    plucker_rays,
    pixel_rays,
    project_points,
    resize_intrinsics,
    unproject_depth,
)


def test_intrinsics_from_fov_90_degrees():
    K = intrinsics_from_fov(90.0, 200, 100)
    assert torch.allclose(K, torch.tensor([[50.0, 0, 100], [0, 50.0, 50], [0, 0, 1]]))


def test_look_at_is_opencv_and_orthonormal():
    w2c = look_at(torch.tensor([0.0, 0.0, 3.0]), torch.zeros(3))
    R = w2c[:3, :3]
    assert torch.allclose(R @ R.T, torch.eye(3), atol=1e-6)
    assert torch.det(R) > 0
    # the origin is 3 m in front of the camera
    X = w2c @ torch.tensor([0.0, 0, 0, 1])
    assert torch.allclose(X[:3], torch.tensor([0.0, 0, 3]), atol=1e-6)
    # world up (+Y) is image up (-y); a camera in front of the subject sees the subject's left (+X) on image right
    up = w2c @ torch.tensor([0.0, 1, 0, 1])
    left_hand = w2c @ torch.tensor([1.0, 0, 0, 1])
    assert up[1] < 0 and left_hand[0] > 0


def test_orbit_azimuth_convention():
    cams = orbit_cameras(torch.tensor([0.0, 90.0, 180.0]), 0.0, 2.0)
    c = cams.centers
    assert torch.allclose(c[0], torch.tensor([0.0, 0, 2]), atol=1e-5)
    assert torch.allclose(c[1], torch.tensor([2.0, 0, 0]), atol=1e-5)
    assert torch.allclose(c[2], torch.tensor([0.0, 0, -2]), atol=1e-5)
    high = orbit_cameras(0.0, 30.0, 2.0)
    assert high.centers[0, 1] > 0.99


def test_project_center_and_known_point():
    cams = orbit_cameras(torch.tensor([0.0]), 0.0, 2.0, fov_deg=90.0, size=100)
    uv, z = project_points(torch.tensor([[0.0, 0, 0], [1.0, 1.0, 1.0]]), cams)
    assert torch.allclose(uv[0, 0], torch.tensor([50.0, 50.0]), atol=1e-4)
    assert torch.allclose(z[0], torch.tensor([2.0, 1.0]), atol=1e-5)
    # (1,1,1) is 1 m in front, 1 m right (+X on image right), 1 m up: f = 50 px
    assert torch.allclose(uv[0, 1], torch.tensor([100.0, 0.0]), atol=1e-4)


def test_rays_hit_projected_points():
    cams = orbit_cameras(torch.tensor([30.0, 200.0]), torch.tensor([10.0, -20.0]), 2.5, fov_deg=40, size=(64, 48))
    o, d = pixel_rays(cams)
    assert o.shape == (2, 48, 64, 3)
    # a point along the ray through pixel (row 5, col 7) projects to that pixel's centre
    p = o[:, 5, 7] + 1.7 * d[:, 5, 7]
    uv, _ = project_points(p[:, None], cams)
    assert torch.allclose(uv[:, 0], torch.tensor([7.5, 5.5]).expand(2, 2), atol=1e-3)
    pl = plucker_rays(cams, 12, 16)
    assert pl.shape == (2, 6, 12, 16)
    # moment is orthogonal to direction
    assert (pl[:, :3] * pl[:, 3:]).sum(1).abs().max() < 1e-5


def test_crop_and_resize_intrinsics_keep_projection():
    cams = orbit_cameras(torch.tensor([15.0]), 5.0, 2.0, size=100)
    pts = torch.tensor([[0.1, 0.2, -0.1]])
    uv, _ = project_points(pts, cams)
    cropped = Cameras(crop_intrinsics(cams.K, 10, 20), cams.w2c, 80, 70)
    uv2, _ = project_points(pts, cropped)
    assert torch.allclose(uv2, uv - torch.tensor([10.0, 20.0]), atol=1e-4)
    small = cams.resized(50, 25)
    uv3, _ = project_points(pts, small)
    assert torch.allclose(uv3, uv * torch.tensor([0.5, 0.25]), atol=1e-4)
    assert torch.allclose(resize_intrinsics(cams.K, 2.0)[..., :2, :], cams.K[..., :2, :] * 2)


def test_camera_dict_round_trip():
    cams = orbit_cameras(torch.tensor([0.0, 45.0]), 10.0, 2.0, size=(32, 24))
    back = Cameras.from_dict(cams.to_dict())
    assert back.width == 32 and back.height == 24
    assert torch.allclose(back.K, cams.K) and torch.allclose(back.w2c, cams.w2c, atol=1e-6)
    assert math.isclose(float(cams.K[0, 1, 1]), 24 / (2 * math.tan(math.radians(15))), rel_tol=1e-5)


def test_unproject_depth_lands_on_the_pixel_centres_at_that_depth():
    """A depth map (camera z) unprojected and projected back: every point at its own pixel centre and depth,
    also on a grid coarser than the image (its cells' centres)."""
    cams = orbit_cameras(torch.tensor([0.0, 70.0]), 10.0, 2.5, target=(0.0, 0.9, 0.0), fov_deg=40, size=32)
    for h in (32, 8):
        depth = 1.5 + torch.rand(2, h, h)
        points = unproject_depth(cams, depth)  # (2, h, h, 3)
        uv, z = project_points(points.reshape(2, -1, 3), cams)
        ys, xs = torch.meshgrid((torch.arange(h) + 0.5) * 32 / h, (torch.arange(h) + 0.5) * 32 / h, indexing="ij")
        assert torch.allclose(z, depth.reshape(2, -1), atol=1e-4)
        assert torch.allclose(uv, torch.stack([xs, ys], -1).reshape(1, -1, 2).expand(2, -1, -1), atol=1e-3)
