"""Mattes of every shared photo (detect_person at the loaded resolution) saved for before/after comparison.

python scripts/matte_attached.py OUT.npz            # run and save mask, landmarks, candidates per photo
python scripts/matte_attached.py --compare A.npz B.npz --sheet docs/matte_attached_sheet.jpg
"""

from __future__ import annotations

import argparse
import glob
import sys
import time
from pathlib import Path

import numpy as np

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "photos"
if not PHOTOS.exists():
    PHOTOS = Path("/work/shared/photos")
PATTERNS = ("pexels/*.png", "econ-pose/*.png", "econ-pose/*.jpg", "human3diffusion/*.png", "human3diffusion/*.jpg",
            "lhm/*.png", "lhm/*.jpg", "lhm/*.JPG", "sith/*.png")


def photos() -> list[Path]:
    return sorted({Path(p) for pat in PATTERNS for p in glob.glob(str(PHOTOS / pat))})


def run(out: str) -> None:
    from humansplat.preprocess import load_image
    from humansplat.preprocess.person import detect_person

    res = {}
    for p in photos():
        name = f"{p.parent.name}/{p.name}"
        t = time.time()
        loaded = load_image(p)
        rgb, alpha = loaded.rgb, loaded.alpha
        person = detect_person(rgb, alpha)
        res[name] = dict(mask=(person.mask > 0.5), lms=person.landmarks, cands=person.candidates)
        print(f"{name}: {person.mask.shape} fg {int((person.mask > 0.5).sum())} cands {person.candidates} "
              f"{time.time() - t:.1f}s", flush=True)
    np.savez_compressed(out, **{f"{k}|{f}": v[f] for k, v in res.items() for f in v})


def load(path: str) -> dict:
    d = np.load(path)
    return {k.split("|")[0]: {f.split("|")[1]: d[f] for f in d.files if f.split("|")[0] == k.split("|")[0]} for k in d.files}


def compare(before: str, after: str, sheet: str | None, thumb: int = 150) -> None:
    """Pixels added / removed per photo; a contact sheet (photo, before, after: added green, removed red)."""
    from PIL import Image, ImageDraw

    from humansplat.preprocess import load_image

    a, b = load(before), load(after)
    tiles = []
    for name in sorted(a):
        m0, m1 = a[name]["mask"], b[name]["mask"]
        added, removed = int((m1 & ~m0).sum()), int((m0 & ~m1).sum())
        if not added and not removed:
            continue
        print(f"{name}: matte {int(m0.sum())} -> {int(m1.sum())} px (+{added} -{removed}, {100 * (added - removed) / m0.sum():+.1f}%), "
              f"candidates {int(a[name]['cands'])} -> {int(b[name]['cands'])}")
        if sheet:
            im = load_image(PHOTOS / name)
            rgb = (np.clip(im.rgb, 0, 1) * 255).astype(np.uint8)
            row = []
            for m, tint in ((None, None), (m0, None), (m1, m1 & ~m0)):
                t = rgb.copy()
                if m is not None:
                    t[~m] = (t[~m] * 0.3).astype(np.uint8)
                if tint is not None:
                    t[tint] = (t[tint] * 0.4 + np.array([0, 255, 0]) * 0.6).astype(np.uint8)
                    t[m0 & ~m1] = (255, 0, 0)
                row.append(t)
            tile = Image.fromarray(np.concatenate(row, 1))
            tile.thumbnail((3 * thumb, thumb))
            canvas = Image.new("RGB", (3 * thumb, thumb + 14), "white")
            canvas.paste(tile, (0, 0))
            ImageDraw.Draw(canvas).text((2, thumb + 1), f"{name[:36]} +{added} -{removed}", fill="black")
            tiles.append(canvas)
    print(f"{len(tiles) if sheet else '?'} of {len(a)} mattes changed")
    if sheet and tiles:
        cols = 2
        out = Image.new("RGB", (cols * tiles[0].width, -(-len(tiles) // cols) * tiles[0].height), "white")
        for i, t in enumerate(tiles):
            out.paste(t, ((i % cols) * t.width, (i // cols) * t.height))
        out.save(sheet, quality=70)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("out", nargs="?", help="save every photo's matte here (.npz)")
    ap.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"))
    ap.add_argument("--sheet", help="contact sheet of the changed mattes (.jpg)")
    a = ap.parse_args()
    if a.compare:
        compare(*a.compare, a.sheet)
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
        run(a.out)
