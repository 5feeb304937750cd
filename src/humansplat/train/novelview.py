"""Training pieces of the novel-view stage (used by ``train.tasks``):

- ``GeneratorStep``: the generator's flow-matching loss as the module DDP wraps; ``generator_inputs`` turns an
  engine batch (view 0 the photo, views 1..K the targets) into clean target latents and conditions;
- ``ExtraViewsConfig`` + ``extra_view_inputs``: the reconstructor fine-tune whose extra input views are the
  generator's samples at orbit cameras (``source: "generated"``) or, cheaper, ground-truth views decoded
  from noised latents (``"degraded"``), so the reconstructor learns to trust them as much as they deserve;
  supervision stays the ground truth at every camera;
- ``reconstructor_drafts``: for draft generators, the frozen reconstructor's Gaussians of the photo rendered
  at the target cameras and encoded: the drafts the generator learns to refine.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from humansplat.body.model import BodyModel
from humansplat.models.autoencoder import Autoencoder
from humansplat.models.generator import NovelViewGenerator, ViewConditions
from humansplat.models.reconstructor import Reconstructor
from humansplat.novelview import body_condition_maps, draft_latents, sample_latents, view_conditions
from humansplat.train.step import ViewPlan

__all__ = ["ExtraViewsConfig", "GeneratorStep", "PreviewRows", "extra_view_inputs", "extra_view_plan", "generator_inputs",
           "generator_preview", "reconstructor_drafts"]

EXTRA_SOURCES = ("none", "generated", "degraded")


@dataclass
class ExtraViewsConfig:
    """Reconstructor training: where extra input views come from. ``none``: ground-truth views, by
    ``input_view_probs`` (the original training)."""

    source: str = "none"  # "none" | "generated" (the generator's samples) | "degraded" (noised-latent GT views)
    prob: float = 0.75  # share of steps with the extra views; the rest see the photo alone
    stride: int = 2  # the extra views are orbit views 1, 1 + stride, ... (engine views 8, stride 2: 4 views 90 deg apart)
    steps: int = 4  # generated: sampler steps
    guidance: float = 2.0  # generated: classifier-free guidance
    noise: tuple[float, float] = (0.1, 0.4)  # degraded: range of the flow time t of the noised latents

    def __post_init__(self) -> None:
        if self.source not in EXTRA_SOURCES:
            raise ValueError(f"extra_views.source must be one of {EXTRA_SOURCES}, got {self.source!r}")
        if self.stride < 1:
            raise ValueError("extra_views.stride must be >= 1")


class GeneratorStep(nn.Module):
    """forward(x0, cond) -> (loss, logs): the generator's training loss, all parameters used inside."""

    def __init__(self, model: NovelViewGenerator):
        super().__init__()
        self.model = model

    def forward(self, x0: Tensor, cond: ViewConditions) -> tuple[Tensor, dict[str, Tensor]]:
        return self.model.training_loss(x0, cond)


@dataclass
class PreviewRows:
    """A training preview of several rows, top to bottom, each (V,3,H,W) (the trainer logs it under ``tag``)."""

    rows: tuple[Tensor, ...]
    tag: str


@torch.no_grad()
def reconstructor_drafts(reconstructor: Reconstructor, model: NovelViewGenerator, body: BodyModel, batch: dict,
                         targets: list[int] | None = None, amp=None, backend: str = "auto") -> Tensor:
    """The drafts' latents (B,K,C,h,w) of an engine batch: the frozen reconstructor on the photo (view 0, its
    camera) with anchors from ``batch["body_vertices"]`` (as the pipeline makes them from the fitted body;
    template-free ones when the batch has none), its Gaussians rendered on white at the target views
    ``targets`` (default 1..V), encoded by ``model``."""
    images, cams = batch["images"], batch["cameras"]
    targets = targets or list(range(1, images.shape[1]))
    vertices = batch.get("body_vertices")
    anchors = reconstructor.make_anchors(cams[:, 0], batch["masks"][:, 0], None if vertices is None else vertices.float(), body.vertex_labels)
    with amp or nullcontext():
        gaussians = reconstructor(images[:, :1], cams[:, :1], anchors)
        return draft_latents(model, gaussians, cams[:, targets], backend)


@torch.no_grad()
def generator_inputs(model: NovelViewGenerator, body: BodyModel, batch: dict, targets: list[int] | None = None,
                     template_free: bool = False, generator: torch.Generator | None = None,
                     draft: Tensor | None = None) -> tuple[Tensor, ViewConditions]:
    """Engine batch -> (clean target latents (B,K,C,h,w), conditions). Targets: the orbit views ``targets``
    (default all of 1..V); the photo is view 0. ``template_free``: no body maps. ``draft``: the drafts'
    latents (draft generators: ``reconstructor_drafts``)."""
    images, cams = batch["images"], batch["cameras"]
    targets = targets or list(range(1, images.shape[1]))
    B, K = images.shape[0], len(targets)
    s = model.config.image_size
    x0 = model.encode(images[:, targets].flatten(0, 1)).unflatten(0, (B, K))
    target_cams = cams[:, targets].resized(s, s)
    maps = None if template_free else body_condition_maps(body, batch["body_vertices"].float(), target_cams,
                                                          model.config.latent_size, generator)
    return x0, view_conditions(model, images[:, 0], cams[:, 0].resized(s, s), target_cams, maps, draft)


@torch.no_grad()
def generator_preview(model: NovelViewGenerator, x0: Tensor, cond: ViewConditions, photo: Tensor) -> tuple[Tensor, Tensor] | PreviewRows:
    """The first sample's (generated, ground truth) views, the photo first: (1+K,3,S,S) each. With a draft:
    rows of K views each: the photo (then white), the draft (as the generator sees it: its latent decoded),
    the generated views, the ground truth."""
    first = cond.first()
    latents = sample_latents(model, first, 0)[0]
    photo = model.resize(photo[None].float())
    generated, truth = model.decode(latents.float()), model.decode(x0[0].float())
    if first.draft is None:
        return torch.cat([photo, generated]), torch.cat([photo, truth])
    photo_row = torch.cat([photo, torch.ones_like(generated[1:])])
    return PreviewRows((photo_row, model.decode(first.draft[0].float()), generated, truth), "views/photo_draft_generated_truth")


def extra_view_plan(batch: dict, config: ExtraViewsConfig, supervise_views: int, template_free_prob: float,
                    gen: torch.Generator) -> ViewPlan:
    """Inputs: the photo, then (on ``prob`` of the steps) orbit views 1, 1 + stride, ...; supervised: the
    inputs, then other views in random order, up to ``supervise_views``."""
    total = batch["images"].shape[1]
    extra = list(range(1, total, config.stride)) if float(torch.rand(1, generator=gen)) < config.prob else []
    inputs = [0] + extra
    others = [i for i in (torch.randperm(total - 1, generator=gen) + 1).tolist() if i not in extra]
    supervised = inputs + others[: max(0, supervise_views - len(inputs))]
    return ViewPlan(inputs, supervised, bool(torch.rand(1, generator=gen) < template_free_prob))


@torch.no_grad()
def extra_view_inputs(config: ExtraViewsConfig, batch: dict, plan: ViewPlan, body: BodyModel, gen: torch.Generator,
                      generator: NovelViewGenerator | None = None, autoencoder: Autoencoder | None = None,
                      drafter: Reconstructor | None = None, backend: str = "auto") -> Tensor:
    """The input images (B, len(plan.inputs), 3, H, W): the photo, then the extra views as the pipeline
    would give them: generated (template-free when the plan is; a draft generator corrects ``drafter``'s
    renders there) or ground truth decoded from noised latents."""
    images = batch["images"]
    extra = plan.inputs[1:]
    if not extra or config.source == "none":
        return images[:, plan.inputs]
    B, K = images.shape[0], len(extra)
    H, W = images.shape[-2:]
    if config.source == "generated":
        if generator is None:
            raise ValueError("extra_views.source 'generated' needs the generator's weights ('generator' in the config)")
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
        draft = None
        if generator.config.draft:
            if drafter is None:
                raise ValueError("a draft generator's extra views need the reconstructor whose renders are the drafts")
            seen = {k: v for k, v in batch.items() if k != "body_vertices"} if plan.template_free else batch  # as its anchors are
            draft = reconstructor_drafts(drafter, generator, body, seen, extra, None, backend)
        _, cond = generator_inputs(generator, body, batch, extra, plan.template_free, torch.Generator(images.device).manual_seed(seed),
                                   draft=draft)
        latents = sample_latents(generator, cond, seed, config.steps, config.guidance)
        views = generator.decode(latents.flatten(0, 1).float())
    else:
        if autoencoder is None:
            raise ValueError("extra_views.source 'degraded' needs the autoencoder")
        z = autoencoder.encode(images[:, extra].flatten(0, 1).float())
        lo, hi = config.noise
        t = (lo + (hi - lo) * torch.rand(z.shape[0], 1, 1, 1, generator=gen)).to(z)
        noise = torch.randn(z.shape, generator=gen).to(z)
        views = autoencoder.decode((1 - t) * z + t * noise).clamp(0, 1)
    if views.shape[-2:] != (H, W):
        views = nn.functional.interpolate(views, size=(H, W), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
    return torch.cat([images[:, :1], views.unflatten(0, (B, K)).to(images.dtype)], 1)
