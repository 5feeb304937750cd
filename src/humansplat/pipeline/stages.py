"""The pipeline's stages as plain functions with typed results: each can be called, tested or replaced alone.

photo -> ``preprocess`` (humansplat.preprocess) -> ``fit_photo`` -> ``place_in_world`` -> [novel views] ->
``reconstruct_gaussians`` -> ``crop_to_photo`` -> refine (humansplat.refine).

World frame of a result: the fit's world (the photo's camera on +Z at ``CAMERA_DISTANCE``, looking at the
origin) moved so that the subject's centre is the origin, as in training. ``Placement.world_offset`` is that
move (a fit-world point p is ``p - world_offset`` in the result), and the body parameters are moved with it,
so the body posed from ``Placement.body_params`` lies on the Gaussians.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from humansplat.body import BodyModel, BodyParams
from humansplat.body.fit import FitConfig, FitResult, fit_body
from humansplat.body.limbs import LIMBS, limb_errors, limb_vertices
from humansplat.cameras import Cameras, project_points
from humansplat.gaussians import Gaussians
from humansplat.keypoints import VISIBLE_CONFIDENCE
from humansplat.models import Anchors, Reconstructor
from humansplat.novelview import NovelViews, reconstruct_with_views
from humansplat.preprocess import Preprocessed
from humansplat.preprocess.framing import visible_height

MIN_KEYPOINTS = 6  # confident COCO keypoints needed before the body fit is used as the structure prior
MAX_REPROJECTION = 0.04  # mean keypoint reprojection error, as a fraction of the crop side, for a trusted fit
# A limb whose seen (confidence >= VISIBLE_CONFIDENCE) elbow and wrist, or knee and ankle, miss by more than this on
# average (fraction of the crop side) is untrusted: its anchors are dropped and the photo's pixels shape it.
MAX_LIMB_REPROJECTION = 0.05
MAX_UNTRUSTED_LIMBS = 2  # more than this and the whole fit is untrusted (the torso and head must always fit; 2: both
# legs of a jump, whose body prior still shapes the torso, arms and head: docs/fit.md)
MIN_OPACITY = 0.005  # nearly transparent Gaussians are dropped (invisible, and they slow rendering tenfold)
PHOTO_EDGE_MARGIN = 0.005  # partial photos keep Gaussians projecting this far (fraction of the crop) past the photo


@dataclass
class BodyFit:
    """The body fitted to a photo (``fit`` None when the photo gives too little to fit), and whether it is
    trusted as the structure prior. ``camera``: the photo's camera in the fit's world (batch 1)."""

    camera: Cameras
    fit: FitResult | None
    trusted: bool
    reason: str  # why it is (not) trusted, for the report
    untrusted_limbs: tuple[str, ...] = ()  # names of humansplat.body.limbs.LIMBS whose keypoints the fit misses
    limb_errors_px: dict[str, float | None] = field(default_factory=dict)  # mean error of the core and each limb


@dataclass
class Placement:
    """The reconstruction's world: cameras (batch (1, 1)), anchors, and the body in it (None without a fit)."""

    cameras: Cameras
    anchors: Anchors
    world_offset: Tensor  # (3,) the fit-world point that became the origin
    structure_prior: str  # "body" or "template_free"
    body_vertices: Tensor | None  # (Nv, 3)
    body_params: BodyParams | None  # batch 1; posed, they give body_vertices


def fittable(inputs: Preprocessed) -> str | None:
    """Why a photo gives too little to fit a body to (None when it can be fitted)."""
    confident = int((inputs.confidence >= VISIBLE_CONFIDENCE).sum())
    if inputs.framing == "head_only":
        return "head-only photo"
    if confident < MIN_KEYPOINTS:
        return f"{confident} confident keypoints (at least {MIN_KEYPOINTS} needed)"
    return None


def fit_photo(inputs: Preprocessed, body: BodyModel, config: FitConfig | None = None, iters: int | None = None,
              force: bool = False) -> BodyFit:  # fmt: skip
    """Fit the body to the photo's keypoints and matte, in the photo's camera, and judge the fit.
    ``force``: fit even a photo that ``fittable`` turns down (the fit is then not trusted)."""
    camera = inputs.camera().to(body.device)
    why_not = fittable(inputs)
    if why_not is not None and not force:
        return BodyFit(camera, None, False, why_not)
    dev = body.device
    with torch.enable_grad():
        fit = fit_body(inputs.keypoints[None].to(dev), inputs.confidence[None].to(dev), camera, mask=inputs.mask.to(dev),
                       iters=iters, body=body, config=config)  # fmt: skip
    err = (fit.keypoints_2d[0].detach().cpu() - inputs.keypoints).norm(dim=-1)
    trusted, reason, limbs, errors = judge_fit(err, inputs.confidence, inputs.resolution, (config or FitConfig()).min_confidence)
    if why_not is not None:
        return BodyFit(camera, fit, False, why_not, limbs, errors)
    return BodyFit(camera, fit, trusted, reason, limbs, errors)


def judge_fit(error_px: Tensor, confidence: Tensor, resolution: int, min_confidence: float) -> tuple[bool, str, tuple[str, ...], dict]:
    """The trust rule on per-keypoint errors (17,): (trusted, why, untrusted limbs, core and limb errors). A limb is
    untrusted when its confidently seen keypoints miss by more than ``MAX_LIMB_REPROJECTION``; the fit is trusted
    when the torso and head, and the rest without the untrusted limbs, miss by at most ``MAX_REPROJECTION`` on
    average (keypoints of confidence >= ``min_confidence``) and at most ``MAX_UNTRUSTED_LIMBS`` limbs are untrusted."""
    limit, limb_limit = MAX_REPROJECTION * resolution, MAX_LIMB_REPROJECTION * resolution
    seen = confidence >= min_confidence
    errors = limb_errors(error_px, seen)
    sure = limb_errors(error_px, confidence >= VISIBLE_CONFIDENCE)
    limbs = tuple(n for n in LIMBS if sure[n] is not None and sure[n] > limb_limit)
    kept = seen.clone()
    for name in limbs:
        kept[list(LIMBS[name])] = False
    rest = float(error_px[kept].mean()) if bool(kept.any()) else 0.0
    bad = ", ".join(f"{n} {sure[n]:.0f} px" for n in limbs)
    if errors["core"] is not None and errors["core"] > limit:
        return False, f"torso and head reprojection {errors['core']:.1f} px > {limit:.1f} px", limbs, errors
    if len(limbs) > MAX_UNTRUSTED_LIMBS:
        return False, f"{len(limbs)} limbs off (> {limb_limit:.1f} px: {bad})", limbs, errors
    if rest > limit:
        return False, f"reprojection {rest:.1f} px > {limit:.1f} px", limbs, errors
    return True, f"reprojection {rest:.1f} px <= {limit:.1f} px" + (f"; untrusted {bad}" if limbs else ""), limbs, errors


def place_in_world(model: Reconstructor, body: BodyModel, inputs: Preprocessed, body_fit: BodyFit) -> Placement:
    """Anchors from the trusted body (or template-free ones), everything moved so the subject's centre is the origin."""
    cams = body_fit.camera[None]  # batch (1, 1)
    fit = body_fit.fit
    vertices = None if fit is None else fit.output.vertices[0].detach()
    trusted_body = vertices if body_fit.trusted else None
    anchors, offset, prior = centred_anchors(model, body, cams[:, 0], inputs.mask, inputs.framing, trusted_body, body_fit.untrusted_limbs)
    params = None
    if fit is not None:
        params = fit.params.detach().clone()
        params.transl = params.transl - offset  # the root translation carries the move: the body stays on the Gaussians
    return Placement(shift_world(cams, offset), anchors, offset, prior, None if vertices is None else vertices - offset, params)


def centred_anchors(model: Reconstructor, body: BodyModel, camera: Cameras, mask: Tensor, framing: str,
                    vertices: Tensor | None, untrusted_limbs: tuple[str, ...] = ()) -> tuple[Anchors, Tensor, str]:
    """The structure prior in a world centred on the subject: (anchors, the fit-world point that became the
    origin, "body" or "template_free"). Body anchors from the trusted body's ``vertices`` (Nv, 3; None: no
    trusted body) without those on its untrusted limbs, else template-free ones sized by the ``framing``
    from the matte ``mask`` ((1,) H, W) seen by ``camera`` (batch 1)."""
    if vertices is not None and model.config.anchor_mode == "body":
        offset = (vertices.amin(0) + vertices.amax(0)) / 2
        anchors = without_limbs(model.body_anchors((vertices - offset)[None], body.vertex_labels), untrusted_limbs)
        return anchors, offset, "body"
    anchors = model.template_free_anchors(camera, mask[None].to(camera.K.device), visible_height(framing))
    offset = anchors.xyz[0].mean(0)
    anchors.xyz = anchors.xyz - offset
    return anchors, offset, "template_free"


def without_limbs(anchors: Anchors, limbs: tuple[str, ...]) -> Anchors:
    """Body anchors (batch 1) without those on ``limbs``: a limb the fit misses gets no anchors, so the photo's
    pixel-aligned Gaussians alone shape it."""
    if not limbs:
        return anchors
    keep = ~limb_vertices(anchors.labels[0], limbs)
    return Anchors(anchors.xyz[:, keep], anchors.labels[:, keep])


def reconstruct_gaussians(model: Reconstructor, inputs: Preprocessed, placement: Placement, views: NovelViews | None = None) -> Gaussians:
    """The feed-forward reconstruction (N,) from the photo, and the generated views when given, in the placement's world."""
    photo = inputs.image.to(placement.cameras.K.device)
    if views is None:  # the model resizes the photo itself
        return model(photo[None, None], placement.cameras, placement.anchors)[0]
    return reconstruct_with_views(model, photo, placement.cameras[0], views, placement.anchors)[0]


def crop_to_photo(gaussians: Gaussians, inputs: Preprocessed, camera: Cameras) -> Gaussians:
    """Drop nearly transparent Gaussians; for partial photos (half body, head only) also those outside what the
    photo shows: cut where the photo ends, not where its padded square crop does."""
    keep = gaussians.opacities >= MIN_OPACITY
    if inputs.is_partial:
        keep &= inside_view(gaussians.means, camera, inputs.photo_box, margin=PHOTO_EDGE_MARGIN)
    return gaussians.select(keep)


def shift_world(cams: Cameras, centre: Tensor) -> Cameras:
    """The same cameras in a world whose origin moved to ``centre`` (points p become p - centre)."""
    T = torch.eye(4, device=cams.w2c.device, dtype=cams.w2c.dtype)
    T[:3, 3] = centre.to(T)
    return Cameras(cams.K, cams.w2c @ T, cams.width, cams.height)


def inside_view(points: Tensor, camera: Cameras, box: tuple[float, float, float, float], margin: float) -> Tensor:
    """(N,) mask of points in front of ``camera`` that project inside ``box`` (u0, v0, u1, v1) of its image,
    grown by a margin (a fraction of the image size)."""
    uv, z = project_points(points, camera)
    m = margin * max(camera.width, camera.height)
    u0, v0, u1, v1 = box
    return (z > 0) & (uv[:, 0] > u0 - m) & (uv[:, 0] < u1 + m) & (uv[:, 1] > v0 - m) & (uv[:, 1] < v1 + m)
