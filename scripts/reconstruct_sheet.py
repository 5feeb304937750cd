"""Contact sheet of a `humansplat reconstruct` output folder: per photo, views.png (input + 8 novel views)
above parts.png, shrunk; photos that failed (no folder) are listed from the log if given.

    python scripts/reconstruct_sheet.py OUT_DIR SHEET.png [--width 1200] [--log LOG]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from humansplat.media import save_image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path)
    ap.add_argument("sheet", type=Path)
    ap.add_argument("--width", type=int, default=1200)
    ap.add_argument("--log", type=Path, default=None)
    args = ap.parse_args()
    rows = []
    for d in sorted(p for p in args.folder.iterdir() if (p / "views.png").is_file()):
        views = Image.open(d / "views.png").convert("RGB")
        parts = Image.open(d / "parts.png").convert("RGB") if (d / "parts.png").is_file() else None
        h = round(views.height * args.width / views.width)
        row = Image.new("RGB", (args.width, h + (h if parts else 0)), "white")
        row.paste(views.resize((args.width, h), Image.Resampling.LANCZOS), (0, 0))
        if parts is not None:
            cell = args.width // 9  # parts.png holds the 8 novel views: put them under the novel views
            row.paste(parts.resize((args.width - cell, h), Image.Resampling.LANCZOS), (cell, h))
        ImageDraw.Draw(row).text((4, 2), d.name[:28], fill=(0, 0, 0))
        rows.append(np.asarray(row))
    if args.log and args.log.is_file():
        failed = [line for line in args.log.read_text().splitlines() if line.startswith("humansplat reconstruct:")]
        if failed:
            note = Image.new("RGB", (args.width, 14 * len(failed) + 8), (255, 235, 235))
            ImageDraw.Draw(note).multiline_text((6, 4), "\n".join(f[:170] for f in failed), fill=(150, 0, 0))
            rows.append(np.asarray(note))
    save_image(args.sheet, np.concatenate(rows, 0))
    print(f"{len(rows)} rows -> {args.sheet}")


if __name__ == "__main__":
    main()
