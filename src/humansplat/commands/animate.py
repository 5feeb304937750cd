"""`humansplat animate RESULT_DIR (--pose NAME | --motion FILE) -o DIR`: repose a reconstruction."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    from humansplat.animate import POSE_NAMES

    p = subparsers.add_parser("animate", help="repose a reconstruction: named poses, motion files (JSON, BVH), the walk cycle",
                              description="Skin the Gaussians of a reconstruction to its fitted body and repose them. Writes "
                                          "canonical.ply, frames/NNNN.ply, motion.mp4/.gif and animation.json.")  # fmt: skip
    p.add_argument("result", type=Path, help="a `humansplat reconstruct` result folder (gaussians.ply + report.json)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--pose", choices=POSE_NAMES, help="a named pose")
    what.add_argument("--motion", help="a motion file (.json: humansplat-motion, .bvh) or `walk` for the bundled walk cycle")
    p.add_argument("-o", "--out", type=Path, required=True, help="output directory")
    p.add_argument("--frame", type=int, default=None, help="write the .ply of this frame only (default: every frame)")
    p.add_argument("--orbit", action="store_true", help="orbit the camera once over the motion (default: a fixed front camera)")
    p.add_argument("--size", type=int, default=384, help="video size in pixels (default 384)")
    p.add_argument("--no-video", action="store_true", help="write the .ply files only")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from humansplat.animate import MotionError, ResultError, load_motion, walk_cycle
    from humansplat.animate.writer import animate_result
    from humansplat.cli import UserError

    if args.size < 8:
        raise UserError("--size must be >= 8")
    try:
        motion = None
        if args.motion is not None:
            motion = walk_cycle() if args.motion == "walk" else load_motion(args.motion)
        files = animate_result(args.result, args.out, motion=motion, pose=args.pose, frame=args.frame, orbit=args.orbit,
                               size=args.size, video=not args.no_video)  # fmt: skip
    except (MotionError, ResultError) as e:
        raise UserError(str(e)) from None
    except ValueError as e:
        raise UserError(" ".join(str(e).split())) from None
    print(f"wrote {len(files)} files to {args.out}")
    return 0
