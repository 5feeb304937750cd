"""`humansplat view RESULT_DIR`: the reconstruction in 3D in the browser (a static page, fully offline).

The page (vendored gsplat.js, no CDN) shows the Gaussians with orbit controls, a toggle between the
colours and the body-part colours, and the animation when the folder holds posed frames
(``animation/*.ply``). ``--out DIR`` writes the page and its assets as a folder anyone can host;
otherwise it is served on 127.0.0.1 until Ctrl-C.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("view", help="show a reconstruction in 3D in the browser (static page, offline)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("result", type=Path, metavar="RESULT_DIR", help="a folder written by `humansplat reconstruct` (gaussians.ply)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR", help="write the page and its assets into DIR and exit")
    p.add_argument("--port", type=int, default=8000, help="port to serve on (default 8000; 0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1: this machine only)")
    p.add_argument("--weights", type=Path, default=None, help="reconstructor folder whose semantic decoder colours the parts (default: shipped)")
    p.set_defaults(func=run)


def run(args) -> int:
    from humansplat.cli import UserError
    from humansplat.viewer import build_site, serve

    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must be between 0 and 65535, got {args.port}")
    if not args.result.is_dir():
        raise UserError(f"{args.result}: no such folder")
    site = args.out or Path(tempfile.mkdtemp(prefix="humansplat-view-"))
    try:
        try:
            manifest = build_site(args.result, site, args.weights)
        except (FileNotFoundError, ValueError) as e:
            raise UserError(" ".join(str(e).split())) from None
        for note in (manifest["parts_note"], manifest["animation_note"]):
            if note:
                print(f"humansplat view: {note}")
        if args.out:
            print(f"humansplat view: wrote {args.out} (serve it with any static web server, e.g. python -m http.server -d {args.out})")
            return 0
        try:
            server = serve(site, args.host, args.port)
        except OSError as e:
            raise UserError(f"cannot serve on {args.host}:{args.port}: {e.strerror or e}") from None
        print(f"humansplat view: http://{args.host}:{server.server_address[1]}/ (Ctrl-C to stop)", flush=True)
        with server:
            server.serve_forever()
        return 0
    finally:
        if args.out is None:
            shutil.rmtree(site, ignore_errors=True)
