"""Rendering speed of both backends on person-like scenes; prints a Markdown table.

    PYTHONPATH=src python benchmarks/render.py                 # CPU (torch backend, 2 threads)
    PYTHONPATH=src python benchmarks/render.py --device cuda   # gsplat (and the torch backend) on CUDA

Scenes: surfel-like Gaussians on a 1.7 m body shape (``benchmarks/scenes.py``), SH degree 0, seen by
orbit cameras at 2.4 m with a 40 degree field of view (the figure fills the image height).
Times are the median of a few repeats after a warm-up; on CUDA, ``--views`` views go in one call.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from scenes import body_scene  # noqa: E402

from humansplat.cameras import orbit_cameras  # noqa: E402
from humansplat.gaussians import Gaussians, gsplat_available, render  # noqa: E402


def time_call(fn, device: torch.device, repeats: int) -> list[float]:
    fn()  # warm-up (and gsplat's JIT build on first use)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return times


def bench(scene: Gaussians, n_views: int, size: int, backend: str, backward: bool, device, repeats: int) -> list[float]:
    az = torch.linspace(0, 360, n_views + 1)[:-1]
    cams = orbit_cameras(az, 10.0, 2.4, fov_deg=40, size=size).to(device)
    params = [scene.means, scene.quats, scene.log_scales, scene.opacity_logits, scene.sh]

    def step():
        if backward:
            ps = [p.detach().requires_grad_(True) for p in params]
            out = render(Gaussians(*ps), cams, backend=backend)
            (out.rgb.sum() + out.alpha.sum()).backward()
        else:
            with torch.no_grad():
                render(scene, cams, backend=backend)

    return time_call(step, device, repeats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    ap.add_argument("--views", type=int, default=64, help="views per call on CUDA (default 64)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cpu-limit", type=float, default=30.0, help="skip CPU runs whose estimate exceeds this many seconds")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)

    if device.type == "cuda":
        backends = (["gsplat"] if gsplat_available() else []) + ["torch"]
        configs = [(n, s) for n in (10_000, 100_000, 300_000) for s in (256, 512)]
        print(f"device: {torch.cuda.get_device_name()}, {args.views} views per call, torch {torch.__version__}")
    else:
        backends = ["torch"]
        configs = [(n, s) for n in (10_000, 100_000, 300_000) for s in (256, 512)] + [(50_000, 512)]
        print(f"device: CPU, {torch.get_num_threads()} threads, 1 view per call, torch {torch.__version__}")
    print("| backend | Gaussians | size | pass | views per call | median time per call | best | views/s (median) |")
    print("|---|---|---|---|---|---|---|---|")
    goals = []
    for n, size in configs:
        scene = body_scene(n, seed=0, device=device)
        for backend in backends:
            views = args.views if device.type == "cuda" and backend == "gsplat" else (8 if device.type == "cuda" else 1)
            fwd = None
            for backward in (False, True):
                label = "fwd+bwd" if backward else "fwd"
                if device.type == "cpu" and fwd is not None and backward and fwd * 3 > args.cpu_limit:
                    print(f"| {backend} | {n:,} | {size}² | {label} | {views} | skipped (estimated > {args.cpu_limit:.0f} s) | | |")
                    continue
                reps = args.repeats if device.type == "cuda" or (fwd or 0) * 3 < 10 else 1
                times = bench(scene, views, size, backend, backward, device, reps)
                t = statistics.median(times)
                fwd = fwd if backward else t
                print(f"| {backend} | {n:,} | {size}² | {label} | {views} | {t * 1000:.1f} ms | {min(times) * 1000:.1f} ms | {views / t:,.1f} |", flush=True)
                if not backward and size == 512 and (n, device.type, backend) in ((50_000, "cpu", "torch"), (100_000, "cuda", "gsplat")):
                    goals.append((n, device.type, t, views / t))
        del scene
        if device.type == "cuda":
            torch.cuda.empty_cache()
    for n, dev, t, vps in goals:
        if dev == "cpu":
            print(f"goal: CPU forward, {n:,} Gaussians at 512²: {t:.3f} s per view (goal <= 1 s on 2 cores)")
        else:
            print(f"goal: GPU forward, {n:,} Gaussians at 512²: {vps:,.0f} views/s (goal >= 1000)")


if __name__ == "__main__":
    main()
