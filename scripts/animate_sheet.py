"""Contact sheet of reconstructions reposed: per result folder one row of the input photo, then walk
cycle frames, sitting, arms raised and the T-pose, each from the front and from the side (the
subject's left, 90 degrees), all framed alike.

    python scripts/animate_sheet.py RESULT_DIR... -o docs/animate_contact_sheet.png [--size 176]

(RESULT_DIR: a `humansplat reconstruct` output folder of one photo, with a body fit.)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from humansplat.animate import Motion, named_pose, skinned_result, subject_params, walk_cycle
from humansplat.gaussians import render
from humansplat.media import contact_sheet, frame_points, save_image, to_uint8, turntable_cameras

WALK_FRAMES = (0, 6, 12)  # of the 24-frame walk cycle: contact, passing, the other contact
POSES = ("sitting", "arms_raised", "t_pose")


def _label(image: np.ndarray, text: str) -> np.ndarray:
    im = Image.fromarray(image)
    ImageDraw.Draw(im).text((3, 2), text, fill=(0, 0, 0))
    return np.asarray(im)


@torch.no_grad()
def row(result_dir: Path, size: int) -> list[np.ndarray]:
    result, skinned, body = skinned_result(result_dir)
    walk = walk_cycle()
    poses = [(f"walk {i}", walk.poses[i]) for i in WALK_FRAMES] + [(n.replace("_", " "), named_pose(n, body)) for n in POSES]
    params = subject_params(body, skinned.params, Motion(torch.stack([p for _, p in poses])))
    posed = skinned.posed(body, params)
    centre, extent = frame_points(torch.cat([g.means for g in posed]), torch.cat([g.opacities for g in posed]))
    cams = turntable_cameras(4, size, 5.0, 30.0, centre.tolist(), fit_radius=extent)[:2]  # front, side
    photo = next((p for p in sorted(result_dir.glob("input*.png"))), None) or result_dir / "views.png"
    first = Image.open(photo).convert("RGB")
    if photo.name == "views.png":  # its first cell is the model's input
        first = first.crop((0, 0, first.height, first.height))
    first.thumbnail((size, size))
    cell = Image.new("RGB", (size, size), "white")
    cell.paste(first, ((size - first.width) // 2, (size - first.height) // 2))
    images = [_label(np.asarray(cell), result_dir.name[:24])]
    for (name, _), g in zip(poses, posed):
        rgb = render(g, cams, background=1.0).rgb
        images += [_label(to_uint8(rgb[0]), name), _label(to_uint8(rgb[1]), name + " side")]
    return images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path, nargs="+")
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--size", type=int, default=176)
    args = ap.parse_args()
    cells = [im for d in args.results for im in row(d, args.size)]
    save_image(args.out, contact_sheet(cells, cols=1 + 2 * (len(WALK_FRAMES) + len(POSES))))
    print(f"{len(args.results)} rows -> {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
