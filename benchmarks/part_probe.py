"""Part segmentation on the classes the benchmark barely shows: reconstructor weights side by side on engine
subjects drawn with ``data.rare_parts`` (bare feet, socks over bare feet, bare midriffs, bare torsos),
ground-truth bodies.

The 20 benchmark subjects hold almost no bare feet or socked feet, so their IoU reads 0 whatever the
weights do; this probe draws subjects that show them. It is a probe, not the benchmark: its subjects come
from the training distribution (a fixed seed, never trained on as such), at the training resolution.

    python benchmarks/part_probe.py --weights v7=src/humansplat/weights/humansplat-main new=runs/x/export \
        [--subjects 12] [--share 1.0] [--seed 7] [--device cpu] [--head-only 1.0]

``--head-only SHARE`` frames that share of the input views as portraits (``data.head_only``: the head down to
between the upper chest and the chin) and reports the head's classes, in the input view and the novel views.
``--anchors template_free`` scores them as `humansplat reconstruct` treats a head-only photo (no body fit; the
anchors sized for the framing the true keypoints show, ``preprocess.framing.framing_heights``).
"""

from __future__ import annotations

import argparse

import torch
from tqdm import tqdm

from humansplat.body import BodyModel
from humansplat.data import EngineConfig, SyntheticEngine
from humansplat.evaluate import evaluate
from humansplat.models import Reconstructor

CLASSES = ("Left_Foot", "Right_Foot", "Left_Sock", "Right_Sock", "Torso", "Left_Shoe", "Right_Shoe",
           "Lower_Clothing", "Upper_Clothing")
HEAD_CLASSES = ("Face_Neck", "Hair", "Upper_Clothing", "Left_Hand", "Right_Hand", "Apparel", "Lower_Clothing")
BATCH = 4  # subjects per engine call


def probe_subjects(n: int, share: float, seed: int, resolution: int, views: int, device: torch.device,
                   head_only: float = 0.0) -> list[dict]:
    engine = SyntheticEngine(EngineConfig(resolution=resolution, views=views, rare_parts=share, head_only=head_only), device)
    labels = BodyModel.load(device).vertex_labels
    g, out = torch.Generator().manual_seed(seed), []
    while len(out) < n:
        b = engine.sample(min(BATCH, n - len(out)), g)
        for i in range(b["images"].shape[0]):
            s = {k: b[k][i] for k in ("images", "masks", "labels", "body_keypoints")}
            s.update(cameras=b["cameras"][i], body_vertices=b["body_vertices"][i], vertex_labels=labels, name=str(len(out)))
            out.append(s)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", nargs="+", required=True, metavar="NAME=DIR")
    ap.add_argument("--subjects", type=int, default=12)
    ap.add_argument("--share", type=float, default=1.0, help="data.rare_parts of the probe's engine")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--views", type=int, default=4, help="orbit views per subject (the novel views; the input view comes on top)")
    ap.add_argument("--head-only", type=float, default=0.0, help="share of portrait-framed input views (data.head_only)")
    ap.add_argument("--anchors", choices=["body", "template_free"], default="body", help="the anchors the weights are scored with")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    named = [w.split("=", 1) for w in args.weights]
    if any(len(n) != 2 for n in named):
        ap.error("--weights takes NAME=DIR entries")
    device = torch.device(args.device)
    if not 0 <= args.head_only <= 1:
        ap.error("--head-only takes a share in [0, 1]")
    subjects = probe_subjects(args.subjects, args.share, args.seed, args.resolution, args.views, device, args.head_only)
    classes, splits = (HEAD_CLASSES, ("input_view", "novel_views")) if args.head_only else (CLASSES, ("novel_views",))
    rows = {}
    for name, directory in tqdm(named, desc="weights"):
        model = Reconstructor.from_pretrained(directory, device=device).eval()
        with torch.no_grad():
            summary = evaluate(model, subjects, args.anchors, device)
        rows.update({(name, split): summary[split] for split in splits})
    anchors = "ground-truth bodies" if args.anchors == "body" else "template-free anchors"
    print(f"\n{args.subjects} engine subjects (rare_parts {args.share}, head_only {args.head_only}, seed {args.seed}, "
          f"{args.resolution} px, {args.views} novel views each), {anchors}: part IoU\n")
    print("| weights | views | PSNR | mIoU | " + " | ".join(c.replace("_", " ") for c in classes) + " |")
    print("|---|---|---|---|" + "---|" * len(classes))
    for (name, split), r in rows.items():
        iou = r["part_iou"]
        print(f"| {name} | {split.replace('_', ' ')} | {r['psnr']:.2f} | {r['part_miou']:.3f} | "
              + " | ".join(f"{iou[c]:.3f}" if c in iou else "-" for c in classes) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
