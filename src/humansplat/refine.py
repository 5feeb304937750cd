"""Per-instance refinement (GeneMAN's last stage, made fast): after the feed-forward pass, the Gaussians
on the photo's side of the subject (nearer to the camera than its opacity-weighted centre) are optimised so
that the render from the photo's camera matches the photo; the far side shows through semi-transparent
Gaussians and would otherwise pick up the photo's colours, so it stays exactly as predicted.

Two modes (``RefineConfig.mode``):
- ``"colors"`` (the default): only the colour (SH DC) moves, with an L2 pull towards the predicted colours;
- ``"full"``: colours, positions and scales move (opacities too where ``lr_opacity`` > 0), against the
  photo's colours and its matte (alpha vs matte), each regularised toward the feed-forward result:
  position drift along the photo's rays and across them is penalised separately (depth is what one view
  cannot tell; across-ray drift blurs edges), log-scales stay within a band around the prediction,
  opacity logits are pulled back.

Measured on the benchmark with v8 (docs/model.md, ``benchmarks/refine_sweep.py``): with one Gaussian per
input pixel, moving opacities thins the hands seen from other views (novel hands -2.4 dB) and the full
mode without them still costs the novel hands 1.2 dB; the colour mode with a firm pull (0.2) is the one
setting that raises the input view without lowering any novel-view figure, so it is the default.

Extra target views (``view_images`` + ``view_cameras``, e.g. the novel-view generator's views at orbit
cameras) add their RGB loss, weighted ``view_weight`` (averaged over the views), to the photo's. Then *every*
Gaussian moves, not only the photo's near side: the far side is what those views see, and freezing it would
leave them nothing to fit; the reason it is frozen otherwise (the photo's colours leaking through onto the
back) is what the back views' loss now opposes. The regularisers stay as they are for all Gaussians (drift
measured along and across the photo's rays, the scale band, the colour and opacity pulls), so what no
view constrains stays near the feed-forward result. The extra views have no matte (they are images on white).

Both run a fixed number of Adam steps at a reduced resolution (``resolution``). Deterministic on CPU
for a fixed thread count: every op of the render and its backward is (see tests/test_refine.py). In the
colour mode on the torch rasterizer (CPU) the geometry never moves, so each pixel's compositing weights are
computed once (``gaussians.render.color_operator``) and every step's render is one sparse product: the same
loss, the same steps, several times faster than rasterizing 30 times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from humansplat.cameras import Cameras, project_points
from humansplat.gaussians import Gaussians, render
from humansplat.gaussians.render import auto_backend, color_operator
from humansplat.metrics import color_scores, psnr

__all__ = ["REFINE_MODES", "RefineConfig", "refine", "refine_colors", "photo_psnr", "photo_scores"]

REFINE_MODES = ("colors", "full")
COLOR_PRIOR = {"colors": 0.2, "full": 0.02}  # each mode's measured best pull towards the predicted colours


@dataclass
class RefineConfig:
    steps: int = 30
    mode: str = "colors"  # "colors" (DC colours only) or "full" (colours, positions, scales, matte; see above)
    lr: float = 0.08  # Adam on SH DC coefficients
    resolution: int = 256  # the photo and camera are resized to this for the fit
    prior_weight: float | None = None  # L2 pull towards the predicted colours; None: the mode's (COLOR_PRIOR)
    # full mode
    lr_means: float = 1e-3  # metres per Adam step
    lr_log_scales: float = 0.02
    lr_opacity: float = 0.0  # on logits; 0.1 (v7's setting) costs v8's novel hands 1.2 dB more
    mask_weight: float = 1.0  # MSE of the rendered alpha against the matte
    along_ray_m: float = 0.02  # position drift along the photo's ray costs 1 (the RGB loss is O(0.01)) at ...
    across_ray_m: float = 0.004  # ... and across it at (about half a pixel at 256 px, 2.5 m)
    drift_weight: float = 0.01  # weight of the (drift / scale)^2 penalty, averaged over Gaussians
    max_log_scale_change: float = math.log(1.5)  # scales stay within x/÷ 1.5 of the prediction
    opacity_prior_weight: float = 0.001  # L2 pull of the opacity logits towards the prediction
    view_weight: float = 0.25  # extra target views: weight of their mean RGB loss against the photo's (1); measured with
    # draft generator v2 (docs/novelview.md): 0.25 beats 0.5 and 1.0 on PSNR, SSIM, masked PSNR and sharpness

    def __post_init__(self) -> None:
        if self.mode not in REFINE_MODES:
            raise ValueError(f"RefineConfig.mode: expected one of {REFINE_MODES}, got {self.mode!r}")
        if self.prior_weight is None:
            self.prior_weight = COLOR_PRIOR[self.mode]


def _fit_inputs(camera: Cameras, image: Tensor, resolution: int) -> tuple[Cameras, Tensor]:
    """The camera (batch V) and images (C, H, W) or (V, C, H, W) resized to ``resolution`` (channels last)."""
    batch = image[None] if image.dim() == 3 else image
    target = F.interpolate(batch.float(), size=(resolution, resolution), mode="area").permute(0, 2, 3, 1)
    return camera.resized(resolution, resolution), target[0] if image.dim() == 3 else target


def photo_scores(gaussians: Gaussians, camera: Cameras, image: Tensor, mask: Tensor | None = None,
                 resolution: int = 256) -> dict[str, float]:
    """The render from the photo's camera against the photo (both on white): ``psnr`` (dB) and, given the
    matte ``mask`` ((1,)H,W), the coarse colour fidelity inside it (``metrics.color_scores``: delta_e, chroma_ratio)."""
    cam, target = _fit_inputs(camera, image, resolution)
    with torch.no_grad():
        rgb = render(gaussians, cam.to(gaussians.device)).rgb[0]
    target = target.to(rgb.device)
    scores = {"psnr": float(psnr(F.mse_loss(rgb, target)))}
    if mask is not None:
        matte = _fit_inputs(camera, mask.reshape(1, *mask.shape[-2:]).float(), resolution)[1].to(rgb.device)
        colors = color_scores(rgb.permute(2, 0, 1)[None], target.permute(2, 0, 1)[None], matte.permute(2, 0, 1)[None])
        scores.update({k: float(v[0]) for k, v in colors.items()})
    return scores


def photo_psnr(gaussians: Gaussians, camera: Cameras, image: Tensor, resolution: int = 256) -> float:
    """PSNR (dB) of the render from the photo's camera against the photo, both on white."""
    return photo_scores(gaussians, camera, image, None, resolution)["psnr"]


def _near_side(gaussians: Gaussians, camera: Cameras) -> Tensor:
    """(N,) bool: the Gaussians nearer to ``camera`` than the subject's opacity-weighted centre."""
    z = project_points(gaussians.means, camera)[1]
    w = gaussians.opacities
    return z <= (z * w).sum() / w.sum().clamp_min(1e-8)


def refine(gaussians: Gaussians, camera: Cameras, image: Tensor, mask: Tensor | None = None,
           config: RefineConfig | None = None, view_images: Tensor | None = None, view_cameras: Cameras | None = None) -> Gaussians:
    """Gaussians (N,) fitted to the photo ``image`` (3, H, W, on white) seen by ``camera`` (batch 1, the
    photo's crop camera); ``mask`` (H, W) or (1, H, W) the photo's matte in [0, 1], used by the full mode
    (without it the mode fits colours and geometry to the RGB alone). ``view_images`` (K, 3, H', W') on white
    with ``view_cameras`` (K,) at H' x W': extra target views (then all Gaussians move; see the module
    docstring). Returns new Gaussians; the input is not modified."""
    cfg = config or RefineConfig()
    if cfg.steps <= 0:
        return gaussians
    dev = gaussians.device
    camera = camera.to(dev)
    cam, target = _fit_inputs(camera, image.to(dev), cfg.resolution)
    if (view_images is None) != (view_cameras is None):
        raise ValueError("refine: view_images and view_cameras go together")
    extra = view_images is not None and len(view_images) > 0
    if extra:  # one render for the photo and the views: (1 + K) cameras
        view_cams, view_targets = _fit_inputs(view_cameras.to(dev).reshape(-1), view_images.to(dev), cfg.resolution)
        cam = Cameras.cat([cam.reshape(1), view_cams.to(cam.K.device, cam.K.dtype)])
    full = cfg.mode == "full"
    matte = None
    if full and mask is not None:
        matte = _fit_inputs(camera, mask.to(dev).reshape(1, *mask.shape[-2:]), cfg.resolution)[1]
    g0 = gaussians.detach()
    with torch.no_grad():
        free = torch.ones(g0.num, dtype=torch.bool, device=dev) if extra else _near_side(g0, cam[0])
        idx = torch.nonzero(free).squeeze(1)
        c2w = torch.linalg.inv(cam.w2c[0].double()).to(g0.means.dtype)
        ray = F.normalize(g0.means[idx] - c2w[:3, 3], dim=-1)  # (n, 3) the photo's ray through each Gaussian
    n = idx.numel()
    zeros = lambda *shape: torch.zeros(*shape, device=dev, dtype=g0.means.dtype, requires_grad=True)  # noqa: E731
    d_dc = zeros(n, 1, 3)
    groups = [{"params": [d_dc], "lr": cfg.lr}]
    if full:
        d_mean, d_scale, d_opa = zeros(n, 3), zeros(n, 3), zeros(n)
        groups += [{"params": [d_mean], "lr": cfg.lr_means}, {"params": [d_scale], "lr": cfg.lr_log_scales},
                   {"params": [d_opa], "lr": cfg.lr_opacity}]  # fmt: skip
    opt = torch.optim.Adam(groups)

    def current() -> tuple[Gaussians, Tensor]:
        sh = g0.sh.index_add(0, idx, F.pad(d_dc, (0, 0, 0, g0.sh.shape[1] - 1)))
        prior = cfg.prior_weight * d_dc.square().sum() / max(1, 3 * g0.num)  # the mean over all colours
        if not full:
            return Gaussians(g0.means, g0.quats, g0.log_scales, g0.opacity_logits, sh, None), prior
        ds = d_scale.clamp(-cfg.max_log_scale_change, cfg.max_log_scale_change)
        g = Gaussians(g0.means.index_add(0, idx, d_mean), g0.quats, g0.log_scales.index_add(0, idx, ds),
                      g0.opacity_logits.index_add(0, idx, d_opa), sh, None)  # fmt: skip
        along = (d_mean * ray).sum(-1)
        across = (d_mean - along[:, None] * ray).square().sum(-1)
        drift = (along / cfg.along_ray_m).square() + across / cfg.across_ray_m**2
        prior = prior + (cfg.drift_weight * drift.sum() + cfg.opacity_prior_weight * d_opa.square().sum()) / max(1, g0.num)
        return g, prior

    # colours alone on the torch rasterizer: the render is linear in them, one sparse product a step
    linear = color_operator(g0, cam) if not full and auto_backend(dev) == "torch" else None
    with torch.enable_grad():
        for _ in range(cfg.steps):
            g, prior = current()
            out = None if linear is not None else render(g, cam)  # the matte term (full mode) needs its alpha
            rgbs = linear(g.sh) if linear is not None else out.rgb
            rgb = rgbs[0]
            loss = F.l1_loss(rgb, target) + F.mse_loss(rgb, target) + prior
            if extra:
                views = rgbs[1:]
                loss = loss + cfg.view_weight * (F.l1_loss(views, view_targets) + F.mse_loss(views, view_targets))
            if matte is not None:
                loss = loss + cfg.mask_weight * F.mse_loss(out.alpha[0], matte)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    with torch.no_grad():
        g, _ = current()
    return Gaussians(g.means.detach(), g0.quats, g.log_scales.detach(), g.opacity_logits.detach(), g.sh.detach(),
                     gaussians.features)  # fmt: skip


def refine_colors(gaussians: Gaussians, camera: Cameras, image: Tensor, config: RefineConfig | None = None) -> Gaussians:
    """The colour-only refinement (``refine`` in ``"colors"`` mode, whatever ``config.mode`` says)."""
    cfg = config or RefineConfig()
    if cfg.mode != "colors":
        cfg = RefineConfig(**{**cfg.__dict__, "mode": "colors"})
    return refine(gaussians, camera, image, None, cfg)
