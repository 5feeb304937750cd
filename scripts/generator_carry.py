"""Fit a generator's weights into the device call's 64 MiB: drop the frozen autoencoder copy it holds, and put it
back on the other side from the shipped autoencoder.

A generator directory holds its own copy of the frozen autoencoder (so that it encodes and decodes by itself);
carried to the GPU machine beside the tracked tree, the wheels and the body cache, that copy is what overflows.

    python scripts/generator_carry.py strip DIR                 # here: DIR/model.safetensors without autoencoder.*
    python scripts/generator_carry.py restore DIR [--autoencoder src/humansplat/weights/autoencoder]   # there

``restore`` refuses an autoencoder whose config differs from the generator's (the latent scale included) and
does nothing to a complete directory. Each device call gets a fresh copy of the tree, so restore in every call
that loads the generator (``benchmarks/gpu_common.sh`` does it in ``gpu_setup`` for every generator in .carry/).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from safetensors.torch import load_file, save_file

PREFIX = "autoencoder."  # where NovelViewGenerator keeps its frozen autoencoder
SHIPPED = Path(__file__).resolve().parents[1] / "src/humansplat/weights/autoencoder"


def _write(path: Path, tensors: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, path)


def strip(directory: Path) -> int:
    path = directory / "model.safetensors"
    state = load_file(str(path))
    kept = {k: v for k, v in state.items() if not k.startswith(PREFIX)}
    if len(kept) < len(state):
        _write(path, kept)
    return len(state) - len(kept)


def restore(directory: Path, autoencoder: Path) -> int:
    path = directory / "model.safetensors"
    state = load_file(str(path))
    if any(k.startswith(PREFIX) for k in state):
        return 0
    want = json.loads((directory / "config.json").read_text())["autoencoder"]
    have = json.loads((autoencoder / "config.json").read_text())
    have.pop("model_type", None)
    if have != want:
        raise SystemExit(f"{autoencoder}: its config {have} is not the generator's autoencoder {want}")
    ae = load_file(str(autoencoder / "model.safetensors"))
    _write(path, {**state, **{PREFIX + k: v for k, v in ae.items()}})
    return len(ae)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["strip", "restore"])
    ap.add_argument("directory", type=Path)
    ap.add_argument("--autoencoder", type=Path, default=SHIPPED)
    args = ap.parse_args()
    if not (args.directory / "model.safetensors").is_file() or not (args.directory / "config.json").is_file():
        ap.error(f"{args.directory}: not a model directory (config.json and model.safetensors)")
    n = strip(args.directory) if args.action == "strip" else restore(args.directory, args.autoencoder)
    print(f"{args.directory}: {n} autoencoder tensors {'dropped' if args.action == 'strip' else 'restored'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
