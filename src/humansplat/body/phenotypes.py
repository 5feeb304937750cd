"""Sampling body phenotypes: ages from children to the elderly, thin to heavy, short to tall.

Ages are drawn uniformly in years and mapped to anny's age parameter with anny's own
WHO-calibrated "morphological age" table; height, weight, muscle and proportions then follow anny's
age- and sex-conditioned Beta distributions (its ``shape_calibration`` data, kept in the body cache).
"""

from __future__ import annotations

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
