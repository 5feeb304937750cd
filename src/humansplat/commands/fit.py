"""`humansplat fit IMAGE... -o DIR`: find the person in each photo and fit the parametric body to them.

Writes, per photo, the folder ``DIR/<name>/`` (atomically: complete or absent):

- ``input.png``     the model's input: the person centred on white at ``--resolution``
- ``matte.png``     the person matte (grey levels) for that square
- ``keypoints.png`` COCO-17 keypoints and skeleton (hollow grey rings: low confidence)
- ``body_front.png`` the fitted body, coloured by body part, over the photo from the photo's camera
- ``body_side.png`` the fitted body from the subject's left (90 degrees from the photo's camera)
- ``body.json``     body parameters, the cameras (to re-render from the photo's viewpoint), fit errors
- ``body.obj``      the fitted body mesh (vertex colours: body parts)

Camera convention (recorded in body.json): OpenCV pinhole, world +Y up, metres. The photo's camera
sits at (0, 0, 2.5) on +Z looking toward -Z (``orbit_cameras(azimuth=0)``, i.e. in front of a subject
who faces +Z) with the crop's intrinsics; fitting solves the body's translation and orientation in
that world. One bad file does not stop the others (one line each on stderr; set HUMANSPLAT_DEBUG=1
for tracebacks); the exit code is 1 when any photo failed.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import time
import traceback
from pathlib import Path

import numpy as np

def register(subparsers) -> None:
    from humansplat.preprocess.crop import DEFAULT_FOV_DEG

    p = subparsers.add_parser("fit", help="fit the body model to photos: matte, keypoints, body overlays, body.json/.obj",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("images", nargs="+", metavar="IMAGE", help="photos, or folders of photos")
    p.add_argument("-o", "--output", required=True, type=Path, help="output folder (one subfolder per photo)")
    p.add_argument("--resolution", type=int, default=512, help="side of the square crop (default 512)")
    p.add_argument("--person", type=int, default=None, metavar="K", help="which person when there are several: 0 = the largest (default)")
    p.add_argument("--fov", type=float, default=DEFAULT_FOV_DEG, help=f"assumed field of view across the photo's long side, degrees (default {DEFAULT_FOV_DEG:g}); EXIF focal lengths win")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--contact-sheet", type=Path, metavar="PNG", help="also write one picture of every result: photo, keypoints, body front and side per photo (failures listed)")
    p.add_argument("--thumb", type=int, default=160, help="contact-sheet cell size in pixels (default 160)")
    p.set_defaults(func=run)


def run(args) -> int:
    from humansplat.cli import UserError
    from humansplat.commands.common import check_outputs, collect_images, describe_error, output_names
    from humansplat.preprocess import require_photo_extra
    from humansplat.utils import OutputError, check_writable_file, pick_device, progress

    if args.resolution < 64 or args.resolution > 4096:
        raise UserError(f"--resolution must be between 64 and 4096, got {args.resolution}")
    if args.person is not None and args.person < 0:
        raise UserError("--person must be 0 (the largest) or more")
    if not 1.0 <= args.fov <= 170.0:
        raise UserError(f"--fov must be between 1 and 170 degrees, got {args.fov}")
    try:
        device = pick_device(args.device)
    except (RuntimeError, ValueError) as e:
        raise UserError(str(e)) from None
    paths = collect_images(args.images)
    if not paths:
        raise UserError("no images found in " + ", ".join(args.images))
    names = output_names(paths)
    check_outputs(args.output, names)  # before any work: a bad -o fails at once
    try:
        if args.contact_sheet:
            check_writable_file(args.contact_sheet)
    except OutputError as e:
        raise UserError(str(e)) from None

    from humansplat.body import BodyModel
    from humansplat.outputs import write_fit
    from humansplat.pipeline.stages import fit_photo
    from humansplat.preprocess import preprocess
    from humansplat.utils import seed_everything

    try:
        require_photo_extra()
    except RuntimeError as e:
        raise UserError(str(e)) from None
    body = BodyModel.load(device)
    failed, rows = [], []
    bar = progress(list(zip(paths, names)), desc="fit", unit="photo")
    for path, name in bar:
        try:
            start = time.perf_counter()
            seed_everything(args.seed)
            inputs = preprocess(path, resolution=args.resolution, person=args.person, fov_deg=args.fov)
            fitted = fit_photo(inputs, body, force=True)
            seconds = time.perf_counter() - start
            folder = args.output / name
            write_fit(inputs, fitted, body, folder, seconds)
            if args.contact_sheet:
                rows.append(sheet_row(folder, name, args.thumb))
            r = fitted.fit
            trust = "trusted" if fitted.trusted else f"not trusted: {fitted.reason}"
            bar.write(f"{path}: {inputs.framing}, reprojection {float(r.reprojection_px[0]):.1f} px"
                      f"{'' if bool(r.converged[0]) else ' (not converged)'} ({trust}), {seconds:.1f} s -> {folder}", file=sys.stdout)  # fmt: skip
        except Exception as e:  # one bad photo must not stop the batch
            failed.append(path)
            bar.write(f"humansplat fit: {describe_error(path, e)}", file=sys.stderr)
            if os.environ.get("HUMANSPLAT_DEBUG"):
                traceback.print_exc()
            if args.contact_sheet:
                rows.append(sheet_row(None, name, args.thumb, path, describe_error(path, e)))
    if args.contact_sheet and rows:
        from humansplat.media import contact_sheet, save_image

        save_image(args.contact_sheet, contact_sheet(rows, cols=2 if len(rows) > 4 else 1, pad=6))
        print(f"contact sheet: {args.contact_sheet}")
    if failed:
        print(f"humansplat fit: {len(failed)} of {len(paths)} failed", file=sys.stderr)
    return 1 if failed else 0


def sheet_row(folder: Path | None, name: str, size: int, photo: Path | None = None, error: str = "") -> np.ndarray:
    """A contact-sheet row: input, keypoints, body front, body side; for a failure, the photo (when it
    loads) and the error message."""
    from PIL import Image, ImageDraw

    cells = []
    if folder is not None:
        cells = [Image.open(folder / f).convert("RGB").resize((size, size), Image.Resampling.LANCZOS)
                 for f in ("input.png", "keypoints.png", "body_front.png", "body_side.png")]  # fmt: skip
    else:
        from humansplat.preprocess import load_image

        cell = Image.new("RGB", (size, size), (235, 235, 235))
        try:
            img = Image.fromarray((load_image(photo).rgb * 255).astype(np.uint8))
            img.thumbnail((size, size))
            cell.paste(img, ((size - img.width) // 2, (size - img.height) // 2))
        except Exception:
            pass
        note = Image.new("RGB", (3 * size, size), (255, 235, 235))
        lines = textwrap.wrap("FAILED: " + error, width=max(20, 3 * size // 7))[: size // 14]
        ImageDraw.Draw(note).multiline_text((6, 16), "\n".join(lines), fill=(150, 0, 0))
        cells = [cell, note]
    row = Image.new("RGB", (4 * size, size), "white")
    x = 0
    for c in cells:
        row.paste(c, (x, 0))
        x += c.width
    ImageDraw.Draw(row).text((4, 2), name[:24], fill=(0, 0, 0))
    return np.asarray(row)
