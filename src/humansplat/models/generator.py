"""The novel-view generator: a multi-view latent diffusion transformer (HumanSplat's first half).

Given the photo, K target cameras and (optionally) the fitted body rendered at those cameras, it denoises
the K target views' latents (in the frozen autoencoder's space) jointly, so they agree:

- tokens: 2x2 latent patches. Target view k: [noisy latent x_t (C), Plücker rays (6), body condition maps
  (``CONDITION_CHANNELS``: camera-frame normal, mask, part one-hot)] -> patch conv; the photo: [its clean latent
  (C), its Plücker rays (6)] -> its own patch conv. + a learned position (shared by views) and role embedding;
- ``depth`` DiT blocks (adaLN-Zero on the flow time) of full self-attention over all (K + 1) * L tokens:
  every view attends to the photo and to every other view (``scaled_dot_product_attention``);
- output: the flow velocity of the target latents (rectified flow: x_t = (1 - t) x_0 + t eps, v = eps - x_0),
  sampled with a few Euler steps from t = 1 to 0.

Classifier-free guidance is on the photo: in training the photo's tokens are replaced by a learned null
(``photo_dropout``). Template-free mode: the body maps are zeroed and a learned "no body" embedding is
added (``body_dropout`` in training), for photos whose fit is not trusted.

Draft-conditioned mode (``draft``): each target token also sees the latent of a *draft* of its view (the
reconstructor's Gaussians rendered at the target camera on white, encoded like every view), appended after
the body maps in the target patch conv's input, so the generator only has to add what the draft lacks. In
training the draft is dropped on ``draft_dropout`` of the samples (zeroed, plus a learned "no draft"
embedding) so the same weights also run without one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from humansplat.body.parts import SAPIENS_CLASSES
from humansplat.models.attention import MLP, Attention
from humansplat.models.autoencoder import Autoencoder, AutoencoderConfig
from humansplat.models.base import PretrainedModel, register

__all__ = ["CONDITION_CHANNELS", "GeneratorConfig", "NovelViewGenerator", "ViewConditions"]

CONDITION_CHANNELS = 3 + 1 + len(SAPIENS_CLASSES)  # normal (camera frame), mask, part one-hot
RAY_CHANNELS = 6
TIME_FREQS = 128  # sinusoidal features of the flow time
TIME_SCALE = 1000.0  # t in [0, 1] is embedded as t * TIME_SCALE


@dataclass
class GeneratorConfig:
    image_size: int = 256  # views (the photo and the generated ones) are square at this size
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    view_azimuths: tuple[float, ...] = (45.0, 135.0, 225.0, 315.0)  # default target views, degrees from the photo's azimuth
    view_elevation: float = 0.0  # degrees
    view_fov: float = 39.6  # degrees (the engine's orbit views)
    view_fill: float = 0.85  # the subject spans this share of the target frame
    patch_size: int = 2  # latent cells per token side
    dim: int = 256
    heads: int = 8
    depth: int = 8
    mlp_ratio: float = 4.0
    photo_dropout: float = 0.1  # training: P(photo replaced by the null), for classifier-free guidance
    body_dropout: float = 0.2  # training: P(body maps dropped): the template-free mode
    sample_steps: int = 6  # Euler steps of the sampler
    guidance: float = 2.0  # classifier-free guidance scale on the photo (1 = none)
    draft: bool = False  # target tokens also take the latent of a draft view (the reconstructor's render there)
    draft_dropout: float = 0.1  # training, draft models: P(draft replaced by the learned "no draft" embedding)
    draft_start: float = 0.3  # draft models: the sampler starts at this flow time from the draft's latent noised to it
    # (SDEdit; 1: from pure noise, lower keeps more of the draft's coarse content; measured, docs/novelview.md:
    # draft v1's views are 3.0 dB below their drafts from 1, 0.24 dB from 0.3)
    draft_time_max: float = 1.0  # training, draft models: flow times of samples with a draft are drawn in [0, this]
    # (logit-normal, scaled), where the sampler starts them (draft_start); samples without one keep [0, 1]

    def __post_init__(self) -> None:
        self.view_azimuths = tuple(float(a) for a in self.view_azimuths)
        if not self.view_azimuths:
            raise ValueError("view_azimuths must name at least one target view")
        latent = self.image_size // self.autoencoder.downsample
        if self.image_size % self.autoencoder.downsample or latent % self.patch_size:
            raise ValueError(f"image_size {self.image_size} must give a latent grid divisible by patch_size {self.patch_size}")
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not divisible by heads {self.heads}")
        if not 0 < self.draft_time_max <= 1:
            raise ValueError(f"draft_time_max must be in (0, 1], got {self.draft_time_max}")

    @property
    def views(self) -> int:
        """K, the number of target views generated together."""
        return len(self.view_azimuths)

    @property
    def latent_size(self) -> int:
        return self.image_size // self.autoencoder.downsample

    @property
    def target_channels(self) -> int:
        """Input channels of a target view's patch conv: [x_t, rays, body maps] (+ the draft's latent)."""
        C = self.autoencoder.latent_channels
        return C + RAY_CHANNELS + CONDITION_CHANNELS + (C if self.draft else 0)


@dataclass
class ViewConditions:
    """What the views are generated from. photo_latent (B,C,h,w); photo_rays (B,6,h,w); target_rays
    (B,K,6,h,w); body (B,K,CONDITION_CHANNELS,h,w) or None (template-free); photo_keep, body_keep (B,) bool;
    draft (B,K,C,h,w): the draft views' latents (draft generators only; None: no draft), draft_keep (B,) bool
    or None (all kept when there is a draft)."""

    photo_latent: Tensor
    photo_rays: Tensor
    target_rays: Tensor
    body: Tensor | None
    photo_keep: Tensor
    body_keep: Tensor
    draft: Tensor | None = None
    draft_keep: Tensor | None = None

    def with_photo(self, keep: bool) -> ViewConditions:
        return replace(self, photo_keep=torch.full_like(self.photo_keep, keep))

    def kept_draft(self) -> Tensor:
        """(B,) bool: the samples whose draft is used."""
        if self.draft is None:
            return torch.zeros_like(self.photo_keep)
        return torch.ones_like(self.photo_keep) if self.draft_keep is None else self.draft_keep

    def first(self, n: int = 1) -> ViewConditions:
        """The first ``n`` samples."""
        return ViewConditions(*(None if v is None else v[:n] for v in (getattr(self, f.name) for f in fields(self))))

    @staticmethod
    def cat(items: list[ViewConditions]) -> ViewConditions:
        body = None if any(c.body is None for c in items) else torch.cat([c.body for c in items])
        drafted = [c.draft is not None for c in items]
        if any(drafted) and not all(drafted):
            raise ValueError("ViewConditions.cat: some items have a draft and some do not")
        draft = torch.cat([c.draft for c in items]) if all(drafted) else None
        draft_keep = torch.cat([c.kept_draft() for c in items]) if all(drafted) else None
        return ViewConditions(*(torch.cat([getattr(c, k) for c in items]) for k in ("photo_latent", "photo_rays", "target_rays")),
                              body, torch.cat([c.photo_keep for c in items]), torch.cat([c.body_keep for c in items]), draft, draft_keep)


def repatch_weights(state: dict[str, Tensor], old_patch: int, new_patch: int, latent_size: int) -> dict[str, Tensor]:
    """A generator's weights for a finer token grid (``new_patch`` dividing ``old_patch``): each old token
    becomes k x k tokens (k = old / new). The patch convs sum their kernel over the k x k sub-blocks (a latent
    constant over an old patch gives every new token the old token), the position embedding is repeated
    (nearest), the output layer averages the sub-blocks' predictions. On inputs constant over old patches the
    new model computes the old one's velocities averaged over each patch (attention over k^2 identical keys
    is attention over one), so fine-token training starts from the coarse model."""
    if old_patch % new_patch:
        raise ValueError(f"repatch: patch size {new_patch} does not divide {old_patch}")
    k, p = old_patch // new_patch, new_patch
    state, grid = dict(state), latent_size // old_patch
    for name in ("target_embed.weight", "photo_embed.weight"):
        w = state[name]
        state[name] = w.reshape(*w.shape[:2], k, p, k, p).sum((2, 4))
    pos = state["pos_embed"].reshape(1, grid, grid, -1)
    state["pos_embed"] = pos.repeat_interleave(k, 1).repeat_interleave(k, 2).reshape(1, (grid * k) ** 2, -1)
    w, b = state["out.weight"], state["out.bias"]
    C = w.shape[0] // old_patch**2
    state["out.weight"] = w.reshape(k, p, k, p, C, -1).mean((0, 2)).reshape(p * p * C, -1)
    state["out.bias"] = b.reshape(k, p, k, p, C).mean((0, 2)).reshape(-1)
    return state


def time_features(t: Tensor, n: int = TIME_FREQS) -> Tensor:
    """t (B,) in [0, 1] -> (B, n) sinusoidal features."""
    freqs = torch.exp(-math.log(10000.0) * torch.arange(n // 2, device=t.device, dtype=torch.float32) / (n // 2))
    angles = (t.float() * TIME_SCALE)[:, None] * freqs
    return torch.cat([angles.cos(), angles.sin()], -1)


class DiTBlock(nn.Module):
    """Pre-norm self-attention + MLP, each modulated (shift, scale, gate) by the time embedding; gates start at 0."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim, elementwise_affine=False), Attention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim, elementwise_affine=False), MLP(dim, mlp_ratio)
        self.modulation = nn.Linear(dim, 6 * dim)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        """x (B,N,D); c (B,D) the time embedding."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(F.silu(c))[:, None].chunk(6, dim=-1)
        x = x + gate1 * self.attn(self.norm1(x) * (1 + scale1) + shift1)
        return x + gate2 * self.mlp(self.norm2(x) * (1 + scale2) + shift2)


@register
class NovelViewGenerator(PretrainedModel):
    """Holds its frozen autoencoder (``autoencoder.*``), so one directory encodes, generates and decodes."""

    model_type = "humansplat-generator"
    config_class = GeneratorConfig

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.config = c = config
        C, p = c.autoencoder.latent_channels, c.patch_size
        self.autoencoder = Autoencoder(c.autoencoder).requires_grad_(False)
        L = (c.latent_size // p) ** 2
        self.target_embed = nn.Conv2d(c.target_channels, c.dim, p, stride=p)  # the draft's channels, if any, last
        self.photo_embed = nn.Conv2d(C + RAY_CHANNELS, c.dim, p, stride=p)
        self.pos_embed = nn.Parameter(torch.randn(1, L, c.dim) * 0.02)
        self.role_embed = nn.Parameter(torch.randn(2, c.dim) * 0.02)  # 0: the photo, 1: a target view
        self.null_photo = nn.Parameter(torch.randn(c.dim) * 0.02)  # replaces the photo's content (CFG)
        self.no_body = nn.Parameter(torch.randn(c.dim) * 0.02)  # marks template-free target views
        if c.draft:
            self.no_draft = nn.Parameter(torch.randn(c.dim) * 0.02)  # marks target views without a draft
        self.time_embed = nn.Sequential(nn.Linear(TIME_FREQS, c.dim), nn.SiLU(), nn.Linear(c.dim, c.dim))
        self.blocks = nn.ModuleList(DiTBlock(c.dim, c.heads, c.mlp_ratio) for _ in range(c.depth))
        self.final_norm = nn.LayerNorm(c.dim, elementwise_affine=False)
        self.final_modulation = nn.Linear(c.dim, 2 * c.dim)
        self.out = nn.Linear(c.dim, p * p * C)
        for layer in (self.final_modulation, self.out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    # ---- latent space ----
    def load_autoencoder(self, autoencoder: Autoencoder) -> None:
        """Take the trained, frozen autoencoder (weights and latent scale)."""
        self.autoencoder.load_state_dict(autoencoder.state_dict())
        self.config.autoencoder.scale = self.autoencoder.config.scale = float(autoencoder.config.scale)

    def resize(self, images: Tensor) -> Tensor:
        """(N,3,H,W) in [0,1] -> (N,3,S,S), S = image_size."""
        s = self.config.image_size
        if images.shape[-2:] == (s, s):
            return images
        return F.interpolate(images.float(), size=(s, s), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        """(N,3,H,W) in [0,1], any square size -> scaled latents (N,C,h,w)."""
        return self.autoencoder.encode(self.resize(images))

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        """(N,C,h,w) -> images (N,3,S,S) in [0,1]."""
        return self.autoencoder.decode(latents).clamp(0, 1)

    # ---- the network ----
    def forward(self, x_t: Tensor, t: Tensor, cond: ViewConditions) -> Tensor:
        """Velocity of the target latents. x_t (B,K,C,h,w); t (B,) in [0, 1] -> (B,K,C,h,w)."""
        c = self.config
        B, K, C, h, w = x_t.shape
        body = cond.body if cond.body is not None else x_t.new_zeros(B, K, CONDITION_CHANNELS, h, w)
        body = body * cond.body_keep.to(body.dtype)[:, None, None, None, None]
        parts = [x_t, cond.target_rays.to(x_t.dtype), body.to(x_t.dtype)]
        if c.draft:
            draft_keep = cond.kept_draft()
            draft = cond.draft if cond.draft is not None else torch.zeros_like(x_t)
            parts.append(draft.to(x_t.dtype) * draft_keep.to(x_t.dtype)[:, None, None, None, None])
        elif cond.draft is not None:
            raise ValueError("NovelViewGenerator: this generator was not trained with drafts (config.draft is false)")
        target = self.target_embed(torch.cat(parts, 2).flatten(0, 1)).flatten(2).transpose(1, 2).unflatten(0, (B, K))  # (B,K,L,D)
        photo_latent = cond.photo_latent * cond.photo_keep.to(cond.photo_latent.dtype)[:, None, None, None]
        photo = self.photo_embed(torch.cat([photo_latent, cond.photo_rays.to(photo_latent.dtype)], 1)).flatten(2).transpose(1, 2)
        photo = photo + (~cond.photo_keep).to(photo.dtype)[:, None, None] * self.null_photo
        target = target + (~cond.body_keep).to(target.dtype)[:, None, None, None] * self.no_body
        if c.draft:
            target = target + (~draft_keep).to(target.dtype)[:, None, None, None] * self.no_draft
        tokens = torch.cat([(photo + self.role_embed[0])[:, None], target + self.role_embed[1]], 1) + self.pos_embed[:, None]
        L = tokens.shape[2]
        x = tokens.flatten(1, 2)  # (B, (K+1) L, D)
        emb = self.time_embed(time_features(t).to(x.dtype))
        for block in self.blocks:
            x = block(x, emb)
        shift, scale = self.final_modulation(F.silu(emb))[:, None].chunk(2, dim=-1)
        x = self.out(self.final_norm(x) * (1 + scale) + shift)[:, L:]  # the target tokens
        p = c.patch_size
        x = x.reshape(B, K, h // p, w // p, p, p, C).permute(0, 1, 6, 2, 4, 3, 5)
        return x.reshape(B, K, C, h, w)

    def training_loss(self, x0: Tensor, cond: ViewConditions) -> tuple[Tensor, dict[str, Tensor]]:
        """Flow-matching loss on clean target latents x0 (B,K,C,h,w); the photo / body dropouts of the config
        are drawn here (torch's global RNG on x0's device), on top of the keeps already in ``cond`` (and the
        draft dropout, for draft models)."""
        c = self.config
        B, dev = x0.shape[0], x0.device
        t = torch.sigmoid(torch.randn(B, device=dev))  # logit-normal: most weight in the middle
        noise = torch.randn_like(x0)
        cond = replace(cond, photo_keep=cond.photo_keep & (torch.rand(B, device=dev) >= c.photo_dropout),
                       body_keep=cond.body_keep & (torch.rand(B, device=dev) >= c.body_dropout))
        if c.draft:
            cond = replace(cond, draft_keep=cond.kept_draft() & (torch.rand(B, device=dev) >= c.draft_dropout))
            t = torch.where(cond.kept_draft(), t * c.draft_time_max, t)
        x_t = (1 - t)[:, None, None, None, None] * x0 + t[:, None, None, None, None] * noise
        v = self(x_t, t, cond)
        loss = F.mse_loss(v.float(), (noise - x0).float())
        logs = {"loss/total": loss.detach(), "loss/flow": loss.detach(), "train/photo_kept": cond.photo_keep.float().mean(),
                "train/body_kept": cond.body_keep.float().mean()}
        if c.draft:
            logs["train/draft_kept"] = cond.kept_draft().float().mean()
        return loss, logs

    @torch.no_grad()
    def sample(self, cond: ViewConditions, noise: Tensor, steps: int | None = None, guidance: float | None = None) -> Tensor:
        """Target latents (B,K,C,h,w) from noise of that shape: ``steps`` Euler steps from t = 1 to 0, guided
        on the photo (guidance 1: a single conditional pass per step). Deterministic given the noise. With a
        draft and ``draft_start`` < 1 the steps run from that time, starting at the draft noised to it."""
        c = self.config
        steps = steps or c.sample_steps
        guidance = c.guidance if guidance is None else guidance
        guided = guidance != 1.0
        both = ViewConditions.cat([cond, cond.with_photo(False)]) if guided else cond
        start = c.draft_start if cond.draft is not None else 1.0
        x = noise if start >= 1.0 else (1 - start) * cond.draft.to(noise) + start * noise
        times = torch.linspace(start, 0.0, steps + 1, device=noise.device)
        for i in range(steps):
            t = times[i].expand(x.shape[0])
            if guided:
                v_cond, v_free = self(torch.cat([x, x]), torch.cat([t, t]), both).chunk(2)
                v = v_free + guidance * (v_cond - v_free)
            else:
                v = self(x, t, both)
            x = x + (times[i + 1] - times[i]) * v.to(x.dtype)
        return x
