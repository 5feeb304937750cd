"""Body-model load time and single-person fit time and accuracy (goals: warm load <= 3 s, fit <= 2 s on CPU).

    PYTHONPATH=src python benchmarks/fit.py [--people 20] [--kinds standing,walking,...] [--device cpu]
    PYTHONPATH=src python benchmarks/fit.py --per-kind --people 6 --kinds standing,jumping,kicking,kneeling,lying,inverted

Rows: the warm ``BodyModel.load()`` (the cache file exists; import of anny included, since a process
pays it there) and the one-time pose prior; then ``fit_body`` on one person at a time (B = 1, default
settings) over ``--people`` sampled scenes (benchmark of issue 3: adults, 3 px keypoint noise at 512^2,
15% dropout): wall and process-CPU time, joint error after root alignment (16 body joints, pelvis
aligned), the same for the 17 COCO keypoints, and the reprojection error. Medians and maxima.
``--kinds`` takes pose kinds (``POSE_KINDS``, ``DYNAMIC_KINDS``) and the turned scene kinds (lying, inverted);
``--per-kind``: one row per kind instead (``--people`` scenes each): joint error, reprojection, how many fits
reproject within the pipeline's trust limit (``MAX_REPROJECTION``), fit time.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--people", type=int, default=20)
    ap.add_argument("--kinds", default="standing,walking,arms_raised,reaching")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--per-kind", action="store_true", help="one row per kind of --kinds")
    args = ap.parse_args()

    t0 = time.perf_counter()
    from humansplat.body import BodyModel, default_pose_prior

    body = BodyModel.load(args.device)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    default_pose_prior()
    prior_s = time.perf_counter() - t0

    from humansplat.body.evaluate import joint_error, keypoint_error, random_scene, simulate_keypoints
    from humansplat.body.fit import fit_body

    def fits(kinds: list[str], seed: int) -> list[tuple[float, ...]]:
        """(wall s, CPU s, joint cm, keypoint cm, reprojection px) of one fit per sampled scene."""
        g = torch.Generator().manual_seed(seed)
        params, cams = random_scene(args.people, g, kinds=kinds)
        with torch.no_grad():
            truth = body(params.to(args.device))
        obs, conf = simulate_keypoints(truth.keypoints.cpu(), cams, generator=g)
        rows = []
        for i in range(args.people):
            w0, c0 = time.perf_counter(), time.process_time()
            res = fit_body(obs[i : i + 1].to(args.device), conf[i : i + 1].to(args.device), cams[i : i + 1].to(args.device), body=body)
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            t = truth.__class__(*(x[i : i + 1] for x in (truth.vertices, truth.joints, truth.keypoints, truth.bone_transforms)))
            rows.append((wall, cpu, float(joint_error(res.output, t)) * 100, float(keypoint_error(res.output, t)) * 100, float(res.reprojection_px)))
        return rows

    kinds = args.kinds.split(",")
    if args.per_kind:
        from humansplat.pipeline.stages import MAX_REPROJECTION

        limit = MAX_REPROJECTION * 512
        print(f"| kind | joint error, cm | reprojection, px | within {limit:.1f} px | fit wall, s |\n|---|---|---|---|---|")
        for k, kind in enumerate(kinds):
            rows = fits([kind], k)
            med = [statistics.median(r[c] for r in rows) for c in range(5)]
            print(f"| {kind} | {med[2]:.1f} | {med[4]:.1f} | {sum(r[4] <= limit for r in rows)}/{len(rows)} | {med[0]:.2f} |")
        return
    rows = fits(kinds, 0)
    print("| what | median | max |\n|---|---|---|")
    print(f"| BodyModel.load() warm, s | {load_s:.2f} | |")
    print(f"| default_pose_prior() once, s | {prior_s:.2f} | |")
    names = ["fit wall, s", "fit CPU, s", "joint error, cm", "COCO keypoint error, cm", "reprojection, px"]
    for k, name in enumerate(names):
        col = [r[k] for r in rows]
        print(f"| {name} | {statistics.median(col):.2f} | {max(col):.2f} |")
    print(f"\n{args.people} people ({args.kinds}), torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")


if __name__ == "__main__":
    main()
