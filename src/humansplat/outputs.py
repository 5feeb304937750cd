"""What results look like on disk, for the CLI, the app and the benchmarks alike.

``write_result(result, folder, pipeline)``: a reconstruction's folder (Gaussians as .ply/.splat, turntable,
views, parts, body overlay, report.json). ``write_fit(inputs, body_fit, body, folder)``: a body fit's folder
(input, matte, keypoints, body overlays, body.json, body.obj). Both are written into a temporary folder that
takes the final name only when complete. ``render_body`` is the quick part-coloured body preview both use.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from humansplat.body import BodyModel, colorize_labels
from humansplat.cameras import Cameras, fov_from_intrinsics, orbit_cameras
from humansplat.gaussians import render, save_ply, save_splat
from humansplat.keypoints import COCO_KEYPOINTS
from humansplat.media import contact_sheet, frame_points, save_image, turntable_cameras, write_gif, write_video
from humansplat.preprocess import Preprocessed
from humansplat.preprocess.overlay import draw_keypoints, overlay, paint_mesh, to_pil
from humansplat.utils import atomic_dir

if TYPE_CHECKING:
    from humansplat.pipeline import Pipeline, Reconstruction
    from humansplat.pipeline.stages import BodyFit

__all__ = ["write_result", "write_fit", "render_body", "side_camera", "body_record", "TURNTABLE_FRAMES", "VIEW_SIZE"]

TURNTABLE_FRAMES = 48
VIEW_SIZE = 512  # turntable and view size in pixels
NOVEL_VIEWS = 8  # views.png / parts.png: every 45 degrees
TURNTABLE_ELEVATION_DEG = 5.0
VIEW_FOV_DEG = 30.0
RENDER_CHUNK = 8  # cameras per render call
GIF_FRAMES = 24
BODY_OPACITY = 0.7  # of the body over the photo


def write_result(result: Reconstruction, folder: str | Path, pipeline: Pipeline, frames: int = TURNTABLE_FRAMES,
                 size: int = VIEW_SIZE) -> Path:  # fmt: skip
    """Every output of one reconstruction, into a temporary folder renamed to ``folder`` when complete."""
    device = pipeline.device
    g = result.gaussians.to(device)
    centre, radius = frame_points(g.means, g.opacities)

    def views(n: int, elevation: float):
        cams = turntable_cameras(n, size, elevation, VIEW_FOV_DEG, centre, fit_radius=radius).to(device)
        out = [render(g, cams[i : i + RENDER_CHUNK]) for i in range(0, n, RENDER_CHUNK)]
        rgb = torch.cat([o.rgb for o in out]).cpu()
        feats = torch.cat([o.features for o in out]) if out[0].features is not None else None
        return rgb, feats, torch.cat([o.alpha for o in out])

    with torch.no_grad():
        turn, _, _ = views(frames, TURNTABLE_ELEVATION_DEG)
        novel, feats, alpha = views(NOVEL_VIEWS, 0.0)
        parts = None
        if feats is not None:
            labels = pipeline.model.decode_semantics(feats).argmax(-1)
            labels = torch.where(alpha[..., 0] > 0.5, labels, torch.full_like(labels, -1))
            parts = colorize_labels(labels.cpu(), background=(255, 255, 255))
    photo = torch.nn.functional.interpolate(result.inputs.image[None], size=(size, size), mode="bilinear", antialias=True)[0]
    with atomic_dir(folder) as tmp:
        save_ply(result.gaussians, tmp / "gaussians.ply")
        save_splat(result.gaussians, tmp / "gaussians.splat")
        write_video(tmp / "turntable.mp4", list(turn))
        write_gif(tmp / "turntable.gif", list(turn[:: max(1, frames // GIF_FRAMES)]))
        save_image(tmp / "views.png", contact_sheet([photo.permute(1, 2, 0), *novel], cols=NOVEL_VIEWS + 1))
        if parts is not None:
            save_image(tmp / "parts.png", contact_sheet(list(parts), cols=NOVEL_VIEWS))
        if result.novel_views is not None:
            save_image(tmp / "generated.png", contact_sheet([photo.permute(1, 2, 0), *_resized(result.novel_views, size)], cols=len(result.novel_views) + 1))
        if result.body_vertices is not None:
            colours, a = render_body(pipeline.body, result.body_vertices.to(device), [result.camera.to(device)])
            overlay(result.inputs.image, colours[0].permute(2, 0, 1), a[0].permute(2, 0, 1), opacity=BODY_OPACITY).save(tmp / "body.png")
        (tmp / "report.json").write_text(json.dumps(result.report(), indent=1))
    return Path(folder)


def _resized(images: Tensor, size: int) -> list[Tensor]:
    """(K, 3, S, S) -> K images (size, size, 3)."""
    out = torch.nn.functional.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True).clamp(0, 1)
    return list(out.permute(0, 2, 3, 1))


def write_fit(inputs: Preprocessed, body_fit: BodyFit, body: BodyModel, folder: str | Path, seconds: float) -> Path:
    """A body fit's outputs (the fit must exist), into a temporary folder renamed to ``folder`` when complete."""
    from humansplat.meshes import save_obj

    verts = body_fit.fit.output.vertices[0].detach()
    side = side_camera(verts, body_fit.camera)
    colours, alpha = render_body(body, verts, [body_fit.camera, side])
    with atomic_dir(folder) as tmp:
        to_pil(inputs.image).save(tmp / "input.png")
        to_pil(inputs.mask).convert("L").save(tmp / "matte.png")
        draw_keypoints(inputs.image, inputs.keypoints, inputs.confidence).save(tmp / "keypoints.png")
        overlay(inputs.image, colours[0].permute(2, 0, 1), alpha[0].permute(2, 0, 1), opacity=BODY_OPACITY).save(tmp / "body_front.png")
        to_pil(colours[1] * alpha[1] + (1 - alpha[1])).save(tmp / "body_side.png")
        save_obj(tmp / "body.obj", verts, body.faces, colorize_labels(body.vertex_labels).float() / 255)
        (tmp / "body.json").write_text(json.dumps(body_record(inputs, body_fit, side, seconds), indent=1))
    return Path(folder)


def body_record(inputs: Preprocessed, body_fit: BodyFit, side: Cameras, seconds: float) -> dict:
    """What body.json holds: enough to re-render the body from the photo's viewpoint and to judge the fit."""
    from humansplat import __version__

    r = body_fit.fit
    uv, observed = r.keypoints_2d[0].cpu(), inputs.keypoints
    err = (uv - observed).norm(dim=-1).tolist()

    def keypoint(i: int) -> dict:
        return {"observed": observed[i].tolist(), "confidence": float(inputs.confidence[i]), "fitted": uv[i].tolist(), "error_px": err[i]}

    return {
        "humansplat_version": __version__,
        "source": inputs.source,
        "image": {k: v for k, v in inputs.to_dict().items() if k not in ("keypoints", "K")},
        "camera": {
            **body_fit.camera[0].to_dict(),
            "note": "the photo's camera for the square crop (input.png): OpenCV (x right, y down, z forward), "
            "w2c world-to-camera, metres, world +Y up, subject facing +Z; camera on +Z looking toward -Z. "
            "humansplat.cameras.Cameras.from_dict(camera) re-renders the photo's viewpoint",
        },
        "side_camera": side[0].to_dict(),
        "body": r.params[0].to_dict(),
        "fit": {
            "reprojection_px": float(r.reprojection_px[0]),
            "converged": bool(r.converged[0]),
            "trusted": body_fit.trusted,
            "note": body_fit.reason,
            "untrusted_limbs": list(body_fit.untrusted_limbs),
            "limb_reprojection_px": body_fit.limb_errors_px,
            "loss": float(r.loss[0]),
            "seconds": round(seconds, 3),
            "keypoints": {name: keypoint(i) for i, name in enumerate(COCO_KEYPOINTS)},
        },
    }


def side_camera(vertices: Tensor, camera: Cameras, azimuth: float = 90.0) -> Cameras:
    """A camera on the subject's left (world +X side), at the photo camera's field of view, framing the body."""
    lo, hi = vertices.amin(0), vertices.amax(0)
    centre, radius = (lo + hi) / 2, float((hi - lo).norm() / 2)
    fov = fov_from_intrinsics(camera.K[0].cpu(), camera.height)
    dist = radius / math.sin(math.radians(fov) / 2) * 1.02
    cam = orbit_cameras(azimuth, 0.0, radius=dist, target=centre.cpu(), fov_deg=fov, size=(camera.width, camera.height))
    return Cameras(cam.K, cam.w2c, cam.width, cam.height).to(vertices.device)


def render_body(body: BodyModel, vertices: Tensor, cameras: list[Cameras]) -> tuple[Tensor, Tensor]:
    """The body in body-part colours, shaded by the view angle, in each camera: rgb (V, H, W, 3) and
    alpha (V, H, W, 1) tensors (a quick painter's-algorithm preview, see ``paint_mesh``)."""
    vertex_colours = colorize_labels(body.vertex_labels).float().cpu() / 255
    faces = body.faces.cpu()
    face_colours = vertex_colours[faces].mean(1)
    rgbs, alphas = zip(*(paint_mesh(vertices, faces, face_colours, cam) for cam in cameras))
    return torch.from_numpy(np.stack(rgbs)), torch.from_numpy(np.stack(alphas))[..., None]
