"""The one entry point for rendering Gaussians: ``render(gaussians, cameras) -> RenderOutput``."""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from humansplat.cameras import Cameras
from humansplat.gaussians.container import Gaussians
from humansplat.gaussians.sh import sh_to_color

__all__ = ["render", "RenderOutput", "gsplat_available"]


@dataclass
class RenderOutput:
    """Channels-last renders for a (*B, V) batch of views.

    rgb (*B,V,H,W,3) over the background; alpha (*B,V,H,W,1); depth (*B,V,H,W,1) expected camera-z
    depth (sum w z / alpha, 0 where empty); features (*B,V,H,W,F) over a zero background, or None.
    """

    rgb: Tensor
    alpha: Tensor
    depth: Tensor
    features: Tensor | None = None


def gsplat_available() -> bool:
    return importlib.util.find_spec("gsplat") is not None


def _pick_backend(backend: str, device: torch.device) -> str:
    if backend == "auto":
        return "gsplat" if device.type == "cuda" and gsplat_available() else "torch"
    if backend not in ("torch", "gsplat"):
        raise ValueError(f"render: unknown backend {backend!r} (auto, torch, gsplat)")
    if backend == "gsplat" and device.type != "cuda":
        raise ValueError("render: the gsplat backend needs CUDA tensors")
    return backend


def render(
    gaussians: Gaussians,
    cameras: Cameras,
    background: float | Tensor = 1.0,
    backend: str = "auto",
    sh_degree: int | None = None,
    near: float = 0.01,
    far: float = 100.0,
) -> RenderOutput:
    """Render Gaussians with batch shape *B through cameras of batch shape (*B, V) (or (V,), shared).

    ``background`` is a float or an RGB (3,) tensor (or anything broadcasting to (*B, V, 3)).
    ``sh_degree`` limits the SH bands used (default: all that the Gaussians carry).
    ``backend``: "auto" (gsplat on CUDA when installed, else torch), "torch" or "gsplat".
    """
    g = gaussians
    lead = g.batch_shape
    cam_lead = cameras.batch_shape
    if len(cam_lead) == len(lead) + 1 and cam_lead[:-1] == lead:
        V = cam_lead[-1]
    elif len(cam_lead) == 1:
        V = cam_lead[0]
    else:
        raise ValueError(f"render: cameras batch shape {tuple(cam_lead)} does not fit Gaussians batch shape {tuple(lead)} (need (*B, V) or (V,))")
    B = math.prod(lead)
    N = g.num
    dev, dt = g.means.device, g.means.dtype
    K = cameras.K.to(dev, dt).expand(*lead, V, 3, 3).reshape(B, V, 3, 3)
    w2c = cameras.w2c.to(dev, dt).expand(*lead, V, 4, 4).reshape(B, V, 4, 4)

    means = g.means.reshape(B, N, 3)
    degree = g.sh_degree if sh_degree is None else min(sh_degree, g.sh_degree)
    sh = g.sh.reshape(B, N, g.sh.shape[-2], 3)
    if degree == 0:
        colors = sh_to_color(sh, None, 0)  # (B,N,3), the same for every view
    else:
        centers = -(w2c[..., :3, :3].transpose(-1, -2) @ w2c[..., :3, 3:])[..., 0]  # (B,V,3)
        dirs = means[:, None] - centers[:, :, None]  # (B,V,N,3): camera centre -> Gaussian mean
        colors = sh_to_color(sh[:, None], dirs, degree)  # (B,V,N,3)
    F_dim = 0
    if g.features is not None:
        F_dim = g.features.shape[-1]
        feats = g.features.reshape(B, N, F_dim)
        if colors.dim() == 4:
            feats = feats[:, None].expand(B, V, N, F_dim)
        colors = torch.cat([colors, feats.to(colors.dtype)], -1)

    bg = torch.as_tensor(background, dtype=dt, device=dev)
    bg = (bg.expand(3) if bg.dim() == 0 else bg).expand(*lead, V, 3).reshape(B, V, 3)
    bg = torch.cat([bg, torch.zeros(B, V, F_dim, device=dev, dtype=dt)], -1)

    args = (means, g.rotations.reshape(B, N, 4), g.scales.reshape(B, N, 3), g.opacities.reshape(B, N), colors, w2c, K,
            cameras.width, cameras.height, bg, near, far)
    if _pick_backend(backend, dev) == "gsplat":
        from humansplat.gaussians.rasterize_gsplat import rasterize_gsplat

        out, alpha, depth = rasterize_gsplat(*args)
    else:
        from humansplat.gaussians.rasterize_torch import rasterize_torch

        out, alpha, depth = rasterize_torch(*args)

    H, W = cameras.height, cameras.width
    shape = (*lead, V, H, W)
    return RenderOutput(
        rgb=out[..., :3].reshape(*shape, 3),
        alpha=alpha.reshape(*shape, 1),
        depth=depth.reshape(*shape, 1),
        features=out[..., 3:].reshape(*shape, F_dim) if F_dim else None,
    )
