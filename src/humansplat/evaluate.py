"""Scoring a reconstructor on the held-out benchmark: the frontal input view in, all 36 views rendered.

Metrics per rendered view, then averaged over views and subjects, over all views and over the novel
views only (every view but the input):
- PSNR on the full image (white background), per image (not HumanSplat's batch-pooled PSNR);
- SSIM (Gaussian 11-px window, per channel, averaged);
- masked PSNR: the MSE over the ground-truth foreground pixels only, so the empty background does not
  inflate the score;
- part accuracy and mIoU of the rendered semantic features (when the benchmark has part labels), and the
  IoU of every class (which parts fail);
- PSNR inside the face (Face_Neck, lips, teeth, tongue) and the hands, from the ground-truth part labels;
- the same for the side views (azimuth 90 and 270 degrees +- 10 from the input camera) apart from the
  other novel views (per-pixel Gaussians seen edge-on streak there).
Timings: reconstruction (forward pass) and rendering of all views, per subject, device-synchronised.

Body (``body``): "gt" anchors each subject on its ground-truth body (an upper bound); "fitted" is the
protocol a user lives in: the ground-truth body's COCO keypoints projected into the input view with
detector-like noise and misses, ``fit_body`` with the input camera and matte, and the pipeline's trust rule
(too few keypoints or a fit that does not reproject: template-free anchors). ``refine`` runs the
pipeline's per-instance refinement (humansplat.refine) on each subject before rendering.
"""

from __future__ import annotations

import json
import math
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from humansplat.body.parts import CLASS_ID, SAPIENS_CLASSES
from humansplat.cameras import Cameras, project_points
from humansplat.gaussians import render
from humansplat.metrics import psnr, sharpness_ratio
from humansplat.models import Reconstructor
from humansplat.pipeline.stages import MIN_KEYPOINTS, MIN_OPACITY, centred_anchors, judge_fit, shift_world
from humansplat.preprocess.framing import framing_heights
from humansplat.refine import RefineConfig, refine
from humansplat.train.losses import pixel_depth_error, ssim

BODY_MODES = ("gt", "fitted", "fitted_true_depth")
SIDE_AZIMUTHS_DEG = (90.0, 270.0)  # from the input camera, about the subject's vertical axis
SIDE_TOLERANCE_DEG = 10.0
REGIONS = {
    "face": ("Face_Neck", "Lower_Lip", "Upper_Lip", "Lower_Teeth", "Upper_Teeth", "Tongue"),
    "hands": ("Left_Hand", "Right_Hand"),
}
MIN_REGION_FRACTION = 64 / 512**2  # a view counts for a region's PSNR when the region covers this much of it
# Simulated detector (fitted-body protocol): per-axis keypoint noise as a fraction of the person's box
# (its longer side), independent misses, and confidences of the kept keypoints.
KEYPOINT_NOISE = 0.02
KEYPOINT_DROPOUT = 0.15
KEYPOINT_CONFIDENCE = (0.6, 1.0)
FIT_SEED = 15


@dataclass
class SubjectResult:
    name: str
    psnr: Tensor  # (V,)
    ssim: Tensor
    masked_psnr: Tensor
    part_correct: Tensor | None  # (V, C) intersections / unions for mIoU, accumulated per class
    part_union: Tensor | None
    part_acc: Tensor | None
    reconstruct_s: float
    render_s: float
    pixel_depth_cm: float | None = None  # opacity-weighted depth error of the per-pixel Gaussians (input view)
    side: Tensor | None = None  # (V,) bool: a side view
    region_psnr: dict[str, Tensor] = field(default_factory=dict)  # (V,) per region, NaN where it is absent
    fit: dict | None = None  # fitted-body protocol: prior, reprojection_px, fit_s
    refine_s: float | None = None
    sharpness: Tensor | None = None  # (V,) Laplacian energy inside the mask, rendered / ground truth (novelview_eval)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def side_views(cameras: Cameras) -> Tensor:
    """(V,) bool: cameras at SIDE_AZIMUTHS_DEG +- SIDE_TOLERANCE_DEG from camera 0 about the world's +Y."""
    c = -(cameras.w2c[:, :3, :3].transpose(1, 2) @ cameras.w2c[:, :3, 3:])[..., 0]  # camera centres (V, 3)
    az = torch.rad2deg(torch.atan2(c[:, 0], c[:, 2]) - torch.atan2(c[0, 0], c[0, 2])) % 360
    return torch.stack([((az - a + 180) % 360 - 180).abs() <= SIDE_TOLERANCE_DEG for a in SIDE_AZIMUTHS_DEG]).any(0)


def simulate_detector(subject: dict, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """The ground-truth body's COCO keypoints in the input view as a detector would give them:
    (17, 2) pixels with noise KEYPOINT_NOISE x the matte's box, (17,) confidences (0: missed)."""
    cam = subject["cameras"][0]
    uv = project_points(subject["body_keypoints"].float(), cam)[0]
    ys, xs = torch.nonzero(subject["masks"][0, 0] > 0.5, as_tuple=True)
    box = float(max(xs.max() - xs.min(), ys.max() - ys.min())) if xs.numel() else float(cam.width)
    uv = uv + KEYPOINT_NOISE * box * torch.randn(uv.shape, generator=generator)
    lo, hi = KEYPOINT_CONFIDENCE
    conf = lo + (hi - lo) * torch.rand(17, generator=generator)
    return uv, torch.where(torch.rand(17, generator=generator) < KEYPOINT_DROPOUT, torch.zeros_like(conf), conf)


def fitted_anchors(model: Reconstructor, subject: dict, body, device: torch.device, true_depth: bool = False):
    """The pipeline's structure prior from the simulated detector: (anchors, world shift, fit info); the
    world is re-centred on the fitted body (or the template-free anchors), as in the pipeline. ``true_depth``
    (a diagnostic): the fitted body scaled about the input camera so its centre lies at the true body's
    depth (the same image, the true distance and size): what is left is the error in pose and shape."""
    from humansplat.body.fit import FitConfig, fit_body

    g = torch.Generator().manual_seed(FIT_SEED + zlib.crc32(str(subject.get("name", "")).encode()))
    kps, conf = simulate_detector(subject, g)
    cam = subject["cameras"][:1].to(device)
    mask = subject["masks"][0].to(device).float()
    t = time.perf_counter()
    fit, reproj, trusted, limbs = None, math.inf, False, ()
    if int((conf >= 0.5).sum()) >= MIN_KEYPOINTS:
        with torch.enable_grad():
            fit = fit_body(kps[None].to(device), conf[None].to(device), cam, mask=mask, body=body)
        reproj = float(fit.reprojection_px[0])
        err = (fit.keypoints_2d[0].detach().cpu() - kps.cpu()).norm(dim=-1)
        trusted, _, limbs, _ = judge_fit(err, conf.cpu(), cam.width, FitConfig().min_confidence)  # the pipeline's rule
    fit_s = time.perf_counter() - t
    vertices = fit.output.vertices[0].detach() if trusted else None
    if vertices is not None and true_depth:
        eye = torch.linalg.inv(cam.w2c[0])[:3, 3]
        truth = subject["body_vertices"].to(device)
        depth = lambda v: ((v.amin(0) + v.amax(0)) / 2 - eye).norm()  # noqa: E731
        vertices = eye + (vertices - eye) * (depth(truth) / depth(vertices))
    anchors, centre, prior = centred_anchors(model, body, cam, mask, "full_body", vertices, limbs)  # as the pipeline places it
    return anchors, centre, {"prior": prior, "reprojection_px": reproj, "fit_s": fit_s}


@torch.no_grad()
def score_subject(model: Reconstructor, subject: dict, anchors_mode: str, device: torch.device, body_mode: str = "gt",
                  body=None, refine_config: RefineConfig | None = None, extra_views=None, refine_views=None) -> SubjectResult:  # fmt: skip
    """subject: images (V,3,H,W) [0,1], masks (V,1,H,W), cameras (V,), body_vertices (Nv,3), vertex_labels
    (Nv,), optional labels (V,H,W) (-1 unknown), body_keypoints (17,3) for ``body_mode="fitted"`` (then
    ``body`` is the BodyModel); view 0 is the input, the others are novel views. ``extra_views``: generated
    views (``humansplat.novelview.NovelViews``) given to the reconstructor as extra inputs; ``refine_views``:
    views (NovelViews, in the benchmark's world: ground-truth bodies only) the refinement also fits."""
    images = subject["images"].to(device)
    masks = subject["masks"].to(device).float()
    cams = subject["cameras"].to(device)
    cams_b = cams.reshape(1, -1)
    input_cam = cams_b[:, :1]
    fit_info = refine_s = None
    _sync(device)
    t0 = time.perf_counter()
    if body_mode != "gt" and anchors_mode == "body":
        anchors, centre, fit_info = fitted_anchors(model, subject, body, device, body_mode == "fitted_true_depth")
        cams_b = shift_world(cams_b, centre)
        input_cam = cams_b[:, :1]
        t0 += fit_info["fit_s"]  # the fit is timed on its own
    elif anchors_mode == "body":
        anchors = model.body_anchors(subject["body_vertices"].to(device)[None], subject["vertex_labels"].to(device))
    else:
        kp = subject.get("body_keypoints")  # sized for the framing, as `humansplat reconstruct` sizes them
        height = framing_heights(None if kp is None else kp.to(device)[None], input_cam[:, 0])
        anchors = model.template_free_anchors(input_cam[:, 0], masks[None, 0], height)
    if extra_views is None:
        gaussians = model(images[None, :1], input_cam, anchors)
    else:
        from humansplat.novelview import reconstruct_with_views

        gaussians = reconstruct_with_views(model, images[0], input_cam[0], extra_views, anchors)
    _sync(device)
    t1 = time.perf_counter()
    if refine_config is not None and refine_config.steps > 0:  # as in the pipeline: drop the invisible, refine
        g = gaussians[0]
        g = g.select(g.opacities >= MIN_OPACITY)
        views = (None, None) if refine_views is None else (refine_views.images, refine_views.cameras)
        gaussians = refine(g, input_cam[0], images[0], masks[0], refine_config, *views)._map(lambda x: x[None])
        _sync(device)
        refine_s = time.perf_counter() - t1
        t0 += refine_s  # timed on its own
        t1 += refine_s
    out = render(gaussians, cams_b, background=1.0)
    _sync(device)
    t2 = time.perf_counter()
    rgb = out.rgb[0].permute(0, 3, 1, 2).clamp(0, 1)
    err = (rgb - images).square()
    view_psnr = psnr(err.mean(dim=(1, 2, 3)))
    fg = masks > 0.5
    masked = psnr((err * fg).sum(dim=(1, 2, 3)) / (3 * fg.sum(dim=(1, 2, 3))).clamp_min(1))
    ss = torch.cat([ssim(rgb[i : i + 6], images[i : i + 6]) for i in range(0, len(rgb), 6)])
    inter = union = acc = None
    regions: dict[str, Tensor] = {}
    if subject.get("labels") is not None:
        labels = subject["labels"].to(device).long()  # -1: unknown, ignored
        for region, names in REGIONS.items():
            inside = torch.isin(labels, torch.tensor([CLASS_ID[n] for n in names], device=device))[:, None]
            n_px = inside.sum(dim=(1, 2, 3))
            value = psnr((err * inside).sum(dim=(1, 2, 3)) / (3 * n_px).clamp_min(1))
            regions[region] = torch.where(n_px >= max(1.0, MIN_REGION_FRACTION * labels[0].numel()), value, torch.full_like(value, math.nan)).cpu()
    if subject.get("labels") is not None and out.features is not None:
        pred = model.decode_semantics(out.features[0]).argmax(-1)
        known = labels >= 0
        C = model.config.num_classes
        inter = torch.stack([((pred == c) & (labels == c)).sum(dim=(1, 2)) for c in range(C)], -1).float()
        union = torch.stack([(((pred == c) & known) | (labels == c)).sum(dim=(1, 2)) for c in range(C)], -1).float()
        fgl = labels > 0
        acc = ((pred == labels) & fgl).sum(dim=(1, 2)) / fgl.sum(dim=(1, 2)).clamp_min(1)
    depth_cm = None
    if subject.get("depths") is not None and refine_s is None:  # refinement prunes: the pixel grid is gone
        grid = model.config.pixel_grid
        depth_cm = 100 * float(pixel_depth_error(gaussians.means[:, : grid**2], input_cam.w2c, subject["depths"].to(device)[None, :1], grid,
                                                 gaussians.opacity_logits[:, : grid**2].sigmoid()))  # fmt: skip
    return SubjectResult(subject.get("name", "?"), view_psnr.cpu(), ss.cpu(), masked.cpu(),
                         None if inter is None else inter.cpu(), None if union is None else union.cpu(),
                         None if acc is None else acc.cpu(), t1 - t0, t2 - t1, depth_cm, side_views(cams.to("cpu")),
                         regions, fit_info, refine_s, sharpness_ratio(rgb, images, fg).cpu())  # fmt: skip


VIEW_GROUPS = {  # name -> which views of a subject: view 0 is the input
    "all_views": lambda r: torch.ones_like(r.side),
    "novel_views": lambda r: torch.arange(len(r.side)) >= 1,
    "input_view": lambda r: torch.arange(len(r.side)) == 0,
    "side_views": lambda r: (torch.arange(len(r.side)) >= 1) & r.side,
    "other_novel_views": lambda r: (torch.arange(len(r.side)) >= 1) & ~r.side,
}


def _nanmean(t: Tensor) -> float | None:
    t = t[~t.isnan()]
    return float(t.mean()) if t.numel() else None


def summarise(results: list[SubjectResult]) -> dict:
    """Averages over the VIEW_GROUPS (all, novel, input, side and other novel views)."""
    def agg(pick) -> dict:
        sel = [pick(r) for r in results]
        d = {
            "psnr": float(torch.cat([r.psnr[m] for r, m in zip(results, sel)]).mean()),
            "ssim": float(torch.cat([r.ssim[m] for r, m in zip(results, sel)]).mean()),
            "masked_psnr": float(torch.cat([r.masked_psnr[m] for r, m in zip(results, sel)]).mean()),
        }
        for region in results[0].region_psnr:
            d[f"{region}_psnr"] = _nanmean(torch.cat([r.region_psnr[region][m] for r, m in zip(results, sel)]))
        if all(r.part_acc is not None for r in results):
            inter = sum(r.part_correct[m].sum(0) for r, m in zip(results, sel))
            union = sum(r.part_union[m].sum(0) for r, m in zip(results, sel))
            present = union[1:] > 0  # foreground classes that occur
            d["part_miou"] = float((inter[1:][present] / union[1:][present]).mean())
            d["part_acc"] = float(torch.cat([r.part_acc[m] for r, m in zip(results, sel)]).mean())
            d["part_iou"] = {SAPIENS_CLASSES[c]: float(inter[c] / union[c]) for c in range(1, len(union)) if union[c] > 0}
        return d

    fits = [r.fit for r in results if r.fit is not None]
    refined = [r.refine_s for r in results if r.refine_s is not None]
    return {
        "subjects": len(results),
        "views_per_subject": int(results[0].psnr.numel()),
        "side_views_per_subject": int(results[0].side[1:].sum()),
        **{name: agg(pick) for name, pick in VIEW_GROUPS.items()},
        **({"pixel_depth_cm": sum(r.pixel_depth_cm for r in results) / len(results)}
           if all(r.pixel_depth_cm is not None for r in results) else {}),
        **({"body_fit": {"body_prior": sum(f["prior"] == "body" for f in fits) / len(fits),
                         "reprojection_px_median": float(torch.tensor([f["reprojection_px"] for f in fits]).median()),
                         "fit_s_mean": sum(f["fit_s"] for f in fits) / len(fits)}} if fits else {}),
        "timing_s": {
            "reconstruct_mean": sum(r.reconstruct_s for r in results[1:] or results) / max(1, len(results[1:] or results)),
            "render_all_views_mean": sum(r.render_s for r in results[1:] or results) / max(1, len(results[1:] or results)),
            **({"refine_mean": sum(refined) / len(refined), "refine_max": max(refined)} if refined else {}),
        },
        "per_subject": [{"name": r.name, "psnr": float(r.psnr.mean()), "novel_psnr": float(r.psnr[1:].mean()),
                         "input_psnr": float(r.psnr[0]), "masked_psnr": float(r.masked_psnr.mean()),
                         **({"prior": r.fit["prior"], "reprojection_px": r.fit["reprojection_px"]} if r.fit else {})}
                        for r in results],
    }


def benchmark_subject(item: dict, vertex_labels: Tensor | None, name: str) -> dict:
    """A benchmark item (input view + 36 orbit views, the input being orbit view 0) as the 36 orbit views,
    whose view 0 is then the input: what ``score_subject`` takes."""
    out = {k: item[k][1:] for k in ("images", "masks", "labels", "depths") if item.get(k) is not None}
    out.update(cameras=item["cameras"][1:], body_vertices=item["body_vertices"], body_keypoints=item.get("body_keypoints"),
               vertex_labels=vertex_labels, name=name)
    return out


def evaluate(model: Reconstructor, subjects, anchors_mode: str = "auto", device: torch.device | None = None,
             progress_bar=None, body: str = "gt", refine_config: RefineConfig | None = None) -> dict:
    """Score ``model`` on an iterable of benchmark subjects; ``anchors_mode``: auto | body | template_free
    (auto follows the model's training: body anchors for a body-prior model); ``body``: gt | fitted (see
    the module doc); ``refine_config``: refine each subject as the pipeline does (None: no refinement)."""
    if body not in BODY_MODES:
        raise ValueError(f"evaluate: body must be one of {BODY_MODES}, got {body!r}")
    device = device or next(model.parameters()).device
    if anchors_mode == "auto":
        anchors_mode = model.config.anchor_mode
    body_model = None
    if body != "gt" and anchors_mode == "body":
        from humansplat.body import BodyModel

        body_model = BodyModel.load(device)
    results = []
    for subject in subjects:
        results.append(score_subject(model, subject, anchors_mode, device, body, body_model, refine_config))
        if progress_bar is not None:
            progress_bar.update(1)
    if not results:
        raise ValueError("evaluate: no subjects")
    summary = summarise(results)
    summary["anchors"] = anchors_mode
    summary["body"] = body
    summary["refine"] = None if refine_config is None or refine_config.steps <= 0 else {"mode": refine_config.mode, "steps": refine_config.steps}
    summary["device"] = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return summary


WORST_CLASSES = 8  # the part classes the table lists, lowest IoU first


def format_table(summary: dict) -> str:
    rows = [(name.replace("_", " "), summary[name]) for name in VIEW_GROUPS if name in summary]
    has_parts = "part_miou" in summary["all_views"]
    regions = [k for k in summary["all_views"] if k.endswith("_psnr") and k not in ("psnr", "masked_psnr")]
    head = f"{'':17} {'PSNR':>7} {'SSIM':>7} {'mPSNR':>7}" + "".join(f" {k[:-5] + ' PSNR':>11}" for k in regions)
    head += f" {'mIoU':>6} {'acc':>6}" if has_parts else ""
    lines = [head]
    for name, d in rows:
        line = f"{name:17} {d['psnr']:7.2f} {d['ssim']:7.4f} {d['masked_psnr']:7.2f}"
        line += "".join(f" {d[k]:11.2f}" if d[k] is not None else f" {'-':>11}" for k in regions)
        if has_parts:
            line += f" {d['part_miou']:6.3f} {d['part_acc']:6.3f}"
        lines.append(line)
    if has_parts:
        worst = sorted(summary["novel_views"]["part_iou"].items(), key=lambda kv: kv[1])[:WORST_CLASSES]
        lines.append("worst part IoU (novel views): " + ", ".join(f"{k} {v:.3f}" for k, v in worst))
    if "pixel_depth_cm" in summary:
        lines.append(f"per-pixel Gaussians, input view: depth error {summary['pixel_depth_cm']:.2f} cm (opacity-weighted)")
    if "body_fit" in summary:
        f = summary["body_fit"]
        lines.append(f"fitted body: {100 * f['body_prior']:.0f}% trusted (else template-free), median reprojection "
                     f"{f['reprojection_px_median']:.1f} px, fit {f['fit_s_mean']:.1f} s")
    t = summary["timing_s"]
    refine_txt = ""
    if summary.get("refine"):
        refine_txt = f", refine ({summary['refine']['mode']}, {summary['refine']['steps']} steps) {t['refine_mean']:.1f} s (max {t['refine_max']:.1f})"
    lines.append(f"{summary['subjects']} subjects x {summary['views_per_subject']} views ({summary['side_views_per_subject']} side), "
                 f"anchors={summary['anchors']}, body={summary.get('body', 'gt')}, {summary['device']}: reconstruct "
                 f"{1000 * t['reconstruct_mean']:.1f} ms, render all views {1000 * t['render_all_views_mean']:.1f} ms{refine_txt}")
    return "\n".join(lines)


def write_json(summary: dict, path: str | Path) -> None:
    from humansplat.utils import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
