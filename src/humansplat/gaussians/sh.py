"""Real spherical harmonics up to degree 3 in the basis and sign convention of the INRIA 3DGS code
(which gsplat and every .ply viewer share), and the DC <-> RGB mapping."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["SH_C0", "num_sh_bases", "sh_basis", "sh_to_color", "rgb_to_sh", "sh_to_rgb"]

SH_C0 = 0.5 / math.sqrt(math.pi)  # Y_0^0
_C1 = math.sqrt(3.0 / (4.0 * math.pi))
_C2 = (
    0.5 * math.sqrt(15.0 / math.pi),
    -0.5 * math.sqrt(15.0 / math.pi),
    0.25 * math.sqrt(5.0 / math.pi),
    -0.5 * math.sqrt(15.0 / math.pi),
    0.25 * math.sqrt(15.0 / math.pi),
)
_C3 = (
    -0.25 * math.sqrt(35.0 / (2.0 * math.pi)),
    0.5 * math.sqrt(105.0 / math.pi),
    -0.25 * math.sqrt(21.0 / (2.0 * math.pi)),
    0.25 * math.sqrt(7.0 / math.pi),
    -0.25 * math.sqrt(21.0 / (2.0 * math.pi)),
    0.25 * math.sqrt(105.0 / math.pi),
    -0.25 * math.sqrt(35.0 / (2.0 * math.pi)),
)


def num_sh_bases(degree: int) -> int:
    return (degree + 1) ** 2


def sh_basis(dirs: Tensor, degree: int) -> Tensor:
    """The (degree + 1)^2 basis functions at unit directions ``dirs`` (..., 3) -> (..., K)."""
    if not 0 <= degree <= 3:
        raise ValueError(f"SH degree must be 0..3, got {degree}")
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        out += [-_C1 * y, _C1 * z, -_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [
            _C2[0] * x * y,
            _C2[1] * y * z,
            _C2[2] * (2 * zz - xx - yy),
            _C2[3] * x * z,
            _C2[4] * (xx - yy),
        ]
    if degree >= 3:
        out += [
            _C3[0] * y * (3 * xx - yy),
            _C3[1] * x * y * z,
            _C3[2] * y * (4 * zz - xx - yy),
            _C3[3] * z * (2 * zz - 3 * xx - 3 * yy),
            _C3[4] * x * (4 * zz - xx - yy),
            _C3[5] * z * (xx - yy),
            _C3[6] * x * (xx - 3 * yy),
        ]
    return torch.stack(out, -1)


def sh_to_color(sh: Tensor, dirs: Tensor | None, degree: int) -> Tensor:
    """RGB of SH coefficients ``sh`` (..., K, 3) seen along ``dirs`` (..., 3) (need not be unit;
    ignored for degree 0), INRIA style: SH value + 0.5, clamped at 0 (not at 1)."""
    if degree == 0 or dirs is None:
        if degree != 0:
            raise ValueError("sh_to_color: view directions are needed for SH degree > 0")
        return (SH_C0 * sh[..., 0, :] + 0.5).clamp_min(0.0)
    if num_sh_bases(degree) > sh.shape[-2]:
        raise ValueError(f"sh_to_color: degree {degree} needs {num_sh_bases(degree)} coefficients, have {sh.shape[-2]}")
    basis = sh_basis(torch.nn.functional.normalize(dirs, dim=-1), degree)  # (..., k)
    k = basis.shape[-1]
    return (torch.einsum("...k,...kc->...c", basis, sh[..., :k, :]) + 0.5).clamp_min(0.0)


def rgb_to_sh(rgb: Tensor) -> Tensor:
    """DC coefficient whose colour is ``rgb`` (..., 3)."""
    return (rgb - 0.5) / SH_C0


def sh_to_rgb(dc: Tensor) -> Tensor:
    """Colour of a DC coefficient (..., 3), unclamped."""
    return dc * SH_C0 + 0.5
