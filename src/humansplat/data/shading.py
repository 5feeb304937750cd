"""Light baked into the colours of a subject's surfels, so that renders are shaded but every view of a
subject still agrees (the shading is view-independent: no highlights).

Per subject: a key light from a random direction (mostly from the front and above), a back light from
behind that brightens silhouettes like a rim light, a sky/ground hemisphere ambient term, a colour
temperature and an exposure. Shading happens in linear RGB; albedos and outputs are sRGB in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from humansplat.data.device import to_device

__all__ = ["Lights", "sample_lights", "shade"]


@dataclass
class Lights:
    """(B, ...) light parameters; directions point from the surface towards the light."""

    key_dir: Tensor
    key_rgb: Tensor
    back_dir: Tensor
    back_rgb: Tensor
    sky_rgb: Tensor
    ground_rgb: Tensor
    wrap: Tensor  # (B,) 0 hard terminator .. 0.5 soft
    exposure: Tensor  # (B,)

    def to(self, device) -> "Lights":
        return to_device(self, device)


def _direction(az_deg: Tensor, el_deg: Tensor) -> Tensor:
    az, el = torch.deg2rad(az_deg), torch.deg2rad(el_deg)
    return torch.stack([el.cos() * az.sin(), el.sin(), el.cos() * az.cos()], -1)


def _tint(n: int, g: torch.Generator, spread: float) -> Tensor:
    """Colour temperature: warm (t > 0) to cool (t < 0) white, normalised to unit luminance."""
    t = (torch.rand(n, 1, generator=g) * 2 - 1) * spread
    rgb = torch.cat([1 + 0.25 * t, 1 + 0.02 * t, 1 - 0.3 * t], -1)
    return rgb / (rgb @ torch.tensor([0.2126, 0.7152, 0.0722]))[:, None]


def sample_lights(n: int, generator: torch.Generator) -> Lights:
    g = generator

    def u(lo, hi, shape=(n,)):
        return lo + (hi - lo) * torch.rand(shape, generator=g)

    key_az = torch.randn(n, generator=g) * 55.0
    key = _direction(key_az, u(10.0, 65.0))
    back = _direction(key_az + 180.0 + u(-50.0, 50.0), u(0.0, 45.0))
    key_i, back_i = u(0.55, 1.0), u(0.1, 0.55)
    sky_i = u(0.25, 0.5)
    return Lights(
        key_dir=key,
        key_rgb=_tint(n, g, 1.0) * key_i[:, None],
        back_dir=back,
        back_rgb=_tint(n, g, 1.0) * back_i[:, None],
        sky_rgb=_tint(n, g, 0.8) * sky_i[:, None] * torch.tensor([0.95, 1.0, 1.1]),
        ground_rgb=_tint(n, g, 0.5) * (sky_i * u(0.3, 0.7))[:, None] * torch.tensor([1.08, 1.0, 0.9]),
        wrap=u(0.0, 0.5),
        exposure=u(0.85, 1.15),
    )


def shade(albedo: Tensor, normals: Tensor, lights: Lights) -> Tensor:
    """Lit sRGB colours (B,N,3) of surfels with sRGB ``albedo`` and unit world ``normals`` (B,N,3)."""
    lin = albedo.clamp(0, 1) ** 2.2
    w = lights.wrap[:, None, None]

    def lambert(d: Tensor) -> Tensor:
        c = (normals * d[:, None]).sum(-1, keepdim=True)
        return ((c + w) / (1 + w)).clamp_min(0)

    up = 0.5 * (normals[..., 1:2] + 1)
    light = (
        lights.sky_rgb[:, None] * up
        + lights.ground_rgb[:, None] * (1 - up)
        + lights.key_rgb[:, None] * lambert(lights.key_dir)
        + lights.back_rgb[:, None] * lambert(lights.back_dir)
    )
    out = lin * light * lights.exposure[:, None, None]
    # a soft shoulder above 0.8 instead of a hard clip, then back to sRGB
    out = torch.where(out > 0.8, 0.8 + 0.2 * torch.tanh((out - 0.8) / 0.2), out)
    return out.clamp(0, 1) ** (1 / 2.2)
