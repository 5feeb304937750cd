"""The latent reconstruction transformer: input views + 3D anchors -> 3D Gaussians with semantic features.

Data flow (HumanSplat's reconstructor, with the body prior actually wired in):
1. each input view -> frozen VAE latent (1/8) + Plücker rays at latent resolution -> patch tokens;
2. 3D anchor tokens: subsampled posed body vertices (part-label embedding + Fourier xyz), or template-free
   points filling a body-sized cylinder, or the input silhouette inflated into a volume (``anchors``);
3. ``depth`` interaction blocks: intra-view self-attention; projection-aware attention (each anchor attends
   only to a ``window x window`` patch around its projection in every view); image tokens cross-attend to
   the anchors; anchor self-attention. Cross-view information flows through the anchors;
4. per-pixel Gaussians (visible surface) + per-anchor Gaussians (unseen sides), see ``heads``.

Anchors (``models.anchors``) live in the world frame of the cameras, with the body roughly centred at the origin, +Y up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from humansplat.body.parts import NUM_CLASSES
from humansplat.cameras import Cameras, plucker_rays, project_points
from humansplat.gaussians import Gaussians
from humansplat.models.attention import CrossBlock, SelfBlock, WindowCrossAttention
from humansplat.models.autoencoder import (
    AutoencoderConfig,
    build_encoder,
    encode_mean,
)
from humansplat.models.heads import (
    BASE_CHANNELS,
    RGB_START,
    AnchorHead,
    PixelHead,
    PixelSkip,
    anchor_depth_map,
    fourier_embed,
    zero_rgb_rows,
)
from humansplat.models.anchors import Anchors, anchor_color_prior, farthest_point_indices, template_free_anchors
from humansplat.models.base import PretrainedModel, load_checked, register

@dataclass
class ReconstructorConfig:
    image_size: int = 256  # inputs are resized to this (square) size
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    patch_size: int = 2  # in latent cells
    dim: int = 256
    heads: int = 8
    depth: int = 4
    mlp_ratio: float = 4.0
    window: int = 3  # projection-aware attention window in tokens (1 = projection only)
    anchor_mode: str = "body"  # "body" (structure prior) or "template_free"
    num_anchors: int = 1024
    gaussians_per_anchor: int = 8
    anchor_offset: float = 0.08  # metres
    gaussian_stride: int = 2  # per-pixel Gaussian grid = pixel_size / stride per view
    pixel_size: int = 0  # side of the input the per-pixel path sees (skip CNN, colour prior, Gaussian grid); 0 = image_size.
    # A multiple of image_size: the transformer still sees image_size, the pixel head's hidden map is upsampled to it
    pixel_skip_channels: int = 32  # 0 = pure latent input to the pixel head
    photo_colors: bool = False  # Gaussian colours are logit residuals on the photo's: per-pixel ones on their pixel's,
    # anchor ones on the (blurred) photo where the anchor projects (front and back of a garment share a colour)
    head_hidden: int = 32
    feature_dim: int = 8
    num_classes: int = NUM_CLASSES
    fourier_freqs: int = 6
    depth_reference: str = "centroid"  # pixel depth around: "surface" (anchors' front, per pixel) or "centroid" (first weights)
    depth_range: float = 1.0  # metres around the reference depth
    pixel_offset: float = 0.03
    pixel_scale_range: tuple[float, float] = (1e-3, 0.05)
    anchor_scale_range: tuple[float, float] = (2e-3, 0.08)
    template_free_height: float = 1.7  # assumed subject height (m) placing template-free anchors
    template_free_shape: str = "cylinder"  # template-free anchors: "cylinder" (weights up to v5) or "silhouette" (the inflated
    # matte; v6 trains and uses it: no flat cut-outs, docs/reconstruct.md)
    semantic_shift: tuple[float, ...] = ()  # added to the part logits at inference (one per class; () = none): the bias
    # recalibration that undoes the training loss's class weights and balance (``humansplat.train.calibrate``)
    anchor_prior_occlusion: bool = False  # with photo_colors: an anchor hidden behind nearer ones takes the mean seen colour
    # of its part (template-free: of all seen anchors), not the colour of what hides it (a beard on the back of the head);
    # tried on v7, off: it spreads a beard over the whole back instead (docs/model.md, v7)

    def __post_init__(self) -> None:
        if self.anchor_mode not in ("body", "template_free"):
            raise ValueError(f"anchor_mode must be 'body' or 'template_free', got {self.anchor_mode!r}")
        token_px = self.autoencoder.downsample * self.patch_size
        if self.image_size % token_px or token_px % self.gaussian_stride:
            raise ValueError(f"image_size {self.image_size} / token size {token_px} / gaussian_stride {self.gaussian_stride} do not divide")
        if self.depth_reference not in ("surface", "centroid"):
            raise ValueError(f"depth_reference must be 'surface' or 'centroid', got {self.depth_reference!r}")
        if self.window < 1:
            raise ValueError("window must be >= 1")
        if self.semantic_shift and len(self.semantic_shift) != self.num_classes:
            raise ValueError(f"semantic_shift has {len(self.semantic_shift)} values for {self.num_classes} classes")
        if self.pixel_size and (self.pixel_size < self.image_size or self.pixel_size % self.image_size):
            raise ValueError(f"pixel_size {self.pixel_size} must be 0 or a multiple of image_size {self.image_size}")

    @property
    def pixel_input(self) -> int:
        """Side of the input the per-pixel path sees."""
        return self.pixel_size or self.image_size

    @property
    def pixel_grid(self) -> int:
        """Side of each input view's per-pixel Gaussian grid; those Gaussians come first, view by view."""
        return self.pixel_input // self.gaussian_stride


class InteractionBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, window: int):
        super().__init__()
        self.image_self = SelfBlock(dim, heads, mlp_ratio)
        self.anchor_from_image = WindowCrossAttention(dim, heads, window)
        self.image_from_anchor = CrossBlock(dim, heads)
        self.anchor_self = SelfBlock(dim, heads, mlp_ratio)

    def forward(self, img: Tensor, anc: Tensor, uv: Tensor, visible: Tensor, grid: tuple[int, int]) -> tuple[Tensor, Tensor]:
        B, V, L, D = img.shape
        img = self.image_self(img.reshape(B * V, L, D)).reshape(B, V, L, D)
        anc = self.anchor_from_image(anc, img, uv, visible, grid)
        img = self.image_from_anchor(img.reshape(B, V * L, D), anc).reshape(B, V, L, D)
        return img, self.anchor_self(anc)


@register
class Reconstructor(PretrainedModel):
    model_type = "humansplat-reconstructor"
    config_class = ReconstructorConfig

    def __init__(self, config: ReconstructorConfig):
        super().__init__()
        self.config = c = config
        ae = c.autoencoder
        self.encoder = build_encoder(ae).requires_grad_(False)  # frozen, trained separately
        self.token_px = ae.downsample * c.patch_size
        self.grid = (c.image_size // self.token_px,) * 2
        L = self.grid[0] * self.grid[1]
        self.patch_embed = nn.Conv2d(ae.latent_channels + 6, c.dim, c.patch_size, stride=c.patch_size)
        self.pos_embed = nn.Parameter(torch.randn(1, L, c.dim) * 0.02)
        self.view_embed = nn.Parameter(torch.randn(2, c.dim) * 0.02)  # 0: the photo, 1: an extra view
        self.label_embed = nn.Embedding(c.num_classes + 1, c.dim)
        nn.init.normal_(self.label_embed.weight, std=0.02)
        self.anchor_embed = nn.Sequential(nn.Linear(3 + 6 * c.fourier_freqs, c.dim), nn.SiLU(), nn.Linear(c.dim, c.dim))
        self.blocks = nn.ModuleList(InteractionBlock(c.dim, c.heads, c.mlp_ratio, c.window) for _ in range(c.depth))
        self.pixel_skip = PixelSkip(c.gaussian_stride, c.pixel_skip_channels) if c.pixel_skip_channels else None
        self.pixel_head = PixelHead(c.dim, self.token_px // c.gaussian_stride, c.pixel_skip_channels, c.feature_dim, c.head_hidden,
                                    zoom=c.pixel_input // c.image_size)
        self.anchor_head = AnchorHead(c.dim, c.gaussians_per_anchor, c.feature_dim)
        self.semantic_decoder = nn.Linear(c.feature_dim, c.num_classes)
        self.register_buffer("semantic_shift", torch.tensor(c.semantic_shift or [0.0] * c.num_classes), persistent=False)
        # fixed subsample of the body template (set once by ``set_anchor_template``; saved with the weights)
        self.register_buffer("anchor_index", torch.full((c.num_anchors,), -1, dtype=torch.long))

    # ---- anchors ----
    def set_anchor_template(self, template_vertices: Tensor) -> None:
        """Fix which body vertices become anchors: a farthest-point subsample of the rest-pose template."""
        self.anchor_index.copy_(farthest_point_indices(template_vertices.detach().cpu(), self.config.num_anchors))

    def body_anchors(self, vertices: Tensor, vertex_labels: Tensor) -> Anchors:
        """Anchors from posed body vertices (B, Nv, 3) and per-vertex Sapiens part ids (Nv,)."""
        if bool((self.anchor_index < 0).any()):
            raise RuntimeError("Reconstructor: anchor_index is unset; call set_anchor_template(template_vertices) first")
        if int(self.anchor_index.max()) >= vertices.shape[1]:
            raise ValueError(f"body has {vertices.shape[1]} vertices but the anchor subsample indexes up to {int(self.anchor_index.max())}")
        idx = self.anchor_index.to(vertices.device)
        labels = vertex_labels.to(vertices.device).long()[idx].expand(vertices.shape[0], -1)
        return Anchors(vertices[:, idx].float(), labels)

    def template_free_anchors(self, cameras: Cameras, masks: Tensor | None = None, height: float | Tensor | None = None) -> Anchors:
        """Template-free anchors placed from the input view (cameras batch (B,)) and its silhouette.
        ``height``: the real height in metres of what the silhouette shows, one or (B,) (default: a whole 1.7 m
        person; e.g. ~0.3 for a head-only crop). One view cannot tell scale: a wrong height misplaces them."""
        c = self.config
        return template_free_anchors(cameras, masks, c.num_anchors, c.num_classes, c.template_free_height if height is None else height,
                                     c.template_free_shape)

    def make_anchors(self, cameras: Cameras, masks: Tensor | None = None, body_vertices: Tensor | None = None,
                     vertex_labels: Tensor | None = None, height: float | None = None) -> Anchors:
        """The anchors this model was trained for: body anchors when it uses the body prior and a body is
        given, template-free ones otherwise (no body, or an untrustworthy fit). ``cameras``: input view (B,)."""
        if self.config.anchor_mode == "body" and body_vertices is not None:
            if vertex_labels is None:
                raise ValueError("make_anchors: body_vertices need vertex_labels")
            return self.body_anchors(body_vertices, vertex_labels)
        return self.template_free_anchors(cameras, masks, height)

    # ---- forward ----
    def prepare_inputs(self, images: Tensor, cameras: Cameras, size: int | None = None) -> tuple[Tensor, Cameras]:
        """Resize images (B,V,3,H,W) in [0,1] and their cameras to ``size`` (default: the model's input size)."""
        s = size or self.config.image_size
        if images.dim() != 5 or images.shape[2] != 3:
            raise ValueError(f"images must be (B, V, 3, H, W), got {tuple(images.shape)}")
        if tuple(cameras.batch_shape) != tuple(images.shape[:2]):
            raise ValueError(f"cameras batch {tuple(cameras.batch_shape)} does not match images {tuple(images.shape[:2])}")
        if (cameras.height, cameras.width) != tuple(images.shape[-2:]):
            raise ValueError(f"cameras are {cameras.width}x{cameras.height} but images {images.shape[-1]}x{images.shape[-2]}")
        cameras = cameras.to(images.device, torch.float32)
        if images.shape[-2:] != (s, s):
            B, V = images.shape[:2]
            images = F.interpolate(images.flatten(0, 1).float(), size=(s, s), mode="bilinear", antialias=True, align_corners=False)
            images = images.clamp(0, 1).unflatten(0, (B, V))
            cameras = cameras.resized(s, s)
        return images, cameras

    def forward(self, images: Tensor, cameras: Cameras, anchors: Anchors, prior_images: Tensor | None = None) -> Gaussians:
        """images (B,V,3,H,W) in [0,1] on a white background, view 0 the photo; cameras (B,V); anchors for B.
        ``prior_images`` (like ``images``): what the ``photo_colors`` prior reads instead of ``images`` (training
        feeds the network a degraded photo and the prior the clean one). Returns Gaussians (B, N),
        N = V * pixel_grid^2 + A * gaussians_per_anchor (``pixel_grid`` = pixel_size / gaussian_stride)."""
        c = self.config
        if prior_images is not None and prior_images.shape != images.shape:
            raise ValueError(f"prior_images {tuple(prior_images.shape)} must match images {tuple(images.shape)}")
        prior_images = None if prior_images is None or not c.photo_colors else self.prepare_inputs(prior_images, cameras, c.pixel_input)[0]
        images_in, cameras_in = images, cameras
        images, cameras = self.prepare_inputs(images, cameras)
        fine, fine_cameras = (images, cameras) if c.pixel_input == c.image_size else self.prepare_inputs(images_in, cameras_in, c.pixel_input)
        B, V = images.shape[:2]
        flat = images.flatten(0, 1)
        with torch.no_grad():
            latents = encode_mean(self.encoder, flat)[0] * c.autoencoder.scale
        gh, gw = latents.shape[-2:]
        fp32 = torch.autocast(images.device.type, enabled=False)  # camera geometry stays in float32
        with fp32:
            rays = plucker_rays(cameras, gh, gw).flatten(0, 1)
        x = self.patch_embed(torch.cat([latents, rays.to(latents.dtype)], 1))  # (BV,D,h,w)
        h, w = x.shape[-2:]
        role = torch.ones(V, dtype=torch.long, device=x.device)
        role[0] = 0
        tokens = (x.flatten(2).transpose(1, 2) + self.pos_embed).unflatten(0, (B, V)) + self.view_embed[role][None, :, None]

        xyz = anchors.xyz.to(images.device, torch.float32)
        anc = self.anchor_embed(fourier_embed(xyz, c.fourier_freqs)) + self.label_embed(anchors.labels.to(images.device))
        with fp32:
            uv, z = project_points(xyz[:, None], cameras)  # (B,V,A,2), (B,V,A)
        s = c.image_size
        visible = (z > 0.05) & (uv >= 0).all(-1) & (uv[..., 0] < s) & (uv[..., 1] < s)
        uv_tokens = uv / self.token_px
        for block in self.blocks:
            tokens, anc = block(tokens, anc, uv_tokens, visible, (h, w))

        skip = self.pixel_skip(fine.flatten(0, 1)) if self.pixel_skip is not None else None
        raw = self.pixel_head(tokens.reshape(B * V, h, w, -1), skip)
        raw = raw.unflatten(0, (B, V))
        log_range = lambda r: (math.log(r[0]), math.log(r[1]))
        pixel_prior = anchor_prior = None
        if c.photo_colors:
            seen = fine if prior_images is None else prior_images
            pixel_prior = F.avg_pool2d(seen.flatten(0, 1).float(), c.gaussian_stride).unflatten(0, (B, V))
            hidden_from = (z[:, 0], anchors.labels.to(images.device), c.num_classes + 1) if c.anchor_prior_occlusion else ()
            anchor_prior = anchor_color_prior(seen[:, 0], uv[:, 0] * (c.pixel_input / s), visible[:, 0], *hidden_from)
        anchor = self.anchor_head.gaussians(anc, xyz, c.anchor_offset, log_range(c.anchor_scale_range), anchor_prior)
        with fp32:
            z_ref = project_points(xyz.mean(1, keepdim=True)[:, None], cameras)[1][..., 0]  # (B,V)
            if c.depth_reference == "surface":
                z_ref = anchor_depth_map(uv, z, visible, (h, w), (s, s), tuple(raw.shape[-2:]), z_ref)
            pixel = self.pixel_head.gaussians(raw, fine_cameras, z_ref, c.depth_range, c.pixel_offset, log_range(c.pixel_scale_range),
                                              pixel_prior)
            anchor = anchor._map(lambda t: t.float())
        return Gaussians.cat([pixel, anchor])

    def colors_at_prior(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """A copy of a state dict of this architecture with the heads' RGB outputs zeroed, so every Gaussian
        starts at its ``photo_colors`` prior (a warm start from weights whose RGB outputs are absolute colours)."""
        if not self.config.photo_colors:
            raise ValueError("colors_at_prior: the model has no colour prior (photo_colors is off)")
        state = dict(state)
        for name, group, first in (("pixel_head.out", self.pixel_head.out_channels, 1 + RGB_START),
                                   ("anchor_head.out", BASE_CHANNELS + self.config.feature_dim, RGB_START)):
            state[f"{name}.weight"], state[f"{name}.bias"] = zero_rgb_rows(state[f"{name}.weight"], state[f"{name}.bias"], group, first)
        return state

    def set_semantic_shift(self, shift: tuple[float, ...]) -> None:
        """Record a part-logit shift (``config.semantic_shift``; see ``humansplat.train.calibrate``)."""
        self.config = replace(self.config, semantic_shift=tuple(float(v) for v in shift))  # checks the length
        self.semantic_shift.copy_(torch.tensor(self.config.semantic_shift))

    def decode_semantics(self, features: Tensor, calibrated: bool = True) -> Tensor:
        """Rendered (or per-Gaussian) semantic features (..., F) -> part logits (..., num_classes); ``calibrated``
        adds ``config.semantic_shift`` (what inference wants; the training loss takes the raw logits)."""
        logits = self.semantic_decoder(features.to(self.semantic_decoder.weight.dtype))
        return logits + self.semantic_shift.to(logits.dtype) if calibrated else logits

    # ---- files ----
    def load_encoder(self, autoencoder_state: dict[str, Tensor], scale: float) -> None:
        """Take the frozen encoder (and its latent scale) from a trained autoencoder's state dict."""
        enc = {k[len("encoder."):]: v for k, v in autoencoder_state.items() if k.startswith("encoder.")}
        load_checked(self.encoder, enc, "autoencoder encoder")
        self.config.autoencoder.scale = float(scale)
