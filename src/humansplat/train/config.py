"""Training configuration: one JSON file in ``configs/`` per run (configs as data; a file may ``"extends"`` another)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from humansplat.config import from_dict, load_config_file, to_dict
from humansplat.train.augment import BodyNoiseConfig, PhotoNoiseConfig
from humansplat.train.losses import LossConfig
from humansplat.train.novelview import ExtraViewsConfig

PATH_FIELDS = ("autoencoder", "init_from", "generator", "reconstructor")  # directories named relative to the config file


@dataclass
class TrainConfig:
    name: str = "main"
    task: str = "reconstructor"  # what is trained: a key of humansplat.train.tasks.TASKS (checked by the trainer)
    model: dict = field(default_factory=dict)  # the task's model config fields (e.g. ReconstructorConfig)
    data: dict = field(default_factory=dict)  # humansplat.data.EngineConfig fields
    autoencoder: str | None = None  # trained autoencoder directory (latent-space tasks), relative to the config file
    init_from: str | None = None  # weights to start from (a warm start, not a resume), relative to the config file
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
    generator: str | None = None  # novel-view generator weights (reconstructor with generated extra views), relative to the config file
    reconstructor: str | None = None  # the frozen reconstructor whose renders are a draft generator's drafts (training that
    # generator, or a reconstructor on its views), relative to the config file
    extra_views: ExtraViewsConfig = field(default_factory=ExtraViewsConfig)  # reconstructor: generated / degraded extra input views
    body_noise: BodyNoiseConfig = field(default_factory=BodyNoiseConfig)  # reconstructor, generator: the body prior perturbed as a fit would
    photo_noise: PhotoNoiseConfig = field(default_factory=PhotoNoiseConfig)  # reconstructor: the input photo degraded as a camera would
    kl_weight: float = 1e-6  # autoencoder task
    amp: str = "bf16"  # "bf16" or "none"
    seed: int = 0
    log_every: int = 25
    image_every: int = 500
    checkpoint_minutes: float = 1.0
    keep_checkpoints: int = 2  # complete checkpoints kept in the run directory (older ones are removed)
    render_backend: str = "auto"
    calibrate_subjects: int = 32  # reconstructor (body anchors): fresh engine subjects its part-logit shift is fitted on at
    # the last checkpoint (humansplat.train.calibrate; the weights' config.json records it); 0: none

    def __post_init__(self) -> None:
        if self.amp not in ("bf16", "none"):
            raise ValueError(f"amp must be 'bf16' or 'none', got {self.amp!r}")
        if abs(sum(self.input_view_probs) - 1) > 1e-6:
            raise ValueError("input_view_probs must sum to 1")
        if self.keep_checkpoints < 1:
            raise ValueError("keep_checkpoints must be >= 1")

    @staticmethod
    def load(path: str | Path) -> TrainConfig:
        path = Path(path)
        data = load_config_file(path)
        for key in PATH_FIELDS:
            if isinstance(data.get(key), str) and not Path(data[key]).is_absolute():
                data[key] = str((path.parent / data[key]).resolve())
        return from_dict(TrainConfig, data, str(path))

    def to_dict(self) -> dict:
        return to_dict(self)
