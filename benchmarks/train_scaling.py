"""Training throughput against the number of GPUs (or, on CPU, processes): issue #17.

For each N it runs, with the same per-GPU batch,

    torchrun --standalone --nproc_per_node N -m humansplat train CONFIG --max-steps S --out DIR/nN --profile

(each bounded by --timeout), reads the run's timing.json and prints one table: steps/s, subjects/s
(steps/s x batch x N), speed-up against N=1, efficiency (speed-up / N), and where a step's time goes on
rank 0 (data engine, forward, waiting for the slowest rank, backward with DDP's gradient all-reduce in it,
optimizer, the per-step flag all-reduce, checkpoints and logging; humansplat.train.timing), plus the mean
GPU utilisation (nvidia-smi, sampled every 0.5 s) when there is one. Warm-up steps are left out (a fifth of
the run, at most 5).

    python benchmarks/train_scaling.py configs/main.json --gpus 1 2 4 8 --steps 200
    python benchmarks/train_scaling.py configs/tiny_autoencoder.json --gpus 1 2 --steps 20 --device cpu
    python benchmarks/train_scaling.py configs/main.json --gpus 1 8 -- --init-from DIR   (more train arguments)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from humansplat.train.timing import PHASES  # noqa: E402


def gpu_sampler(stop: threading.Event, samples: list[list[float]]) -> None:
    """utilization.gpu of every GPU, every 0.5 s, until ``stop``."""
    while not stop.wait(0.5):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=10).stdout
            samples.append([float(x) for x in out.split()])
        except (OSError, subprocess.SubprocessError, ValueError):
            return


def command(config: str, n: int, steps: int, out: Path, device: str | None, extra: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n),
           "-m", "humansplat", "train", config, "--max-steps", str(steps), "--out", str(out), "--profile"]
    return cmd + (["--device", device] if device else []) + extra


def run_one(cmd: list[str], out: Path, timeout: float, env: dict, log: Path) -> tuple[dict | None, float | None, str]:
    """Run one training; its timing.json, the mean GPU utilisation over the GPUs it used, and why it failed."""
    shutil.rmtree(out, ignore_errors=True)
    samples: list[list[float]] = []
    stop = threading.Event()
    sampler = threading.Thread(target=gpu_sampler, args=(stop, samples), daemon=True) if shutil.which("nvidia-smi") else None
    if sampler:
        sampler.start()
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)  # the trainer saves and exits; then make sure
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            code = "timeout"
    stop.set()
    if sampler:
        sampler.join()
    timing_file = out / "timing.json"
    if code != 0 or not timing_file.is_file():
        return None, None, f"exit {code}, see {log}"
    timing = json.loads(timing_file.read_text())
    util = None
    n = timing["world_size"]
    used = [s[:n] for s in samples if len(s) >= n]
    if used:
        util = sum(sum(s) / n for s in used) / len(used)
    return timing, util, ""


def table(rows: list[tuple[int, dict | None, float | None, str]]) -> str:
    base = next((t["steps_per_s"] for n, t, _, _ in rows if n == 1 and t), None)
    shown = [p for p in PHASES if any(t and t["ranks"][0]["phases_s"][p] > 0 for _, t, _, _ in rows)]
    head = ["N", "steps/s", "subjects/s", "speed-up", "efficiency", *[f"{p} ms" for p in shown], "GPU util %"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n, t, util, why in rows:
        if t is None:
            lines.append(f"| {n} | failed: {why} |" + " |" * (len(head) - 2))
            continue
        sps, r0 = t["steps_per_s"], t["ranks"][0]
        speed = sps * n / base if base else None  # in subjects/s
        per_step = [f"{1000 * r0['phases_s'][p] / max(1, r0['steps']):.1f}" for p in shown]
        lines.append("| " + " | ".join([str(n), f"{sps:.3f}", f"{t['subjects_per_s']:.2f}",
                                        f"{speed:.2f}x" if speed else "-", f"{speed / n:.0%}" if speed else "-",
                                        *per_step, f"{util:.0f}" if util is not None else "-"]) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config")
    ap.add_argument("--gpus", type=int, nargs="+", default=[1, 2, 4, 8], help="process counts (GPUs on CUDA)")
    ap.add_argument("--steps", type=int, default=200, help="steps per run (the same per-GPU batch for every N)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per run, then SIGTERM (then SIGKILL)")
    ap.add_argument("--out", help="where the runs go (default: a temporary folder, removed)")
    ap.add_argument("--device", choices=["cpu", "cuda"], help="passed to the trainer (torchrun picks the GPU per rank)")
    ap.add_argument("--threads", type=int, help="OMP_NUM_THREADS per process (default: cores / N, at least 1)")
    ap.add_argument("--json", help="also write the rows (timing.json of each N) here")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)  # after --: more `humansplat train` arguments
    args, extra = ap.parse_args(argv[:cut]), argv[cut + 1:]
    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="train_scaling_"))
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in args.gpus:
        out = root / f"n{n}"
        cmd = command(args.config, n, args.steps, out, args.device, extra)
        env = dict(os.environ, PYTHONUNBUFFERED="1",
                   OMP_NUM_THREADS=str(args.threads or max(1, (os.cpu_count() or 1) // n)),
                   PYTHONPATH=os.pathsep.join(p for p in [str(ROOT / "src"), os.environ.get("PYTHONPATH")] if p))
        print("$ " + " ".join(cmd), flush=True)
        start = time.monotonic()
        timing, util, why = run_one(cmd, out, args.timeout, env, root / f"n{n}.log")
        print(f"  N={n}: {'done' if timing else why} in {time.monotonic() - start:.0f} s", flush=True)
        rows.append((n, timing, util, why))
    print()
    print(table(rows))
    device = next((t["device_name"] for _, t, _, _ in rows if t), "?")
    print(f"\n{args.config}, {args.steps} steps per run, batch {next((t['batch_size_per_rank'] for _, t, _, _ in rows if t), '?')}"
          f" per process, {device}; per-step phases are rank 0's (ms), warm-up steps left out")
    if args.json:
        Path(args.json).write_text(json.dumps([{"n": n, "timing": t, "gpu_util": u, "error": w} for n, t, u, w in rows], indent=2))
    ok = all(t for _, t, _, _ in rows)
    if not args.out and ok:
        shutil.rmtree(root, ignore_errors=True)
    elif not ok:
        print(f"logs of the runs: {root}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
