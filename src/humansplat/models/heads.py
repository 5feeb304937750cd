"""Output heads: raw network channels -> 3D Gaussians.

Two Gaussian sources, concatenated by the model:
- ``PixelHead``: per-pixel Gaussians of each input view on a grid at 1/``stride`` of the input size. The centre
  is the pixel ray at camera-z ``z_ref + depth_range * tanh(d)`` plus a small bounded 3D offset, where
  ``z_ref`` is a per-pixel reference depth: the anchors' front surface in that view (``anchor_depth_map``)
  or, for older weights, the anchors' centroid. They cover what the views see.
- ``AnchorHead``: ``k`` Gaussians per 3D anchor token, within ``anchor_offset`` metres of the anchor. They cover
  the sides no input view sees (the back of a person photographed from the front).
Every Gaussian carries RGB (SH degree 0) and ``feature_dim`` semantic feature channels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from humansplat.cameras import Cameras, unproject_depth
from humansplat.gaussians import Gaussians, rgb_to_sh

# raw channel layout shared by both heads (pixel head adds one depth channel in front)
OFFSET, QUAT, SCALE, OPACITY, RGB = 3, 4, 3, 1, 3
BASE_CHANNELS = OFFSET + QUAT + SCALE + OPACITY + RGB
RGB_START = OFFSET + QUAT + SCALE + OPACITY  # first RGB channel of a group (after the pixel head's depth channel)
PRIOR_MIN = 0.01  # colour priors are clamped to [PRIOR_MIN, 1 - PRIOR_MIN] before their logit


def _init_out(layer: nn.Module, feature_dim: int, opacity_bias: float, scale_bias: float, depth: bool) -> None:
    """Small weights, biases giving faint, mid-sized, grey, identity-rotation Gaussians at the reference depth."""
    nn.init.normal_(layer.weight, std=1e-3)
    b = torch.zeros(int(depth) + BASE_CHANNELS + feature_dim)  # one group; the bias holds k groups
    i = int(depth) + OFFSET
    b[i] = 1.0  # quaternion w
    b[i + QUAT : i + QUAT + SCALE] = scale_bias
    b[i + QUAT + SCALE] = opacity_bias
    with torch.no_grad():
        layer.bias.copy_(b.repeat(layer.bias.shape[0] // b.shape[0]))


def _activate(raw: Tensor, means: Tensor, log_scale_range: tuple[float, float], feature_dim: int,
              rgb_prior: Tensor | None = None) -> Gaussians:
    """Raw (..., BASE_CHANNELS + F) channels (offset already applied to ``means``) -> Gaussians. ``rgb_prior``
    (broadcast to (..., 3)) in (0, 1): the colour the raw RGB channels are a logit residual on (0.5 without)."""
    o = OFFSET
    quats = raw[..., o : o + QUAT]
    lo, hi = log_scale_range
    log_scales = lo + (hi - lo) * torch.sigmoid(raw[..., o + QUAT : o + QUAT + SCALE])
    opacity = raw[..., o + QUAT + SCALE]
    rgb_logit = raw[..., RGB_START : RGB_START + RGB]
    if rgb_prior is not None:
        rgb_logit = rgb_logit + torch.logit(rgb_prior.float().clamp(PRIOR_MIN, 1 - PRIOR_MIN))
    rgb = torch.sigmoid(rgb_logit)
    feats = raw[..., BASE_CHANNELS : BASE_CHANNELS + feature_dim] if feature_dim else None
    return Gaussians(means=means, quats=quats, log_scales=log_scales, opacity_logits=opacity,
                     sh=rgb_to_sh(rgb)[..., None, :], features=feats)


class PixelHead(nn.Module):
    """Tokens (N, h, w, D) [+ pixel skip features] -> raw per-pixel channels (N, C, h*f*z, w*f*z): each token
    unpatched into f x f hidden cells, that map bilinearly upsampled ``zoom`` times (a per-pixel path at a
    higher resolution than the transformer's input, where the skip features bring the detail)."""

    def __init__(self, dim: int, upsample: int, skip_channels: int, feature_dim: int, hidden: int = 32, zoom: int = 1):
        super().__init__()
        self.upsample, self.feature_dim, self.zoom = upsample, feature_dim, zoom
        self.out_channels = 1 + BASE_CHANNELS + feature_dim
        self.norm = nn.LayerNorm(dim)
        self.unpatch = nn.Linear(dim, upsample * upsample * hidden)
        self.refine = nn.Sequential(
            nn.Conv2d(hidden + skip_channels, hidden, 3, padding=1), nn.SiLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.SiLU(),
        )
        self.out = nn.Conv2d(hidden, self.out_channels, 1)
        _init_out(self.out, feature_dim, opacity_bias=-2.0, scale_bias=0.0, depth=True)

    def unpatched(self, tokens: Tensor) -> Tensor:
        """Tokens (N, h, w, D) -> the hidden map at the Gaussian grid (N, hidden, h*f, w*f)."""
        x = self.unpatch(self.norm(tokens))  # (N,h,w,f*f*c)
        x = x.unflatten(-1, (self.upsample, self.upsample, -1))  # (N,h,w,fy,fx,c)
        x = x.permute(0, 5, 1, 3, 2, 4).flatten(4, 5).flatten(2, 3)  # (N,c,h*fy,w*fx)
        return x if self.zoom == 1 else F.interpolate(x, scale_factor=self.zoom, mode="bilinear", align_corners=False)

    def forward(self, tokens: Tensor, skip: Tensor | None) -> Tensor:
        x = self.unpatched(tokens)
        if skip is not None:
            x = torch.cat([x, skip.to(x.dtype)], 1)
        return self.out(self.refine(x))

    def gaussians(self, raw: Tensor, cameras: Cameras, z_ref: Tensor, depth_range: float, max_offset: float,
                  log_scale_range: tuple[float, float], rgb_prior: Tensor | None = None) -> Gaussians:
        """raw (B,V,C,Hg,Wg); cameras (B,V); z_ref (B,V) or per pixel (B,V,Hg,Wg); rgb_prior (B,V,3,Hg,Wg) or
        None -> Gaussians (B, V*Hg*Wg)."""
        B, V, _, Hg, Wg = raw.shape
        if z_ref.dim() == 2:
            z_ref = z_ref[:, :, None, None].expand(B, V, Hg, Wg)
        raw = raw.float().permute(0, 1, 3, 4, 2)  # (B,V,Hg,Wg,C)
        z = z_ref + depth_range * torch.tanh(raw[..., 0])  # camera-z depth per pixel, (B,V,Hg,Wg)
        means = unproject_depth(cameras, z.clamp_min(0.05)) + max_offset * torch.tanh(raw[..., 1 : 1 + OFFSET])
        prior = None if rgb_prior is None else rgb_prior.permute(0, 1, 3, 4, 2)
        g = _activate(raw[..., 1:], means, log_scale_range, self.feature_dim, prior)
        return g._map(lambda t: t.reshape(B, V * Hg * Wg, *t.shape[4:]))


class AnchorHead(nn.Module):
    """Anchor tokens (B, A, D) -> k Gaussians per anchor, within ``max_offset`` of the anchor."""

    def __init__(self, dim: int, per_anchor: int, feature_dim: int):
        super().__init__()
        self.k, self.feature_dim = per_anchor, feature_dim
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU())
        self.out = nn.Linear(dim, per_anchor * (BASE_CHANNELS + feature_dim))
        _init_out(self.out, feature_dim, opacity_bias=-2.0, scale_bias=0.0, depth=False)
        with torch.no_grad():  # spread the k children around the anchor from the start
            c = BASE_CHANNELS + feature_dim
            offsets = torch.randn(per_anchor, 3, generator=torch.Generator().manual_seed(0)) * 0.5
            for j in range(per_anchor):
                self.out.bias[j * c : j * c + 3] = offsets[j]

    def gaussians(self, tokens: Tensor, xyz: Tensor, max_offset: float, log_scale_range: tuple[float, float],
                  rgb_prior: Tensor | None = None) -> Gaussians:
        """tokens (B,A,D); xyz (B,A,3); rgb_prior (B,A,3) or None, shared by an anchor's k Gaussians."""
        B, A, _ = tokens.shape
        raw = self.out(self.mlp(self.norm(tokens))).float().reshape(B, A, self.k, -1)
        means = xyz[:, :, None] + max_offset * torch.tanh(raw[..., :OFFSET])
        g = _activate(raw, means, log_scale_range, self.feature_dim, None if rgb_prior is None else rgb_prior[:, :, None])
        return g._map(lambda t: t.reshape(B, A * self.k, *t.shape[3:]))


class PixelSkip(nn.Module):
    """A shallow CNN on the RGB input at the Gaussian grid resolution: the latent is lossy, fine colour is not.
    Stride 1 and 2 share their layers' shapes (stride 1 runs the first conv densely), so weights move between them."""

    def __init__(self, stride: int, channels: int):
        super().__init__()
        layers: list[nn.Module] = []
        cin, halvings = 3, int(math.log2(stride))
        for i in range(max(1, halvings)):
            layers += [nn.Conv2d(cin, channels, 3, stride=2 if i < halvings else 1, padding=1), nn.SiLU()]
            cin = channels
        layers += [nn.Conv2d(cin, channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images * 2 - 1)


def upsample_unpatch(weight: Tensor, bias: Tensor, factor: int, ratio: int) -> tuple[Tensor, Tensor]:
    """The ``PixelHead.unpatch`` layer (weight (f*f*c, D), bias (f*f*c,), f = ``factor``) for a Gaussian grid
    ``ratio`` times finer (f * ratio): every new sub-pixel row copies the row of the old sub-pixel it lies in,
    so the hidden map starts as the old one, nearest-upsampled (a warm start from a coarser ``gaussian_stride``)."""
    hidden = weight.shape[0] // (factor * factor)
    f = factor * ratio
    src = (torch.arange(f)[:, None] // ratio * factor + torch.arange(f)[None] // ratio).flatten()  # old sub-pixel per new
    rows = (src[:, None] * hidden + torch.arange(hidden)[None]).flatten()
    return weight[rows].clone(), bias[rows].clone()


def zero_rgb_rows(weight: Tensor, bias: Tensor, group_channels: int, first_rgb: int) -> tuple[Tensor, Tensor]:
    """Copies of an output layer's weight (out, ...) and bias (out,) with the RGB outputs (channels
    ``first_rgb`` .. +3 of every group of ``group_channels``) zeroed: with a colour prior, Gaussians then
    start exactly at the prior's colours."""
    weight, bias = weight.clone(), bias.clone()
    for start in range(first_rgb, weight.shape[0], group_channels):
        weight[start : start + RGB] = 0
        bias[start : start + RGB] = 0
    return weight, bias


def anchor_depth_map(uv: Tensor, z: Tensor, visible: Tensor, cells: tuple[int, int], image_hw: tuple[int, int],
                     out_hw: tuple[int, int], fallback: Tensor, fill_steps: int = 3) -> Tensor:
    """Per-pixel reference depth from the anchors' front surface: the nearest anchor camera-z in each of
    ``cells`` (h, w) screen cells, holes filled from neighbouring cells (``fill_steps`` 3x3 passes) and then
    with ``fallback``, bilinearly upsampled to ``out_hw``. No host syncs.

    uv (B,V,A,2) pixels in an image of ``image_hw``; z (B,V,A) camera depth; visible (B,V,A) bool;
    fallback (B,V) depth for cells no anchor reaches. Returns (B,V,*out_hw)."""
    B, V, A = z.shape
    h, w = cells
    cx = (uv[..., 0] * (w / image_hw[1])).floor().long().clamp(0, w - 1)
    cy = (uv[..., 1] * (h / image_hw[0])).floor().long().clamp(0, h - 1)
    index = torch.where(visible, cy * w + cx, h * w)  # invisible anchors land in a spare cell
    far = torch.finfo(z.dtype).max
    near = torch.full((B, V, h * w + 1), far, dtype=z.dtype, device=z.device)
    near = near.scatter_reduce(-1, index, z, reduce="amin")[..., : h * w].reshape(B * V, 1, h, w)
    empty = near == far
    inv = torch.where(empty, 0.0, 1.0 / near.clamp_min(1e-3))  # max-pool of 1/z is a min-pool of z
    for _ in range(fill_steps):
        grown = F.max_pool2d(inv, 3, stride=1, padding=1)
        inv = torch.where(empty, grown, inv)
        empty = inv == 0
    depth = torch.where(empty, fallback.reshape(B * V, 1, 1, 1), 1.0 / inv.clamp_min(1e-6))
    depth = F.interpolate(depth, size=out_hw, mode="bilinear", align_corners=False)
    return depth.reshape(B, V, *out_hw)


def fourier_embed(x: Tensor, freqs: int) -> Tensor:
    """(..., 3) -> (..., 3 + 6 * freqs): x, sin and cos at octave frequencies (metres)."""
    scales = (2.0 ** torch.arange(freqs, device=x.device, dtype=x.dtype)) * math.pi
    xs = x[..., None] * scales  # (..., 3, F)
    return torch.cat([x, xs.sin().flatten(-2), xs.cos().flatten(-2)], -1)

