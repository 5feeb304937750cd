"""Contact sheet of the novel-view stage on real photos: per photo, the generated views (generated.png), then
the views (views.png) without and with the stage, from two `humansplat reconstruct` output folders.

    python scripts/novelview_sheet.py WITHOUT_DIR WITH_DIR -o docs/novelview_contact_sheet.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from humansplat.media import contact_sheet, save_image

ROW_HEIGHT = 128  # pixels of each strip in the sheet


def strip(path: Path, label: str) -> np.ndarray:
    img = Image.open(path).convert("RGB")
    img = img.resize((img.width * ROW_HEIGHT // img.height, ROW_HEIGHT), Image.Resampling.LANCZOS)
    ImageDraw.Draw(img).text((4, 2), label, fill=(0, 0, 0))
    return np.asarray(img)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("without", type=Path)
    ap.add_argument("with_views", type=Path)
    ap.add_argument("-o", "--out", type=Path, required=True)
    args = ap.parse_args()
    rows = []
    for folder in sorted(p for p in args.with_views.iterdir() if (p / "generated.png").is_file()):
        rows.append(strip(folder / "generated.png", f"{folder.name}: photo + generated views"))
        rows.append(strip(args.without / folder.name / "views.png", "without the stage: photo + 8 views"))
        rows.append(strip(folder / "views.png", "with the generated views: photo + 8 views"))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    save_image(args.out, contact_sheet(rows, cols=1, pad=4))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
