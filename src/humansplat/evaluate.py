"""Scoring a reconstructor on the held-out benchmark: the frontal input view in, all 36 views rendered.

Metrics per rendered view, then averaged over views and subjects, over all views and over the novel
views only (every view but the input):
- PSNR on the full image (white background), per image (not HumanSplat's batch-pooled PSNR);
- SSIM (Gaussian 11-px window, per channel, averaged);
- masked PSNR: the MSE over the ground-truth foreground pixels only, so the empty background does not
  inflate the score;
- part accuracy and mIoU of the rendered semantic features (when the benchmark has part labels).
Timings: reconstruction (forward pass) and rendering of all views, per subject, device-synchronised.

The body of each benchmark subject is its ground-truth body (the real pipeline uses the fitted body).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from humansplat.gaussians import render
from humansplat.metrics import psnr, sharpness_ratio
from humansplat.models import Reconstructor
from humansplat.train.losses import pixel_depth_error, ssim


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
    sharpness: Tensor | None = None  # (V,) Laplacian energy inside the mask, rendered / ground truth (novelview_eval)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def score_subject(model: Reconstructor, subject: dict, anchors_mode: str, device: torch.device, extra_views=None) -> SubjectResult:
    """subject: images (V,3,H,W) [0,1], masks (V,1,H,W), cameras (V,), body_vertices (Nv,3), vertex_labels
    (Nv,), optional labels (V,H,W) (-1 unknown); view 0 is the input, the others are novel views.
    ``extra_views``: generated views (``humansplat.novelview.NovelViews``) given to the reconstructor as extra inputs."""
    images = subject["images"].to(device)
    masks = subject["masks"].to(device).float()
    cams = subject["cameras"].to(device)
    cams_b = cams.reshape(1, -1)
    input_cam = cams_b[:, :1]
    _sync(device)
    t0 = time.perf_counter()
    if anchors_mode == "body":
        anchors = model.body_anchors(subject["body_vertices"].to(device)[None], subject["vertex_labels"].to(device))
    else:
        anchors = model.template_free_anchors(input_cam[:, 0], masks[None, 0])
    if extra_views is None:
        gaussians = model(images[None, :1], input_cam, anchors)
    else:
        from humansplat.novelview import reconstruct_with_views

        gaussians = reconstruct_with_views(model, images[0], cams[0], extra_views, anchors)
    _sync(device)
    t1 = time.perf_counter()
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
    if subject.get("labels") is not None and out.features is not None:
        labels = subject["labels"].to(device).long()  # -1: unknown, ignored
        pred = model.decode_semantics(out.features[0]).argmax(-1)
        known = labels >= 0
        C = model.config.num_classes
        inter = torch.stack([((pred == c) & (labels == c)).sum(dim=(1, 2)) for c in range(C)], -1).float()
        union = torch.stack([(((pred == c) & known) | (labels == c)).sum(dim=(1, 2)) for c in range(C)], -1).float()
        fgl = labels > 0
        acc = ((pred == labels) & fgl).sum(dim=(1, 2)) / fgl.sum(dim=(1, 2)).clamp_min(1)
    depth_cm = None
    if subject.get("depths") is not None:
        grid = model.config.pixel_grid
        depth_cm = 100 * float(pixel_depth_error(gaussians.means[:, : grid**2], input_cam.w2c, subject["depths"].to(device)[None, :1], grid,
                                                 gaussians.opacity_logits[:, : grid**2].sigmoid()))  # fmt: skip

    return SubjectResult(subject.get("name", "?"), view_psnr.cpu(), ss.cpu(), masked.cpu(),
                         None if inter is None else inter.cpu(), None if union is None else union.cpu(),
                         None if acc is None else acc.cpu(), t1 - t0, t2 - t1, depth_cm, sharpness_ratio(rgb, images, fg).cpu())


def summarise(results: list[SubjectResult]) -> dict:
    """Averages over all views and over novel views (index >= 1)."""
    def agg(sel: slice) -> dict:
        d = {
            "psnr": float(torch.cat([r.psnr[sel] for r in results]).mean()),
            "ssim": float(torch.cat([r.ssim[sel] for r in results]).mean()),
            "masked_psnr": float(torch.cat([r.masked_psnr[sel] for r in results]).mean()),
        }
        if all(r.part_acc is not None for r in results):
            inter = sum(r.part_correct[sel].sum(0) for r in results)
            union = sum(r.part_union[sel].sum(0) for r in results)
            present = union[1:] > 0  # foreground classes that occur
            d["part_miou"] = float((inter[1:][present] / union[1:][present]).mean())
            d["part_acc"] = float(torch.cat([r.part_acc[sel] for r in results]).mean())
        return d

    return {
        "subjects": len(results),
        "views_per_subject": int(results[0].psnr.numel()),
        "all_views": agg(slice(None)),
        "novel_views": agg(slice(1, None)),
        "input_view": agg(slice(0, 1)),
        **({"pixel_depth_cm": sum(r.pixel_depth_cm for r in results) / len(results)}
           if all(r.pixel_depth_cm is not None for r in results) else {}),
        "timing_s": {
            "reconstruct_mean": sum(r.reconstruct_s for r in results[1:] or results) / max(1, len(results[1:] or results)),
            "render_all_views_mean": sum(r.render_s for r in results[1:] or results) / max(1, len(results[1:] or results)),
        },
        "per_subject": [{"name": r.name, "psnr": float(r.psnr.mean()), "novel_psnr": float(r.psnr[1:].mean()),
                         "masked_psnr": float(r.masked_psnr.mean())} for r in results],
    }


def benchmark_subject(item: dict, vertex_labels: Tensor | None, name: str) -> dict:
    """A benchmark item (input view + 36 orbit views, the input being orbit view 0) as the 36 orbit views,
    whose view 0 is then the input: what ``score_subject`` takes."""
    out = {k: item[k][1:] for k in ("images", "masks", "labels", "depths") if item.get(k) is not None}
    out.update(cameras=item["cameras"][1:], body_vertices=item["body_vertices"], vertex_labels=vertex_labels, name=name)
    return out


def evaluate(model: Reconstructor, subjects, anchors_mode: str = "auto", device: torch.device | None = None,
             progress_bar=None) -> dict:
    """Score ``model`` on an iterable of benchmark subjects; ``anchors_mode``: auto | body | template_free
    (auto follows the model's training: body anchors for a body-prior model)."""
    device = device or next(model.parameters()).device
    if anchors_mode == "auto":
        anchors_mode = model.config.anchor_mode
    results = []
    for subject in subjects:
        results.append(score_subject(model, subject, anchors_mode, device))
        if progress_bar is not None:
            progress_bar.update(1)
    if not results:
        raise ValueError("evaluate: no subjects")
    summary = summarise(results)
    summary["anchors"] = anchors_mode
    summary["device"] = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return summary


def format_table(summary: dict) -> str:
    rows = [("all views", summary["all_views"]), ("novel views", summary["novel_views"]), ("input view", summary["input_view"])]
    has_parts = "part_miou" in summary["all_views"]
    head = f"{'':12} {'PSNR':>7} {'SSIM':>7} {'mPSNR':>7}" + (f" {'mIoU':>6} {'acc':>6}" if has_parts else "")
    lines = [head]
    for name, d in rows:
        line = f"{name:12} {d['psnr']:7.2f} {d['ssim']:7.4f} {d['masked_psnr']:7.2f}"
        if has_parts:
            line += f" {d['part_miou']:6.3f} {d['part_acc']:6.3f}"
        lines.append(line)
    if "pixel_depth_cm" in summary:
        lines.append(f"per-pixel Gaussians, input view: depth error {summary['pixel_depth_cm']:.2f} cm (opacity-weighted)")
    t = summary["timing_s"]
    lines.append(f"{summary['subjects']} subjects x {summary['views_per_subject']} views, anchors={summary['anchors']}, "
                 f"{summary['device']}: reconstruct {1000 * t['reconstruct_mean']:.1f} ms, "
                 f"render all views {1000 * t['render_all_views_mean']:.1f} ms")
    return "\n".join(lines)


def write_json(summary: dict, path: str | Path) -> None:
    from humansplat.utils import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
