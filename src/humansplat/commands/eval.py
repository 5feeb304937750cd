"""`humansplat eval --weights DIR --data BENCHDIR`: score a reconstructor on the held-out benchmark.

Prints PSNR / SSIM / masked PSNR (all views, novel views, the input view), part mIoU when labels exist,
side views, face and hand PSNR, per-class part IoU, and timings; writes the same as JSON. Each subject's
body is its ground-truth body, or with --body fitted one fitted to simulated keypoints (the pipeline's
protocol); --refine runs the pipeline's refinement on each subject.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    from humansplat.refine import RefineConfig

    p = subparsers.add_parser("eval", help="score reconstructor weights on the held-out benchmark",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", required=True, help="model directory (model.safetensors + config.json)")
    p.add_argument("--data", required=True, help="benchmark directory (humansplat data benchmark -o DIR)")
    p.add_argument("--out", help="JSON file for the results (default: WEIGHTS/eval.json)")
    p.add_argument("--anchors", choices=["auto", "body", "template_free"], default="auto",
                   help="anchor source (auto: what the model was trained with)")
    p.add_argument("--body", choices=["gt", "fitted", "fitted_true_depth"], default="gt",
                   help="gt: ground-truth bodies (upper bound); fitted: bodies fitted to simulated keypoints, as a user gets; "
                        "fitted_true_depth: those scaled to the true distance (a diagnostic)")
    p.add_argument("--refine", choices=["none", "colors", "full"], default="none",
                   help="run the pipeline's per-instance refinement on each subject first")
    p.add_argument("--refine-steps", type=int, default=RefineConfig.steps, help=f"refinement steps (with --refine; default {RefineConfig.steps})")
    p.add_argument("--limit", type=int, help="score only the first N subjects")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--novel-views", metavar="DIR", help="generator weights: also score the same weights with its generated views "
                   "(novel-view table, sharpness, the generator's own views; JSON key 'novel_views_stage')")
    p.add_argument("--steps", type=int, help="with --novel-views: sampler steps (default: the generator's config)")
    p.set_defaults(func=run)


def run(args) -> int:
    from humansplat.cli import UserError
    from humansplat.body import BodyModel
    from humansplat.data.shards import ShardDataset
    from humansplat.evaluate import benchmark_subject, evaluate, format_table, write_json
    from humansplat.models import Reconstructor, WeightsError
    from humansplat.refine import RefineConfig
    from humansplat.utils import OutputError, check_writable_file, pick_device, progress

    weights, data = Path(args.weights), Path(args.data)
    if not data.is_dir():
        raise UserError(f"benchmark directory not found: {data}")
    out = Path(args.out) if args.out else weights / "eval.json"
    try:
        check_writable_file(out)  # before the work, not after it
        device = pick_device(args.device)
    except (OutputError, RuntimeError) as e:
        raise UserError(str(e)) from None
    try:
        model = Reconstructor.from_pretrained(weights, device=device)
    except WeightsError as e:
        raise UserError(str(e)) from None
    try:
        dataset = ShardDataset(data)
    except (FileNotFoundError, ValueError) as e:
        raise UserError(str(e)) from e
    n = min(len(dataset), args.limit or len(dataset))
    if n == 0:
        raise UserError(f"no benchmark subjects in {data}")
    labels = BodyModel.load(device).vertex_labels if model.config.anchor_mode == "body" else None
    bar = progress(total=n, desc="eval")
    refine_config = None if args.refine == "none" else RefineConfig(steps=args.refine_steps, mode=args.refine)
    summary = evaluate(model, (benchmark_subject(dataset[i], labels, f"{i:04d}") for i in range(n)), args.anchors, device, bar,
                       body=args.body, refine_config=refine_config)
    bar.close()
    summary["weights"], summary["data"] = str(weights), str(data)
    print(format_table(summary))
    if args.novel_views:
        summary["novel_views_stage"] = _novel_views(args, model, dataset, n, device)
    write_json(summary, out)
    print(f"wrote {out}")
    return 0


def _novel_views(args, model, dataset, n: int, device) -> dict:
    """The with/without-generator table (humansplat.novelview_eval) on the same subjects; GT bodies."""
    from humansplat.body import BodyModel
    from humansplat.cli import UserError
    from humansplat.evaluate import benchmark_subject
    from humansplat.models import NovelViewGenerator, WeightsError
    from humansplat.novelview_eval import evaluate_novel_views, format_novelview_table
    from humansplat.utils import progress

    try:
        generator = NovelViewGenerator.from_pretrained(args.novel_views, device=device)
    except WeightsError as e:
        raise UserError(str(e)) from None
    body = BodyModel.load(device)
    bar = progress(total=n, desc="novel views")
    result = evaluate_novel_views(model, generator, (benchmark_subject(dataset[i], body.vertex_labels, f"{i:04d}") for i in range(n)),
                                  body, device, args.steps, None, 0, bar)
    bar.close()
    print(format_novelview_table(result))
    return result
