"""3D Gaussians: the container, SH colour, rendering (gsplat on CUDA, plain PyTorch anywhere) and file IO."""

from humansplat.gaussians.container import Gaussians
from humansplat.gaussians.io import PlyError, load_ply, save_ply, save_splat
from humansplat.gaussians.render import RenderOutput, gsplat_available, render
from humansplat.gaussians.sh import rgb_to_sh, sh_to_color, sh_to_rgb

__all__ = [
    "Gaussians",
    "render",
    "RenderOutput",
    "gsplat_available",
    "save_ply",
    "load_ply",
    "PlyError",
    "save_splat",
    "rgb_to_sh",
    "sh_to_rgb",
    "sh_to_color",
]
