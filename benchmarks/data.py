"""Throughput of the synthetic data engine (goal: >= 50 subjects x 16 views per second at 512 px on a GPU).

    PYTHONPATH=src python benchmarks/data.py                      # CUDA if present, and the CPU
    PYTHONPATH=src python benchmarks/data.py --devices cuda --batch 32 48 64

Each row: ``SyntheticEngine.sample`` on a batch of subjects (1 input view + ``--views`` orbit views each),
after a warm-up, median of ``--iters`` runs, split into building the subjects (body, clothes, hair,
textures, light: ``subjects``) and cameras + rendering RGB, alpha, depth, normals and labels
(``render``). Prints a Markdown table with subjects/s and rendered views/s.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from humansplat.data import EngineConfig, SyntheticEngine


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(engine: SyntheticEngine, batch: int, iters: int) -> dict:
    dev = engine.device
    g = torch.Generator().manual_seed(0)
    if dev.type == "cuda":
        engine.sample(batch, g)  # warm-up (gsplat compiles on first use)
    build, rend = [], []
    for _ in range(iters):
        _sync(dev)
        t0 = time.perf_counter()
        subjects = engine.subjects(batch, g)
        _sync(dev)
        t1 = time.perf_counter()
        engine.render(subjects, engine.cameras(subjects, g).to(dev))
        _sync(dev)
        t2 = time.perf_counter()
        build.append(t1 - t0)
        rend.append(t2 - t1)
    b, r = statistics.median(build), statistics.median(rend)
    n = subjects.gaussians.means.shape[1]
    return {"build": b, "render": r, "total": b + r, "gaussians": n}


def profile(engine: SyntheticEngine, batch: int) -> None:
    """Where one call spends its time: the engine's stages (``data.*``) and the top kernels."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    cuda = engine.device.type == "cuda"
    g = torch.Generator().manual_seed(1)
    engine.sample(batch, g)
    with torch_profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
        engine.sample(batch, g)
        _sync(engine.device)
    events = prof.key_averages()

    def device_ms(e) -> float:
        return getattr(e, "device_time_total", 0.0) / 1e3

    print(f"\nprofile, batch {batch}: stage, CPU-side ms, device ms")
    for e in sorted((e for e in events if e.key.startswith("data.")), key=lambda e: -e.cpu_time_total):
        print(f"  {e.key:16s} {e.cpu_time_total / 1e3:9.1f} {device_ms(e):9.1f}")
    for key in (["self_device_time_total", "self_cuda_time_total"] if cuda else []) + ["self_cpu_time_total"]:
        try:
            print(events.table(sort_by=key, row_limit=12, max_name_column_width=50))
            break
        except (KeyError, AttributeError, ValueError):
            continue


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", nargs="+", default=None, help="default: cuda (if present) and cpu")
    ap.add_argument("--res", type=int, default=512)
    ap.add_argument("--views", type=int, default=16)
    ap.add_argument("--batch", type=int, nargs="+", default=[16, 48], help="subjects per call on CUDA")
    ap.add_argument("--cpu-batch", type=int, default=1, help="subjects per call on the CPU (one timed run, no warm-up)")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--profile", type=int, default=0, help="also profile one call with this batch size (first device)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.devices or (["cuda"] if torch.cuda.is_available() else []) + ["cpu"]
    rows = []
    for name in devices:
        dev = torch.device(name)
        engine = SyntheticEngine(EngineConfig(resolution=args.res, views=args.views), device=dev)
        label = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
        for batch in args.batch if dev.type == "cuda" else [args.cpu_batch]:
            m = measure(engine, batch, args.iters if dev.type == "cuda" else 1)
            rows.append((label, batch, m))
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    if args.profile:
        profile(SyntheticEngine(EngineConfig(resolution=args.res, views=args.views), device=devices[0]), args.profile)
    print(f"\nsynthetic engine, {args.res}x{args.res}, 1 input + {args.views} orbit views per subject, torch {torch.__version__}\n")
    print("| device | batch | Gaussians/subject | build s | render s | subjects/s | views/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, batch, m in rows:
        sps = batch / m["total"]
        print(f"| {label} | {batch} | {m['gaussians']:,} | {m['build']:.3f} | {m['render']:.3f} | {sps:.1f} | {sps * (1 + args.views):.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
