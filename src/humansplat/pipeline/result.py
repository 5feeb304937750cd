"""``Reconstruction``: one photo's result, everything in one world frame, and its ``report()`` (report.json)."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

import humansplat
from humansplat.body import BodyParams
from humansplat.body.fit import FitResult
from humansplat.cameras import Cameras
from humansplat.gaussians import Gaussians
from humansplat.preprocess import Preprocessed

RESULT_KIND = "humansplat-reconstruction"  # report.json's "kind": marks a folder as a humansplat result
WORLD_FRAME = ("OpenCV cameras, metres, world +Y up, the subject faces +Z, the subject's centre at the origin; "
               "a point p of the body fit's world (photo camera on +Z looking at the origin) is p - world_offset here")


@dataclass
class Reconstruction:
    """One photo's result. ``gaussians`` (N,), ``camera`` (batch 1, the photo's crop) and the body share the world frame."""

    name: str
    gaussians: Gaussians
    camera: Cameras
    inputs: Preprocessed
    fit: FitResult | None  # the raw fit, in the fit's own world (see ``world_offset``)
    fit_trusted: bool
    fit_note: str
    body_params: BodyParams | None  # the fitted body in the result's world: BodyModel(body_params) lies on the Gaussians
    body_vertices: Tensor | None  # (Nv, 3) that body posed, None when no fit was made
    world_offset: Tensor  # (3,)
    structure_prior: str  # "body" or "template_free"
    novel_views: Tensor | None  # (K, 3, S, S) the generated views the reconstructor saw, None when the stage was off
    cropped_to_view: bool
    timings: dict[str, float] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    untrusted_limbs: tuple[str, ...] = ()  # limbs the fit misses: their anchors were dropped (humansplat.body.limbs)

    def report(self) -> dict:
        fit = None
        if self.fit is not None:
            fit = {
                "reprojection_px": float(self.fit.reprojection_px[0]),
                "converged": bool(self.fit.converged[0]),
                "trusted": self.fit_trusted,
                "untrusted_limbs": list(self.untrusted_limbs),
                "params": self.body_params.to_dict(),
            }
        return {
            "kind": RESULT_KIND,
            "name": self.name,
            "humansplat_version": humansplat.__version__,
            "num_gaussians": self.gaussians.num,
            "structure_prior": self.structure_prior,
            "structure_prior_note": self.fit_note,
            "cropped_to_view": self.cropped_to_view,
            "world_frame": WORLD_FRAME,
            "world_offset": [float(v) for v in self.world_offset],
            "input_camera": self.camera.to_dict(),
            "inputs": self.inputs.to_dict(),
            "body_fit": fit,
            "timings_s": {k: round(v, 4) for k, v in self.timings.items()},
            **self.meta,
        }
