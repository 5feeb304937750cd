"""Draw docs/body_parts_front_back.png: the neutral body's Sapiens part labels from the front and the back.

    PYTHONPATH=src python scripts/body_parts_figure.py [OUT.png]
"""

from __future__ import annotations

import sys

import torch
from PIL import Image, ImageDraw

from humansplat.body import SAPIENS_CLASSES, BodyModel, BodyParams, colorize_labels
from humansplat.body.conditions import render_body_conditions
from humansplat.body.parts import BODY_CLASSES, CLASS_ID
from humansplat.cameras import orbit_cameras
from humansplat.utils import atomic_path


def main(out: str = "docs/body_parts_front_back.png", size: int = 512) -> None:
    body = BodyModel.load()
    params = BodyParams.neutral()
    with torch.no_grad():
        verts = body(params).vertices
        height = float(verts[0, :, 1].max())
        cams = orbit_cameras(torch.tensor([0.0, 180.0]), 0.0, radius=3.2, target=(0, height / 2, 0), fov_deg=36, size=size)
        maps = render_body_conditions(verts, body.faces, body.vertex_labels, cams, points=200_000,
                                      generator=torch.Generator().manual_seed(0))  # fmt: skip
    labels = maps["labels"][0]
    rgb = colorize_labels(torch.where(labels == 0, -1, labels), background=(255, 255, 255))  # (2, H, W, 3)
    legend_w = 230
    canvas = Image.new("RGB", (2 * size + legend_w, size), "white")
    draw = ImageDraw.Draw(canvas)
    for i, title in enumerate(("front", "back")):
        canvas.paste(Image.fromarray(rgb[i].numpy()), (i * size, 0))
        draw.text((i * size + 10, 10), title, fill=(0, 0, 0))
    classes = sorted(BODY_CLASSES, key=lambda c: CLASS_ID[c])
    for k, name in enumerate(classes):
        y = 20 + 22 * k
        color = tuple(int(c) for c in colorize_labels(torch.tensor(CLASS_ID[name])).tolist())
        draw.rectangle([2 * size + 10, y, 2 * size + 26, y + 16], fill=color, outline=(0, 0, 0))
        draw.text((2 * size + 34, y + 2), f"{CLASS_ID[name]:2d} {name}", fill=(0, 0, 0))
    draw.text((2 * size + 10, 20 + 22 * len(classes) + 8), f"({len(SAPIENS_CLASSES)} classes in all;\nothers: clothing, hair, teeth)", fill=(80, 80, 80))
    with atomic_path(out) as tmp:
        canvas.save(tmp, format="PNG")
    print(out)


if __name__ == "__main__":
    main(*sys.argv[1:])
