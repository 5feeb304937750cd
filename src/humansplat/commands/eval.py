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
    p.add_argument("--refine-steps", type=int, default=30, help="refinement steps (with --refine)")
    p.add_argument("--limit", type=int, help="score only the first N subjects")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.set_defaults(func=run)


def _vertex_labels(device):
    from humansplat.body import BodyModel

    return BodyModel.load(device).vertex_labels


def benchmark_subject(item: dict, vertex_labels, name: str) -> dict:
    """A benchmark item (input view + 36 orbit views, the input being orbit view 0) as the 36 orbit views,
    whose view 0 is then the input."""
    out = {k: item[k][1:] for k in ("images", "masks", "labels", "depths") if item.get(k) is not None}
    out.update(cameras=item["cameras"][1:], body_vertices=item["body_vertices"], body_keypoints=item.get("body_keypoints"),
               vertex_labels=vertex_labels, name=name)
    return out


def run(args) -> int:
    from humansplat.cli import UserError
    from humansplat.data.shards import ShardDataset
    from humansplat.evaluate import evaluate, format_table, write_json
    from humansplat.models import Reconstructor
    from humansplat.refine import RefineConfig
    from humansplat.utils import pick_device, progress

    weights, data = Path(args.weights), Path(args.data)
    if not (weights / "model.safetensors").is_file():
        raise UserError(f"no model.safetensors in {weights}")
    if not data.is_dir():
        raise UserError(f"benchmark directory not found: {data}")
    device = pick_device(args.device)
    try:
        model = Reconstructor.from_pretrained(weights, device=device)
    except ValueError as e:
        raise UserError(str(e)) from e
    try:
        dataset = ShardDataset(data)
    except (FileNotFoundError, ValueError) as e:
        raise UserError(str(e)) from e
    n = min(len(dataset), args.limit or len(dataset))
    if n == 0:
        raise UserError(f"no benchmark subjects in {data}")
    labels = _vertex_labels(device) if model.config.anchor_mode == "body" else None
    bar = progress(total=n, desc="eval")
    refine_config = None if args.refine == "none" else RefineConfig(steps=args.refine_steps, mode=args.refine)
    summary = evaluate(model, (benchmark_subject(dataset[i], labels, f"{i:04d}") for i in range(n)), args.anchors, device, bar,
                       body=args.body, refine_config=refine_config)
    bar.close()
    summary["weights"], summary["data"] = str(weights), str(data)
    print(format_table(summary))
    out = Path(args.out) if args.out else weights / "eval.json"
    write_json(summary, out)
    print(f"wrote {out}")
    return 0
