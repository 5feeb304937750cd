"""Contact sheet of the refinement modes on real photos: per photo, the photo, the input view without
refinement, with colour refinement and with full refinement, then the side views (90 and 270 degrees)
without and with full refinement. Prints the input-view PSNR and refinement time of each mode.

    python scripts/fidelity_sheet.py PHOTO... -o docs/refine_sheet.png [--size 192] [--steps 30]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from humansplat.gaussians import render
from humansplat.media import contact_sheet, frame_points, save_image, to_uint8, turntable_cameras
from humansplat.pipeline import Pipeline
from humansplat.refine import REFINE_MODES, RefineConfig, photo_psnr, refine

SIDE_FRAMES = 4  # turntable frames 1 and 3: 90 and 270 degrees


def _label(img: np.ndarray, text: str) -> np.ndarray:
    im = Image.fromarray(img)
    ImageDraw.Draw(im).text((3, 2), text, fill=(0, 0, 0))
    return np.asarray(im)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("photos", nargs="+", type=Path)
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--steps", type=int, default=RefineConfig.steps)
    args = ap.parse_args()
    pipe = Pipeline(device="cpu", refine_steps=0)
    cells, stats = [], []
    for path in args.photos:
        r = pipe(str(path))
        variants = {"none": r.gaussians}
        row = {"photo": path.name, "prior": r.structure_prior, "none": photo_psnr(r.gaussians, r.camera, r.inputs.image)}
        for mode in REFINE_MODES:
            t = time.perf_counter()
            variants[mode] = refine(r.gaussians, r.camera, r.inputs.image, r.inputs.mask, RefineConfig(steps=args.steps, mode=mode))
            row[f"{mode}_s"] = time.perf_counter() - t
            row[mode] = photo_psnr(variants[mode], r.camera, r.inputs.image)
        stats.append(row)
        print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
        centre, radius = frame_points(r.gaussians.means, r.gaussians.opacities)
        sides = turntable_cameras(SIDE_FRAMES, args.size, 0.0, 30.0, centre, fit_radius=radius)
        photo_cam = r.camera.resized(args.size, args.size)
        with torch.no_grad():
            photo = torch.nn.functional.interpolate(r.inputs.image[None], size=(args.size, args.size), mode="area")[0].permute(1, 2, 0)
            cells.append(_label(to_uint8(photo), path.stem[:24]))
            for name in ("none", *REFINE_MODES):
                cells.append(_label(to_uint8(render(variants[name], photo_cam).rgb[0]), f"input, {name} {row[name]:.1f} dB"))
            for name in ("none", "full"):
                for k in (1, 3):
                    cells.append(_label(to_uint8(render(variants[name], sides[k : k + 1]).rgb[0]), f"{90 * k} deg, {name}"))
    save_image(args.out, contact_sheet(cells, cols=8))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
