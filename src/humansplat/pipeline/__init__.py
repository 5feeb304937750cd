"""The whole data flow, photo -> 3D Gaussians, as a short list of named stages (see ``core`` and ``stages``).

``Pipeline`` loads the models once (body prior, reconstructor) and turns each photo into a ``Reconstruction``:
Gaussians in the project's world frame (metres, +Y up, the subject faces +Z, the subject's centre at the
origin, as in training) together with the photo's camera and the fitted body in that frame, so anyone can
re-render the result from the photo's viewpoint, or pose the body and find it on the Gaussians.

When the body fit is not trustworthy (head-only crops, too few keypoints, a fit that does not reproject)
the reconstructor runs template-free (GeneMAN's fallback); for partial photos (half body, head only) only what
lies inside the photo's view frustum (the photo itself, not the padding of its square crop) is kept. Last, the
colours are refined against the photo (humansplat.refine; ``refine_steps=0`` skips it).
"""

from __future__ import annotations

from pathlib import Path

from humansplat.gaussians import Gaussians
from humansplat.pipeline.core import WEIGHTS_ROOT, Pipeline, Stage, StageEvent, resolve_weights
from humansplat.pipeline.result import RESULT_KIND, Reconstruction
from humansplat.refine import RefineConfig
from humansplat.utils import pick_device

__all__ = ["RESULT_KIND", "WEIGHTS_ROOT", "Pipeline", "Reconstruction", "Stage", "StageEvent", "reconstruct", "resolve_weights"]

_PIPELINES: dict[tuple, Pipeline] = {}


def reconstruct(image, device: str | None = None, weights: str | Path | None = None, seed: int = 0,
                refine_steps: int = RefineConfig.steps) -> Gaussians:
    """Photo (path, array or PIL image) -> Gaussians (N,) in the world frame; models stay loaded between calls."""
    key = (str(pick_device(device)), str(weights), seed, refine_steps)
    if key not in _PIPELINES:
        _PIPELINES[key] = Pipeline(weights, device, seed, refine_steps=refine_steps)
    return _PIPELINES[key](image).gaussians
