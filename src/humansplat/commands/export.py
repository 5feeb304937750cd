"""`humansplat export RESULT_DIR --formats glb,mesh,gltf-splats -o DIR`: meshes and glTF of a reconstruction."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    from humansplat.export import FORMATS

    p = subparsers.add_parser("export", help="export a reconstruction: rigged .glb avatar, coloured mesh (.obj/.glb), Gaussians as glTF",
                              description="Export a `humansplat reconstruct` result folder (see humansplat.export).")  # fmt: skip
    p.add_argument("result", type=Path, help="a `humansplat reconstruct` result folder (gaussians.ply + report.json)")
    p.add_argument("--formats", default=",".join(FORMATS), help=f"comma-separated, any of {', '.join(FORMATS)} (default: all)")
    p.add_argument("-o", "--out", type=Path, required=True, help="output directory")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from humansplat.animate import ResultError
    from humansplat.cli import UserError
    from humansplat.export import export_result

    try:
        files = export_result(args.result, args.out, [f.strip() for f in args.formats.split(",") if f.strip()])
    except (ResultError, ValueError) as e:
        raise UserError(" ".join(str(e).split())) from None
    print(f"wrote {', '.join(p.name for p in files)} to {args.out}")
    return 0
