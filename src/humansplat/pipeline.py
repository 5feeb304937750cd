"""The whole data flow, photo -> 3D Gaussians: preprocess, body fit, reconstruction.

``Pipeline`` loads the models once (body prior, reconstructor) and turns each photo into a
``Reconstruction``: Gaussians in the project's world frame (metres, +Y up, the subject faces +Z, the
subject's bounding-box centre at the origin, as in training) together with the photo's camera in that
frame, so anyone can re-render the result from the photo's viewpoint and compare.

When the body fit is not trustworthy (head-only crops, too few keypoints, a fit that does not reproject)
the reconstructor runs template-free (GeneMAN's fallback); for partial photos (half body, head only)
only what lies inside the photo's view frustum (the photo itself, not the padding of its square crop)
is kept: we reconstruct what is visible. Last, the colours
are refined against the photo (humansplat.refine; ``refine_steps=0`` skips it).
"""

from __future__ import annotations

import contextlib
import hashlib
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

import humansplat
from humansplat.body import BodyModel
from humansplat.body.fit import FitConfig, FitResult, fit_body
from humansplat.cameras import Cameras, project_points
from humansplat.gaussians import Gaussians
from humansplat.preprocess import Preprocessed, preprocess
from humansplat.models import Reconstructor
from humansplat.refine import RefineConfig, photo_psnr, refine
from humansplat.utils import pick_device, seed_everything

__all__ = ["DEFAULT_WEIGHTS", "Pipeline", "Reconstruction", "reconstruct"]

DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "humansplat-main"
MIN_KEYPOINTS = 6  # confident COCO keypoints needed before the body fit is used as the structure prior
MAX_REPROJECTION = 0.04  # mean keypoint reprojection error, as a fraction of the crop side, for a trusted fit
# Template-free anchors need the real height of what the matte shows (one view cannot tell scale).
MIN_OPACITY = 0.005  # nearly transparent Gaussians are dropped (invisible, and they slow rendering tenfold)
VISIBLE_HEIGHT_M = {"full_body": 1.7, "half_body": 0.85, "head_only": 0.3}


@dataclass
class Reconstruction:
    """One photo's result. ``gaussians`` (N,) and ``camera`` (batch 1, the photo's crop) share the world frame."""

    name: str
    gaussians: Gaussians
    camera: Cameras
    inputs: Preprocessed
    fit: FitResult | None
    body_vertices: Tensor | None  # (Nv, 3) fitted body in the world frame, None when no fit was made
    structure_prior: str  # "body" or "template_free"
    cropped_to_view: bool
    timings: dict[str, float] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def report(self) -> dict:
        fit = None
        if self.fit is not None:
            fit = {
                "reprojection_px": float(self.fit.reprojection_px[0]),
                "converged": bool(self.fit.converged[0]),
                "params": self.fit.params.to_dict(),
            }
        return {
            "name": self.name,
            "humansplat_version": humansplat.__version__,
            "num_gaussians": self.gaussians.num,
            "structure_prior": self.structure_prior,
            "cropped_to_view": self.cropped_to_view,
            "input_camera": self.camera.to_dict(),
            "inputs": self.inputs.to_dict(),
            "body_fit": fit,
            "timings_s": {k: round(v, 4) for k, v in self.timings.items()},
            **self.meta,
        }


class Pipeline:
    """Loaded models for photo -> Gaussians. ``weights``: a reconstructor folder (default: the shipped one)."""

    def __init__(self, weights: str | Path | None = None, device: str | None = None, seed: int = 0, fit_iters: int | None = None,
                 refine_steps: int = RefineConfig.steps, compile_fit: bool = False, refine_mode: str = RefineConfig.mode):
        self.device = pick_device(device)
        self.fit_config = FitConfig(compile=compile_fit)
        self.refine = RefineConfig(steps=refine_steps, mode=refine_mode)
        self.seed = seed
        self.fit_iters = fit_iters
        t = time.perf_counter()
        self.weights = Path(weights or DEFAULT_WEIGHTS)
        if not (self.weights / "config.json").is_file():
            raise FileNotFoundError(f"no reconstructor weights in {self.weights} (expected config.json + model.safetensors)")
        self.model = Reconstructor.from_pretrained(self.weights, self.device)
        self.body = BodyModel.load(self.device)
        load_s = time.perf_counter() - t
        self.meta = {
            "device": str(self.device),
            "device_name": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else platform.processor() or platform.machine(),
            "torch": torch.__version__,
            "weights": str(self.weights),
            "weights_sha256": _file_hash(self.weights / "model.safetensors"),
            "seed": seed,
            "model_load_s": round(load_s, 3),
        }

    @torch.no_grad()
    def __call__(self, image, person: int | None = None, name: str | None = None) -> Reconstruction:
        """``image``: a path, array or PIL image, or a ``Preprocessed`` photo (its preprocessing is not redone)."""
        seed_everything(self.seed)
        timings: dict[str, float] = {}
        res = self.model.config.image_size
        if isinstance(image, Preprocessed):  # matte, keypoints and crop made earlier (or by other tools)
            inputs = image
        else:
            with _timed(timings, "preprocess", self.device):
                inputs = preprocess(image, resolution=max(512, res), person=person)
        camera = inputs.camera()
        confident = int((inputs.confidence >= 0.5).sum())
        fit = None
        vertices = None
        with _timed(timings, "body_fit", self.device):
            if confident >= MIN_KEYPOINTS and inputs.framing != "head_only":
                with torch.enable_grad():
                    fit = fit_body(inputs.keypoints[None].to(self.device), inputs.confidence[None].to(self.device),
                                   camera.to(self.device), mask=inputs.mask.to(self.device), iters=self.fit_iters, body=self.body,
                                   config=self.fit_config)
                vertices = fit.output.vertices[0]
        trusted = fit is not None and float(fit.reprojection_px[0]) <= MAX_REPROJECTION * inputs.resolution
        prior = "body" if trusted and self.model.config.anchor_mode == "body" else "template_free"

        with _timed(timings, "reconstruct", self.device):
            images = inputs.image[None, None].to(self.device)
            cams = camera[None].to(self.device)  # batch (1, 1)
            if prior == "body":
                centre = (vertices.amin(0) + vertices.amax(0)) / 2
                cams = _shift_world(cams, centre)
                vertices = vertices - centre
                anchors = self.model.body_anchors(vertices[None], self.body.vertex_labels)
            else:
                height = VISIBLE_HEIGHT_M.get(inputs.framing, 1.7)
                anchors = self.model.template_free_anchors(cams[:, 0], inputs.mask[None].to(self.device), height)
                centre = anchors.xyz[0].mean(0)
                cams = _shift_world(cams, centre)
                anchors.xyz = anchors.xyz - centre
                if vertices is not None:
                    vertices = vertices - centre
            gaussians = self.model(images, cams, anchors)[0]
            keep = gaussians.opacities >= MIN_OPACITY
            cropped = inputs.is_partial
            if cropped:  # what the photo shows: cut where the photo ends, not where the padded crop does
                keep &= _inside_view(gaussians.means, cams[0, 0], inputs.photo_box, margin=0.005)
            gaussians = gaussians.select(keep)
        quality = {"input_view_psnr_db": photo_psnr(gaussians, cams[0], inputs.image)}
        if self.refine.steps > 0:
            with _timed(timings, "refine", self.device):
                gaussians = refine(gaussians, cams[0], inputs.image, inputs.mask, self.refine)
            quality["input_view_psnr_refined_db"] = photo_psnr(gaussians, cams[0], inputs.image)
        return Reconstruction(
            name=name or (Path(inputs.source).stem if inputs.source else "image"),
            gaussians=gaussians.detach().to("cpu"),
            camera=cams[0].to("cpu"),
            inputs=inputs,
            fit=fit,
            body_vertices=None if vertices is None else vertices.detach().cpu(),
            structure_prior=prior,
            cropped_to_view=cropped,
            timings=timings,
            meta={**self.meta, "refine_steps": self.refine.steps, "refine_mode": self.refine.mode, **{k: round(v, 2) for k, v in quality.items()}},
        )


_PIPELINES: dict[tuple, Pipeline] = {}


def reconstruct(image, device: str | None = None, weights: str | Path | None = None, seed: int = 0,
                refine_steps: int = RefineConfig.steps) -> Gaussians:
    """Photo (path, array or PIL image) -> Gaussians (N,) in the world frame; models stay loaded between calls."""
    key = (str(pick_device(device)), str(weights), seed, refine_steps)
    if key not in _PIPELINES:
        _PIPELINES[key] = Pipeline(weights, device, seed, refine_steps=refine_steps)
    return _PIPELINES[key](image).gaussians


def _shift_world(cams: Cameras, centre: Tensor) -> Cameras:
    """The same cameras in a world whose origin moved to ``centre`` (points p become p - centre)."""
    T = torch.eye(4, device=cams.w2c.device, dtype=cams.w2c.dtype)
    T[:3, 3] = centre.to(T)
    return Cameras(cams.K, cams.w2c @ T, cams.width, cams.height)


def _inside_view(points: Tensor, camera: Cameras, box: tuple[float, float, float, float], margin: float) -> Tensor:
    """(N,) mask of points in front of ``camera`` that project inside ``box`` (u0, v0, u1, v1) of its image,
    grown by a margin (a fraction of the image size)."""
    uv, z = project_points(points, camera)
    m = margin * max(camera.width, camera.height)
    u0, v0, u1, v1 = box
    return (z > 0) & (uv[:, 0] > u0 - m) & (uv[:, 0] < u1 + m) & (uv[:, 1] > v0 - m) & (uv[:, 1] < v1 + m)


def _file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def _timed(timings: dict[str, float], name: str, device: torch.device):
    """Record the wall-clock time of a block (CUDA-synchronised) as ``timings[name]``."""
    t = time.perf_counter()
    yield
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    timings[name] = time.perf_counter() - t
