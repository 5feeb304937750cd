"""Before/after of the body fit on real photos, from two `humansplat fit` output folders: a table (trusted
fits, untrusted limbs, reprojection, seconds) and a contact sheet (per photo: the input, then body over the
photo and side view before, then after; the row's label says trusted or not and the untrusted limbs).

    python scripts/fit_sheet.py BEFORE_DIR AFTER_DIR [--only NAME_PART ...] [-o docs/fit_dynamic_sheet.jpg]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from humansplat.media import contact_sheet, save_image

CELL = 192  # pixels of each picture in the sheet
CELLS = ("body_front.png", "body_side.png")  # per fit, after the input


def fit_record(folder: Path) -> dict | None:
    path = folder / "body.json"
    return json.loads(path.read_text())["fit"] if path.is_file() else None


def verdict(fit: dict | None) -> str:
    if fit is None:
        return "missing"
    limbs = [n.replace("left_", "L ").replace("right_", "R ") for n in fit.get("untrusted_limbs") or []]
    word = "trusted" if fit["trusted"] else "UNTRUSTED"
    return f"{word} {fit['reprojection_px']:.0f}px" + (f" -{','.join(limbs)}" if limbs else "")


def cell(path: Path, label: str = "") -> Image.Image:
    img = Image.open(path).convert("RGB") if path.is_file() else Image.new("RGB", (CELL, CELL), (235, 235, 235))
    img = img.resize((CELL, CELL), Image.Resampling.LANCZOS)
    if label:
        draw = ImageDraw.Draw(img)
        draw.rectangle((0, 0, CELL, 11), fill=(255, 255, 255))
        draw.text((2, 0), label[:34], fill=(0, 0, 0))
    return img


def row(name: str, before: Path, after: Path) -> np.ndarray:
    cells = [cell(after / "input.png", name[:22])]
    for folder, tag in ((before, "before"), (after, "after")):
        fit = fit_record(folder)
        cells += [cell(folder / CELLS[0], f"{tag}: {verdict(fit)}"), cell(folder / CELLS[1])]
    strip = Image.new("RGB", (CELL * len(cells), CELL), "white")
    for i, c in enumerate(cells):
        strip.paste(c, (i * CELL, 0))
    return np.asarray(strip)


def summary(folders: list[Path], tag: str) -> str:
    fits = [f for f in map(fit_record, folders) if f is not None]
    trusted = sum(f["trusted"] for f in fits)
    limbs = sum(bool(f.get("untrusted_limbs")) for f in fits)
    reproj = statistics.median(f["reprojection_px"] for f in fits) if fits else float("nan")
    secs = statistics.median(f["seconds"] for f in fits) if fits else float("nan")
    return (f"{tag}: {trusted}/{len(folders)} trusted ({len(folders) - trusted} template-free), {limbs} with untrusted limbs, "
            f"median reprojection {reproj:.1f} px, median photo time {secs:.1f} s")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--only", nargs="*", default=None, help="photo folder names containing one of these")
    ap.add_argument("-o", "--out", type=Path, help="contact sheet file (.jpg keeps it small)")
    args = ap.parse_args()
    names = sorted(p.name for p in args.after.iterdir() if (p / "body.json").is_file())
    if args.only:
        names = [n for n in names if any(part in n for part in args.only)]
    if not names:
        raise SystemExit("fit_sheet: no fit folders to compare")
    for name in names:
        print(f"| {name} | {verdict(fit_record(args.before / name))} | {verdict(fit_record(args.after / name))} |")
    print(summary([args.before / n for n in names], "before"))
    print(summary([args.after / n for n in names], "after"))
    if args.out:
        save_image(args.out, contact_sheet([row(n, args.before / n, args.after / n) for n in names], cols=1, pad=4))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
