"""The one entry point for rendering Gaussians: ``render(gaussians, cameras) -> RenderOutput``."""

from __future__ import annotations

import importlib.util
import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from humansplat.cameras import Cameras
from humansplat.gaussians.container import Gaussians
from humansplat.gaussians.sh import sh_to_color

__all__ = ["render", "RenderOutput", "gsplat_available", "color_operator", "ColorOperator", "auto_backend"]


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


def auto_backend(device: torch.device) -> str:
    """The rasterizer ``render(backend="auto")`` uses on ``device``: gsplat on CUDA when installed, else torch."""
    return "gsplat" if device.type == "cuda" and gsplat_available() else "torch"


def _pick_backend(backend: str, device: torch.device) -> str:
    if backend == "auto":
        return auto_backend(device)
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
    colors = _colors(g.sh.reshape(B, N, g.sh.shape[-2], 3), means, w2c, g.sh_degree if sh_degree is None else min(sh_degree, g.sh_degree))
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


def _colors(sh: Tensor, means: Tensor, w2c: Tensor, degree: int) -> Tensor:
    """Colours of (B,N,K,3) SH coefficients: (B,N,3) at degree 0, else (B,V,N,3) seen from each camera."""
    if degree == 0:
        return sh_to_color(sh, None, 0)
    centers = -(w2c[..., :3, :3].transpose(-1, -2) @ w2c[..., :3, 3:])[..., 0]  # (B,V,3)
    dirs = means[:, None] - centers[:, :, None]  # (B,V,N,3): camera centre -> Gaussian mean
    return sh_to_color(sh[:, None], dirs, degree)


class _SparseMatmul(torch.autograd.Function):
    """``matrix @ x`` with the gradient ``transposed @ grad``: both CSR products, deterministic on CPU."""

    @staticmethod
    def forward(ctx, x: Tensor, matrix: Tensor, transposed: Tensor) -> Tensor:
        ctx.transposed = transposed
        return matrix @ x

    @staticmethod
    def backward(ctx, grad: Tensor):
        return ctx.transposed @ grad, None, None


def _csr(rows: Tensor, cols: Tensor, values: Tensor, size: tuple[int, int]) -> Tensor:
    """A CSR matrix from unique (row, col) entries."""
    order = torch.argsort(rows * size[1] + cols)
    crow = F.pad(torch.cumsum(torch.bincount(rows, minlength=size[0]), 0), (1, 0))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, cols[order], values[order], size, check_invariants=False)


@dataclass
class ColorOperator:
    """A render of fixed geometry as a linear map of the colours (``color_operator``); call it with SH
    coefficients (N,K,3) of the same Gaussians to get what ``render`` gives, differentiably: rgb (V,H,W,3)."""

    matrix: Tensor  # sparse CSR (V*H*W, V*N): the torch rasterizer's compositing weights
    transposed: Tensor  # its transpose, CSR
    transmittance: Tensor  # (V,H,W,1)
    means: Tensor  # (N,3), for view-dependent colours
    w2c: Tensor  # (V,4,4)
    degree: int
    background: Tensor  # (3,)

    def __call__(self, sh: Tensor) -> Tensor:
        V, H, W = self.transmittance.shape[:3]
        colors = _colors(sh[None], self.means[None], self.w2c[None], self.degree)
        colors = colors.expand(V, *colors.shape[-2:]) if colors.dim() == 3 else colors[0]
        rgb = _SparseMatmul.apply(colors.reshape(-1, 3), self.matrix, self.transposed).reshape(V, H, W, 3)
        return rgb + self.transmittance * self.background


def color_operator(gaussians: Gaussians, cameras: Cameras, background: float | Tensor = 1.0, sh_degree: int | None = None,
                   near: float = 0.01, far: float = 100.0) -> ColorOperator:  # fmt: skip
    """The torch rasterizer's render of ``gaussians`` (batch ()) through ``cameras`` (V,) with geometry frozen:
    positions, shapes and opacities fix every pixel's compositing weights, so the colour is linear in the
    Gaussians' colours. One pass builds the operator; each evaluation is then a sparse product, much
    cheaper than a render when only colours change (refine's colour mode). Equal to ``render(...,
    backend="torch")`` up to float rounding (tests/test_gaussians.py)."""
    from humansplat.gaussians.rasterize_torch import compositing_weights

    g = gaussians
    if g.batch_shape != () or len(cameras.batch_shape) != 1:
        raise ValueError(f"color_operator: one subject (batch ()) and cameras (V,), got {tuple(g.batch_shape)} and {tuple(cameras.batch_shape)}")
    dev, dt = g.means.device, g.means.dtype
    V, N, H, W = cameras.batch_shape[0], g.num, cameras.height, cameras.width
    K, w2c = cameras.K.to(dev, dt)[None], cameras.w2c.to(dev, dt)[None]
    rows, cols, weights, T = compositing_weights(g.means[None], g.rotations[None], g.scales[None], g.opacities[None], w2c, K,
                                                 W, H, near, far)  # fmt: skip
    size = (V * H * W, V * N)
    matrix, transposed = _csr(rows, cols, weights, size), _csr(cols, rows, weights, size[::-1])
    bg = torch.as_tensor(background, dtype=dt, device=dev).expand(3)
    degree = g.sh_degree if sh_degree is None else min(sh_degree, g.sh_degree)
    return ColorOperator(matrix, transposed, T[0, ..., None], g.means.detach(), w2c[0], degree, bg)
