"""`humansplat reconstruct IMAGE_OR_DIR... -o OUT`: photos in, 3D Gaussian humans out.

Writes, per photo, the folder ``OUT/<name>/`` (atomically: complete or absent):

- ``gaussians.ply``   the Gaussians in the INRIA 3DGS layout (plus ``feat_*`` semantic features)
- ``gaussians.splat`` the same for web viewers (32 bytes a splat)
- ``turntable.mp4``, ``turntable.gif``  a turn around the subject
- ``views.png``       the model's input beside 8 novel views (every 45 degrees)
- ``parts.png``       the same 8 views coloured by the decoded 28-class body parts
- ``body.png``        the fitted body over the photo (when a body was fitted)
- ``report.json``     stage timings, device, versions, weights hash, the input camera (K, w2c, size) and fit

One bad file does not stop the others; the exit code is 1 when any photo failed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def register(subparsers) -> None:
    from humansplat.outputs import TURNTABLE_FRAMES, VIEW_SIZE
    from humansplat.refine import RefineConfig

    p = subparsers.add_parser("reconstruct", help="photos in, 3D Gaussian humans out (.ply, .splat, turntable, report)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR", help="photos, or folders of photos")
    p.add_argument("-o", "--output", required=True, type=Path, help="output folder (one subfolder per photo)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weights", type=Path, default=None, help="reconstructor folder (default: the shipped weights)")
    p.add_argument("--person", type=int, default=None, metavar="K", help="which person when there are several: 0 = the largest (default)")
    p.add_argument("--refine-mode", choices=["full", "colors"], default=RefineConfig.mode,
                   help=f"refine colours only (colors), or colours, positions and scales against the photo and its matte "
                        f"(full: a sharper input view, softer hands from other views; default {RefineConfig.mode})")
    p.add_argument("--refine-steps", type=int, default=RefineConfig.steps, metavar="N",
                   help=f"refinement steps against the photo (0: off; default {RefineConfig.steps})")
    p.add_argument("--compile-fit", action="store_true",
                   help="torch.compile the body fit: a minute or more to compile once, then ~3x faster per photo (servers, batches)")
    p.add_argument("--novel-views", choices=["auto", "on", "off"], default="auto",
                   help="the novel-view generator stage (auto: when the weights folder's pipeline.json names a generator; "
                        "the shipped one does not, the generator does not help yet: see weights/novelview/MODEL_CARD.md)")
    p.add_argument("--frames", type=int, default=TURNTABLE_FRAMES, help=f"turntable frames (default {TURNTABLE_FRAMES})")
    p.add_argument("--size", type=int, default=VIEW_SIZE, help=f"turntable and view size in pixels (default {VIEW_SIZE})")
    p.set_defaults(func=run)


def run(args) -> int:
    from humansplat.cli import UserError
    from humansplat.commands.common import check_outputs, collect_images, describe_error, output_names
    from humansplat.models import WeightsError
    from humansplat.outputs import write_result
    from humansplat.pipeline import Pipeline
    from humansplat.preprocess import require_photo_extra
    from humansplat.utils import pick_device, progress

    if not 1 <= args.frames <= 720:
        raise UserError(f"--frames must be between 1 and 720, got {args.frames}")
    if not 0 <= args.refine_steps <= 1000:
        raise UserError(f"--refine-steps must be between 0 and 1000, got {args.refine_steps}")
    if not 64 <= args.size <= 2048:
        raise UserError(f"--size must be between 64 and 2048, got {args.size}")
    paths = collect_images(args.images)
    if not paths:
        raise UserError("no images found in " + ", ".join(args.images))
    names = output_names(paths)
    check_outputs(args.output, names)  # before the models load: a bad -o fails at once
    try:
        pick_device(args.device)
        require_photo_extra()
    except RuntimeError as e:
        raise UserError(str(e)) from None
    try:
        pipe = Pipeline(args.weights, args.device, args.seed, refine_steps=args.refine_steps, compile_fit=args.compile_fit,
                        novel_views=args.novel_views, refine_mode=args.refine_mode)
    except (WeightsError, FileNotFoundError) as e:  # unusable or missing weights
        raise UserError(" ".join(str(e).split())) from None
    failed = 0
    bar = progress(list(zip(paths, names)), desc="reconstruct", unit="photo")
    for path, name in bar:
        try:
            result = pipe(path, person=args.person, name=name)
            t = time.perf_counter()
            write_result(result, args.output / name, pipe, args.frames, args.size)
            result.timings["write_outputs"] = time.perf_counter() - t
            total = sum(result.timings.values())
            bar.write(f"{path}: {result.gaussians.num} Gaussians, {result.structure_prior} prior, {total:.1f} s -> {args.output / name}", file=sys.stdout)
        except Exception as e:  # one bad photo must not stop the batch
            failed += 1
            bar.write(f"humansplat reconstruct: {describe_error(path, e)}", file=sys.stderr)
    if failed:
        print(f"humansplat reconstruct: {failed} of {len(paths)} failed", file=sys.stderr)
    return 1 if failed else 0
