"""Fit a reconstructor's part-logit shift (``humansplat.train.calibrate``) and write it into its config.json.

    python scripts/calibrate_semantics.py WEIGHTS --train-config configs/portraits.json [--subjects 32] [--seed S] [--dry-run]

The subjects come from the engine with the training config's ``data`` section (its face and hand crops off: whole
views are what a user sees), drawn from ``--seed``, which the benchmark set never uses. Only config.json changes
(atomically); the weights file is left as it is. ``--dry-run`` prints the shift and writes nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from humansplat.body.parts import SAPIENS_CLASSES
from humansplat.data.engine import EngineConfig, SyntheticEngine
from humansplat.models.base import CONFIG_FILE
from humansplat.models.reconstructor import Reconstructor
from humansplat.train.calibrate import CALIBRATION_SEED, calibrate_semantics
from humansplat.train.config import TrainConfig
from humansplat.utils import atomic_path, pick_device


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("weights")
    ap.add_argument("--train-config", required=True, help="the config the weights were trained with (its data section)")
    ap.add_argument("--subjects", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--seed", type=int, default=CALIBRATION_SEED)
    ap.add_argument("--device", default=None)
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args(argv)
    if args.subjects < 1:
        ap.error("--subjects must be >= 1")
    device = pick_device(args.device)
    try:
        model = Reconstructor.from_pretrained(args.weights, device)
        data = {**TrainConfig.load(args.train_config).data, "crop_size": 0}
    except (OSError, ValueError) as e:
        print(f"calibrate_semantics: {e}", file=sys.stderr)
        return 2
    engine = SyntheticEngine(EngineConfig.from_dict(data), device)
    with tqdm(total=-(-args.subjects // args.batch_size), desc="calibration batches") as bar:
        shift = calibrate_semantics(model, engine, args.subjects, torch.Generator().manual_seed(args.seed), args.batch_size, bar)
    model.set_semantic_shift(shift)  # checks the length
    for name, value in sorted(zip(SAPIENS_CLASSES, shift), key=lambda kv: kv[1]):
        print(f"{name:16s} {value:+.3f}")
    if not args.dry_run:
        path = Path(args.weights) / CONFIG_FILE
        config = json.loads(path.read_text())
        config["semantic_shift"] = list(shift)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(config, indent=2) + "\n")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
