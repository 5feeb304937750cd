"""Training configuration: one JSON file in ``configs/`` per run (configs as data)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from humansplat.reconstruct.io import config_from_dict, config_to_dict
from humansplat.train.losses import LossConfig


@dataclass
class TrainConfig:
    name: str = "main"
    phase: str = "reconstructor"  # "autoencoder" trains the VAE; "reconstructor" the transformer on a frozen VAE
    model: dict = field(default_factory=dict)  # ReconstructorConfig (or AutoencoderConfig) fields
    data: dict = field(default_factory=dict)  # humansplat.data.EngineConfig fields
    autoencoder: str | None = None  # trained autoencoder directory (reconstructor phase), relative to the config file
    init_from: str | None = None  # reconstructor weights to start from (a warm start, not a resume), relative to the config file
    init_skip: tuple[str, ...] = ()  # parameter-name prefixes that keep their fresh initialisation on a warm start
    loss: LossConfig = field(default_factory=LossConfig)
    batch_size: int = 4  # per GPU
    lr: float = 4e-4
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 200
    max_steps: int = 20000
    time_budget_minutes: float | None = None  # the cosine schedule follows steps or wall time, whichever ends first
    grad_clip: float = 1.0
    input_view_probs: tuple[float, ...] = (0.6, 0.15, 0.15, 0.1)  # P(1 input view), P(2), ...
    supervise_views: int = 8  # rendered and supervised per sample (the input views always among them)
    body_anchor_dropout: float = 0.2  # body-prior models: share of steps on template-free anchors (the fallback)
    kl_weight: float = 1e-6  # autoencoder phase
    amp: str = "bf16"  # "bf16" or "none"
    seed: int = 0
    log_every: int = 25
    image_every: int = 500
    checkpoint_minutes: float = 1.0
    render_backend: str = "auto"

    __nested__: ClassVar[dict[str, type]] = {"loss": LossConfig}

    def __post_init__(self) -> None:
        if isinstance(self.loss, dict):
            self.loss = config_from_dict(LossConfig, self.loss, "loss")
        if self.phase not in ("autoencoder", "reconstructor"):
            raise ValueError(f"phase must be 'autoencoder' or 'reconstructor', got {self.phase!r}")
        if self.amp not in ("bf16", "none"):
            raise ValueError(f"amp must be 'bf16' or 'none', got {self.amp!r}")
        if abs(sum(self.input_view_probs) - 1) > 1e-6:
            raise ValueError("input_view_probs must sum to 1")

    @staticmethod
    def load(path: str | Path) -> TrainConfig:
        path = Path(path)
        cfg = config_from_dict(TrainConfig, json.loads(path.read_text()), str(path))
        if cfg.autoencoder and not Path(cfg.autoencoder).is_absolute():
            cfg.autoencoder = str((path.parent / cfg.autoencoder).resolve())
        if cfg.init_from and not Path(cfg.init_from).is_absolute():
            cfg.init_from = str((path.parent / cfg.init_from).resolve())
        return cfg

    def to_dict(self) -> dict:
        return config_to_dict(self)
