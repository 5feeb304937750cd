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
import json
import sys
import time
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("reconstruct", help="photos in, 3D Gaussian humans out (.ply, .splat, turntable, report)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR", help="photos, or folders of photos")
    p.add_argument("-o", "--output", required=True, type=Path, help="output folder (one subfolder per photo)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weights", type=Path, default=None, help="reconstructor folder (default: the shipped weights)")
    p.add_argument("--person", type=int, default=None, metavar="K", help="which person when there are several: 0 = the largest (default)")
    p.add_argument("--refine-mode", choices=["full", "colors"], default="full",
                   help="refine colours, positions, scales and opacities against the photo and its matte (full, default), or colours only")
    p.add_argument("--refine-steps", type=int, default=30, metavar="N", help="colour refinement steps against the photo (0: off; default 30)")
    p.add_argument("--compile-fit", action="store_true",
                   help="torch.compile the body fit: a minute or more to compile once, then ~3x faster per photo (servers, batches)")
    p.add_argument("--frames", type=int, default=48, help="turntable frames (default 48)")
    p.add_argument("--size", type=int, default=512, help="turntable and view size in pixels (default 512)")
    p.set_defaults(func=run)


def run(args) -> int:
    from humansplat.cli import UserError
    from humansplat.commands.common import collect_images, describe_error, output_names
    from humansplat.pipeline import Pipeline
    from humansplat.utils import progress

    if not 1 <= args.frames <= 720:
        raise UserError(f"--frames must be between 1 and 720, got {args.frames}")
    if not 0 <= args.refine_steps <= 1000:
        raise UserError(f"--refine-steps must be between 0 and 1000, got {args.refine_steps}")
    if not 64 <= args.size <= 2048:
        raise UserError(f"--size must be between 64 and 2048, got {args.size}")
    paths = collect_images(args.images)
    if not paths:
        raise UserError("no images found in " + ", ".join(args.images))
    try:
        pipe = Pipeline(args.weights, args.device, args.seed, refine_steps=args.refine_steps, compile_fit=args.compile_fit,
                        refine_mode=args.refine_mode)
    except (FileNotFoundError, RuntimeError, ValueError) as e:
        raise UserError(" ".join(str(e).split())) from None
    failed = 0
    bar = progress(list(zip(paths, output_names(paths))), desc="reconstruct", unit="photo")
    for path, name in bar:
        try:
            result = pipe(path, person=args.person, name=name)
            t = time.perf_counter()
            write_outputs(result, pipe, args.output / name, args.frames, args.size)
            result.timings["write_outputs"] = time.perf_counter() - t
            total = sum(result.timings.values())
            bar.write(f"{path}: {result.gaussians.num} Gaussians, {result.structure_prior} prior, {total:.1f} s -> {args.output / name}", file=sys.stdout)
        except Exception as e:  # one bad photo must not stop the batch
            failed += 1
            bar.write(f"humansplat reconstruct: {describe_error(path, e)}", file=sys.stderr)
    if failed:
        print(f"humansplat reconstruct: {failed} of {len(paths)} failed", file=sys.stderr)
    return 1 if failed else 0


def write_outputs(result, pipe, folder: Path, frames: int = 48, size: int = 512) -> None:
    """Every output of one reconstruction, into a temporary folder renamed to ``folder`` when complete."""
    import torch

    from humansplat.body import colorize_labels
    from humansplat.commands.common import render_body
    from humansplat.gaussians import render, save_ply, save_splat
    from humansplat.media import contact_sheet, frame_points, save_image, turntable_cameras, write_gif, write_video
    from humansplat.preprocess.overlay import overlay
    from humansplat.utils import atomic_dir

    g = result.gaussians.to(pipe.device)
    centre, radius = frame_points(g.means, g.opacities)
    fov = 30.0

    def views(n: int, elevation: float):
        cams = turntable_cameras(n, size, elevation, fov, centre, fit_radius=radius).to(pipe.device)
        out = [render(g, cams[i : i + 8]) for i in range(0, n, 8)]
        rgb = torch.cat([o.rgb for o in out]).cpu()
        feats = torch.cat([o.features for o in out]) if out[0].features is not None else None
        return rgb, feats, torch.cat([o.alpha for o in out])

    with torch.no_grad():
        turn, _, _ = views(frames, 5.0)
        novel, feats, alpha = views(8, 0.0)
        parts = None
        if feats is not None:
            labels = pipe.model.decode_semantics(feats).argmax(-1)
            labels = torch.where(alpha[..., 0] > 0.5, labels, torch.full_like(labels, -1))
            parts = colorize_labels(labels.cpu(), background=(255, 255, 255))
    photo = result.inputs.image.permute(1, 2, 0)
    photo = torch.nn.functional.interpolate(photo.permute(2, 0, 1)[None], size=(size, size), mode="bilinear", antialias=True)[0].permute(1, 2, 0)
    with atomic_dir(folder) as tmp:
        save_ply(result.gaussians, tmp / "gaussians.ply")
        save_splat(result.gaussians, tmp / "gaussians.splat")
        write_video(tmp / "turntable.mp4", list(turn))
        write_gif(tmp / "turntable.gif", list(turn[:: max(1, frames // 24)]))
        save_image(tmp / "views.png", contact_sheet([photo, *novel], cols=9))
        if parts is not None:
            save_image(tmp / "parts.png", contact_sheet(list(parts), cols=8))
        if result.body_vertices is not None:
            cam = result.camera.to(pipe.device)
            colours, a = render_body(pipe.body, result.body_vertices.to(pipe.device), [cam])
            overlay(result.inputs.image, colours[0].permute(2, 0, 1), a[0].permute(2, 0, 1), opacity=0.7).save(tmp / "body.png")
        (tmp / "report.json").write_text(json.dumps(result.report(), indent=1))
