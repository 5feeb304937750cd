"""`humansplat app`: the demo web app (Gradio; the ``app`` extra): upload a photo, watch the stages,
see the 3D human in the page, download it. Fully offline: no fonts, scripts or analytics from the internet.

One pipeline is loaded and shared behind Gradio's queue: ``--queue`` requests wait at most (more are
turned away with a message), ``--concurrency`` run at once (default: 1 on CPU, 2 on a GPU).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("app", help="the demo web app: photo in, 3D human in the page, downloads (Gradio)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860; 0 picks a free one)")
    p.add_argument("--weights", type=Path, default=None, help="reconstructor folder (default: the shipped weights)")
    p.add_argument("--examples", type=Path, default=None, help="folder of example photos (default: the repository's examples/)")
    p.add_argument("--queue", type=int, default=32, metavar="N", help="requests that may wait in the queue (default 32)")
    p.add_argument("--concurrency", type=int, default=None, metavar="N", help="requests run at once (default 1 on CPU, 2 on GPU)")
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest upload accepted, in MB (default 20)")
    p.add_argument("--refine-steps", type=int, default=30, metavar="N", help="colour refinement steps when refinement is on (default 30)")
    p.add_argument("--fit-iters", type=int, default=None, metavar="N", help="body-fit iterations (default: the fit's own; fewer is faster on CPU)")
    p.add_argument("--frames", type=int, default=48, help="turntable frames (default 48)")
    p.add_argument("--size", type=int, default=512, help="turntable and view size in pixels (default 512)")
    p.set_defaults(func=run)


def run(args) -> int:
    from humansplat.cli import UserError

    for name, value, lo, hi in (("--port", args.port, 0, 65535), ("--queue", args.queue, 1, 10_000), ("--frames", args.frames, 1, 720),
                                ("--size", args.size, 64, 2048), ("--refine-steps", args.refine_steps, 0, 1000)):
        if not lo <= value <= hi:
            raise UserError(f"{name} must be between {lo} and {hi}, got {value}")
    if args.concurrency is not None and args.concurrency < 1:
        raise UserError(f"--concurrency must be at least 1, got {args.concurrency}")
    if not 0 < args.max_upload_mb <= 1024:
        raise UserError(f"--max-upload-mb must be in (0, 1024], got {args.max_upload_mb}")
    try:
        from humansplat.app import AppConfig, launch
    except ImportError as e:
        raise UserError(f"the app needs Gradio: pip install 'humansplat[app]' ({e})") from None
    config = AppConfig(weights=args.weights, device=args.device, examples=args.examples, queue_size=args.queue,
                       concurrency=args.concurrency, max_upload_mb=args.max_upload_mb, refine_steps=args.refine_steps,
                       frames=args.frames, size=args.size, fit_iters=args.fit_iters)
    try:
        launch(config, host=args.host, port=args.port)
    except (FileNotFoundError, RuntimeError, ValueError) as e:
        raise UserError(" ".join(str(e).split())) from None
    return 0
