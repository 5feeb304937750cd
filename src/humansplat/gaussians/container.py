"""The 3D Gaussian container: pre-activation parameters, with every activation defined here once."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor

from humansplat.gaussians.sh import rgb_to_sh, sh_to_color

__all__ = ["Gaussians"]


@dataclass
class Gaussians:
    """A set of 3D Gaussians, optionally batched (``*B``), holding PRE-activation parameters.

    means: (*B, N, 3) metres. quats: (*B, N, 4) raw (w, x, y, z), normalised on activation.
    log_scales: (*B, N, 3). opacity_logits: (*B, N). sh: (*B, N, K, 3), K = (degree + 1)^2,
    ``sh[..., 0, :]`` the DC term (colour = SH(dir) + 0.5, INRIA convention).
    features: (*B, N, F) or None, composited like colour (e.g. semantic features).
    """

    means: Tensor
    quats: Tensor
    log_scales: Tensor
    opacity_logits: Tensor
    sh: Tensor
    features: Tensor | None = None

    def __post_init__(self) -> None:
        N = self.means.shape[-2]
        lead = self.means.shape[:-2]
        expected = {
            "means": (*lead, N, 3),
            "quats": (*lead, N, 4),
            "log_scales": (*lead, N, 3),
            "opacity_logits": (*lead, N),
        }
        for name, shape in expected.items():
            if tuple(getattr(self, name).shape) != shape:
                raise ValueError(f"Gaussians.{name}: expected shape {shape}, got {tuple(getattr(self, name).shape)}")
        K = self.sh.shape[-2] if self.sh.dim() >= 2 else 0
        if self.sh.shape[:-2] != (*lead, N) or self.sh.shape[-1] != 3 or math.isqrt(K) ** 2 != K or K > 16:
            raise ValueError(f"Gaussians.sh: expected (*B, N, K, 3) with K in 1, 4, 9, 16, got {tuple(self.sh.shape)}")
        if self.features is not None and self.features.shape[:-1] != (*lead, N):
            raise ValueError(f"Gaussians.features: expected (*B, N, F), got {tuple(self.features.shape)}")

    # ---- activations (the only place they are defined) ----
    @property
    def scales(self) -> Tensor:
        return self.log_scales.exp()

    @property
    def opacities(self) -> Tensor:
        return torch.sigmoid(self.opacity_logits)

    @property
    def rotations(self) -> Tensor:
        """Unit quaternions (w, x, y, z)."""
        return F.normalize(self.quats, dim=-1)

    # ---- shape ----
    @property
    def sh_degree(self) -> int:
        return math.isqrt(self.sh.shape[-2]) - 1

    @property
    def num(self) -> int:
        return self.means.shape[-2]

    @property
    def batch_shape(self) -> torch.Size:
        return self.means.shape[:-2]

    @property
    def device(self) -> torch.device:
        return self.means.device

    def __len__(self) -> int:
        return self.num

    def _map(self, fn) -> "Gaussians":
        return Gaussians(**{f.name: (None if getattr(self, f.name) is None else fn(getattr(self, f.name))) for f in fields(self)})

    def to(self, *args, **kwargs) -> "Gaussians":
        return self._map(lambda t: t.to(*args, **kwargs))

    def detach(self) -> "Gaussians":
        return self._map(lambda t: t.detach())

    def __getitem__(self, index) -> "Gaussians":
        """Index the batch dimensions (not N): ``g[0]`` is the first scene of a (B, N) batch."""
        if not self.batch_shape:
            raise IndexError("Gaussians: no batch dimension to index; use select() to pick Gaussians")
        return self._map(lambda t: t[index])

    def select(self, index: Tensor | slice) -> "Gaussians":
        """Gaussians picked along N by a boolean mask or integer indices (same selection for every batch item)."""
        def pick(t: Tensor) -> Tensor:
            lead = len(self.batch_shape)
            return t[(slice(None),) * lead + (index,)]

        return self._map(pick)

    @staticmethod
    def cat(items: list["Gaussians"]) -> "Gaussians":
        """Concatenate along N; SH is padded with zeros to the highest degree, features must agree."""
        if not items:
            raise ValueError("Gaussians.cat: empty list")
        K = max(g.sh.shape[-2] for g in items)
        has_feat = {g.features is not None for g in items}
        if len(has_feat) != 1:
            raise ValueError("Gaussians.cat: either all or none of the items must have features")
        lead = len(items[0].batch_shape)

        def padded_sh(g: Gaussians) -> Tensor:
            pad = K - g.sh.shape[-2]
            return F.pad(g.sh, (0, 0, 0, pad)) if pad else g.sh

        return Gaussians(
            means=torch.cat([g.means for g in items], lead),
            quats=torch.cat([g.quats for g in items], lead),
            log_scales=torch.cat([g.log_scales for g in items], lead),
            opacity_logits=torch.cat([g.opacity_logits for g in items], lead),
            sh=torch.cat([padded_sh(g) for g in items], lead),
            features=torch.cat([g.features for g in items], lead) if items[0].features is not None else None,
        )

    @staticmethod
    def from_activated(
        means: Tensor,
        rotations: Tensor,
        scales: Tensor,
        opacities: Tensor,
        colors: Tensor | None = None,
        sh: Tensor | None = None,
        features: Tensor | None = None,
    ) -> "Gaussians":
        """Build from activated values: unit quaternions, positive scales, opacities in (0, 1),
        and either RGB ``colors`` in [0, 1] (stored as SH degree 0) or SH coefficients ``sh``."""
        if (colors is None) == (sh is None):
            raise ValueError("Gaussians.from_activated: give exactly one of colors or sh")
        if sh is None:
            sh = rgb_to_sh(colors)[..., None, :]
        eps = torch.finfo(opacities.dtype).eps
        opacities = opacities.clamp(eps, 1 - eps)
        return Gaussians(
            means=means,
            quats=rotations,
            log_scales=scales.clamp_min(1e-30).log(),
            opacity_logits=torch.logit(opacities),
            sh=sh,
            features=features,
        )

    def colors(self, view_dirs: Tensor | None = None, sh_degree: int | None = None) -> Tensor:
        """RGB from SH (plus 0.5, clamped at 0, INRIA); ``view_dirs`` (..., N, 3) from camera to Gaussian."""
        return sh_to_color(self.sh, view_dirs, self.sh_degree if sh_degree is None else sh_degree)
