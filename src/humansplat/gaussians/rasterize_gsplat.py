"""The CUDA backend: gsplat's fused rasterizer with the conventions of ``rasterize_torch``.

Colours (SH already evaluated) and features go in as one channel block, expected depth comes out of
the same call (render mode "RGB+ED"); classic 3DGS low-pass (eps2d = 0.3, no compensation).
"""

from __future__ import annotations

from torch import Tensor

from humansplat.gaussians.rasterize_torch import EPS2D

__all__ = ["rasterize_gsplat"]


def rasterize_gsplat(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    w2c: Tensor,
    K: Tensor,
    width: int,
    height: int,
    background: Tensor,
    near: float = 0.01,
    far: float = 100.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """Same signature and outputs as ``rasterize_torch.rasterize_torch``."""
    from gsplat import rasterization

    D = colors.shape[-1]
    out, alpha, _ = rasterization(
        means.contiguous(),
        quats.contiguous(),
        scales.contiguous(),
        opacities.contiguous(),
        colors.contiguous(),
        w2c.contiguous(),
        K.contiguous(),
        width,
        height,
        near_plane=near,
        far_plane=far,
        eps2d=EPS2D,
        sh_degree=None,
        packed=False,
        tile_size=16,
        backgrounds=background.contiguous(),
        render_mode="RGB+ED",
        rasterize_mode="classic",
        channel_chunk=max(32, D + 1),
    )
    return out[..., :D], alpha, out[..., D:]
