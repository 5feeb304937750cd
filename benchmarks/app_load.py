"""Load test of `humansplat app`: N concurrent requests of real photos against the app on 127.0.0.1.

Starts the app (CPU-friendly settings unless told otherwise), sends ``--rounds`` rounds of ``--requests``
concurrent requests through gradio_client, and prints queue wait, time per request, failures and the
app process's resident memory before and after each round (flat memory: no growth round to round).

    python benchmarks/app_load.py examples/*.png --requests 20 --rounds 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

MAX_REQUESTS = 50  # per round: this is a bounded local test, not a load generator
APP_FLAGS = ["--device", "cpu", "--refine-steps", "0", "--fit-iters", "20", "--frames", "8", "--size", "128"]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def one_request(client, photo: Path, deadline: float) -> dict:
    from gradio_client import handle_file
    from gradio_client.utils import Status

    t0 = time.perf_counter()
    job = client.submit(handle_file(str(photo)), 0, 0, False, True, api_name="/reconstruct")
    started = None
    while not job.done() and time.perf_counter() < deadline:
        if started is None and job.status().code in (Status.PROCESSING, Status.ITERATING, Status.PROGRESS):
            started = time.perf_counter()
        time.sleep(0.05)
    end = time.perf_counter()
    try:
        ok = job.done() and job.result(timeout=1) is not None
        error = "" if ok else "timed out"
    except Exception as e:  # noqa: BLE001 - a failure is a result here
        ok, error = False, " ".join(str(e).split())[:80]
    started = started or end
    return {"wait": started - t0, "run": end - started, "total": end - t0, "ok": ok, "error": error}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("photos", nargs="+", type=Path)
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--port", type=int, default=7899)
    ap.add_argument("--timeout", type=float, default=900, help="seconds for the whole test")
    ap.add_argument("--app-args", default=" ".join(APP_FLAGS), help="flags for `humansplat app` (default: small CPU settings)")
    args = ap.parse_args()
    if not 1 <= args.requests <= MAX_REQUESTS:
        ap.error(f"--requests must be between 1 and {MAX_REQUESTS}")
    url = f"http://127.0.0.1:{args.port}/"
    app = subprocess.Popen([sys.executable, "-m", "humansplat", "app", "--host", "127.0.0.1", "--port", str(args.port), *args.app_args.split()],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    threading.Thread(target=lambda: [None for _ in app.stdout], daemon=True).start()  # drain its output
    deadline = time.perf_counter() + args.timeout
    try:
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if app.poll() is not None or time.perf_counter() > deadline:
                    print("the app did not start", file=sys.stderr)
                    return 1
                time.sleep(1)
        from gradio_client import Client

        client = Client(url, verbose=False, download_files=False)
        print(f"app pid {app.pid}; {args.requests} concurrent requests x {args.rounds} rounds; app flags: {args.app_args}\n")
        print("| round | requests | failures | queue wait median / max (s) | run median / max (s) | wall (s) | RSS before (MB) | RSS after (MB) |")
        print("|---|---|---|---|---|---|---|---|")
        failures = 0
        for r in range(1, args.rounds + 1):
            before = rss_mb(app.pid)
            t = time.perf_counter()
            photos = [args.photos[i % len(args.photos)] for i in range(args.requests)]
            with ThreadPoolExecutor(args.requests) as pool:
                rows = list(pool.map(lambda p: one_request(client, p, deadline), photos))
            wall = time.perf_counter() - t
            bad = [x for x in rows if not x["ok"]]
            failures += len(bad)
            w, run = [x["wait"] for x in rows], [x["run"] for x in rows]
            print(f"| {r} | {len(rows)} | {len(bad)} | {statistics.median(w):.1f} / {max(w):.1f} | {statistics.median(run):.1f} / {max(run):.1f} "
                  f"| {wall:.1f} | {before:.0f} | {rss_mb(app.pid):.0f} |", flush=True)
            for x in bad[:3]:
                print(f"  failure: {x['error']}")
        print(f"\napp still running: {app.poll() is None}")
        return 1 if failures or app.poll() is not None else 0
    finally:
        app.terminate()
        try:
            app.wait(30)
        except subprocess.TimeoutExpired:
            app.kill()


if __name__ == "__main__":
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    sys.exit(main())
