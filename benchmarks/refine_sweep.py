"""Per-instance refinement settings side by side on the benchmark: one reconstructor, each setting run on
every subject (ground-truth or fitted bodies), the input view against the novel views it must not lower.

Each ``--setting`` is ``name=field:value,field:value`` over ``RefineConfig`` fields (``none`` alone: no
refinement), e.g.

    python benchmarks/refine_sweep.py --weights src/humansplat/weights/humansplat-main --data BENCH \
        --setting none --setting full=mode:full --setting colors=mode:colors \
        --setting still=mode:full,lr_means:0,lr_log_scales:0 [--limit 20] [--device cuda] [--json F]
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import torch
from tqdm import tqdm

from humansplat.body import BodyModel
from humansplat.data.shards import ShardDataset
from humansplat.evaluate import benchmark_subject, evaluate
from humansplat.models import Reconstructor
from humansplat.refine import RefineConfig

COLUMNS = (("novel_views", "psnr"), ("novel_views", "ssim"), ("novel_views", "masked_psnr"), ("novel_views", "face_psnr"),
           ("novel_views", "hands_psnr"), ("side_views", "psnr"), ("novel_views", "part_miou"), ("input_view", "psnr"),
           ("input_view", "face_psnr"), ("input_view", "hands_psnr"))  # fmt: skip


def parse_setting(text: str) -> tuple[str, RefineConfig | None]:
    """``name`` or ``name=field:value,...`` -> (name, RefineConfig or None for ``none``)."""
    name, _, spec = text.partition("=")
    if name == "none" and not spec:
        return name, None
    types = {f.name: f.type for f in dataclasses.fields(RefineConfig)}
    fields = {}
    for item in filter(None, spec.split(",")):
        key, _, value = item.partition(":")
        if key not in types:
            raise SystemExit(f"refine_sweep: unknown RefineConfig field {key!r} in {text!r}")
        kind = {"str": str, "int": int}.get(str(types[key]), float)  # the annotations are strings here
        fields[key] = value if kind is str else kind(float(value))
    return name, RefineConfig(**fields)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", required=True)
    p.add_argument("--data", required=True, help="a benchmark folder (humansplat data benchmark)")
    p.add_argument("--setting", action="append", required=True, help="name=field:value,... (repeat)")
    p.add_argument("--body", default="gt", choices=["gt", "fitted"])
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--json", help="write the summaries here")
    args = p.parse_args()
    settings = [parse_setting(s) for s in args.setting]
    device = torch.device(args.device)
    model = Reconstructor.from_pretrained(args.weights, device=device)
    labels = BodyModel.load(device).vertex_labels
    data = ShardDataset(args.data)
    n = min(len(data), args.limit)
    rows = {}
    for name, cfg in settings:
        subjects = (benchmark_subject(data[i], labels, f"{i:04d}") for i in range(n))
        rows[name] = evaluate(model, subjects, "auto", device, tqdm(total=n, desc=name, leave=False), args.body, cfg)
        rows[name]["setting"] = None if cfg is None else dataclasses.asdict(cfg)
    head = f"{'setting':14}" + "".join(f" {(g.split('_')[0] + ' ' + k.replace('_psnr', '').replace('psnr', 'PSNR'))[:13]:>13}" for g, k in COLUMNS)
    print(head + f" {'refine s':>9}")
    for name, s in rows.items():
        cells = "".join(f" {'-':>13}" if s[g].get(k) is None else f" {s[g][k]:13.4f}" if k in ("ssim", "part_miou")
                        else f" {s[g][k]:13.2f}" for g, k in COLUMNS)  # fmt: skip
        print(f"{name:14}{cells} {s['timing_s'].get('refine_mean', 0.0):9.2f}")
    print(f"{n} subjects, body={args.body}, {rows[settings[0][0]]['device']}, weights {args.weights}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
