"""`humansplat train CONFIG`: train the autoencoder or the reconstructor on synthetic data made on the fly.

Multi-GPU: the same command under ``torchrun --nproc_per_node N -m humansplat train CONFIG``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train the autoencoder or the reconstructor (configs/*.json)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="training config (JSON), e.g. configs/main.json")
    p.add_argument("--out", help="run directory (default: runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in the run directory")
    p.add_argument("--max-steps", type=int, help="override max_steps")
    p.add_argument("--time-budget", type=float, metavar="MINUTES", help="override time_budget_minutes")
    p.add_argument("--lr", type=float, help="override the peak learning rate (lr), e.g. for a second fine-tuning stage")
    p.add_argument("--autoencoder", metavar="DIR", help="override the config's trained autoencoder directory")
    p.add_argument("--init-from", metavar="DIR", help="override the config's warm-start weights (init_from)")
    p.add_argument("--generator", metavar="DIR", help="override the config's novel-view generator weights (generated extra views)")
    p.add_argument("--reconstructor", metavar="DIR", help="override the config's frozen reconstructor (a draft generator's drafts)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available); torchrun picks per rank")
    p.add_argument("--profile", action="store_true",
                   help="synchronise CUDA at every phase of a step so timing.json says where the time goes (a little slower)")
    p.set_defaults(func=run)


def run(args) -> int:
    from humansplat.cli import UserError
    from humansplat.train.config import TrainConfig
    from humansplat.train.tasks import TASKS
    from humansplat.train.trainer import CHECKPOINTS, CheckpointError, Trainer
    from humansplat.utils import OutputError, check_replaceable, check_writable

    path = Path(args.config)
    if not path.is_file():
        raise UserError(f"config not found: {path}")
    try:
        config = TrainConfig.load(path)
    except (ValueError, TypeError) as e:
        raise UserError(f"bad config {path}: {e}") from e
    if config.task not in TASKS:
        raise UserError(f"bad config {path}: task must be one of {sorted(TASKS)}, got {config.task!r}")
    if args.autoencoder:
        config.autoencoder = str(Path(args.autoencoder).resolve())
    if args.init_from:
        config.init_from = str(Path(args.init_from).resolve())
    if args.generator:
        config.generator = str(Path(args.generator).resolve())
    if args.reconstructor:
        config.reconstructor = str(Path(args.reconstructor).resolve())
    if config.init_from and not Path(config.init_from, "model.safetensors").is_file():
        raise UserError(f"init_from weights are missing: {config.init_from}")
    if config.reconstructor and not Path(config.reconstructor, "model.safetensors").is_file():
        raise UserError(f"reconstructor weights are missing: {config.reconstructor}")
    if args.time_budget is not None:
        config.time_budget_minutes = args.time_budget
    if args.lr is not None:
        config.lr = args.lr
    run_dir = Path(args.out) if args.out else Path("runs") / path.stem
    has_run = any((run_dir / CHECKPOINTS).glob("step-*"))
    if has_run and not args.resume:
        raise UserError(f"{run_dir} already holds a run: pass --resume to continue it, or another --out")
    if args.resume and not has_run:
        raise UserError(f"--resume: no checkpoint in {run_dir / CHECKPOINTS}")
    if TASKS[config.task].needs_autoencoder and (not config.autoencoder or not Path(config.autoencoder, "model.safetensors").is_file()):
        raise UserError(f"the autoencoder named by the config is missing: {config.autoencoder} (train it first)")
    try:
        check_writable(run_dir)
        check_replaceable(run_dir / "export")  # replaced at every checkpoint: it must be ours
    except OutputError as e:
        raise UserError(str(e)) from None
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        trainer = Trainer(config, run_dir, resume=args.resume, max_steps=args.max_steps, device=args.device,
                          profile=args.profile)
    except (CheckpointError, ValueError) as e:  # ValueError: WeightsError of --init-from, the config's own checks
        raise UserError(" ".join(str(e).split())) from None
    export = trainer.fit()
    if trainer.stop_signal is not None:
        print(f"stopped by signal {trainer.stop_signal} at step {trainer.step}: checkpoint saved in {run_dir / CHECKPOINTS} "
              f"(continue with --resume)", file=sys.stderr)
        return 128 + trainer.stop_signal
    print(f"weights: {export}")
    return 0
