"""Procedural, seeded textures and colour palettes, in torch (any device, fully batched).

A texture is a solid (3D) pattern evaluated at texture coordinates in metres, so stripes and prints
follow a garment through every pose when the coordinates are the rest-pose positions of its points.
``sample_textures`` draws a batch of texture parameters from a ``torch.Generator`` (on the CPU, so the
same seed gives the same subjects on every device); ``evaluate`` colours points with them.

Kinds: solid, stripes, checks (gingham / plaid), dots, floral print, heather noise, camouflage; any
of them may carry a small logo (circle, ring, square, triangle, star or "text" bars) on the chest.
Colours are sRGB in [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from humansplat.data.device import to_device

__all__ = [
    "KINDS",
    "Texture",
    "sample_textures",
    "evaluate",
    "value_noise",
    "fbm",
    "sample_palette",
    "sample_skin_tones",
    "sample_hair_colors",
    "sample_free_colors",
    "GARMENT_PALETTE",
    "DENIM_PALETTE",
]

KINDS = ("solid", "stripes", "checks", "dots", "floral", "heather", "camo")
LOGO_SHAPES = ("none", "circle", "ring", "square", "triangle", "star", "text")


def _rgb(*hexes: str) -> Tensor:
    return torch.tensor([[int(h[i : i + 2], 16) / 255.0 for i in (0, 2, 4)] for h in hexes])


# Everyday garment colours (sRGB); jittered when sampled.
GARMENT_PALETTE = _rgb(
    "1b1b1f", "f2f2ef", "8a8d91", "3b3e45", "1f2a44", "3a5a8c", "8fb3d9", "b8c7d6",
    "6b2737", "a4262c", "d9483b", "e8927c", "f2c14e", "c9a86b", "e6d8bf", "8c6a4a",
    "5c4033", "4b5d3a", "7a8450", "2e6e5a", "5fa8a0", "6d4c8c", "c7a2c9", "f4b6c2",
)
DENIM_PALETTE = _rgb("27344f", "3d5477", "5b7497", "8ea3bd", "1f2330", "434a58")
# Monk Skin Tone scale swatches, light to dark.
SKIN_ANCHORS = _rgb("f6ede4", "f3e7db", "f7ead0", "eadaba", "d7bd96", "a07e56", "825c43", "604134", "3a312a", "292420")
HAIR_PALETTE = _rgb("16120f", "2b1d16", "4a3122", "6f4a2e", "9c7048", "c9a36b", "e2cfa0", "7e3a1c", "a9a9a6", "dedbd3")
HAIR_WEIGHTS = torch.tensor([0.22, 0.2, 0.15, 0.1, 0.08, 0.07, 0.03, 0.05, 0.06, 0.04])


@dataclass
class Texture:
    """A batch of texture parameters with batch shape S (any number of dims).

    kind (*S) index into KINDS; colors (*S,3,3) base / second / accent; freq (*S) pattern cycles per
    metre; rot (*S,3,3) pattern orientation; duty (*S) stripe/dot fill in (0,1); seed (*S) noise seed;
    grain (*S) strength of the fine fabric grain; logo (*S) index into LOGO_SHAPES; logo_color (*S,3);
    logo_size (*S) half-size in metres; logo_center (*S,3) in texture coordinates (set by the caller).
    """

    kind: Tensor
    colors: Tensor
    freq: Tensor
    rot: Tensor
    duty: Tensor
    seed: Tensor
    grain: Tensor
    logo: Tensor
    logo_color: Tensor
    logo_size: Tensor
    logo_center: Tensor

    @property
    def shape(self) -> torch.Size:
        return self.kind.shape

    def to(self, device) -> "Texture":
        return to_device(self, device)

    def index(self, b: Tensor, m: Tensor) -> "Texture":
        """Parameters for points: ``self`` has shape (B, M); ``b``, ``m`` broadcast to the result shape."""
        return Texture(**{f.name: getattr(self, f.name)[b, m] for f in fields(self)})

    @staticmethod
    def stack(items: list["Texture"], dim: int = 1) -> "Texture":
        return Texture(**{f.name: torch.stack([getattr(t, f.name) for t in items], dim) for f in fields(Texture)})


# ---------------------------------------------------------------- sampling (CPU generator)


def _u(shape, g, lo=0.0, hi=1.0) -> Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=g)


def sample_palette(shape, generator: torch.Generator, palette: Tensor = GARMENT_PALETTE, jitter: float = 0.06) -> Tensor:
    """Colours (*shape, 3) drawn from ``palette`` with a small brightness and per-channel jitter."""
    shape = tuple(shape)
    idx = torch.randint(len(palette), shape, generator=generator)
    c = palette[idx]
    c = c * _u(shape + (1,), generator, 1 - 2 * jitter, 1 + jitter) + (torch.rand(shape + (3,), generator=generator) - 0.5) * jitter
    return c.clamp(0.0, 1.0)


FREE_SATURATION = (0.35, 1.0)  # free colours: vivid and muted, never grey (greys come from the palette)
FREE_VALUE = (0.25, 0.95)


def sample_free_colors(shape, generator: torch.Generator) -> Tensor:
    """Colours (*shape, 3) with hue uniform over the whole circle (the palette has few saturated greens,
    yellows and purples, which real clothes have): HSV with the saturation and value ranges above."""
    shape = tuple(shape)
    h = torch.rand(shape, generator=generator) * 6
    s = _u(shape, generator, *FREE_SATURATION)
    v = _u(shape, generator, *FREE_VALUE)
    k = (torch.tensor([5.0, 3.0, 1.0]) + h[..., None]) % 6  # the standard HSV -> RGB in closed form
    return v[..., None] - v[..., None] * s[..., None] * (torch.minimum(k, 4 - k).clamp(0, 1))


def sample_skin_tones(n: int, generator: torch.Generator) -> Tensor:
    """(n, 3) skin albedos along the Monk scale (uniform over it), with a slight warm/cool shift."""
    t = _u((n,), generator) * (len(SKIN_ANCHORS) - 1)
    i = t.floor().long().clamp_max(len(SKIN_ANCHORS) - 2)
    f = (t - i)[:, None]
    c = SKIN_ANCHORS[i] * (1 - f) + SKIN_ANCHORS[i + 1] * f
    warm = _u((n, 1), generator, -0.03, 0.03)
    c = c + warm * torch.tensor([1.0, 0.0, -1.0])
    # rendered skin reads better slightly more saturated than the swatches
    grey = c.mean(-1, keepdim=True)
    return (grey + (c - grey) * 1.25).clamp(0.0, 1.0)


def sample_hair_colors(n: int, generator: torch.Generator, age: Tensor | None = None) -> Tensor:
    """(n, 3) hair colours: natural shades by frequency, grey/white more likely with ``age`` in [0,1]."""
    w = HAIR_WEIGHTS.expand(n, -1).clone()
    if age is not None:
        old = age.clamp(0, 1)[:, None] ** 2 * 4.0
        w[:, -2:] = w[:, -2:] * (0.1 + old * 6)
    idx = torch.multinomial(w, 1, generator=generator)[:, 0]
    c = HAIR_PALETTE[idx] * _u((n, 1), generator, 0.85, 1.12)
    dyed = torch.rand(n, generator=generator) < 0.04
    c = torch.where(dyed[:, None], sample_palette((n,), generator, GARMENT_PALETTE[[9, 11, 19, 21, 23, 5]]), c)
    return c.clamp(0, 1)


def _random_rotation(shape, generator, tilt: float) -> Tensor:
    """Rotations about the vertical axis by any angle, then a tilt of at most ``tilt`` radians."""
    yaw = _u(shape, generator, 0, 2 * math.pi)
    pitch = _u(shape, generator, -tilt, tilt)
    cy, sy, cp, sp = yaw.cos(), yaw.sin(), pitch.cos(), pitch.sin()
    one, zero = torch.ones_like(yaw), torch.zeros_like(yaw)
    Ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).reshape(*shape, 3, 3)
    Rx = torch.stack([one, zero, zero, zero, cp, -sp, zero, sp, cp], -1).reshape(*shape, 3, 3)
    return Rx @ Ry


def sample_textures(
    shape,
    generator: torch.Generator,
    kind_weights: Tensor | list[float] | None = None,
    palette: Tensor = GARMENT_PALETTE,
    logo_prob: float = 0.0,
) -> Texture:
    """Texture parameters with batch shape ``shape``; ``kind_weights`` over KINDS (default: all)."""
    shape = tuple(shape)
    n = math.prod(shape)
    w = torch.as_tensor(kind_weights if kind_weights is not None else [0.34, 0.18, 0.12, 0.08, 0.08, 0.14, 0.06], dtype=torch.float)
    kind = torch.multinomial(w.expand(n, -1), 1, replacement=True, generator=generator)[:, 0].reshape(shape)
    base = sample_palette(shape, generator, palette)
    second = sample_palette(shape, generator, GARMENT_PALETTE)
    # a third of the patterns use a tint of the base instead of an unrelated colour
    tint = torch.rand(shape, generator=generator) < 0.35
    lighter = (base + _u(shape + (1,), generator, 0.25, 0.5)).clamp(0, 1)
    second = torch.where(tint[..., None], lighter, second)
    accent = sample_palette(shape, generator, GARMENT_PALETTE)
    colors = torch.stack([base, second, accent], -2)
    # pattern scale: stripes/checks 4-25 cycles/m (4-25 cm), dots/prints finer, noise coarser
    freq = torch.exp(_u(shape, generator, math.log(4.0), math.log(25.0)))
    freq = torch.where(kind == KINDS.index("dots"), freq * 1.6, freq)
    freq = torch.where(kind == KINDS.index("camo"), freq * 0.5, freq)
    tilt = torch.rand(shape, generator=generator) < 0.25
    rot = torch.where(tilt[..., None, None], _random_rotation(shape, generator, 0.8), _random_rotation(shape, generator, 0.0))
    return Texture(
        kind=kind,
        colors=colors,
        freq=freq,
        rot=rot,
        duty=_u(shape, generator, 0.2, 0.6),
        seed=torch.randint(0, 2**31 - 1, shape, generator=generator),
        grain=_u(shape, generator, 0.02, 0.12),
        logo=torch.where(torch.rand(shape, generator=generator) < logo_prob, torch.randint(1, len(LOGO_SHAPES), shape, generator=generator), 0),
        logo_color=sample_palette(shape, generator, GARMENT_PALETTE),
        logo_size=_u(shape, generator, 0.03, 0.07),
        logo_center=torch.zeros(shape + (3,)),
    )


# ---------------------------------------------------------------- noise


_PRIMES = (0x27D4EB2D, 0x165667B1, 0x1B873593, 0x2C1B3C6D)  # seed, x, y, z


def _mix(h: Tensor) -> Tensor:
    """Integer lattice hashes -> uniform floats in [0, 1)."""
    m = 0xFFFFFFFF
    h = h & m
    h = ((h ^ (h >> 15)) * 0x2C1B3C6D) & m
    h = ((h ^ (h >> 12)) * 0x297A2D39) & m
    h = h ^ (h >> 15)
    return (h & 0xFFFFFF).float() / float(1 << 24)


def _hash(i: Tensor, seed: Tensor) -> Tensor:
    """Integer lattice points (..., 3) and seeds (...) -> uniform floats in [0, 1)."""
    return _mix(seed * _PRIMES[0] + i[..., 0] * _PRIMES[1] + i[..., 1] * _PRIMES[2] + i[..., 2] * _PRIMES[3])


def value_noise(p: Tensor, seed: Tensor) -> Tensor:
    """Smooth 3D value noise in [0, 1] at points (..., 3) with integer seeds (...)."""
    fl = torch.floor(p)
    i = fl.long()
    f = p - fl
    u = f * f * (3 - 2 * f)
    base = seed * _PRIMES[0]
    # per axis: the hash terms of the lower and upper lattice plane, and their weights
    terms = [(i[..., a] * _PRIMES[1 + a], (i[..., a] + 1) * _PRIMES[1 + a]) for a in range(3)]
    weights = [(1 - u[..., a], u[..., a]) for a in range(3)]
    out = torch.zeros_like(p[..., 0])
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                h = base + terms[0][dx] + terms[1][dy] + terms[2][dz]
                out = out + weights[0][dx] * weights[1][dy] * weights[2][dz] * _mix(h)
    return out


def fbm(p: Tensor, seed: Tensor, octaves: int = 3) -> Tensor:
    """Fractal sum of value noise, normalised to [0, 1]."""
    total, amp, norm = torch.zeros_like(p[..., 0]), 1.0, 0.0
    for o in range(octaves):
        total = total + amp * value_noise(p * (2.0**o), seed + 7919 * o)
        norm += amp
        amp *= 0.5
    return total / norm


# ---------------------------------------------------------------- evaluation


def _cells(q: Tensor, seed: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Jittered cell centres: offset of q from its cell's centre (...,3) and two cell randoms."""
    cell = torch.floor(q)
    ci = cell.long()
    r1, r2, r3 = _hash(ci, seed), _hash(ci, seed + 1), _hash(ci, seed + 2)
    centre = cell + 0.5 + 0.3 * (torch.stack([r1, r2, r3], -1) - 0.5)
    return q - centre, r1, r2


def _logo_mask(tex: Texture, coords: Tensor) -> Tensor:
    d = coords - tex.logo_center
    size = tex.logo_size.clamp_min(1e-4)
    x, y = d[..., 0] / size, d[..., 1] / size
    front = (d[..., 2] > -0.06) & (d[..., 2] < 0.2)
    r = torch.sqrt(x * x + y * y)
    ang = torch.atan2(y, x)
    shapes = torch.stack(
        [
            torch.zeros_like(r, dtype=torch.bool),
            r < 1.0,
            (r < 1.0) & (r > 0.62),
            (x.abs() < 0.9) & (y.abs() < 0.9),
            (y > -0.8) & (y < 0.9) & (x.abs() < (0.9 - y) * 0.55),  # pointing up (+y is up)
            r < 0.55 + 0.45 * torch.cos(5 * (ang + math.pi / 2)).clamp_min(0) ** 2,
            (x.abs() < 1.2) & ((y - 0.6).abs() < 0.16) | (x.abs() < 0.8) & (y.abs() < 0.16) | (x.abs() < 1.0) & ((y + 0.6).abs() < 0.16),
        ],
        -1,
    )
    return front & shapes.gather(-1, tex.logo[..., None]).squeeze(-1)


def evaluate(tex: Texture, coords: Tensor) -> Tensor:
    """Colours (..., 3) of textures ``tex`` (batch shape ...) at texture coordinates ``coords`` (..., 3) in metres."""
    dev = coords.device
    q = torch.einsum("...ij,...j->...i", tex.rot, coords) * tex.freq[..., None]
    c0, c1, c2 = tex.colors.unbind(-2)
    kind = tex.kind
    frac = q - torch.floor(q)
    duty = tex.duty
    # stripes: a band of the second colour, plus a thin accent line in half of them
    stripe = frac[..., 1] < duty
    accent_line = ((frac[..., 1] - duty - 0.08).abs() < 0.03) & (tex.seed % 2 == 0)
    # checks: gingham mixing, with plaid accent lines
    sx, sy = frac[..., 0] < duty, frac[..., 1] < duty
    n_on = sx.float() + sy.float()
    plaid_line = ((frac[..., 0] - 0.5 * duty).abs() < 0.025) | ((frac[..., 1] - 0.5 * duty).abs() < 0.025)
    # dots and floral motifs on a jittered cell lattice
    off, r1, r2 = _cells(q, tex.seed)
    rad = off.norm(dim=-1)
    dot = rad < 0.18 + 0.25 * duty
    ang = torch.atan2(off[..., 1], off[..., 0] + off[..., 2])
    petal = rad < (0.2 + 0.2 * duty) * (0.55 + 0.45 * torch.cos(5 * ang + 6.28 * r2).abs())
    core = rad < 0.07
    # noise-based
    n_low = fbm(q * 1.5, tex.seed, octaves=2)
    w_heather = ((n_low - 0.5) * 3 + 0.5).clamp(0, 1)

    out = c0.clone()
    k = KINDS.index
    out = torch.where(((kind == k("stripes")) & stripe)[..., None], c1, out)
    out = torch.where(((kind == k("stripes")) & accent_line)[..., None], c2, out)
    gingham = c0 + (c1 - c0) * (n_on / 2)[..., None]
    out = torch.where((kind == k("checks"))[..., None], gingham, out)
    out = torch.where(((kind == k("checks")) & plaid_line & (tex.seed % 3 == 0))[..., None], c2, out)
    out = torch.where(((kind == k("dots")) & dot)[..., None], torch.where((r1 < 0.7)[..., None], c1, c2), out)
    out = torch.where(((kind == k("floral")) & petal)[..., None], torch.where((r1 < 0.5)[..., None], c1, c2), out)
    out = torch.where(((kind == k("floral")) & core)[..., None], c2 * 0.6 + 0.4, out)
    out = torch.where((kind == k("heather"))[..., None], c0 + (c1 - c0) * w_heather[..., None], out)
    camo = torch.where((n_low < 0.45)[..., None], c0, torch.where((n_low < 0.58)[..., None], c1, c2))
    out = torch.where((kind == k("camo"))[..., None], camo, out)
    out = torch.where(_logo_mask(tex, coords)[..., None], tex.logo_color, out)
    # fine fabric grain: a little brightness variation per 3 mm cell on everything
    grain = _hash(torch.floor(coords * 330.0).long(), tex.seed + 17) - 0.5
    out = out * (1 + tex.grain[..., None] * grain[..., None] * 2)
    return out.clamp(0, 1).to(dev)
