"""Sampling body phenotypes: ages from children to the elderly, thin to heavy, short to tall.

Ages are drawn uniformly in years and mapped to anny's age parameter with anny's own
WHO-calibrated "morphological age" table; height, weight, muscle and proportions then follow anny's
age- and sex-conditioned Beta distributions (its ``shape_calibration`` data, kept in the body cache).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import Tensor

from humansplat.body.model import PHENOTYPE_NAMES, _read_cache

__all__ = ["sample_phenotypes", "age_to_years", "years_to_age"]


def _calibration() -> dict[str, np.ndarray]:
    tensors, _ = _read_cache(None)
    return {k[len("hs.calib."):]: v.double().numpy() for k, v in tensors.items() if k.startswith("hs.calib.")}


def years_to_age(years) -> np.ndarray:
    """anny's age parameter for ages in years (linear between anny's calibration anchors)."""
    c = _calibration()
    return np.interp(np.asarray(years, dtype=np.float64), c["age.morphological_age_anchors"], c["age.anny_age_anchors"])


def age_to_years(age) -> np.ndarray:
    c = _calibration()
    return np.interp(np.asarray(age, dtype=np.float64), c["age.anny_age_anchors"], c["age.morphological_age_anchors"])


def sample_phenotypes(n: int, generator: torch.Generator | None = None, years: tuple[float, float] = (4.0, 85.0)) -> Tensor:
    """(n, P) phenotypes in [0, 1], columns in ``PHENOTYPE_NAMES`` order; ages uniform in ``years``."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    rng = np.random.default_rng(seed)
    c = _calibration()
    age = years_to_age(rng.uniform(*years, size=n))
    gender = rng.uniform(0.0, 1.0, size=n)
    values = {"age": age, "gender": gender}
    for name in ("height", "weight", "muscle", "proportions"):
        draws = []
        for sex in ("boys", "girls"):
            anchors = c[f"{sex}.{name}.age_anchors"]
            a = np.interp(age, anchors, c[f"{sex}.{name}.alpha_anchors"])
            b = np.interp(age, anchors, c[f"{sex}.{name}.beta_anchors"])
            draws.append(rng.beta(np.maximum(a, 1e-3), np.maximum(b, 1e-3)))
        values[name] = np.where(gender <= 0.5, draws[0], draws[1])
    out = np.stack([values[k] for k in PHENOTYPE_NAMES], 1)
    return torch.from_numpy(np.clip(out, 0.0, 1.0)).float()


# ---- the phenotype prior of the body fit ----


AGE_BANDS = [(3.0, 8.0), (8.0, 13.0), (13.0, 18.0), (18.0, 40.0), (40.0, 85.0)]
_CHILD_WEIGHT = 0.1  # most photos are of adults; keypoints alone barely tell a child's proportions (docs/fit.md)


@functools.lru_cache(maxsize=1)
def phenotype_mixture() -> tuple[Tensor, Tensor, Tensor]:
    """A diagonal Gaussian mixture over phenotypes, one component per age band (anny's calibrated
    distributions, 3 to 85 years, weighted by the band's years, children less): means (C, P), spreads (C, P), log weights (C,)."""
    g = torch.Generator().manual_seed(0)
    means, spreads, weights = [], [], []
    for lo, hi in AGE_BANDS:
        ph = sample_phenotypes(1024, g, years=(lo, hi))
        means.append(ph.mean(0))
        spreads.append(ph.std(0).clamp(min=0.05))
        weights.append((hi - lo) * (1.0 if lo >= 18.0 else _CHILD_WEIGHT))
    spread = torch.stack(spreads)
    spread[:, 1] = spread[:, 1].clamp(min=0.07)  # neighbouring ages overlap: the age can slide between bands
    w = torch.tensor(weights, dtype=torch.float32)
    return torch.stack(means), spread, (w / w.sum()).log()


def mixture_nll(x: Tensor, mean: Tensor, spread: Tensor, logw: Tensor) -> Tensor:
    """(B,) -2 log density of (B, P) under a diagonal Gaussian mixture, up to a constant."""
    e = (((x[:, None] - mean) / spread) ** 2 + 2 * spread.log()).sum(-1)
    return -2 * torch.logsumexp(-0.5 * e + logw, dim=1)


def adult_phenotype() -> Tensor:
    """The mixture's mean adult (18-85 years), (P,)."""
    mean, _, logw = phenotype_mixture()
    adult = [i for i, (lo, _) in enumerate(AGE_BANDS) if lo >= 18.0]
    w = logw[adult].softmax(0)
    return (mean[adult] * w[:, None]).sum(0)
