"""`humansplat render SCENE.ply -o DIR`: a turntable of a Gaussian scene as .mp4, .gif and a contact sheet."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def register(subparsers) -> None:
    p = subparsers.add_parser("render", help="render a turntable (mp4, gif, contact sheet) of a Gaussian .ply",
                              description="Render a turntable of a 3D Gaussian scene (INRIA .ply layout).")
    p.add_argument("scene", type=Path, help="Gaussian scene (.ply, INRIA 3DGS layout)")
    p.add_argument("-o", "--out", type=Path, required=True, help="output directory")
    p.add_argument("--frames", type=int, default=48, help="frames in the turntable (default 48)")
    p.add_argument("--size", type=int, default=512, help="image size in pixels (square, default 512)")
    p.add_argument("--elevation", type=float, default=5.0, help="camera elevation in degrees (default 5)")
    p.add_argument("--radius", type=float, default=None, help="camera distance in metres (default: fit the scene)")
    p.add_argument("--fov", type=float, default=30.0, help="vertical field of view in degrees (default 30)")
    p.add_argument("--background", type=float, nargs=3, default=(1.0, 1.0, 1.0), metavar=("R", "G", "B"), help="background colour in [0, 1]")
    p.add_argument("--fps", type=float, default=24.0, help="video frame rate (default 24)")
    p.add_argument("--sheet", type=int, default=8, help="views on the contact sheet (default 8)")
    p.add_argument("--save-frames", action="store_true", help="also write every frame as DIR/frames/NNNN.png")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--batch", type=int, default=8, help="views rendered per call (default 8)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from humansplat.cli import UserError
    from humansplat.gaussians import load_ply, render
    from humansplat.media import contact_sheet, frame_points, save_image, to_uint8, turntable_cameras, write_gif, write_video
    from humansplat.utils import OutputError, atomic_dir, check_replaceable, check_writable, pick_device, progress

    if not args.scene.is_file():
        raise UserError(f"{args.scene}: no such file")
    if args.frames < 1 or args.size < 8 or args.sheet < 1 or args.batch < 1:
        raise UserError("--frames, --sheet and --batch must be >= 1 and --size >= 8")
    if not 0 < args.fov < 180:
        raise UserError("--fov must be between 0 and 180 degrees")
    try:
        check_writable(args.out.parent)
        check_replaceable(args.out)  # the folder is replaced as a whole: only one of ours may be
    except OutputError as e:
        raise UserError(str(e)) from None
    try:
        gaussians = load_ply(args.scene)
    except (ValueError, OSError) as e:
        raise UserError(str(e)) from None
    if gaussians.num == 0:
        raise UserError(f"{args.scene}: the scene has no Gaussians")
    try:
        device = pick_device(args.device)
    except (RuntimeError, ValueError) as e:
        raise UserError(str(e)) from None

    gaussians = gaussians.to(device)
    center, extent = frame_points(gaussians.means, gaussians.opacities)
    cams = turntable_cameras(args.frames, args.size, args.elevation, args.fov, center.tolist(), args.radius, fit_radius=extent)
    bg = torch.tensor(args.background, dtype=torch.float32, device=device)
    frames = []
    with torch.no_grad():
        for i in progress(range(0, args.frames, args.batch), desc="render", unit="batch"):
            out = render(gaussians, cams[i : i + args.batch].to(device), background=bg)
            frames += [to_uint8(f) for f in out.rgb]

    out_dir: Path = args.out
    try:
        with atomic_dir(out_dir) as tmp:
            write_video(tmp / "turntable.mp4", frames, fps=args.fps)
            write_gif(tmp / "turntable.gif", frames, fps=min(args.fps, 15.0))
            picks = [frames[round(k * args.frames / min(args.sheet, args.frames))] for k in range(min(args.sheet, args.frames))]
            save_image(tmp / "contact_sheet.png", contact_sheet(picks, cols=min(4, len(picks))))
            if args.save_frames:
                for k, f in enumerate(frames):
                    save_image(tmp / "frames" / f"{k:04d}.png", f)
    except OutputError as e:  # something appeared in the folder while we rendered
        raise UserError(str(e)) from None
    print(f"wrote {out_dir / 'turntable.mp4'}, turntable.gif and contact_sheet.png ({args.frames} frames, {gaussians.num} Gaussians)")
    return 0
