"""Per-instance refinement (GeneMAN's last step, in its cheapest form): after the feed-forward pass, the
Gaussians' colours are optimised so that the render from the photo's camera matches the photo.

Only the colour (SH DC) moves, and only for the Gaussians on the photo's side of the subject (nearer to
the camera than its centre): the far side shows through semi-transparent Gaussians and would otherwise
pick up the photo's colours. Geometry and opacity stay as predicted. An L2 pull towards the predicted
colours keeps Gaussians that the photo barely constrains where the model put them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from humansplat.cameras import Cameras, project_points
from humansplat.gaussians import Gaussians, render

__all__ = ["RefineConfig", "refine_colors", "photo_psnr"]


@dataclass
class RefineConfig:
    steps: int = 30
    lr: float = 0.08  # Adam on SH DC coefficients
    resolution: int = 256  # the photo and camera are resized to this for the fit
    prior_weight: float = 0.02  # L2 pull towards the predicted colours


def _fit_inputs(camera: Cameras, image: Tensor, resolution: int) -> tuple[Cameras, Tensor]:
    """The camera (batch 1) and photo (3, H, W) on white resized to ``resolution`` (channels last)."""
    target = F.interpolate(image[None].float(), size=(resolution, resolution), mode="area")[0].permute(1, 2, 0)
    return camera.resized(resolution, resolution), target


def photo_psnr(gaussians: Gaussians, camera: Cameras, image: Tensor, resolution: int = 256) -> float:
    """PSNR (dB) of the render from the photo's camera against the photo, both on white."""
    cam, target = _fit_inputs(camera, image, resolution)
    with torch.no_grad():
        rgb = render(gaussians, cam.to(gaussians.device)).rgb[0]
    mse = F.mse_loss(rgb, target.to(rgb.device))
    return float(-10 * torch.log10(mse.clamp_min(1e-10)))


def refine_colors(gaussians: Gaussians, camera: Cameras, image: Tensor, config: RefineConfig | None = None) -> Gaussians:
    """Gaussians (N,) whose DC colours are fitted to the photo ``image`` (3, H, W, on white) seen by
    ``camera`` (batch 1, the photo's crop camera). Returns new Gaussians; the input is not modified."""
    cfg = config or RefineConfig()
    if cfg.steps <= 0:
        return gaussians
    cam, target = _fit_inputs(camera.to(gaussians.device), image.to(gaussians.device), cfg.resolution)
    dc0 = gaussians.sh[:, :1].detach()
    delta = torch.zeros_like(dc0, requires_grad=True)
    opt = torch.optim.Adam([delta], lr=cfg.lr)
    rest = gaussians.sh[:, 1:].detach()
    with torch.no_grad():
        z = project_points(gaussians.means, cam[0])[1]
        w = gaussians.opacities
        near_side = (z <= (z * w).sum() / w.sum().clamp_min(1e-8)).to(dc0.dtype)[:, None, None]
    with torch.enable_grad():
        for _ in range(cfg.steps):
            dc = dc0 + near_side * delta
            g = Gaussians(gaussians.means.detach(), gaussians.quats.detach(), gaussians.log_scales.detach(),
                          gaussians.opacity_logits.detach(), torch.cat([dc, rest], 1), None)  # fmt: skip
            rgb = render(g, cam).rgb[0]
            loss = F.l1_loss(rgb, target) + F.mse_loss(rgb, target) + cfg.prior_weight * (near_side * delta).square().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    sh = torch.cat([(dc0 + near_side * delta).detach(), rest], 1)
    return Gaussians(gaussians.means, gaussians.quats, gaussians.log_scales, gaussians.opacity_logits, sh, gaussians.features)
