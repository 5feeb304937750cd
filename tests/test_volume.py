"""The cut-out measures (humansplat.volume): a body-sized volume passes, a billboard of it is flagged, and the
depth measure does not change with how densely the same surface is sampled."""

import math

import torch

from humansplat.cameras import orbit_cameras
from humansplat.gaussians import Gaussians
from humansplat.volume import SIDE_RATIO_MIN, is_cutout, volume_measures

HALF_AXES = (0.22, 0.8, 0.13)  # metres: a torso-like ellipsoid, 0.44 wide and 0.26 deep


def ellipsoid_surface(n: int, flat: bool = False) -> Gaussians:
    """n opaque Gaussians on the ellipsoid's surface (a Fibonacci sphere), sized to cover it; ``flat``: squashed
    onto its middle plane, a billboard."""
    i = torch.arange(n, dtype=torch.float32) + 0.5
    y = 1 - 2 * i / n
    r = (1 - y**2).sqrt()
    phi = i * math.pi * (3 - math.sqrt(5))
    unit = torch.stack([r * phi.cos(), y, r * phi.sin()], -1)
    means = unit * torch.tensor(HALF_AXES)
    if flat:
        means[:, 2] = 0
    scale = 0.7 * math.sqrt(4 * math.pi * 0.3 / n)  # 0.7 x the spacing of n points on the surface (area ~ 4 pi 0.3 m^2)
    return Gaussians.from_activated(means=means, rotations=torch.tensor([1.0, 0, 0, 0]).expand(n, 4),
                                    scales=torch.full((n, 3), scale), opacities=torch.full((n,), 0.95),
                                    colors=torch.full((n, 3), 0.5))


def photo_camera():
    return orbit_cameras(torch.tensor([0.0]), 0.0, 3.0, fov_deg=40, size=96)


def test_a_volume_passes_and_its_billboard_is_flagged():
    solid = volume_measures(ellipsoid_surface(12000), photo_camera())
    depth, width = 2 * HALF_AXES[2], 2 * HALF_AXES[0]
    assert 0.6 * depth / width < solid["depth_ratio"] < 1.2 * depth / width
    assert solid["side_ratio"] > SIDE_RATIO_MIN and not is_cutout(solid)
    flat = volume_measures(ellipsoid_surface(12000, flat=True), photo_camera())
    assert flat["depth_ratio"] < 0.01 and flat["side_ratio"] < solid["side_ratio"] / 2 and is_cutout(flat)


def test_depth_ratio_does_not_depend_on_how_many_gaussians_sample_the_surface():
    """Like a reconstruction (dense per-pixel Gaussians in front, sparse anchor ones behind): the front half
    sampled 20x denser than the back. Until v7 the depth measure counted opaque Gaussians, so such a body read
    as flat; the rendered surfaces do not care. What is left is the silhouette's bloom by the Gaussians' size."""
    uniform = volume_measures(ellipsoid_surface(6000), photo_camera())
    dense, sparse = ellipsoid_surface(60000), ellipsoid_surface(3000)
    mixed = Gaussians.cat([dense.select(dense.means[:, 2] > 0), sparse.select(sparse.means[:, 2] <= 0)])
    measured = volume_measures(mixed, photo_camera())
    assert abs(measured["depth_ratio"] - uniform["depth_ratio"]) < 0.15 * uniform["depth_ratio"]
    assert abs(measured["side_ratio"] - uniform["side_ratio"]) < 0.15 * uniform["side_ratio"]
    assert not is_cutout(measured)
