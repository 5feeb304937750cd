"""Reconstructor weights side by side on real photos, where no ground truth exists but the photo itself:
the input-view PSNR before refinement (the render from the photo's camera against the photo, at 256 px as in
every earlier table, and at 512 px, where a finer per-pixel path shows; the benchmark scores at 512), its colour
difference and chroma ratio inside the matte (``metrics.color_scores``: hue shifts PSNR hardly sees), the prior used,
the volume measures that catch flat cut-outs (``humansplat.volume``: side silhouette / front, depth / width), and
optionally a contact sheet (photo; per weights: input view, 90 and 180 degrees). ``--template-free`` forces the
template-free fallback on every photo, to measure it where the body prior would otherwise be used.

    python benchmarks/real_photos.py ../shared/photos/*/*.png --weights v3=src/humansplat/weights/humansplat-main \\
        new=runs/x/export [--cache DIR] [--sheet docs/x.png --sheet-photos 4] [--json out.json] [--template-free]

Photos are preprocessed (MediaPipe; ``--cache`` keeps them as safetensors for the next run) and the body is
fitted once per photo; every weights folder then runs the pipeline's remaining stages (placement,
reconstruction, the photo-edge cut; no refinement) on that same fit.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from humansplat.gaussians import render
from humansplat.media import contact_sheet, frame_points, save_image, to_uint8, turntable_cameras
from humansplat.body import BodyModel
from humansplat.models import Reconstructor
from humansplat.pipeline.core import MIN_PREPROCESS_RESOLUTION, resolve_weights
from humansplat.pipeline.stages import crop_to_photo, fit_photo, place_in_world, reconstruct_gaussians
from humansplat.preprocess import PersonNotFound, preprocess_cached
from humansplat.refine import photo_scores
from humansplat.volume import is_cutout, volume_measures

SHEET_SIZE = 160
FINE_SCORE_SIZE = 512  # the second input-view score (the first: photo_scores' default, 256)
TURNTABLE_FRAMES = 4  # frames 1 and 2: 90 and 180 degrees


def head_crop(pre, share: float) -> np.ndarray:
    """(H, W, 4) float RGBA: the top ``share`` of the preprocessed person's matte box (the matte as alpha)."""
    m = pre.mask.reshape(pre.mask.shape[-2:]) > 0.5
    rows, cols = torch.nonzero(m.any(1)).flatten(), torch.nonzero(m.any(0)).flatten()
    y0, y1 = int(rows[0]), int(rows[0]) + max(8, int(share * (int(rows[-1]) - int(rows[0]) + 1)))
    x0, x1 = int(cols[0]), int(cols[-1]) + 1
    rgba = torch.cat([pre.image, pre.mask.reshape(1, *m.shape).float()], 0)[:, y0:y1, x0:x1]
    return rgba.permute(1, 2, 0).clamp(0, 1).numpy()


def _views(g, camera, size: int) -> list[np.ndarray]:
    centre, radius = frame_points(g.means, g.opacities)
    turn = turntable_cameras(TURNTABLE_FRAMES, size, 0.0, 30.0, centre, fit_radius=radius)
    with torch.no_grad():
        cells = [to_uint8(render(g, camera.resized(size, size)).rgb[0])]
        cells += [to_uint8(render(g, turn[k : k + 1]).rgb[0]) for k in (1, 2)]
    return cells


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("photos", nargs="+", type=Path)
    ap.add_argument("--weights", nargs="+", required=True, metavar="NAME=DIR")
    ap.add_argument("--cache", type=Path, default=None, help="preprocessed photos are kept here")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sheet", type=Path, default=None)
    ap.add_argument("--sheet-photos", type=int, default=4, help="the first N photos go into the sheet")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--template-free", action="store_true", help="template-free anchors on every photo (the fallback, measured)")
    ap.add_argument("--head-crop", type=float, default=None, metavar="SHARE",
                    help="cut every photo to the top SHARE of its person first (e.g. 0.25: a standing person's head and "
                    "shoulders), a head-only photo as a user would crop it")
    args = ap.parse_args()
    named = dict(w.split("=", 1) for w in args.weights if "=" in w)
    if len(named) != len(args.weights):
        print("error: --weights takes NAME=DIR entries", file=sys.stderr)
        return 2
    models = {name: Reconstructor.from_pretrained(resolve_weights(d)["reconstructor"], args.device) for name, d in named.items()}
    body = BodyModel.load(args.device)
    resolution = max(m.config.pixel_input for m in models.values())
    rows, cells = [], []
    for i, path in enumerate(tqdm(args.photos, desc="photos")):
        try:
            pre = preprocess_cached(path, args.cache, max(MIN_PREPROCESS_RESOLUTION, resolution))
            if args.head_crop:
                key = f"{path.parent.name}-{path.stem}-head{args.head_crop:g}" if args.cache else None
                pre = preprocess_cached(head_crop(pre, args.head_crop), args.cache, max(MIN_PREPROCESS_RESOLUTION, resolution), key)
        except PersonNotFound as e:  # counted, not fatal
            print(f"{path}: skipped ({e})", file=sys.stderr)
            continue
        row = {"photo": f"{path.parent.name}/{path.name}", "framing": pre.framing}
        sheet_row = [to_uint8(torch.nn.functional.interpolate(pre.image[None], size=(SHEET_SIZE, SHEET_SIZE), mode="area")[0].permute(1, 2, 0))]
        body_fit = fit_photo(pre, body)  # the same fit for every weights folder
        if args.template_free:
            body_fit = dataclasses.replace(body_fit, trusted=False)
        for name, model in models.items():
            with torch.no_grad():
                placement = place_in_world(model, body, pre, body_fit)
                camera = placement.cameras[0]
                g = crop_to_photo(reconstruct_gaussians(model, pre, placement), pre, camera[0])
            scores = photo_scores(g, camera, pre.image, pre.mask)
            row[name], row["prior"] = scores["psnr"], placement.structure_prior
            row[f"{name}_psnr512"] = photo_scores(g, camera, pre.image, None, FINE_SCORE_SIZE)["psnr"]
            volume = volume_measures(g, camera)
            row.update({f"{name}_{k}": volume[k] for k in ("side_ratio", "depth_ratio")}, **{f"{name}_cutout": is_cutout(volume)})
            row[f"{name}_delta_e"], row[f"{name}_chroma"] = scores["delta_e"], scores["chroma_ratio"]
            if i < args.sheet_photos:
                sheet_row += _views(g, camera, SHEET_SIZE)
        rows.append(row)
        if i < args.sheet_photos:
            cells += sheet_row
    framings = ", ".join(f"{n} {f}" for f, n in sorted(Counter(r["framing"] for r in rows).items()))
    print(f"\n{len(rows)} photos ({framings}), input view before refinement: PSNR (dB); colour difference (CIE76 delta E, coarse cells in "
          "the matte) and chroma ratio (render / photo, 1 = as colourful), medians\n")
    print(f"| weights | median | mean | min | median at {FINE_SCORE_SIZE} px | body prior | template-free | delta E | chroma ratio | side / front "
          "| depth / width | cut-outs |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in models:
        v = [r[name] for r in rows]
        by_prior = {p: [r[name] for r in rows if r["prior"] == p] for p in ("body", "template_free")}
        med = {p: f"{statistics.median(x):.2f} ({len(x)})" if x else "-" for p, x in by_prior.items()}
        med_of = {k: statistics.median(r[f"{name}_{k}"] for r in rows) for k in ("delta_e", "chroma", "side_ratio", "depth_ratio")}
        fine = statistics.median(r[f"{name}_psnr512"] for r in rows)
        print(f"| {name} | {statistics.median(v):.2f} | {statistics.mean(v):.2f} | {min(v):.2f} | {fine:.2f} | {med['body']} | {med['template_free']} "
              f"| {med_of['delta_e']:.2f} | {med_of['chroma']:.3f} | {med_of['side_ratio']:.2f} | {med_of['depth_ratio']:.2f} "
              f"| {sum(r[f'{name}_cutout'] for r in rows)} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    if args.sheet and cells:
        save_image(args.sheet, contact_sheet(cells, cols=1 + 3 * len(models)))
        print(f"wrote {args.sheet} (per photo: the photo, then per weights {', '.join(models)}: input view, 90 and 180 degrees)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
