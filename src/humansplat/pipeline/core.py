"""``Pipeline``: the loaded models and the list of stages that turn a photo into a ``Reconstruction``.

Each stage is a named step over one ``Work`` record (what the photo has become so far); ``pipe.stages`` is a
plain list, so a stage can be inspected, skipped (``skip=``), replaced or watched while it runs
(``on_stage=`` gets a ``StageEvent`` with its name, time and output after each one).
"""

from __future__ import annotations

import contextlib
import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from humansplat.body import BodyModel
from humansplat.body.fit import FitConfig
from humansplat.gaussians import Gaussians
from humansplat.models import NovelViewGenerator, Reconstructor, WeightsError
from humansplat.novelview import NovelViews, generate_views
from humansplat.pipeline import stages as st
from humansplat.pipeline.result import Reconstruction
from humansplat.preprocess import Preprocessed, preprocess
from humansplat.preprocess.framing import visible_height
from humansplat.refine import RefineConfig, photo_psnr, refine
from humansplat.utils import file_sha256, pick_device, seed_everything

WEIGHTS_ROOT = Path(__file__).resolve().parents[1] / "weights"
INDEX_FILE = "pipeline.json"  # names the models of a pipeline folder and their subfolders
NOVEL_VIEW_MODES = ("auto", "on", "off")
MIN_PREPROCESS_RESOLUTION = 512  # the photo is cropped at least this large (the matte and fit see it; the model resizes)


@dataclass
class Work:
    """One photo on its way through the stages; each stage fills its own fields."""

    image: Any
    person: int | None
    name: str | None
    inputs: Preprocessed | None = None
    body_fit: st.BodyFit | None = None
    placement: st.Placement | None = None
    views: NovelViews | None = None
    gaussians: Gaussians | None = None
    quality: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class Stage:
    name: str
    run: Callable[[Work], Any]  # fills its fields of the Work; returns what it made (shown to ``on_stage``)


@dataclass
class StageEvent:
    name: str
    seconds: float
    index: int  # 0-based among the stages that run for this photo
    total: int
    output: Any


class Pipeline:
    """Loaded models for photo -> Gaussians. ``weights``: a pipeline folder (with ``pipeline.json``) or a
    reconstructor folder (``config.json`` + ``model.safetensors``); default: the shipped weights."""

    def __init__(self, weights: str | Path | None = None, device: str | None = None, seed: int = 0, fit_iters: int | None = None,
                 refine_steps: int = RefineConfig.steps, compile_fit: bool = False, skip: tuple[str, ...] = (),
                 novel_views: str = "auto", refine_mode: str = RefineConfig.mode):  # fmt: skip
        self.device = pick_device(device)
        self.fit_config = FitConfig(compile=compile_fit)
        self.refine = RefineConfig(steps=refine_steps, mode=refine_mode)
        self.seed, self.fit_iters = seed, fit_iters
        t = time.perf_counter()
        self.paths, options = read_pipeline(weights)
        self.fuse_views = bool(options.get("fuse_views", False))
        self.weights = self.paths["reconstructor"]
        self.model = Reconstructor.from_pretrained(self.weights, self.device)
        self.body = BodyModel.load(self.device)
        self.generator = self._load_generator(novel_views)
        # the novel views come before the reconstruction (they are its extra inputs), or, from a draft generator
        # (it corrects the reconstruction's own renders), after it, as the refinement's extra targets; with
        # "fuse_views" in pipeline.json (a reconstructor fine-tuned on such views) they are also fused: the
        # reconstruction runs again with them as inputs
        novel = [Stage("novel_views", self._novel_views)]
        drafted = self.generator is not None and self.generator.config.draft
        self.stages = [Stage("preprocess", self._preprocess), Stage("body_fit", self._fit), *([] if drafted else novel),
                       Stage("reconstruct", self._reconstruct), Stage("crop", self._crop), *(novel if drafted else []),
                       *([Stage("fuse", self._fuse)] if drafted and self.fuse_views else []), Stage("refine", self._refine)]  # fmt: skip
        self.skip = set(skip) | ({"refine"} if self.refine.steps <= 0 else set()) | ({"novel_views", "fuse"} if self.generator is None else set())
        self.meta = {
            "device": str(self.device),
            "device_name": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else platform.processor() or platform.machine(),
            "torch": torch.__version__,
            "weights": str(self.weights),
            "weights_sha256": file_sha256(self.weights / "model.safetensors"),
            "novel_views": None if self.generator is None else str(self.paths["novel_views"]),
            "seed": seed,
            "model_load_s": round(time.perf_counter() - t, 3),
        }

    def _load_generator(self, mode: str) -> NovelViewGenerator | None:
        """``auto``: the generator the pipeline folder names (the shipped one names none: it does not help yet,
        see its model card); ``on``: that one or the shipped ``weights/novelview``; ``off``: none."""
        if mode not in NOVEL_VIEW_MODES:
            raise ValueError(f"novel_views must be one of {NOVEL_VIEW_MODES}, got {mode!r}")
        if mode == "on":
            self.paths.setdefault("novel_views", WEIGHTS_ROOT / "novelview")
        if mode == "off" or "novel_views" not in self.paths:
            return None
        return NovelViewGenerator.from_pretrained(self.paths["novel_views"], self.device)

    @classmethod
    def from_pretrained(cls, directory: str | Path = WEIGHTS_ROOT, **kwargs) -> Pipeline:
        return cls(directory, **kwargs)

    @torch.no_grad()
    def __call__(self, image, person: int | None = None, name: str | None = None,
                 on_stage: Callable[[StageEvent], None] | None = None) -> Reconstruction:  # fmt: skip
        """``image``: a path, array or PIL image, or a ``Preprocessed`` photo (its preprocessing is not redone)."""
        seed_everything(self.seed)
        work = Work(image, person, name)
        todo = [s for s in self.stages if s.name not in self.skip and not (s.name == "preprocess" and isinstance(image, Preprocessed))]
        if isinstance(image, Preprocessed):
            work.inputs = image
        for i, stage in enumerate(todo):
            with timed(work.timings, stage.name, self.device):
                out = stage.run(work)
            if on_stage is not None:
                on_stage(StageEvent(stage.name, work.timings[stage.name], i, len(todo), out))
        return self._result(work)

    # ---- the stages ----
    def _preprocess(self, w: Work) -> Preprocessed:
        w.inputs = preprocess(w.image, resolution=max(MIN_PREPROCESS_RESOLUTION, self.model.config.pixel_input), person=w.person)
        return w.inputs

    def _fit(self, w: Work) -> st.BodyFit:
        w.body_fit = st.fit_photo(w.inputs, self.body, self.fit_config, self.fit_iters)
        w.placement = st.place_in_world(self.model, self.body, w.inputs, w.body_fit)
        return w.body_fit

    def _novel_views(self, w: Work) -> NovelViews:
        p = w.placement
        body = p.body_vertices if p.structure_prior == "body" else None  # None: the generator runs template-free
        height = visible_height(w.inputs.framing)
        draft = w.gaussians if self.generator.config.draft else None  # the cropped reconstruction, in the same world
        w.views = generate_views(self.generator, w.inputs.image.to(self.device), p.cameras[0, 0], body, seed=self.seed,
                                 body=self.body, height=height, draft_gaussians=draft)  # fmt: skip
        return w.views

    def _reconstruct(self, w: Work) -> Gaussians:
        w.gaussians = st.reconstruct_gaussians(self.model, w.inputs, w.placement, w.views)  # no views yet from a draft generator
        return w.gaussians

    def _crop(self, w: Work) -> Gaussians:
        w.gaussians = st.crop_to_photo(w.gaussians, w.inputs, w.placement.cameras[0, 0])
        w.quality["input_view_psnr_db"] = photo_psnr(w.gaussians, w.placement.cameras[0], w.inputs.image)
        return w.gaussians

    def _fuse(self, w: Work) -> Gaussians:
        if w.views is None:  # the novel views were skipped: keep the first reconstruction
            return w.gaussians
        w.gaussians = st.crop_to_photo(st.reconstruct_gaussians(self.model, w.inputs, w.placement, w.views), w.inputs, w.placement.cameras[0, 0])
        w.quality["input_view_psnr_fused_db"] = photo_psnr(w.gaussians, w.placement.cameras[0], w.inputs.image)
        return w.gaussians

    def _refine(self, w: Work) -> Gaussians:
        targets = (w.views.images, w.views.cameras) if w.views is not None and self.generator.config.draft else (None, None)
        w.gaussians = refine(w.gaussians, w.placement.cameras[0], w.inputs.image, w.inputs.mask, self.refine, *targets)
        w.quality["input_view_psnr_refined_db"] = photo_psnr(w.gaussians, w.placement.cameras[0], w.inputs.image)
        return w.gaussians

    def _result(self, w: Work) -> Reconstruction:
        p = w.placement
        return Reconstruction(
            name=w.name or (Path(w.inputs.source).stem if w.inputs.source else "image"),
            gaussians=w.gaussians.detach().to("cpu"),
            camera=p.cameras[0].to("cpu"),
            inputs=w.inputs,
            fit=w.body_fit.fit,
            fit_trusted=w.body_fit.trusted,
            fit_note=w.body_fit.reason,
            untrusted_limbs=w.body_fit.untrusted_limbs,
            body_params=None if p.body_params is None else p.body_params.to("cpu"),
            body_vertices=None if p.body_vertices is None else p.body_vertices.detach().cpu(),
            world_offset=p.world_offset.detach().cpu(),
            structure_prior=p.structure_prior,
            novel_views=None if w.views is None else w.views.images.detach().cpu(),
            cropped_to_view=w.inputs.is_partial,
            timings=w.timings,
            meta={**self.meta, "refine_steps": 0 if "refine" in self.skip else self.refine.steps, "refine_mode": self.refine.mode,
                  **{k: round(v, 2) for k, v in w.quality.items()}},
        )


def read_pipeline(weights: str | Path | None) -> tuple[dict[str, Path], dict]:
    """A pipeline folder's model folders (from its ``pipeline.json``, or one reconstructor folder) and its
    other entries, the options (e.g. ``"fuse_views": true``; {} without an index)."""
    root = Path(weights) if weights is not None else WEIGHTS_ROOT
    index = root / INDEX_FILE
    if index.is_file():
        try:
            names = json.loads(index.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise WeightsError(f"{index}: not valid JSON ({e})") from None
        if not isinstance(names, dict) or not isinstance(names.get("reconstructor"), str):
            raise WeightsError(f"{index}: expected an object naming at least the 'reconstructor' folder")
        paths = {role: root / sub for role, sub in names.items() if isinstance(sub, str)}
        return paths, {k: v for k, v in names.items() if not isinstance(v, str)}
    if (root / "config.json").is_file():
        return {"reconstructor": root}, {}
    raise WeightsError(f"no weights in {root} (expected {INDEX_FILE}, or config.json + model.safetensors)")


def resolve_weights(weights: str | Path | None) -> dict[str, Path]:
    """The model folders of a pipeline: from its ``pipeline.json``, or one reconstructor folder."""
    return read_pipeline(weights)[0]


@contextlib.contextmanager
def timed(timings: dict[str, float], name: str, device: torch.device):
    """Record the wall-clock time of a block (CUDA-synchronised) as ``timings[name]``."""
    t = time.perf_counter()
    yield
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    timings[name] = time.perf_counter() - t
