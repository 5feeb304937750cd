"""Contact sheet of the input view's detail on real photos: per photo, the photo's head region, then per weights
the same region of the input view (before refinement, rendered at the photo's size) and a 90-degree view.

    python scripts/face_zoom_sheet.py PHOTO... --weights v11=src/humansplat/weights/humansplat-main new=runs/x/export \
        -o docs/x.jpg [--cache DIR]

The head region is the top of the matte: a square 30% of the person's height, centred on the matte's columns in
the top quarter. Photos are preprocessed (MediaPipe) and fitted once; every weights folder runs on that fit.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from humansplat.body import BodyModel
from humansplat.gaussians import render
from humansplat.media import contact_sheet, frame_points, save_image, to_uint8, turntable_cameras
from humansplat.models import Reconstructor
from humansplat.pipeline.core import MIN_PREPROCESS_RESOLUTION, resolve_weights
from humansplat.pipeline.stages import crop_to_photo, fit_photo, place_in_world, reconstruct_gaussians
from humansplat.preprocess import preprocess_cached

CELL = 256
HEAD_SHARE = 0.3  # side of the head square, as a share of the matte's height


def _label(img: np.ndarray, text: str) -> np.ndarray:
    im = Image.fromarray(img)
    ImageDraw.Draw(im).text((3, 2), text, fill=(200, 0, 0))
    return np.asarray(im)


def head_box(mask: torch.Tensor) -> tuple[int, int, int]:
    """(top, left, side) of a square over the head: the top of the matte (H, W), centred on its top quarter."""
    m = mask.reshape(mask.shape[-2:]) > 0.5
    rows = torch.nonzero(m.any(1)).flatten()
    y0, height = int(rows[0]), int(rows[-1] - rows[0]) + 1
    cols = torch.nonzero(m[y0 : y0 + max(8, height // 4)].any(0)).flatten()
    side = max(64, int(height * HEAD_SHARE))
    left = max(0, min(m.shape[1] - side, int(cols[0] + cols[-1]) // 2 - side // 2))
    return max(0, y0 - side // 10), left, side


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("photos", nargs="+", type=Path)
    ap.add_argument("--weights", nargs="+", required=True, metavar="NAME=DIR")
    ap.add_argument("-o", "--output", type=Path, required=True)
    ap.add_argument("--cache", type=Path, default=None, help="preprocessed photos are kept here")
    args = ap.parse_args()
    named = dict(w.split("=", 1) for w in args.weights if "=" in w)
    if len(named) != len(args.weights):
        print("error: --weights takes NAME=DIR entries", file=sys.stderr)
        return 2
    models = {n: Reconstructor.from_pretrained(resolve_weights(d)["reconstructor"]) for n, d in named.items()}
    body = BodyModel.load()
    cells = []
    for path in args.photos:
        pre = preprocess_cached(path, args.cache, MIN_PREPROCESS_RESOLUTION)
        fit = fit_photo(pre, body)
        top, left, side = head_box(pre.mask)
        zoom = lambda img: np.asarray(Image.fromarray(img[top : top + side, left : left + side]).resize((CELL, CELL), Image.LANCZOS))
        size = pre.image.shape[-1]
        heads, turns = [_label(zoom(to_uint8(pre.image.permute(1, 2, 0))), "photo")], []
        for name, model in models.items():
            with torch.no_grad():
                placement = place_in_world(model, body, pre, fit)
                camera = placement.cameras[0]
                g = crop_to_photo(reconstruct_gaussians(model, pre, placement), pre, camera[0])
                centre, radius = frame_points(g.means, g.opacities)
                turn = turntable_cameras(4, CELL, 0.0, 30.0, centre, fit_radius=radius)
                heads.append(_label(zoom(to_uint8(render(g, camera.resized(size, size)).rgb[0])), name))
                turns.append(_label(to_uint8(render(g, turn[1:2]).rgb[0]), f"{name}, 90 deg"))
        cells += heads + turns
    save_image(args.output, contact_sheet(cells, cols=1 + 2 * len(models)))
    print(f"wrote {args.output} (per photo: the photo's head, then per weights {', '.join(models)}: the input view's head; "
          "then each one's 90-degree view)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
