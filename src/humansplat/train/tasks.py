"""What can be trained: one ``Task`` per model kind, so the trainer has no branch on what it trains.

A task builds its model from the training config, wraps it in the module DDP sees (``step_module``), and turns
one engine batch into (loss, logs, preview). ``TASKS`` maps the config's ``task`` to its class; a new model
kind (e.g. the novel-view generator) adds a task here.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from humansplat.body import BodyModel, BodyParams
from humansplat.config import to_dict
from humansplat.models import (
    Autoencoder,
    AutoencoderConfig,
    GeneratorConfig,
    NovelViewGenerator,
    PretrainedModel,
    Reconstructor,
    ReconstructorConfig,
    load_checked,
    read_model_dir,
)
from humansplat.models.generator import repatch_weights
from humansplat.models.heads import upsample_unpatch
from humansplat.train.augment import degrade_photo, perturb_body
from humansplat.train.calibrate import CALIBRATION_SEED, calibrate_semantics
from humansplat.train.config import TrainConfig
from humansplat.train.losses import ReconstructionLoss
from humansplat.train.novelview import (
    GeneratorStep,
    PreviewRows,
    extra_view_inputs,
    extra_view_plan,
    generator_inputs,
    generator_preview,
    reconstructor_drafts,
)
from humansplat.train.step import ReconstructionStep, sample_views

DRAFT_ONLY_PARAMETERS = ("no_draft",)  # what a draft generator has and a generator without drafts lacks

Preview = tuple[Tensor, Tensor] | PreviewRows | None  # (prediction, target) images (V, 3, H, W) of the first sample, or rows


class Task:
    name: ClassVar[str]
    needs_autoencoder: ClassVar[bool] = False
    encoder_prefix: ClassVar[str | None] = None  # state-dict prefix of the frozen encoder the model holds

    def __init__(self, config: TrainConfig, body: BodyModel, device: torch.device, main: bool = True):
        self.cfg, self.body, self.device, self.main = config, body, device, main

    def build_model(self) -> PretrainedModel:
        raise NotImplementedError

    def step_module(self, model: PretrainedModel) -> nn.Module:
        """The module whose ``forward`` computes the loss (what DDP wraps); the model itself by default."""
        return model

    def loss(self, wrapped: nn.Module, batch: dict, amp, gen: torch.Generator) -> tuple[Tensor, dict[str, Tensor], Preview]:
        raise NotImplementedError

    @torch.no_grad()
    def finish(self, model: PretrainedModel, engine, final: bool = False) -> None:
        """Called before every checkpoint (e.g. to set data-dependent constants); ``final``: the run's last one."""

    def warm_start(self, model: PretrainedModel, directory: str, skip: tuple[str, ...]) -> None:
        """Start from other weights of the same kind; tensors under the ``skip`` prefixes stay freshly initialised.
        The rest must match in name and shape (a different architecture is an error, not a partial load)."""
        config, state = read_model_dir(directory, model.model_type)
        own = model.state_dict()
        state, adapted = self.adapt_warm_start(model, config, state)
        fresh = {k for k in own if k.startswith(tuple(skip))}
        if skip and not fresh:
            raise ValueError(f"init_skip {list(skip)} names no parameter of the model")
        load_checked(model, {**{k: v for k, v in state.items() if k not in fresh}, **{k: own[k] for k in fresh}}, directory)
        scale_note = self.take_latent_scale(model, config, skip)
        if self.main:
            note = "".join(f"; {n}" for n in (adapted, scale_note) if n)
            print(f"warm start from {directory}: {len(own) - len(fresh)} tensors loaded, {len(fresh)} fresh ({', '.join(skip) or 'none'}){note}")

    def adapt_warm_start(self, model: PretrainedModel, config: dict, state: dict[str, Tensor]) -> tuple[dict[str, Tensor], str]:
        """The warm-start weights (config and state of the source) made to fit ``model``, and a note saying
        what was changed (empty: nothing; the default changes nothing)."""
        return state, ""

    def take_latent_scale(self, model: PretrainedModel, config: dict, skip: tuple[str, ...]) -> str:
        """A warm start that loads the source's frozen encoder takes the source's latent scale with it: the
        scale belongs to those encoder weights, not to the autoencoder the config names (which only sets it
        when the encoder is skipped). Returns a note when the scale changed."""
        scale = (config.get("autoencoder") or {}).get("scale")
        if self.encoder_prefix is None or scale is None or self.encoder_prefix.startswith(tuple(skip)):
            return ""
        before = float(model.config.autoencoder.scale)
        model.config.autoencoder.scale = float(scale)
        if isinstance(getattr(model, "autoencoder", None), Autoencoder):
            model.autoencoder.config.scale = float(scale)
        return "" if before == float(scale) else f"latent scale {float(scale):.4g} from the source (not {before:.4g}): its encoder was loaded"

    def with_fitted_body(self, batch: dict, gen: torch.Generator) -> dict:
        """The batch with its body perturbed as a one-photo fit gets it wrong (``body_noise``; as is when off)."""
        if self.cfg.body_noise.prob <= 0:
            return batch
        return {**batch, "body_vertices": perturb_body(self.body, batch["body_params"], batch["body_vertices"], self.cfg.body_noise, gen)}

    def load_frozen_autoencoder(self, expected: AutoencoderConfig) -> Autoencoder:
        """The trained autoencoder named by the config, checked against the model's autoencoder config."""
        if self.cfg.autoencoder is None:
            raise ValueError(f"task {self.name!r} needs 'autoencoder': a trained autoencoder directory")
        ae = Autoencoder.from_pretrained(self.cfg.autoencoder)
        if to_dict(ae.config) | {"scale": 0} != to_dict(expected) | {"scale": 0}:
            raise ValueError(f"autoencoder at {self.cfg.autoencoder} does not match model.autoencoder in the config")
        return ae


class AutoencoderTask(Task):
    name = "autoencoder"

    def build_model(self) -> Autoencoder:
        return Autoencoder(Autoencoder.config_from_dict(dict(self.cfg.model), "model"))

    def loss(self, wrapped, batch, amp, gen):
        with amp:
            loss, logs = wrapped(batch["images"].flatten(0, 1), self.cfg.kl_weight)  # Autoencoder.forward is its loss
        return loss, {k: torch.tensor(v) for k, v in logs.items()}, None

    @torch.no_grad()
    def finish(self, model: Autoencoder, engine, final: bool = False) -> None:
        """Set the latent scale to 1 / std of latents over a few fresh batches (rank 0's is saved)."""
        was_training = model.training
        model.eval()
        gen = torch.Generator().manual_seed(self.cfg.seed + 12345)
        lat = [model.posterior(engine.sample(self.cfg.batch_size, gen)["images"].flatten(0, 1))[0] for _ in range(2)]
        std = torch.cat([x.flatten() for x in lat]).float().std().clamp_min(1e-4)
        model.config.scale = float(1.0 / std)
        model.train(was_training)


class ReconstructorTask(Task):
    name = "reconstructor"
    needs_autoencoder = True
    encoder_prefix = "encoder."

    def build_model(self) -> Reconstructor:
        model = Reconstructor(Reconstructor.config_from_dict(dict(self.cfg.model), "model"))
        ae = self.load_frozen_autoencoder(model.config.autoencoder)
        model.load_encoder(ae.state_dict(), ae.config.scale)
        if model.config.anchor_mode == "body":
            with torch.no_grad():
                template = self.body(BodyParams.neutral(1, device=self.device)).vertices[0]
            model.set_anchor_template(template)
        return model

    def adapt_warm_start(self, model: Reconstructor, config: dict, state: dict[str, Tensor]) -> tuple[dict[str, Tensor], str]:
        """Weights trained without ``photo_colors`` into a model with it: their RGB outputs (absolute colours)
        are zeroed, so every Gaussian starts at its photo colour prior (the other way round is an error).
        Weights with a coarser per-pixel Gaussian grid (``gaussian_stride`` 2 into 1): the pixel head's
        unpatch layer is nearest-upsampled, so every finer Gaussian starts as the coarse one it lies in."""
        notes = []
        source_stride = int(config.get("gaussian_stride", ReconstructorConfig.gaussian_stride))
        stride = model.config.gaussian_stride
        if source_stride != stride:
            if source_stride % stride:
                raise ValueError(f"warm start: gaussian_stride {source_stride} of the source cannot become {stride} "
                                 "(only a finer grid, by a whole factor)")
            state = dict(state)
            name = "pixel_head.unpatch"
            state[f"{name}.weight"], state[f"{name}.bias"] = upsample_unpatch(
                state[f"{name}.weight"], state[f"{name}.bias"], model.token_px // source_stride, source_stride // stride)
            notes.append(f"per-pixel Gaussian grid {source_stride / stride:g}x finer (unpatch upsampled)")
        source_prior = bool(config.get("photo_colors", False))
        if model.config.photo_colors and not source_prior:
            state = model.colors_at_prior(state)
            notes.append("RGB outputs zeroed (the source has no photo colour prior)")
        if source_prior and not model.config.photo_colors:
            raise ValueError("warm start: the source weights predict colours as residuals on the photo's (photo_colors); "
                             "set \"photo_colors\": true in the config's model")
        return state, "; ".join(notes)

    def finish(self, model: Reconstructor, engine, final: bool = False) -> None:
        """At the last checkpoint: fit the part-logit shift that undoes the loss's class weighting."""
        if not final or self.cfg.calibrate_subjects <= 0 or model.config.anchor_mode != "body":
            return
        was_training = model.training
        model.eval()
        gen = torch.Generator().manual_seed(self.cfg.seed + CALIBRATION_SEED)
        model.set_semantic_shift(calibrate_semantics(model, engine, self.cfg.calibrate_subjects, gen))
        model.train(was_training)

    def step_module(self, model: Reconstructor) -> nn.Module:
        loss = ReconstructionLoss(self.cfg.loss).to(self.device)
        return ReconstructionStep(model, loss, self.cfg.render_backend, self.body.vertex_labels.to(self.device))

    def loss(self, wrapped, batch, amp, gen):
        cfg = self.cfg
        batch = self.with_fitted_body(batch, gen)
        if cfg.extra_views.source == "none":
            plan = sample_views(batch, cfg.input_view_probs, cfg.supervise_views, cfg.body_anchor_dropout, gen)
            inputs = batch["images"][:, plan.inputs] if cfg.photo_noise.prob > 0 else None
        else:
            plan = extra_view_plan(batch, cfg.extra_views, cfg.supervise_views, cfg.body_anchor_dropout, gen)
            with amp:
                inputs = extra_view_inputs(cfg.extra_views, batch, plan, self.body, gen, *self.extra_view_models(), cfg.render_backend)
        prior = None
        if inputs is not None and cfg.photo_noise.prob > 0:  # only the photo (view 0) is degraded; supervision stays clean
            photo = degrade_photo(inputs[:, 0].float(), batch["masks"][:, 0], cfg.photo_noise, gen).to(inputs.dtype)
            prior = inputs if cfg.photo_noise.clean_prior else None
            inputs = torch.cat([photo[:, None], inputs[:, 1:]], 1)
        return wrapped(batch, plan, amp, inputs, prior)

    def extra_view_models(self) -> tuple[NovelViewGenerator | None, Autoencoder | None, Reconstructor | None]:
        """The frozen generator (source "generated") or autoencoder (source "degraded"), loaded once; for a
        draft generator also the frozen ``reconstructor`` whose renders are its drafts (as in the pipeline,
        where the first reconstruction drafts the views that the second one fuses)."""
        if not hasattr(self, "_extra_models"):
            cfg, source = self.cfg, self.cfg.extra_views.source
            if source == "generated" and not cfg.generator:
                raise ValueError("extra_views.source 'generated' needs 'generator': the generator's weights directory")
            gen_model = NovelViewGenerator.from_pretrained(cfg.generator, self.device) if source == "generated" else None
            ae = Autoencoder.from_pretrained(cfg.autoencoder, self.device).eval() if source == "degraded" else None
            drafter = None
            if gen_model is not None and gen_model.config.draft:
                if not cfg.reconstructor:
                    raise ValueError("a draft generator's views need 'reconstructor': the weights whose renders are the drafts")
                drafter = Reconstructor.from_pretrained(cfg.reconstructor, self.device).eval().requires_grad_(False)
            self._extra_models = (gen_model, ae, drafter)
        return self._extra_models


class GeneratorTask(Task):
    """The novel-view generator: engine view 0 is the photo, views 1..K the targets (``data.views`` = K).
    A draft generator (``model.draft``) also gets the frozen ``reconstructor``'s renders of the photo's
    Gaussians at the targets; ``body_noise`` perturbs the body both it and the condition maps see."""

    name = "generator"
    needs_autoencoder = True
    encoder_prefix = "autoencoder."

    def build_model(self) -> NovelViewGenerator:
        model = NovelViewGenerator(NovelViewGenerator.config_from_dict(dict(self.cfg.model), "model"))
        views = int(self.cfg.data.get("views", 0))
        if views != model.config.views:
            raise ValueError(f"generator task: data.views ({views}) must equal the model's target views ({model.config.views})")
        model.load_autoencoder(self.load_frozen_autoencoder(model.config.autoencoder))
        self.model, self.calls, self.reconstructor = model, 0, None
        if model.config.draft:
            if not self.cfg.reconstructor:
                raise ValueError("generator task: a draft generator (model.draft) needs 'reconstructor': the weights whose renders are the drafts")
            self.reconstructor = Reconstructor.from_pretrained(self.cfg.reconstructor, self.device).eval().requires_grad_(False)
        elif self.cfg.reconstructor:
            raise ValueError("generator task: 'reconstructor' is only used by draft generators (set model.draft to true)")
        return model

    def adapt_warm_start(self, model: NovelViewGenerator, config: dict, state: dict[str, Tensor]) -> tuple[dict[str, Tensor], str]:
        """A generator with finer tokens (a smaller ``patch_size``) from a coarser one: ``repatch_weights``.
        A draft generator from a generator without drafts: the patch conv weights that grew by input
        channels (the draft's, appended last) get zeros there, so at step 0 the model computes exactly what
        the source did whenever a draft is given; parameters only draft models have (``no_draft``) keep their
        fresh initialisation. Any other difference stays an error (``load_checked``)."""
        notes = []
        old_patch = int(config.get("patch_size", GeneratorConfig.patch_size))  # a config without it: the default
        if old_patch != model.config.patch_size:
            state = repatch_weights(state, old_patch, model.config.patch_size, model.config.latent_size)
            notes.append(f"tokens {old_patch}x{old_patch} -> {model.config.patch_size}x{model.config.patch_size} latent cells (repatched)")
        if not model.config.draft or config.get("draft", False):
            return state, "; ".join(notes)
        own = model.state_dict()
        state = dict(state)
        padded = []
        for k, v in state.items():
            mine = own.get(k)
            if mine is not None and v.dim() == 4 and mine.dim() == 4 and mine.shape[1] > v.shape[1] and (
                    mine.shape[0], *mine.shape[2:]) == (v.shape[0], *v.shape[2:]):
                state[k] = torch.cat([v, v.new_zeros(v.shape[0], mine.shape[1] - v.shape[1], *v.shape[2:])], 1)
                padded.append(f"{k} {v.shape[1]}->{mine.shape[1]} input channels")
        fresh = [k for k in DRAFT_ONLY_PARAMETERS if k in own and k not in state]
        state.update({k: own[k] for k in fresh})
        notes.append(f"draft generator from one without drafts: zero-padded {', '.join(padded) or 'nothing'}; fresh {', '.join(fresh)}")
        return state, "; ".join(notes)

    def step_module(self, model: NovelViewGenerator) -> nn.Module:
        return GeneratorStep(model)

    def loss(self, wrapped, batch, amp, gen):
        cfg = self.cfg
        batch = self.with_fitted_body(batch, gen)  # the maps and the draft's anchors both see the perturbed body
        draft = None
        if self.reconstructor is not None:
            draft = reconstructor_drafts(self.reconstructor, self.model, self.body, batch, None, amp, cfg.render_backend)
        with amp:
            x0, cond = generator_inputs(self.model, self.body, batch, draft=draft)
            loss, logs = wrapped(x0, cond)
        self.calls += 1
        preview = None
        if self.main and self.calls % self.cfg.image_every == 0:
            was = self.model.training
            self.model.eval()
            with amp:
                preview = generator_preview(self.model, x0, cond, batch["images"][0, 0])
            self.model.train(was)
        return loss, logs, preview


TASKS: dict[str, type[Task]] = {t.name: t for t in (AutoencoderTask, ReconstructorTask, GeneratorTask)}
__all__ = ["TASKS", "PreviewRows", "Task", "AutoencoderTask", "GeneratorTask", "ReconstructorTask", "ReconstructorConfig", "GeneratorConfig"]
