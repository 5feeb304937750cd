"""Throughput of the synthetic data engine (goal: >= 50 subjects x 16 views per second at 512 px on a GPU).

    PYTHONPATH=src python benchmarks/data.py                      # CUDA if present, and the CPU
    PYTHONPATH=src python benchmarks/data.py --devices cuda --batch 32 48 64
    PYTHONPATH=src python benchmarks/data.py --devices cpu --res 128 --views 4 --count-ops 4

Each row: ``SyntheticEngine.sample`` on a batch of subjects (1 input view + ``--views`` orbit views each),
after a warm-up, median of ``--iters`` runs, split into building the subjects (body, clothes, hair,
textures, light: ``subjects``) and cameras + rendering RGB, alpha, depth, normals and labels
(``render``). Prints a Markdown table with subjects/s and rendered views/s. ``--count-ops B`` also counts,
per stage of one call with batch B, the aten ops run eagerly and the points where the host waits for the
device (scalar reads, data-dependent shapes, copies to the host): the fixed cost of a call on a GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections import Counter

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

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


# aten ops whose result the host must wait for: a scalar read or an output shape that depends on the data
_SYNC_OPS = {"_local_scalar_dense", "nonzero", "masked_select", "_unique2", "unique_dim", "unique_consecutive", "equal", "repeat_interleave"}
_HOST_READS = {"cpu", "numpy", "tolist", "__bool__", "__int__", "__float__", "__index__", "item"}


def _is_device(x) -> bool:
    return isinstance(x, torch.Tensor) and x.device.type != "cpu"


class OpCounter(TorchDispatchMode):
    """Counts aten ops (all, and those on an accelerator) and sync points per stage (the innermost
    ``record_function`` name)."""

    def __init__(self) -> None:
        super().__init__()
        self.stack = ["other"]
        self.ops: Counter = Counter()
        self.device_ops: Counter = Counter()
        self.syncs: Counter = Counter()
        self.reads: Counter = Counter()
        self.copies: Counter = Counter()
        self.kinds: dict[str, Counter] = {}

    def _sync(self, name: str) -> None:
        stage = self.stack[-1]
        self.syncs[stage] += 1
        self.kinds.setdefault(stage, Counter())[name] += 1

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.__name__.split(".")[0]
        stage = self.stack[-1]
        self.ops[stage] += 1
        self.device_ops[stage] += any(_is_device(a) for a in [*args, *kwargs.values()]) or str(kwargs.get("device", "cpu")) != "cpu"
        index = args[1] if name.startswith("index") and len(args) > 1 and isinstance(args[1], (list, tuple)) else []
        bool_index = any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in index)
        to_host = name == "_to_copy" and _is_device(args[0]) and str(kwargs.get("device", "")) == "cpu"
        if name in _SYNC_OPS or bool_index or to_host:
            self._sync("bool-index" if bool_index else "d2h copy" if to_host else name)
        return func(*args, **kwargs)

    @contextlib.contextmanager
    def stage(self, name: str):
        self.stack.append(name)
        try:
            yield
        finally:
            self.stack.pop()


class _HostCalls(TorchFunctionMode):
    """Python-level reads of tensor values (.item(), int(), bool(), .tolist(), .cpu(), ...) and blocking
    copies to a device (``.to(device)`` that moves, ``torch.tensor(data, device=)``): on a GPU each read
    of a device tensor waits for the device and so does each copy from pageable memory. Reads are counted
    on CPU tensors too (free there); copies only where a tensor moves, so a CPU build shows only the
    ``torch.tensor(data, device=)`` ones."""

    def __init__(self, counter: OpCounter) -> None:
        super().__init__()
        self.counter = counter

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        stage = self.counter.stack[-1]
        dest = [torch.device(a) for a in [*args[1:], kwargs.get("device")] if isinstance(a, (str, torch.device))]
        moves = name == "to" and isinstance(args[0], torch.Tensor) and any(d.type != args[0].device.type for d in dest)
        if name in _HOST_READS or (moves and any(d.type == "cpu" for d in dest)):
            self.counter.reads[stage] += 1
        elif (moves and not kwargs.get("non_blocking")) or (name in ("tensor", "as_tensor") and not isinstance(args[0], torch.Tensor) and kwargs.get("device") is not None):
            self.counter.copies[stage] += 1
        return func(*args, **kwargs)


def count_ops(engine: SyntheticEngine, batch: int) -> None:
    """Prints aten ops and sync points per stage of one ``sample``-equivalent call."""
    from humansplat.data import engine as engine_module

    g = torch.Generator().manual_seed(1)
    engine.sample(batch, g)  # warm-up: lazy initialisation is not per-call cost
    counter = OpCounter()
    real = engine_module.record_function

    @contextlib.contextmanager
    def staged(name: str):
        with real(name), counter.stage(name):
            yield

    engine_module.record_function = staged
    try:
        with _HostCalls(counter), counter:
            with counter.stage("subjects"):
                subjects = engine.subjects(batch, g)
            with counter.stage("cameras"):
                cams = engine.cameras(subjects, g).to(engine.device)
            with counter.stage("render"):
                engine.render(subjects, cams)
    finally:
        engine_module.record_function = real
    stages = sorted(counter.ops, key=lambda k: -counter.ops[k])
    print(f"\naten ops and sync points of one call, batch {batch}, build on {engine.build_device}, render on {engine.device}")
    print("| stage | aten ops | on device | syncs (aten) | host reads | copies to device | sync kinds |")
    print("|---|---:|---:|---:|---:|---:|---|")
    c = counter
    for k in stages:
        kinds = ", ".join(f"{n} {m}" for n, m in c.kinds.get(k, Counter()).most_common())
        print(f"| {k} | {c.ops[k]:,} | {c.device_ops[k]:,} | {c.syncs[k]} | {c.reads[k]} | {c.copies[k]} | {kinds} |")
    total = [sum(x.values()) for x in (c.ops, c.device_ops, c.syncs, c.reads, c.copies)]
    print(f"| total | {total[0]:,} | {total[1]:,} | {total[2]} | {total[3]} | {total[4]} | |")


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
    ap.add_argument("--count-ops", type=int, default=0, metavar="B", help="only count aten ops and sync points per stage of one call with batch B (first device)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.devices or (["cuda"] if torch.cuda.is_available() else []) + ["cpu"]
    if args.count_ops:
        count_ops(SyntheticEngine(EngineConfig(resolution=args.res, views=args.views), device=devices[0]), args.count_ops)
        return 0
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
