"""The novel-view stage on the benchmark: the same reconstructor weights without and with the generator's
views (novel-view PSNR, SSIM, masked PSNR, part mIoU, sharpness), the generator's own views against the
ground truth, and (``--time N``) the stage's warm timing and peak GPU memory.

A draft generator (its config's ``draft``) refines the reconstructor's renders: then the drafts are scored
next to the generated views, and the refinement runs on the photo alone and on the photo + the generated
views (``--refine-steps``, default the pipeline's; 0: off; ``--view-weight`` the generated views' weight).

    python benchmarks/novelview.py --generator DIR --weights DIR --data BENCH [--limit N] [--steps S] [--out JSON]
    python benchmarks/novelview.py --generator DIR --weights DIR --data BENCH --time 5 --only-time
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from humansplat.refine import RefineConfig


def timing(generator, model, subject, body, device, steps, guidance, runs: int) -> dict:
    """Warm median seconds of the stage (condition renders, sampling, decoding; batch 1), of the
    reconstruction with the views and without, and the peak GPU memory of one stage + reconstruction."""
    from humansplat.novelview import generate_views, reconstruct_with_views

    photo, cam = subject["images"][0].to(device), subject["cameras"][0].to(device)
    verts = subject["body_vertices"].to(device)
    anchors = model.body_anchors(verts[None], subject["vertex_labels"].to(device))
    drafts = reconstruct_with_views(model, photo, cam, None, anchors) if generator.config.draft else None
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    gen_s, with_s, alone_s = [], [], []
    with torch.no_grad():
        for i in range(runs + 1):  # the first run warms up
            if device.type == "cuda" and i == runs:
                torch.cuda.reset_peak_memory_stats(device)
            views = generate_views(generator, photo, cam, verts, steps, guidance, seed=i, body=body, draft_gaussians=drafts)
            sync()
            t0 = time.perf_counter()
            reconstruct_with_views(model, photo, cam, views, anchors)
            sync()
            t1 = time.perf_counter()
            reconstruct_with_views(model, photo, cam, None, anchors)
            sync()
            t2 = time.perf_counter()
            if i:
                gen_s.append(views.seconds), with_s.append(t1 - t0), alone_s.append(t2 - t1)
    out = {"generate_s": statistics.median(gen_s), "reconstruct_with_views_s": statistics.median(with_s),
           "reconstruct_alone_s": statistics.median(alone_s), "runs": runs, "views": generator.config.views,
           "steps": steps or generator.config.sample_steps, "threads": torch.get_num_threads()}
    if device.type == "cuda":
        out["peak_gpu_memory_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--generator", required=True, help="generator weights (NovelViewGenerator directory)")
    p.add_argument("--weights", default="src/humansplat/weights/humansplat-main", help="reconstructor weights")
    p.add_argument("--data", required=True, help="benchmark directory (humansplat data benchmark -o DIR)")
    p.add_argument("--limit", type=int, help="only the first N subjects")
    p.add_argument("--steps", type=int, help="sampler steps (default: the generator's config)")
    p.add_argument("--draft-start", type=float, help="draft generators: the sampler's start time (SDEdit; default: the generator's config)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance (default: the generator's config)")
    p.add_argument("--refine-steps", type=int, help="draft generators: refinement steps (default: the pipeline's; 0: no refinement rows); "
                   "other generators: refinement rows only when given")
    p.add_argument("--refine-resolution", type=int, default=RefineConfig.resolution, help="refinement: fit resolution (px)")
    p.add_argument("--view-weight", type=float, default=RefineConfig.view_weight, help="refinement: weight of the generated views")
    p.add_argument("--time", type=int, default=0, metavar="N", help="also time N warm runs of the stage on the first subject")
    p.add_argument("--only-time", action="store_true", help="timing only, no scoring")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--out", help="JSON file for the results")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from humansplat.body import BodyModel
    from humansplat.evaluate import benchmark_subject
    from humansplat.data.shards import ShardDataset
    from humansplat.models import NovelViewGenerator, Reconstructor
    from humansplat.novelview_eval import evaluate_novel_views, format_novelview_table
    from humansplat.utils import pick_device, progress

    device = pick_device(args.device)
    generator = NovelViewGenerator.from_pretrained(args.generator, device)
    if args.draft_start is not None:
        generator.config.draft_start = args.draft_start
    model = Reconstructor.from_pretrained(args.weights, device)
    body = BodyModel.load(device)
    dataset = ShardDataset(args.data)
    n = min(len(dataset), args.limit or len(dataset))
    subject = lambda i: benchmark_subject(dataset[i], body.vertex_labels, f"{i:04d}")
    summary: dict = {"generator": str(args.generator), "weights": str(args.weights), "data": str(args.data)}
    refine_steps = args.refine_steps if args.refine_steps is not None else (RefineConfig.steps if generator.config.draft else 0)
    refine_config = None
    if refine_steps > 0:
        refine_config = RefineConfig(steps=refine_steps, resolution=args.refine_resolution, view_weight=args.view_weight)
    if not args.only_time:
        bar = progress(total=n, desc="novel views")
        summary.update(evaluate_novel_views(model, generator, (subject(i) for i in range(n)), body, device, args.steps, args.guidance, 0, bar,
                                            refine_config))
        bar.close()
        print(format_novelview_table(summary))
    if args.time:
        summary["timing"] = timing(generator, model, subject(0), body, device, args.steps, args.guidance, args.time)
        print("timing:", json.dumps(summary["timing"]))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
