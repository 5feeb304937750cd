"""Per-stage timings of one photo -> Gaussians (goals: <= 30 s on 2 CPU cores, <= 0.5 s warm on an H100).

    python benchmarks/reconstruct.py [--device cpu|cuda] [--runs 3] [--threads 2] [IMAGE ...]

Loads the pipeline once (reported apart), runs one warm-up, then ``--runs`` timed runs per photo, and
prints the median of each stage: preprocess (load, matte, keypoints, crop), body fit, reconstruction.
Writing outputs (turntable renders, videos) is not part of the reconstruction and is timed apart.

Where MediaPipe is not installed (e.g. a GPU server), preprocess on another machine and time the rest:

    python benchmarks/reconstruct.py --save-preprocessed DIR photo.png          # writes DIR/photo.safetensors
    python benchmarks/reconstruct.py --device cuda DIR/photo.safetensors        # no preprocess column

(``Preprocessed.save``: safetensors and JSON, no pickle, so a file from anyone is safe to load.)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PHOTO = ROOT / "examples" / "pexels-photo-6311555-removebg.png"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", nargs="*", type=Path)
    ap.add_argument("--device", default=None)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (the CPU goal is for 2)")
    ap.add_argument("--weights", type=Path, default=None)
    ap.add_argument("--compile-fit", action="store_true", help="torch.compile the body fit (warm runs only; compiling takes minutes)")
    ap.add_argument("--novel-views", choices=["auto", "on", "off"], default="auto", help="the novel-view generator stage")
    ap.add_argument("--no-outputs", action="store_true", help="do not time writing the outputs (videos need imageio-ffmpeg)")
    ap.add_argument("--save-preprocessed", type=Path, metavar="DIR", help="only preprocess the photos, into DIR/<name>.safetensors")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from humansplat.outputs import write_result
    from humansplat.pipeline import Pipeline
    from humansplat.preprocess import Preprocessed

    images = args.images or [DEFAULT_PHOTO]
    if args.save_preprocessed:
        from humansplat.preprocess import preprocess

        for path in images:
            preprocess(path, resolution=512).save(args.save_preprocessed / f"{path.stem}.safetensors")
        print(f"preprocessed {len(images)} photo(s) into {args.save_preprocessed}")
        return 0
    t = time.perf_counter()
    pipe = Pipeline(args.weights, args.device, compile_fit=args.compile_fit, novel_views=args.novel_views)
    load = time.perf_counter() - t
    device = pipe.meta["device_name"]
    print(f"device: {pipe.device} ({device}), torch {torch.__version__}, threads {torch.get_num_threads()}, model load {load:.2f} s")
    rows = []
    for path in images:
        # a photo preprocessed by --save-preprocessed, or the photo itself
        photo = Preprocessed.load(path) if path.suffix == ".safetensors" else path
        pipe(photo)  # warm-up
        runs = []
        for _ in range(args.runs):
            r = pipe(photo)
            runs.append(dict(r.timings, total=sum(r.timings.values())))
        writes = float("nan")
        if not args.no_outputs:
            t = time.perf_counter()
            write_result(r, Path("/tmp/humansplat-bench") / r.name, pipe)
            writes = time.perf_counter() - t
        med = {k: statistics.median(run[k] for run in runs) for k in runs[0]}
        rows.append((r.name, r.structure_prior, r.gaussians.num, med, writes))
    stages = list(rows[0][3])
    head = f"| photo | prior | Gaussians | " + " | ".join(f"{s} (s)" for s in stages) + " | outputs (s) |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for name, prior, n, med, writes in rows:
        print(f"| {name} | {prior} | {n} | " + " | ".join(f"{med.get(s, float('nan')):.3f}" for s in stages) + f" | {writes:.2f} |")
    if pipe.device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated(pipe.device) / 2**30:.2f} GB; novel views: {pipe.meta['novel_views']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
