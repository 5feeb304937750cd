"""The training loop: synthetic batches made on the fly on the GPU, bf16 autocast, AdamW with warmup + cosine,
gradient clipping, checkpoints with resume, TensorBoard, and DDP under ``torchrun`` (each rank seeds its own
engine, so no sampler is needed). What is trained is the config's ``task`` (humansplat.train.tasks).

Run directory layout: ``checkpoints/step-NNNNNNNN/`` (one directory per checkpoint, renamed into place only
when complete: ``model/`` fp32 weights, ``optimizer.pt``, ``export/`` fp16 weights, ``state.json`` with the
step, config and checksums, written last), ``export/`` (a copy of the newest checkpoint's fp16 weights: what
gets shipped), ``log.txt``, ``timing.json`` (where the step time went, per rank: humansplat.train.timing), ``tb/``.
``--resume`` takes the newest checkpoint whose checksums hold; it may run on another number of processes.

Under DDP only rank 0 writes into the run directory; every rank stops, checkpoints and follows the learning-rate
schedule at the same step, because one all-reduce per step shares the stop and checkpoint flags and the elapsed
time (the largest rank's), so time budgets cannot split the ranks.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import signal
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor, nn

from humansplat.body import BodyModel
from humansplat.models import WeightsError, load_checked, read_model_dir
from humansplat.train.config import TrainConfig
from humansplat.train.tasks import TASKS, PreviewRows
from humansplat.train.timing import StepTimer, warmup_steps
from humansplat.utils import atomic_dir, clean_stale_temporaries, file_sha256, pick_device, progress

CHECKPOINTS = "checkpoints"
STATE_FILE = "state.json"
CHECKSUMMED = ("model/model.safetensors", "model/config.json", "optimizer.pt")
TIMING_FILE = "timing.json"


class CheckpointError(ValueError):
    """No complete checkpoint to resume from."""


def complete_checkpoints(run_dir: str | Path) -> list[Path]:
    """The run's checkpoint directories whose files match the checksums in their state.json, newest first."""
    root = Path(run_dir) / CHECKPOINTS
    found = []
    for d in sorted(root.glob("step-*"), reverse=True) if root.is_dir() else []:
        try:
            state = json.loads((d / STATE_FILE).read_text())
            if all(file_sha256(d / name) == state["sha256"][name] for name in CHECKSUMMED):
                found.append(d)
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


def rank_seeds(seed: int, rank: int, step: int = 0) -> tuple[int, int]:
    """The seeds of a rank's two generators: the engine's data and the task's view sampling. Distinct over ranks
    and between the two streams, and moved on by the step a run resumes at, so a resumed run draws new
    subjects instead of replaying those of its first steps. At step 0 the data seed is the one runs always had
    (``seed * 1000 + rank``). 32 bits: torch's CPU generator drops the higher ones."""

    def mixed(stream: str) -> int:
        return int.from_bytes(hashlib.sha256(f"{seed}/{rank}/{step}/{stream}".encode()).digest()[:4], "little")

    return (seed * 1000 + rank if step == 0 else mixed("data")), mixed("views")


def preview_grid(preview) -> tuple[str, Tensor]:
    """A task's preview as (TensorBoard tag, image grid (3, rows * H, V * W)): ``PreviewRows`` top to bottom,
    or (prediction, target) images (V,3,H,W) with the target on top."""
    if isinstance(preview, PreviewRows):
        rows, tag = preview.rows, preview.tag
    else:
        pred, target = preview
        rows, tag = (target, pred), "views/target_top_prediction_bottom"
    return tag, torch.cat([torch.cat(list(row), -1) for row in rows], -2).clamp(0, 1)


class Trainer:
    def __init__(self, config: TrainConfig, run_dir: str | Path, resume: bool = False, max_steps: int | None = None,
                 device: str | None = None, profile: bool = False):
        self.cfg = config
        if max_steps is not None:
            config.max_steps = max_steps
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        if self.distributed:
            local = int(os.environ["LOCAL_RANK"])
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            if torch.cuda.is_available():
                torch.cuda.set_device(local)
            dist.init_process_group(backend)
            self.rank, self.world = dist.get_rank(), dist.get_world_size()
            self.device = torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")
        else:
            self.rank, self.world = 0, 1
            self.device = pick_device(device)
        self.main = self.rank == 0
        if self.main:
            for folder in (self.run_dir, self.run_dir / CHECKPOINTS):  # what a killed run of ours left
                clean_stale_temporaries(folder)
        torch.manual_seed(config.seed + self.rank)

        from humansplat.data import EngineConfig, SyntheticEngine

        self.engine = SyntheticEngine(EngineConfig.from_dict(dict(config.data)), self.device)
        self.body = getattr(self.engine, "body", None) or BodyModel.load(self.device)
        self.step, self.elapsed, self.warmup_from = 0, 0.0, 0
        if config.task not in TASKS:
            raise ValueError(f"task must be one of {sorted(TASKS)}, got {config.task!r}")
        self.task = TASKS[config.task](config, self.body, self.device, self.main)
        self.model = self.task.build_model()
        if config.init_from:
            self.task.warm_start(self.model, config.init_from, config.init_skip)
        self.model.to(self.device)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.params = params  # a list, so clipping sees every parameter on every step
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=config.lr, betas=tuple(config.betas), fused=self.device.type == "cuda")
        self.resumed_from: Path | None = None
        if resume:
            self._load_checkpoint()
        data_seed, view_seed = rank_seeds(config.seed, self.rank, self.step)
        self.generator = torch.Generator().manual_seed(data_seed)  # the engine draws on the CPU
        self.cpu_gen = torch.Generator().manual_seed(view_seed)
        self.wrapped: nn.Module = self.task.step_module(self.model)
        if self.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.wrapped = nn.parallel.DistributedDataParallel(self.wrapped, device_ids=ids)
        self.writer = self._tensorboard() if self.main else None
        self.stop_signal: int | None = None  # set by SIGTERM: save a checkpoint, then stop
        self.last_render = None
        self.history: list[dict[str, float]] = []  # the logged means, one entry per log_every steps
        self.profile = profile
        self.timer = StepTimer(self.device, profile)
        self.checkpoint_due = False  # set for every rank by the per-step sync (rank 0's clock may differ)
        self.last_checkpoint = time.monotonic()

    def _tensorboard(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            print("tensorboard is not installed: no TensorBoard logs (pip install tensorboard)")
            return None
        return SummaryWriter(str(self.run_dir / "tb"))

    # ---- checkpoints ----
    def save_checkpoint(self, last: bool = False) -> Path | None:
        """One directory per checkpoint, complete or absent; the newest ``keep_checkpoints`` are kept.
        ``last``: the run's last (the task may finish its model further, e.g. calibrate it)."""
        self.last_checkpoint = time.monotonic()
        if not self.main:
            return None
        self.task.finish(self.model, self.engine, last)  # only what rank 0 saves needs it
        root = self.run_dir / CHECKPOINTS
        final = root / f"step-{self.step:08d}"
        with atomic_dir(final) as tmp:
            self.model.save_pretrained(tmp / "model")
            self.model.save_pretrained(tmp / "export", dtype=torch.float16)
            torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
            state = {"step": self.step, "elapsed_s": self.elapsed, "world_size": self.world, "config": self.cfg.to_dict(),
                     "sha256": {name: file_sha256(tmp / name) for name in CHECKSUMMED}}
            (tmp / STATE_FILE).write_text(json.dumps(state, indent=2))  # last: a checkpoint without it is incomplete
        for old in complete_checkpoints(self.run_dir)[self.cfg.keep_checkpoints:]:
            shutil.rmtree(old, ignore_errors=True)
        with atomic_dir(self.run_dir / "export") as tmp:
            shutil.copytree(final / "export", tmp, dirs_exist_ok=True)
        return final

    def _load_checkpoint(self) -> None:
        found = complete_checkpoints(self.run_dir)
        if not found:
            raise CheckpointError(f"--resume: no complete checkpoint in {self.run_dir / CHECKPOINTS}")
        ckpt = found[0]
        state = json.loads((ckpt / STATE_FILE).read_text())
        try:
            config, weights = read_model_dir(ckpt / "model", self.model.model_type)
        except WeightsError as e:
            raise CheckpointError(f"--resume: {e}") from None
        load_checked(self.model, weights, str(ckpt / "model"))
        self.model.config = self.model.config_from_dict(config, str(ckpt / "model"))  # data-set constants (latent scale)
        self.optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", map_location=self.device, weights_only=True))
        self.step, self.elapsed = int(state["step"]), float(state["elapsed_s"])
        self.resumed_from = ckpt
        if self.main:
            skipped = sorted(p.name for p in (self.run_dir / CHECKPOINTS).glob("step-*") if p.name > ckpt.name)
            note = f" (skipped incomplete or corrupt: {', '.join(skipped)})" if skipped else ""
            print(f"resume from {ckpt} at step {self.step}{note}")

    # ---- schedule ----
    def progress_fraction(self) -> float:
        cfg = self.cfg
        frac = self.step / max(1, cfg.max_steps)
        if cfg.time_budget_minutes:
            frac = max(frac, self.elapsed / (60 * cfg.time_budget_minutes))
        return min(frac, 1.0)

    def learning_rate(self) -> float:
        cfg = self.cfg
        cos = 0.5 * (1 + math.cos(math.pi * self.progress_fraction()))
        lr = cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cos)
        since = self.step - self.warmup_from
        return lr * min(1.0, (since + 1) / max(1, cfg.warmup_steps))

    def _should_stop(self) -> bool:
        """Whether to stop before the next step; also sets ``checkpoint_due``. Under DDP one all-reduce (max)
        makes both flags and ``elapsed`` the same on every rank, so the ranks stop, checkpoint and set the
        learning rate at the same step even when their clocks disagree."""
        done = self.step >= self.cfg.max_steps or self.progress_fraction() >= 1.0 or self.stop_signal is not None
        due = time.monotonic() - self.last_checkpoint > 60 * self.cfg.checkpoint_minutes
        if self.distributed:
            shared = torch.tensor([float(done), float(due), self.elapsed], dtype=torch.float64, device=self.device)
            dist.all_reduce(shared, op=dist.ReduceOp.MAX)
            flags = shared.tolist()
            done, due, self.elapsed = flags[0] > 0, flags[1] > 0, flags[2]
            done = done or self.progress_fraction() >= 1.0
        self.checkpoint_due = due and not done  # the final checkpoint follows the loop
        self.timer.mark("sync")
        return done

    # ---- loop ----
    def train_step(self) -> dict[str, Tensor]:
        cfg = self.cfg
        timer = self.timer
        batch = self.engine.sample(cfg.batch_size, self.generator)
        timer.mark("data")
        amp = torch.autocast(self.device.type, dtype=torch.bfloat16) if cfg.amp == "bf16" else nullcontext()
        loss, logs, preview = self.task.loss(self.wrapped, batch, amp, self.cpu_gen)
        if preview is not None:
            self.last_render = preview
        self.optimizer.zero_grad(set_to_none=True)
        timer.mark("forward")
        if self.profile and self.distributed:  # how long this rank waits for the slowest one
            dist.all_reduce(torch.zeros(1, device=self.device))
            timer.mark("wait")
        loss.backward()
        timer.mark("backward")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
        lr = self.learning_rate()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        timer.mark("optimizer")
        logs["train/grad_norm"] = grad_norm.detach()
        logs["train/lr"] = torch.tensor(lr)
        return logs

    def fit(self) -> Path:
        """Train until the step or time budget ends, or a SIGTERM arrives (then ``stop_signal`` is set);
        either way the last state is saved. Returns the exported (fp16) weights' directory."""
        cfg = self.cfg
        signal.signal(signal.SIGTERM, lambda signum, _frame: setattr(self, "stop_signal", signum))
        self.model.train()
        self.last_checkpoint = time.monotonic()
        bar = progress(total=cfg.max_steps, desc=f"train {cfg.name}", disable=None if self.main else True)
        bar.update(self.step)
        logs_acc: dict[str, list[Tensor]] = {}  # rank 0's, kept on the device: one host sync per log line
        self.timer = StepTimer(self.device, self.profile, warmup_steps(cfg.max_steps - self.step))
        self.timer.start()
        while not self._should_stop():
            if self.checkpoint_due:
                self.save_checkpoint()
                self.timer.mark("checkpoint")
            t0 = time.monotonic()
            logs = self.train_step()
            self.step += 1
            self.elapsed += time.monotonic() - t0
            if self.main:
                for k, v in logs.items():
                    logs_acc.setdefault(k, []).append(v.detach().float())
            if self.main and self.step % cfg.log_every == 0:
                means = {k: float(torch.stack(v).mean()) for k, v in logs_acc.items()}
                logs_acc.clear()
                self._log(means)
                bar.set_postfix(loss=f"{means.get('loss/total', means.get('ae/l1', 0)):.4f}",
                                psnr=f"{means.get('metric/psnr', means.get('ae/psnr', 0)):.2f}")
            if self.main and self.writer is not None and self.step % cfg.image_every == 0:
                self._log_images()
            bar.update(1)
            self.timer.mark("log")
            self.timer.step_done()
        bar.close()
        timing = self.timer.summary()  # the loop's steps; the final checkpoint is not one of them
        self.save_checkpoint(last=True)
        if self.writer is not None:
            self.writer.close()
        ranks = [timing]
        if self.distributed:
            ranks = [None] * self.world
            dist.all_gather_object(ranks, timing)
        if self.main:
            self._write_timing(ranks)
        if self.distributed:
            dist.barrier()
            dist.destroy_process_group()
        return self.run_dir / "export"

    def _write_timing(self, ranks: list[dict]) -> None:
        """``timing.json``: the run's throughput and, per rank, the seconds spent in each phase (rank 0's in
        log.txt too). steps/s is rank 0's over the measured steps (warm-up left out)."""
        main = ranks[0]
        info = {"world_size": self.world, "batch_size_per_rank": self.cfg.batch_size, "device": str(self.device),
                "device_name": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu",
                "task": self.cfg.task, "config": self.cfg.name, "last_step": self.step, "steps": main["steps"],
                "steps_per_s": main["steps_per_s"],
                "subjects_per_s": main["steps_per_s"] * self.cfg.batch_size * self.world, "ranks": ranks}
        (self.run_dir / TIMING_FILE).write_text(json.dumps(info, indent=2))
        per_step = " ".join(f"{k}={1000 * v / max(1, main['steps']):.1f}ms" for k, v in main["phases_s"].items() if v)
        with open(self.run_dir / "log.txt", "a") as f:
            f.write(f"timing steps={main['steps']} steps/s={main['steps_per_s']:.3f} per step: {per_step}\n")

    def _log(self, means: dict[str, float]) -> None:
        self.history.append(means)
        line = " ".join(f"{k.split('/')[-1]}={v:.4g}" for k, v in sorted(means.items()))
        with open(self.run_dir / "log.txt", "a") as f:
            f.write(f"step {self.step} t={self.elapsed:.0f}s {line}\n")
        if self.writer is not None:
            for k, v in means.items():
                self.writer.add_scalar(k, v, self.step)

    def _log_images(self) -> None:
        if self.last_render is None:
            return
        tag, grid = preview_grid(self.last_render)
        self.writer.add_image(tag, grid.float().cpu(), self.step)
