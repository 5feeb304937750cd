"""Does the novel-view stage help? The same reconstructor weights scored on the benchmark without and with
the generator's views, plus the generator's own views against the ground truth at the same cameras.

Per subject (benchmark layout: view 0 the frontal input, 36 orbit views at 0 deg elevation): the generator
makes K views at the benchmark cameras nearest its default targets (``view_azimuths`` from the photo), from
the photo and the ground-truth body; the reconstructor runs on the photo alone and on the photo + views.
Metrics (``humansplat.evaluate``): PSNR, SSIM, masked PSNR, part mIoU over the novel views, and
**sharpness**: the Laplacian energy inside the ground-truth mask of a rendered (or generated) view over the
ground truth's (1 = as much fine detail as the truth; a blurry average scores well below 1, which PSNR hides).

A draft generator (``config.draft``) is given the reconstructor's Gaussians of the photo (alone); then the
drafts themselves (those Gaussians rendered at the generator's cameras) are scored there too, next to the
generated views, and with a ``refine_config`` the per-instance refinement runs on the photo alone and on
the photo + the generated views (``refine``'s extra target views), scored at the benchmark's novel views.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from humansplat.evaluate import score_subject, summarise
from humansplat.metrics import psnr, sharpness_ratio
from humansplat.train.losses import ssim

__all__ = ["evaluate_novel_views", "format_novelview_table"]

def nearest_views(cameras, azimuths: Tensor) -> list[int]:
    """Indices of the cameras (V,) whose azimuth around the origin is nearest each of ``azimuths`` (deg)."""
    from humansplat.novelview import photo_azimuth

    have = photo_azimuth(cameras).cpu()
    diff = (have[None] - azimuths[:, None] + 180) % 360 - 180
    return diff.abs().argmin(1).tolist()


@torch.no_grad()
def score_generated(pred: Tensor, images: Tensor, masks: Tensor) -> dict[str, Tensor]:
    """Views (K,3,S,S) (generated, or the drafts) against ground truth (K,3,H,W), masks (K,1,H,W), at S px."""
    s = pred.shape[-1]
    gt = F.interpolate(images.float(), size=(s, s), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
    fg = F.interpolate(masks.float(), size=(s, s), mode="bilinear", antialias=True, align_corners=False) > 0.5
    pred = pred.to(gt)
    err = (pred - gt).square()
    return {"psnr": psnr(err.mean(dim=(1, 2, 3))), "ssim": ssim(pred, gt),
            "masked_psnr": psnr((err * fg).sum(dim=(1, 2, 3)) / (3 * fg.sum(dim=(1, 2, 3))).clamp_min(1)),
            "sharpness": sharpness_ratio(pred, gt, fg)}


@torch.no_grad()
def photo_gaussians(model, subject: dict, device: torch.device):
    """The reconstructor's Gaussians (1, N) of the subject's photo (view 0) alone, ground-truth body anchors."""
    anchors = model.body_anchors(subject["body_vertices"].to(device)[None], subject["vertex_labels"].to(device))
    return model(subject["images"][None, :1].to(device), subject["cameras"][:1].to(device).reshape(1, 1), anchors)


def evaluate_novel_views(model, generator, subjects, body, device: torch.device, steps: int | None = None,
                         guidance: float | None = None, seed: int = 0, progress_bar=None, refine_config=None) -> dict:
    """Score ``model`` (Reconstructor) alone and with ``generator``'s views on benchmark subjects (dicts as
    ``evaluate.benchmark_subject`` makes them); ``body``: the BodyModel (condition renders). A draft
    generator gets the reconstructor's Gaussians of the photo, and its drafts are scored too;
    ``refine_config`` (RefineConfig): also the refinement on the photo and on the photo + generated views."""
    from humansplat.novelview import draft_views, generate_views, photo_azimuth

    drafted = generator.config.draft
    alone, helped, refined, refined_views, generated, drafts, gen_s = [], [], [], [], [], [], []
    for subject in subjects:
        cams = subject["cameras"].to(device)
        wanted = photo_azimuth(cams[0]).cpu() + torch.tensor(generator.config.view_azimuths)
        idx = nearest_views(cams, wanted)
        truth, masks = subject["images"][idx].to(device), subject["masks"][idx].to(device)
        gaussians = photo_gaussians(model, subject, device) if drafted else None
        if drafted:
            drafts.append(score_generated(draft_views(generator, gaussians, cams[idx].reshape(1, -1))[0], truth, masks))
        views = generate_views(generator, subject["images"][0].to(device), cams[0], subject["body_vertices"].to(device), steps, guidance,
                               seed, body=body, cameras=cams[idx], draft_gaussians=gaussians)  # fmt: skip
        gen_s.append(views.seconds)
        generated.append(score_generated(views.images, truth, masks))
        alone.append(score_subject(model, subject, "body", device))
        helped.append(score_subject(model, subject, "body", device, extra_views=views))
        if refine_config is not None:
            refined.append(score_subject(model, subject, "body", device, refine_config=refine_config))
            refined_views.append(score_subject(model, subject, "body", device, refine_config=refine_config, refine_views=views))
        if progress_bar is not None:
            progress_bar.update(1)
    if not alone:
        raise ValueError("evaluate_novel_views: no subjects")
    novel_sharpness = lambda rs: float(torch.cat([r.sharpness[1:] for r in rs]).mean())
    out = {}
    rows = [("reconstructor", alone), ("with_generator", helped)]
    if refine_config is not None:
        rows += [("refined_photo", refined), ("refined_photo_generated", refined_views)]
    for name, results in rows:
        s = summarise(results)
        out[name] = {**s["novel_views"], "sharpness": novel_sharpness(results), "input_psnr": s["input_view"]["psnr"],
                     "reconstruct_s": s["timing_s"]["reconstruct_mean"]}
        if "refine_mean" in s["timing_s"]:
            out[name]["refine_s"] = s["timing_s"]["refine_mean"]
    mean_scores = lambda scores: {k: float(torch.cat([g[k].cpu() for g in scores]).mean()) for k in scores[0]}
    out["generator"] = mean_scores(generated)
    if drafted:
        out["drafts"] = mean_scores(drafts)
    if refine_config is not None:
        out["refine"] = {"steps": refine_config.steps, "mode": refine_config.mode, "view_weight": refine_config.view_weight,
                         "resolution": refine_config.resolution}
    out["generator"]["seconds"] = sum(gen_s[1:] or gen_s) / len(gen_s[1:] or gen_s)  # warm: the first is left out
    out["subjects"] = len(alone)
    out["generator_views"] = len(generator.config.view_azimuths)
    out["steps"] = steps or generator.config.sample_steps
    out["guidance"] = generator.config.guidance if guidance is None else guidance
    if drafted:
        out["draft_start"] = generator.config.draft_start
    out["draft"] = drafted
    out["device"] = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return out


def format_novelview_table(summary: dict) -> str:
    """The with/without table (novel views) and the generator's own views."""
    head = f"{'':26} {'PSNR':>7} {'SSIM':>7} {'mPSNR':>7} {'mIoU':>6} {'sharp':>6} {'input':>7} {'time s':>7}"
    lines = [head]
    labels = [("reconstructor", "reconstructor alone"), ("with_generator", "with generated views"),
              ("refined_photo", "refine(photo)"), ("refined_photo_generated", "refine(photo + generated)")]
    for name, label in labels:
        if name not in summary:
            continue
        d = summary[name]
        lines.append(f"{label:26} {d['psnr']:7.2f} {d['ssim']:7.4f} {d['masked_psnr']:7.2f} {d.get('part_miou', float('nan')):6.3f} "
                     f"{d['sharpness']:6.3f} {d['input_psnr']:7.2f} {d['reconstruct_s'] + d.get('refine_s', 0.0):7.3f}")
    if "drafts" in summary:
        d = summary["drafts"]
        lines.append(f"{'drafts (render, at S px)':26} {d['psnr']:7.2f} {d['ssim']:7.4f} {d['masked_psnr']:7.2f} {'':>6} "
                     f"{d['sharpness']:6.3f}")
    g = summary["generator"]
    lines.append(f"{'generated views (at S px)':26} {g['psnr']:7.2f} {g['ssim']:7.4f} {g['masked_psnr']:7.2f} {'':>6} "
                 f"{g['sharpness']:6.3f} {'':>7} {g['seconds']:7.3f}")
    lines.append(f"{summary['subjects']} subjects, novel views; generator: {summary['generator_views']} views, {summary['steps']} steps, "
                 f"guidance {summary['guidance']}{', start ' + str(summary['draft_start']) if 'draft_start' in summary else ''}, {summary['device']}; sharp = Laplacian energy / ground truth's, inside the mask")
    if "refine" in summary:
        r = summary["refine"]
        lines.append(f"refine: {r['mode']}, {r['steps']} steps, generated views weighted {r['view_weight']}; the first rows are the "
                     f"benchmark's novel views, the last two at the generator's cameras")
    return "\n".join(lines)
