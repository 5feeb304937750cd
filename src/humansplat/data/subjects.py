"""Synthetic subjects: what each one wears and how its surfaces are coloured.

``sample_outfits`` draws, per body, a top (tank, t-shirt, long sleeves), a bottom (trousers, shorts, skirt
or a dress), maybe a jacket or a long coat, shoes or boots (and socks), a hair style and colour, maybe a
hat and an object in one hand, plus one procedural texture per material slot. Styles depend on the
phenotype (gender, age). The geometry is made by :mod:`humansplat.data.dressing` (skin and tight layers)
and :mod:`humansplat.data.loose` (loose surfaces); ``surfel_albedo`` colours the result.

All choices come from one CPU ``torch.Generator``, so a seed gives the same subjects on every device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from humansplat.data import textures as tx
from humansplat.data.device import constant, to_device
from humansplat.data.surfels import Surfels
from humansplat.keypoints import SHOULDERS

__all__ = ["HAIR_STYLES", "TOPS", "BOTTOMS", "OUTERS", "SHOES", "HATS", "OBJECTS", "MATERIALS", "M", "Outfit", "sample_outfits", "expose_rare_parts", "RARE_PART_KINDS", "NO_TOP_HEM", "place_logos", "surfel_albedo"]

HAIR_STYLES = ("bald", "buzz", "short", "bob", "long", "ponytail", "bun", "afro")
TOPS = ("tank", "tshirt", "longsleeve")
BOTTOMS = ("trousers", "shorts", "skirt", "dress")
OUTERS = ("none", "jacket", "coat")
SHOES = ("barefoot", "shoes", "boots")
HATS = ("none", "beanie", "cap", "sunhat")
OBJECTS = ("none", "bag", "ball", "box", "phone")
MATERIALS = ("skin", "lips", "eyes", "brows", "top", "bottom", "outer", "shoes", "socks", "hair", "hat", "object")
M = {name: i for i, name in enumerate(MATERIALS)}

# style weights: (female, male) rows, interpolated by the gender phenotype (anny: 0 male, 1 female)
_W_HAIR = torch.tensor([[0.01, 0.02, 0.12, 0.15, 0.38, 0.15, 0.12, 0.05], [0.10, 0.18, 0.45, 0.08, 0.05, 0.04, 0.03, 0.07]])
_W_BOTTOM = torch.tensor([[0.42, 0.15, 0.18, 0.25], [0.72, 0.26, 0.01, 0.01]])


@dataclass
class Outfit:
    """Per-subject choices (leading dim B). Indices refer to the style tuples above; lengths along a
    limb are fractions of it (0 shoulder/hip, 0.5 elbow/knee, 1 wrist/ankle); ``hem``/``waist`` are
    heights on the torso (0 hip joints, 1 shoulders); thicknesses and lengths in metres."""

    hair: Tensor
    top: Tensor
    bottom: Tensor
    outer: Tensor
    shoes: Tensor
    hat: Tensor
    obj: Tensor
    hand: Tensor  # 0 left, 1 right
    sleeve: Tensor
    hem: Tensor
    neck_depth: Tensor
    neck_slope: Tensor
    top_thick: Tensor
    tucked: Tensor
    leg_len: Tensor
    waist: Tensor
    bottom_thick: Tensor
    wide: Tensor
    skirt_len: Tensor
    skirt_flare: Tensor
    outer_hem: Tensor
    outer_thick: Tensor
    open_front: Tensor
    open_width: Tensor
    coat_len: Tensor
    shoe_top: Tensor
    socks: Tensor
    sock_top: Tensor
    sock_feet: Tensor  # bool: socks over bare feet, no shoes (``expose_rare_parts`` only)
    hairline: Tensor  # (B, 3) front / side / back height on the head, in head heights above the ears
    hair_thick: Tensor
    hair_len: Tensor  # long hair: length below the ears at the back
    hatline: Tensor  # (B, 3)
    brim: Tensor
    obj_size: Tensor
    skin: Tensor  # (B, 3)
    hair_color: Tensor  # (B, 3)
    iris: Tensor  # (B, 3)
    materials: tx.Texture  # (B, len(MATERIALS))

    def to(self, device) -> "Outfit":
        return to_device(self, device)


def _u(n, g, lo, hi) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def _pick(weights: Tensor, n: int, g) -> Tensor:
    return torch.multinomial(weights.expand(n, -1), 1, replacement=True, generator=g)[:, 0]


def _hairlines(style: Tensor, g) -> tuple[Tensor, Tensor]:
    """Hairline heights (front, side, back) and thickness per hair style."""
    n = style.shape[0]
    s = {k: style == HAIR_STYLES.index(k) for k in HAIR_STYLES}
    fringe = torch.rand(n, generator=g) < 0.3
    front = torch.where(fringe, _u(n, g, 0.36, 0.42), _u(n, g, 0.45, 0.62))  # a fringe ends above the brows
    side = torch.where(s["buzz"] | s["short"], _u(n, g, 0.15, 0.35), _u(n, g, -0.35, 0.0))
    back = torch.where(s["buzz"] | s["short"], _u(n, g, -0.45, -0.25), _u(n, g, -0.6, -0.4))
    front = torch.where(s["buzz"], front.clamp_min(0.45), front)
    thick = torch.where(s["buzz"], _u(n, g, 0.002, 0.004), _u(n, g, 0.008, 0.022))
    thick = torch.where(s["afro"], _u(n, g, 0.035, 0.07), thick)
    thick = torch.where(s["ponytail"] | s["bun"], _u(n, g, 0.004, 0.008), thick)
    return torch.stack([front, side, back], -1), thick


def _garment_textures(n: int, g, outfit_bottom: Tensor) -> tx.Texture:
    """One texture per material slot: (n, len(MATERIALS))."""
    slots = {}
    slots["top"] = tx.sample_textures((n,), g, logo_prob=0.3)
    bottom = tx.sample_textures((n,), g, kind_weights=[0.5, 0.08, 0.12, 0.04, 0.06, 0.16, 0.04])
    denim = tx.sample_textures((n,), g, kind_weights=[0, 0, 0, 0, 0, 1.0, 0], palette=tx.DENIM_PALETTE)
    denim.colors[:, 1] = (denim.colors[:, 0] * 1.35 + 0.05).clamp(0, 1)
    denim.freq[:] = 60.0
    use_denim = (torch.rand(n, generator=g) < 0.45) & (outfit_bottom <= BOTTOMS.index("shorts"))
    slots["bottom"] = tx.Texture(**{f.name: torch.where(use_denim.reshape(-1, *[1] * (getattr(denim, f.name).dim() - 1)), getattr(denim, f.name), getattr(bottom, f.name)) for f in fields(tx.Texture)})
    slots["outer"] = tx.sample_textures((n,), g, kind_weights=[0.6, 0.05, 0.12, 0.0, 0.0, 0.2, 0.03])
    shoe_pal = tx._rgb("f4f4f2", "151515", "5a3b26", "8b8b8b", "2c3e66", "a43131", "c9b28f")
    slots["shoes"] = tx.sample_textures((n,), g, kind_weights=[0.85, 0.1, 0, 0, 0, 0.05, 0], palette=shoe_pal)
    slots["socks"] = tx.sample_textures((n,), g, kind_weights=[0.7, 0.3, 0, 0, 0, 0, 0], palette=tx._rgb("f4f4f2", "151515", "8b8b8b"))
    slots["hat"] = tx.sample_textures((n,), g, kind_weights=[0.6, 0.2, 0.1, 0, 0, 0.1, 0])
    slots["object"] = tx.sample_textures((n,), g, kind_weights=[0.5, 0.25, 0.05, 0.1, 0, 0.1, 0])
    for name in ("skin", "lips", "eyes", "brows", "hair"):
        slots[name] = tx.sample_textures((n,), g, kind_weights=[0, 0, 0, 0, 0, 1.0, 0])
    return tx.Texture.stack([slots[m] for m in MATERIALS], 1)


def sample_outfits(phenotype: Tensor, generator: torch.Generator) -> Outfit:
    """Clothes, hair, hat, held object and colours for bodies with ``phenotype`` (B, 6) (anny order:
    gender, age, muscle, weight, height, proportions)."""
    g = generator
    ph = phenotype.detach().float().cpu()
    n = ph.shape[0]
    male, age = 1 - ph[:, 0:1], ph[:, 1]
    hair = _pick(_W_HAIR[0] * (1 - male) + _W_HAIR[1] * male, n, g)
    bald_old = (age > 0.85) & (torch.rand(n, generator=g) < 0.4 * male[:, 0])
    hair = torch.where(bald_old, HAIR_STYLES.index("bald"), hair)
    bottom = _pick(_W_BOTTOM[0] * (1 - male) + _W_BOTTOM[1] * male, n, g)
    top = _pick(torch.tensor([0.12, 0.45, 0.43]), n, g)
    outer = _pick(torch.tensor([0.72, 0.2, 0.08]), n, g)
    hairline, hair_thick = _hairlines(hair, g)
    long_sleeve = top == TOPS.index("longsleeve")
    sleeve = torch.where(top == 0, _u(n, g, -0.05, 0.02), torch.where(long_sleeve, _u(n, g, 0.85, 0.98), _u(n, g, 0.18, 0.42)))
    dress = bottom == BOTTOMS.index("dress")
    skirt_len = torch.where(dress, _u(n, g, 0.35, 0.9), _u(n, g, 0.22, 0.75))
    skin = tx.sample_skin_tones(n, g)
    hair_color = tx.sample_hair_colors(n, g, age=((age - 0.67) * 3).clamp(0, 1))
    iris = tx._rgb("3b2618", "6b4423", "4f6a8a", "5d7050", "2a1d14")[torch.randint(5, (n,), generator=g)]
    out = Outfit(
        hair=hair, top=top, bottom=bottom, outer=outer,
        shoes=_pick(torch.tensor([0.05, 0.8, 0.15]), n, g),
        hat=_pick(torch.tensor([0.85, 0.05, 0.06, 0.04]), n, g),
        obj=_pick(torch.tensor([0.6, 0.13, 0.08, 0.07, 0.12]), n, g),
        hand=torch.randint(2, (n,), generator=g),
        sleeve=sleeve,
        hem=torch.where(dress, _u(n, g, 0.2, 0.35), _u(n, g, -0.22, 0.12)),
        neck_depth=torch.where(torch.rand(n, generator=g) < 0.4, _u(n, g, 0.05, 0.16), _u(n, g, 0.0, 0.03)),
        neck_slope=_u(n, g, 1.0, 3.0),
        top_thick=_u(n, g, 0.003, 0.008),
        tucked=torch.rand(n, generator=g) < 0.3,
        leg_len=torch.where(bottom == 1, _u(n, g, 0.2, 0.5), torch.where(torch.rand(n, generator=g) < 0.12, _u(n, g, 0.65, 0.85), _u(n, g, 0.9, 0.99))),
        waist=_u(n, g, 0.15, 0.4),
        bottom_thick=_u(n, g, 0.004, 0.01),
        wide=torch.where(torch.rand(n, generator=g) < 0.3, _u(n, g, 0.01, 0.04), torch.zeros(n)),
        skirt_len=skirt_len,
        skirt_flare=_u(n, g, 0.05, 0.4),
        outer_hem=torch.where(outer == 2, _u(n, g, -0.1, 0.0), _u(n, g, -0.3, 0.05)),
        outer_thick=_u(n, g, 0.012, 0.025),
        open_front=torch.rand(n, generator=g) < 0.5,
        open_width=_u(n, g, 0.04, 0.11),
        coat_len=_u(n, g, 0.35, 0.8),
        shoe_top=torch.where(torch.rand(n, generator=g) < 0.5, _u(n, g, 0.95, 1.0), _u(n, g, 0.7, 0.88)),
        socks=torch.rand(n, generator=g) < 0.6,
        sock_top=_u(n, g, 0.72, 0.9),
        sock_feet=torch.zeros(n, dtype=torch.bool),  # no draw: the benchmark set stays the same
        hairline=hairline,
        hair_thick=hair_thick,
        hair_len=_u(n, g, 0.12, 0.55),
        hatline=torch.stack([_u(n, g, 0.4, 0.55), _u(n, g, 0.0, 0.35), _u(n, g, -0.2, 0.2)], -1),
        brim=_u(n, g, 0.05, 0.11),
        obj_size=_u(n, g, 0.0, 1.0),
        skin=skin, hair_color=hair_color, iris=iris,
        materials=_garment_textures(n, g, bottom),
    )  # fmt: skip
    # no buns under hats
    out.hat = torch.where(out.hair == HAIR_STYLES.index("bun"), 0, out.hat)
    boots = out.shoes == SHOES.index("boots")
    out.shoe_top = torch.where(boots, out.shoe_top.clamp_max(0.88), out.shoe_top.clamp_min(0.95))
    mats = out.materials
    # skin, lips and hair are heather noise around the subject's colours
    mats.colors[:, M["skin"]] = torch.stack([skin, skin * torch.tensor([1.0, 0.96, 0.95]), skin], 1)
    mats.freq[:, M["skin"]] = 10.0
    mats.grain[:, M["skin"]] = 0.02
    lips = (skin * torch.tensor([0.92, 0.76, 0.76]) + torch.tensor([0.03, 0.0, 0.0])).clamp(0, 1)
    mats.colors[:, M["lips"]] = torch.stack([lips, lips * 0.95, lips], 1)
    mats.colors[:, M["hair"]] = torch.stack([hair_color * 0.9, (hair_color * 1.2 + 0.02).clamp(0, 1), hair_color * 0.7], 1)
    mats.freq[:, M["hair"]] = 60.0
    mats.grain[:, M["hair"]] = 0.2
    brows = hair_color * 0.75
    mats.colors[:, M["brows"]] = torch.stack([brows, brows * 1.2, brows], 1)
    for name in ("skin", "lips", "eyes", "brows", "hair"):
        mats.logo[:, M[name]] = 0
    mats.logo[:, M["bottom"]] = 0
    return out


GARMENT_MATERIALS = ("top", "bottom", "outer", "shoes", "socks", "hat", "object")


def recolor_garments(outfit: Outfit, share: float, generator: torch.Generator) -> None:
    """In place: each garment's colours (base, second, accent) drawn from the whole hue circle
    (``textures.sample_free_colors``) with probability ``share``, per subject and garment."""
    if share <= 0:
        return
    mats = outfit.materials
    ids = torch.tensor([M[m] for m in GARMENT_MATERIALS])
    B = mats.colors.shape[0]
    free = tx.sample_free_colors((B, len(ids), 3), generator).to(mats.colors)
    chosen = (torch.rand(B, len(ids), generator=generator) < share).to(mats.colors.device)
    cols = mats.colors[:, ids]
    mats.colors[:, ids] = torch.where(chosen[..., None, None], free, cols)


RARE_PART_KINDS = ("barefoot", "sock_feet", "midriff", "shirtless")
NO_TOP_HEM = 10.0  # a hem above every trunk height (``dressing``: the top covers the trunk above its hem)


def expose_rare_parts(outfit: Outfit, share: float, generator: torch.Generator) -> None:
    """In place: ``share`` of the subjects show one part class the engine rarely shows (one kind of
    ``RARE_PART_KINDS`` each, equally often): bare feet, socks over bare feet, a bare midriff (a top
    cropped above the waistband, untucked, no jacket) or a bare torso and arms (no top, no jacket);
    dresses are left alone. Draws nothing at 0."""
    if share <= 0:
        return
    B = outfit.shoes.shape[0]
    chosen = torch.rand(B, generator=generator) < share
    kind = torch.randint(len(RARE_PART_KINDS), (B,), generator=generator)
    crop = _u(B, generator, 0.08, 0.25)
    feet = chosen & (kind < RARE_PART_KINDS.index("midriff"))
    outfit.shoes = torch.where(feet, SHOES.index("barefoot"), outfit.shoes)
    outfit.sock_feet = feet & (kind == RARE_PART_KINDS.index("sock_feet"))
    no_dress = chosen & (outfit.bottom != BOTTOMS.index("dress"))
    midriff = no_dress & (kind == RARE_PART_KINDS.index("midriff"))
    shirtless = no_dress & (kind == RARE_PART_KINDS.index("shirtless"))
    outfit.hem = torch.where(midriff, outfit.waist + crop, torch.where(shirtless, NO_TOP_HEM, outfit.hem))
    outfit.sleeve = torch.where(shirtless, -1.0, outfit.sleeve)
    outfit.tucked = outfit.tucked & ~(midriff | shirtless)
    outfit.outer = torch.where(midriff | shirtless, OUTERS.index("none"), outfit.outer)


def place_logos(outfit: Outfit, rest_keypoints: Tensor, generator: torch.Generator) -> None:
    """Put the chest logos of tops and jackets in the middle or on the left of the chest (in place), on
    the device of ``rest_keypoints`` (B,17,3) (the outfit must be there too)."""
    B = rest_keypoints.shape[0]
    draws = torch.stack([torch.rand(B, generator=generator), torch.rand(B, generator=generator)])
    side, height = to_device(draws, rest_keypoints.device)
    sh = rest_keypoints.detach()[:, SHOULDERS].mean(1)
    left = (side < 0.4).float()
    centre = torch.stack([left * 0.08, sh[:, 1] - 0.1 - 0.06 * height * (1 - left), sh[:, 2]], -1)
    for name in ("top", "outer"):
        outfit.materials.logo_center[:, M[name]] = centre


def surfel_albedo(surf: Surfels, outfit: Outfit) -> Tensor:
    """sRGB albedo (B,N,3) of surfels: their material's texture at their coordinates; eyeballs get a
    pupil, iris and sclera by the angle from the eyeball's forward axis, and skin in shadow beyond 45
    degrees (anny's eyeballs are large: that part would bulge out of the lids)."""
    B = surf.means.shape[0]
    b = torch.arange(B, device=surf.means.device)[:, None]
    col = tx.evaluate(outfit.materials.index(b, surf.material), surf.coords)
    cz = surf.coords[..., 2]
    sclera = constant((0.82, 0.78, 0.72), col.device)
    eye = torch.where((cz > math.cos(math.radians(12)))[..., None], torch.full_like(col, 0.03),
                      torch.where((cz > math.cos(math.radians(34)))[..., None], outfit.iris[:, None].expand_as(col), sclera.expand_as(col)))  # fmt: skip
    lid = outfit.skin[:, None].expand_as(col) * 0.55
    eye = torch.where((cz > math.cos(math.radians(45)))[..., None], eye, lid)
    return torch.where((surf.material == M["eyes"])[..., None], eye, col)
