"""The training loop: synthetic batches made on the fly on the GPU, bf16 autocast, AdamW with warmup + cosine,
gradient clipping, atomic checkpoints with resume, TensorBoard, and DDP under ``torchrun`` (each rank seeds
its own engine, so no sampler is needed).

Run directory layout: ``model/`` (fp32 model directory), ``optimizer.pt`` (optimiser state, never shipped),
``state.json`` (step, elapsed time, config), ``export/`` (fp16 model directory, what gets shipped), ``tb/``.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor, nn

from humansplat.body import BodyModel, BodyParams
from humansplat.reconstruct.autoencoder import Autoencoder, AutoencoderConfig
from humansplat.reconstruct.io import (
    config_from_dict,
    config_to_dict,
    load_checked,
    load_model_dir,
    save_model_dir,
)
from humansplat.reconstruct.model import MODEL_TYPE, Reconstructor, ReconstructorConfig
from humansplat.train.config import TrainConfig
from humansplat.train.losses import ReconstructionLoss
from humansplat.train.step import ReconstructionStep, sample_views
from humansplat.utils import atomic_path, pick_device, progress

AE_TYPE = "humansplat-autoencoder"


def load_autoencoder(directory: str | Path, device: str | torch.device = "cpu") -> Autoencoder:
    config, state = load_model_dir(directory, AE_TYPE)
    ae = Autoencoder(config_from_dict(AutoencoderConfig, config, f"{directory}/config.json"))
    load_checked(ae, state, str(directory))
    return ae.to(device).eval()


def save_autoencoder(ae: Autoencoder, directory: str | Path, dtype: torch.dtype | None = None) -> Path:
    return save_model_dir(directory, ae.state_dict(), {"model_type": AE_TYPE, **config_to_dict(ae.config)}, dtype)


class Trainer:
    def __init__(self, config: TrainConfig, run_dir: str | Path, resume: bool = False, max_steps: int | None = None,
                 device: str | None = None):
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
        torch.manual_seed(config.seed + self.rank)
        self.generator = torch.Generator().manual_seed(config.seed * 1000 + self.rank)  # the engine draws on the CPU
        self.cpu_gen = torch.Generator().manual_seed(config.seed * 1000 + self.rank + 7)

        from humansplat.data import EngineConfig, SyntheticEngine

        self.engine = SyntheticEngine(config_from_dict(EngineConfig, dict(config.data), "data"), self.device)
        self.body = getattr(self.engine, "body", None) or BodyModel.load(self.device)
        self.step, self.elapsed, self.warmup_from = 0, 0.0, 0
        if config.phase == "autoencoder":
            self.model: nn.Module = Autoencoder(config_from_dict(AutoencoderConfig, dict(config.model), "model"))
        else:
            self.model = self._build_reconstructor()
        self.model.to(self.device)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.params = params  # a list, so clipping sees every parameter on every step
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=config.lr, betas=tuple(config.betas), fused=self.device.type == "cuda")
        if resume:
            self._load_checkpoint()
        self.step_module = None
        if config.phase == "reconstructor":
            loss = ReconstructionLoss(config.loss).to(self.device)
            self.step_module = ReconstructionStep(self.model, loss, config.render_backend, self.body.vertex_labels.to(self.device))
        self.wrapped: nn.Module = self.step_module if self.step_module is not None else self.model
        if self.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.wrapped = nn.parallel.DistributedDataParallel(self.wrapped, device_ids=ids)
        self.writer = self._tensorboard() if self.main else None
        self.stop_requested = False
        self.history: list[dict[str, float]] = []  # the logged means, one entry per log_every steps

    # ---- setup ----
    def _build_reconstructor(self) -> Reconstructor:
        cfg = self.cfg
        model = Reconstructor(config_from_dict(ReconstructorConfig, dict(cfg.model), "model"))
        if cfg.autoencoder is None:
            raise ValueError("reconstructor phase needs 'autoencoder': a trained autoencoder directory")
        ae = load_autoencoder(cfg.autoencoder)
        if config_to_dict(ae.config) | {"scale": 0} != config_to_dict(model.config.autoencoder) | {"scale": 0}:
            raise ValueError(f"autoencoder at {cfg.autoencoder} does not match model.autoencoder in the config")
        model.load_encoder(ae.state_dict(), ae.config.scale)
        if model.config.anchor_mode == "body":
            with torch.no_grad():
                template = self.body(BodyParams.neutral(1, device=self.device)).vertices[0]
            model.set_anchor_template(template)
        if cfg.init_from:
            self._warm_start(model, cfg.init_from, cfg.init_skip)
        return model

    def _warm_start(self, model: Reconstructor, directory: str, skip: tuple[str, ...]) -> None:
        """Start from other reconstructor weights; tensors under the ``skip`` prefixes stay freshly initialised.
        The rest must match in name and shape (a different architecture is an error, not a partial load)."""
        _, state = load_model_dir(directory, MODEL_TYPE)
        own = model.state_dict()
        fresh = {k for k in own if k.startswith(tuple(skip))}
        if skip and not fresh:
            raise ValueError(f"init_skip {list(skip)} names no parameter of the model")
        load_checked(model, {**{k: v for k, v in state.items() if k not in fresh}, **{k: own[k] for k in fresh}}, directory)
        if self.main:
            print(f"warm start from {directory}: {len(own) - len(fresh)} tensors loaded, {len(fresh)} fresh ({', '.join(skip) or 'none'})")

    def _tensorboard(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            print("tensorboard is not installed: no TensorBoard logs (pip install tensorboard)")
            return None
        return SummaryWriter(str(self.run_dir / "tb"))

    # ---- checkpoints ----
    def _core(self) -> nn.Module:
        return self.model

    def save_checkpoint(self) -> None:
        if not self.main:
            return
        model = self._core()
        if isinstance(model, Reconstructor):
            model.save_pretrained(self.run_dir / "model")
            model.save_pretrained(self.run_dir / "export", dtype=torch.float16)
        else:
            save_autoencoder(model, self.run_dir / "model")
            save_autoencoder(model, self.run_dir / "export", dtype=torch.float16)
        with atomic_path(self.run_dir / "optimizer.pt") as tmp:
            torch.save(self.optimizer.state_dict(), tmp)
        state = {"step": self.step, "elapsed_s": self.elapsed, "world_size": self.world, "config": self.cfg.to_dict()}
        with atomic_path(self.run_dir / "state.json") as tmp:
            tmp.write_text(json.dumps(state, indent=2))

    def _load_checkpoint(self) -> None:
        state_path = self.run_dir / "state.json"
        if not state_path.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint in {self.run_dir} (state.json missing)")
        state = json.loads(state_path.read_text())
        model_type = AE_TYPE if self.cfg.phase == "autoencoder" else MODEL_TYPE
        config, weights = load_model_dir(self.run_dir / "model", model_type)
        load_checked(self.model, weights, str(self.run_dir / "model"))
        if isinstance(self.model, Reconstructor):
            self.model.config.autoencoder.scale = float(config["autoencoder"]["scale"])
        else:
            self.model.config.scale = float(config["scale"])
        opt_path = self.run_dir / "optimizer.pt"
        if opt_path.is_file():
            self.optimizer.load_state_dict(torch.load(opt_path, map_location=self.device, weights_only=True))
        self.step, self.elapsed = int(state["step"]), float(state["elapsed_s"])
        if not opt_path.is_file():  # e.g. resumed from shipped weights: fresh moments, warm up again
            self.warmup_from = self.step
            if self.main:
                print(f"resume: {opt_path} missing, optimiser state starts fresh (learning rate warms up again)")

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
        done = self.step >= self.cfg.max_steps or self.progress_fraction() >= 1.0 or self.stop_requested
        if self.distributed:  # every rank stops at the same step
            flag = torch.tensor(float(done), device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            done = bool(flag.item())
        return done

    # ---- loop ----
    def train_step(self) -> dict[str, Tensor]:
        cfg = self.cfg
        batch = self.engine.sample(cfg.batch_size, self.generator)
        amp = torch.autocast(self.device.type, dtype=torch.bfloat16) if cfg.amp == "bf16" else nullcontext()
        if cfg.phase == "autoencoder":
            images = batch["images"].flatten(0, 1)
            with amp:
                loss, logs = self.wrapped(images, cfg.kl_weight)  # Autoencoder.forward is its loss (DDP-safe)
            logs = {k: torch.tensor(v) for k, v in logs.items()}
        else:
            views = sample_views(batch, cfg.input_view_probs, cfg.supervise_views, cfg.body_anchor_dropout, self.cpu_gen)
            loss, logs, self.last_render = self.wrapped(batch, views, amp)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
        lr = self.learning_rate()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        logs["train/grad_norm"] = grad_norm.detach()
        logs["train/lr"] = torch.tensor(lr)
        return logs

    def fit(self) -> Path:
        cfg = self.cfg
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stop_requested", True))
        self.model.train()
        last_ckpt = time.monotonic()
        bar = progress(total=cfg.max_steps, desc=f"train {cfg.name}", disable=None if self.main else True)
        bar.update(self.step)
        logs_acc: dict[str, list[Tensor]] = {}
        while not self._should_stop():
            t0 = time.monotonic()
            logs = self.train_step()
            self.step += 1
            self.elapsed += time.monotonic() - t0
            for k, v in logs.items():
                logs_acc.setdefault(k, []).append(v.detach().float().cpu() if v.device.type != "cpu" else v.float())
            if self.main and self.step % cfg.log_every == 0:
                means = {k: float(torch.stack(v).mean()) for k, v in logs_acc.items()}
                logs_acc.clear()
                self._log(means)
                bar.set_postfix(loss=f"{means.get('loss/total', means.get('ae/l1', 0)):.4f}",
                                psnr=f"{means.get('metric/psnr', means.get('ae/psnr', 0)):.2f}")
            if self.main and self.writer is not None and self.step % cfg.image_every == 0:
                self._log_images()
            bar.update(1)
            if time.monotonic() - last_ckpt > 60 * cfg.checkpoint_minutes:
                self._finish_autoencoder_scale()
                self.save_checkpoint()
                last_ckpt = time.monotonic()
        bar.close()
        self._finish_autoencoder_scale()
        self.save_checkpoint()
        if self.writer is not None:
            self.writer.close()
        if self.distributed:
            dist.barrier()
            dist.destroy_process_group()
        return self.run_dir / "export"

    def _log(self, means: dict[str, float]) -> None:
        self.history.append(means)
        line = " ".join(f"{k.split('/')[-1]}={v:.4g}" for k, v in sorted(means.items()))
        with open(self.run_dir / "log.txt", "a") as f:
            f.write(f"step {self.step} t={self.elapsed:.0f}s {line}\n")
        if self.writer is not None:
            for k, v in means.items():
                self.writer.add_scalar(k, v, self.step)

    def _log_images(self) -> None:
        if self.cfg.phase != "reconstructor" or getattr(self, "last_render", None) is None:
            return
        pred, target = self.last_render  # (V,3,H,W) each, first sample
        grid = torch.cat([torch.cat(list(target), -1), torch.cat(list(pred), -1)], -2).clamp(0, 1)
        self.writer.add_image("views/target_top_prediction_bottom", grid.float().cpu(), self.step)

    @torch.no_grad()
    def _finish_autoencoder_scale(self) -> None:
        """Autoencoder phase: set the latent scale to 1 / std of latents over a few fresh batches (rank 0's is saved)."""
        if self.cfg.phase != "autoencoder":
            return
        was_training = self.model.training
        self.model.eval()
        lat = [self.model.posterior(self.engine.sample(self.cfg.batch_size, self.generator)["images"].flatten(0, 1))[0] for _ in range(2)]
        std = torch.cat([x.flatten() for x in lat]).float().std().clamp_min(1e-4)
        self.model.config.scale = float(1.0 / std)
        self.model.train(was_training)
