"""`humansplat data synth|benchmark|scans|preview`: synthetic training data, the benchmark set, real scans
rendered the same way, and a contact sheet to look at."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("data", help="make training data: synthetic humans, the benchmark set, scans",
                              description="Synthetic human data on disk (format: docs/data.md).")
    sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    s = sub.add_parser("synth", help="render N synthetic subjects into shards (resumable)")
    s.add_argument("-n", "--subjects", type=int, required=True, help="number of subjects")
    s.add_argument("-o", "--out", type=Path, required=True, help="dataset folder (created; rerun to resume)")
    s.add_argument("--views", type=int, default=16, help="orbit views per subject, besides the input view (default 16)")
    s.add_argument("--res", type=int, default=256, help="image size in pixels, square (default 256)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.add_argument("--shard-size", type=int, default=32, help="subjects per shard file (default 32)")
    s.add_argument("--batch", type=int, default=8, help="subjects rendered together (default 8)")
    s.add_argument("--pose-kinds", nargs="+", default=None, help="restrict the poses (standing walking arms_raised sitting crouching reaching)")
    s.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    s.set_defaults(func=run_synth)

    b = sub.add_parser("benchmark", help="write the fixed held-out benchmark set (36 views at 0 deg, 512 px)")
    b.add_argument("-o", "--out", type=Path, required=True, help="dataset folder (created; rerun to resume)")
    b.add_argument("-n", "--subjects", type=int, default=None, help="number of subjects (default: the protocol's 50)")
    b.add_argument("--device", default="auto", help="device that renders: auto, cpu or cuda (subjects are built on the CPU)")
    b.set_defaults(func=run_benchmark)

    c = sub.add_parser("scans", help="render THuman2.x-style scan folders into shards")
    c.add_argument("root", type=Path, help="folder of <id>/<id>.obj scans (with textures)")
    c.add_argument("-o", "--out", type=Path, required=True, help="dataset folder (created; rerun to resume)")
    c.add_argument("--views", type=int, default=16, help="orbit views per scan, besides the input view (default 16)")
    c.add_argument("--res", type=int, default=256, help="image size in pixels (default 256)")
    c.add_argument("--seed", type=int, default=0, help="random seed of the cameras (default 0)")
    c.add_argument("--protocol", choices=["train", "benchmark"], default="train", help="random views like the engine, or the benchmark's 36 views")
    c.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    c.set_defaults(func=run_scans)

    v = sub.add_parser("preview", help="a contact sheet of random synthetic subjects (.png)")
    v.add_argument("-o", "--out", type=Path, required=True, help="output image (.png)")
    v.add_argument("-n", "--subjects", type=int, default=64, help="number of subjects (default 64)")
    v.add_argument("--res", type=int, default=256, help="render size in pixels (default 256)")
    v.add_argument("--panel", type=int, default=128, help="panel size on the sheet (default 128)")
    v.add_argument("--per-row", type=int, default=4, help="subjects per row (default 4)")
    v.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    v.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    v.set_defaults(func=run_preview)


def _device(name: str):
    from humansplat.cli import UserError
    from humansplat.utils import pick_device

    try:
        return pick_device(name)
    except (RuntimeError, ValueError) as e:
        raise UserError(str(e)) from None


def _check_out(out: Path, dataset: bool = True) -> None:
    """Before any work: ``out`` can be written, and (a dataset folder) is new, empty or one of our datasets."""
    from humansplat.cli import UserError
    from humansplat.data.shards import check_dataset_root
    from humansplat.utils import OutputError, check_writable, check_writable_file

    try:
        check_writable(out) if dataset else check_writable_file(out)
        if dataset:
            check_dataset_root(out)
    except (OutputError, FileExistsError) as e:
        raise UserError(f"{e}; choose another -o") from None


def _writer(out: Path, meta: dict):
    from humansplat.cli import UserError
    from humansplat.data.shards import ShardWriter

    _check_out(out)
    try:
        return ShardWriter(out, meta)
    except FileExistsError as e:
        raise UserError(f"{e}; choose another -o or repeat the original arguments to resume") from None


def run_synth(args: argparse.Namespace) -> int:
    from humansplat import __version__
    from humansplat.body import SAPIENS_CLASSES
    from humansplat.body.pose_prior import POSE_KINDS
    from humansplat.cli import UserError
    from humansplat.data import EngineConfig, SyntheticEngine
    from humansplat.data.shards import fill_shards

    if args.subjects < 1 or args.views < 1 or args.shard_size < 1 or args.batch < 1:
        raise UserError("-n, --views, --shard-size and --batch must be >= 1")
    if not 16 <= args.res <= 4096:
        raise UserError("--res must be between 16 and 4096")
    if args.pose_kinds and set(args.pose_kinds) - set(POSE_KINDS):
        raise UserError(f"unknown pose kinds {sorted(set(args.pose_kinds) - set(POSE_KINDS))}; choose from {' '.join(POSE_KINDS)}")
    config = EngineConfig(resolution=args.res, views=args.views, pose_kinds=tuple(args.pose_kinds) if args.pose_kinds else None)
    meta = {"kind": "synthetic", "subjects": args.subjects, "shard_size": args.shard_size, "views": 1 + args.views,
            "resolution": args.res, "seed": args.seed, "engine": config.to_dict(), "label_names": SAPIENS_CLASSES,
            "humansplat_version": __version__}  # fmt: skip
    writer = _writer(args.out, meta)
    if not writer.missing():
        print(f"{args.out}: complete ({args.subjects} subjects)")
        return 0
    engine = SyntheticEngine(config, device=_device(args.device))
    written = fill_shards(writer, engine.sample, args.seed, args.batch)
    print(f"{args.out}: {args.subjects} subjects in {writer.num_shards} shards ({written} written now)")
    return 0


def run_benchmark(args: argparse.Namespace) -> int:
    from humansplat.cli import UserError
    from humansplat.data.benchmark import make_benchmark

    if args.subjects is not None and args.subjects < 1:
        raise UserError("-n must be >= 1")
    _check_out(args.out)
    try:
        sums = make_benchmark(args.out, device=_device(args.device), subjects=args.subjects)
    except FileExistsError as e:
        raise UserError(f"{e}; choose another -o") from None
    print(f"{args.out}: benchmark set written ({sums})")
    return 0


def run_scans(args: argparse.Namespace) -> int:
    from humansplat.cli import UserError
    from humansplat.data.scans import ScanDataset, write_scans

    _check_out(args.out)
    try:
        scans = ScanDataset(args.root, resolution=args.res, views=args.views, protocol=args.protocol, device=_device(args.device))
    except (FileNotFoundError, ValueError) as e:
        raise UserError(str(e)) from None
    writer = _writer(args.out, scans.meta(seed=args.seed))
    write_scans(scans, writer, args.seed)
    print(f"{args.out}: {len(scans)} scans rendered")
    return 0


def run_preview(args: argparse.Namespace) -> int:
    from humansplat.cli import UserError
    from humansplat.data import EngineConfig, SyntheticEngine
    from humansplat.data.preview import contact_sheet
    from humansplat.media import save_image

    if args.subjects < 1 or args.panel < 8 or args.per_row < 1 or not 16 <= args.res <= 4096:
        raise UserError("-n and --per-row must be >= 1, --panel >= 8, --res in 16..4096")
    _check_out(args.out, dataset=False)
    engine = SyntheticEngine(EngineConfig(resolution=args.res, views=3), device=_device(args.device))
    sheet = contact_sheet(engine, args.subjects, args.per_row, args.panel, args.seed)
    save_image(args.out, sheet)
    print(f"{args.out}: {args.subjects} subjects")
    return 0
