"""One reconstruction training step as a module (so DDP sees every parameter used inside ``forward``):
pick input and supervised views, build anchors, reconstruct, render the supervised views, score them."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from humansplat.cameras import Cameras, project_points, unproject_depth
from humansplat.data.crops import CROP_REGIONS
from humansplat.gaussians import render
from humansplat.models.reconstructor import Reconstructor
from humansplat.preprocess.framing import framing_heights
from humansplat.train.losses import ReconstructionLoss, pixel_depth_error, streak_penalty


@dataclass
class ViewPlan:
    inputs: list[int]  # view 0 (the photo) first, then extra ground-truth views
    supervised: list[int]  # the inputs plus novel views
    template_free: bool  # use template-free anchors this step


def sample_views(batch: dict, input_view_probs, supervise_views: int, template_free_prob: float, gen: torch.Generator) -> ViewPlan:
    """Mostly one input view (the photo), sometimes 2-4; the same plan for the whole batch."""
    total = batch["images"].shape[1]
    n_in = 1 + int(torch.multinomial(torch.tensor(input_view_probs, dtype=torch.float), 1, generator=gen))
    n_in = min(n_in, total)
    others = (torch.randperm(total - 1, generator=gen) + 1).tolist()
    inputs = [0] + others[: n_in - 1]
    supervised = inputs + others[n_in - 1 : n_in - 1 + max(0, supervise_views - n_in)]
    template_free = bool(torch.rand(1, generator=gen) < template_free_prob)
    return ViewPlan(inputs, supervised, template_free)


def framed_pixels(depths: Tensor, cameras: Cameras, photo: Cameras) -> Tensor:
    """(B,S,1,H,W) 1.0 where a supervised view's pixel shows what the photo frames, else 0.0: its surface point
    (unprojected from ``depths``) projects inside the photo, or it shows no subject (depth 0). A portrait's
    novel views show the whole person; the body below the portrait's edge is 0.

    depths (B,S,1,H,W) camera z, 0 off the subject; cameras (B,S) of those views; photo (B,) the input view."""
    B, S, _, H, W = depths.shape
    z = depths[:, :, 0].float()
    points = unproject_depth(cameras, z)  # (B,S,H,W,3)
    uv, zp = project_points(points.reshape(B, S * H * W, 3), photo)
    inside = (zp > 0) & (uv >= 0).all(-1) & (uv[..., 0] < photo.width) & (uv[..., 1] < photo.height)
    return ((z <= 0) | inside.reshape(B, S, H, W)).float()[:, :, None]


class ReconstructionStep(nn.Module):
    def __init__(self, model: Reconstructor, loss: ReconstructionLoss, render_backend: str = "auto",
                 vertex_labels: Tensor | None = None):
        super().__init__()
        self.model, self.loss, self.render_backend = model, loss, render_backend
        self.register_buffer("vertex_labels", vertex_labels, persistent=False)

    def anchors(self, batch: dict, plan: ViewPlan):
        if self.model.config.anchor_mode == "body" and not plan.template_free:
            return self.model.body_anchors(batch["body_vertices"], self.vertex_labels)
        camera = batch["cameras"][:, 0]
        return self.model.template_free_anchors(camera, batch["masks"][:, 0], framing_heights(batch.get("body_keypoints"), camera))

    def forward(self, batch: dict, plan: ViewPlan, amp, inputs: Tensor | None = None,
                prior_inputs: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor], tuple[Tensor, Tensor]]:
        """``inputs`` (B, len(plan.inputs), 3, H, W): input images other than the ground truth (e.g. generated views);
        ``prior_inputs`` (the same shape): what the photo colour prior reads instead (the clean photo)."""
        images, cameras = batch["images"], batch["cameras"]
        S = len(plan.supervised)  # the inputs come first among them
        with amp:
            gaussians = self.model(images[:, plan.inputs] if inputs is None else inputs, cameras[:, plan.inputs], self.anchors(batch, plan),
                                   prior_inputs)
        with torch.autocast(images.device.type, enabled=False):
            out = render(gaussians, cameras[:, plan.supervised], background=1.0, backend=self.render_backend)
            rgb = out.rgb.flatten(0, 1).permute(0, 3, 1, 2)
            alpha = out.alpha.flatten(0, 1).permute(0, 3, 1, 2)
            logits = None
            if out.features is not None:
                logits = self.model.decode_semantics(out.features.flatten(0, 1), calibrated=False).permute(0, 3, 1, 2)
            target = images[:, plan.supervised].flatten(0, 1).float()
            masks = batch["masks"][:, plan.supervised].flatten(0, 1).float()
            labels = batch["labels"][:, plan.supervised].flatten(0, 1).long() if "labels" in batch else None
            framed = plan.template_free and self.loss.config.template_free_framed
            valid = None  # template-free anchors fill what the photo shows: with framed, they are not asked for the rest
            if framed and "depths" in batch:
                valid = framed_pixels(batch["depths"][:, plan.supervised], cameras[:, plan.supervised], cameras[:, 0]).flatten(0, 1)
            loss, logs = self.loss(rgb, alpha, logits, target, masks, labels, valid)
            if valid is not None:
                logs["train/framed_share"] = valid.mean().detach()
            c = self.model.config
            n_pixel = len(plan.inputs) * c.pixel_grid**2  # pixel Gaussians come first
            n_in, B = len(plan.inputs), images.shape[0]
            views_of = lambda t, first, last: None if t is None else t.unflatten(0, (B, S))[:, first:last].flatten(0, 1)

            def one_source(source: slice, first: int, last: int | None) -> tuple[Tensor, dict[str, Tensor]]:
                """The supervised views ``first:last`` rendered from one source of Gaussians alone, scored."""
                out = render(gaussians._map(lambda t: t[:, source]), cameras[:, plan.supervised[first:last]], background=1.0,
                             backend=self.render_backend)
                return self.loss(out.rgb.flatten(0, 1).permute(0, 3, 1, 2), out.alpha.flatten(0, 1).permute(0, 3, 1, 2), None,
                                 *(views_of(t, first, last) for t in (target, masks, labels, valid)))

            if self.loss.config.pixel_views > 0:
                # the input views from the pixel Gaussians alone: without it the anchors' Gaussians learn to
                # explain everything and the pixel ones fade out (inputs come first among the supervised views)
                pixel_loss, pixel_logs = one_source(slice(0, n_pixel), 0, n_in)
                loss = loss + self.loss.config.pixel_views * pixel_loss
                logs["loss/pixel_views"], logs["metric/pixel_psnr"] = pixel_loss.detach(), pixel_logs["metric/psnr"]
            if self.loss.config.anchor_views > 0 and S > n_in:
                # the novel views from the anchor Gaussians alone: the other way round, the pixel Gaussians (four times
                # as many at pixel_size 512) take over and the anchors fade where no input view sees (holes off-angle)
                anchor_loss, anchor_logs = one_source(slice(n_pixel, None), n_in, None)
                loss = loss + self.loss.config.anchor_views * anchor_loss
                logs["loss/anchor_views"], logs["metric/anchor_psnr"] = anchor_loss.detach(), anchor_logs["metric/psnr"]
            if self.loss.config.pixel_depth > 0 and "depths" in batch:
                depth_err = pixel_depth_error(gaussians.means[:, :n_pixel].float(), cameras.w2c[:, plan.inputs], batch["depths"][:, plan.inputs],
                                              c.pixel_grid)  # fmt: skip
                loss = loss + self.loss.config.pixel_depth * depth_err
                logs["metric/pixel_depth_cm"] = 100 * depth_err.detach()
            if self.loss.config.streaks > 0:  # per-pixel Gaussians must not stretch along their rays
                pix = gaussians._map(lambda t: t[:, :n_pixel].float())
                streak = streak_penalty(pix.means, pix.quats, pix.log_scales, pix.opacities.detach(), cameras.w2c[:, plan.inputs].float(),
                                        self.loss.config.streak_max_ratio)  # fmt: skip
                loss = loss + self.loss.config.streaks * streak
                logs["loss/streaks"] = streak.detach()
            if self.loss.config.region_crops > 0 and "crop_images" in batch:
                crop_loss, crop_logs = self.region_crop_loss(gaussians, batch, framed_only=framed)
                if crop_loss is not None:
                    loss = loss + self.loss.config.region_crops * crop_loss
                    logs["loss/region_crops"], logs["metric/crop_psnr"] = crop_loss.detach(), crop_logs["metric/psnr"]
        logs["train/input_views"] = torch.tensor(float(len(plan.inputs)))
        logs["train/pixel_opacity"] = gaussians.opacity_logits[:, :n_pixel].detach().float().sigmoid().mean()
        return loss, logs, (rgb[:S].detach(), target[:S])

    def region_crop_loss(self, gaussians, batch: dict, framed_only: bool = False) -> tuple[Tensor | None, dict[str, Tensor]]:
        """The reconstruction losses on the valid face and hand crops (None when no crop is valid). ``framed_only``:
        only the regions the photo frames (their input-view crop is valid; crops come view by view, input first)."""
        valid = batch["crop_valid"]
        if framed_only:
            by_view = valid.unflatten(1, (-1, len(CROP_REGIONS)))  # (B, views, regions)
            valid = (by_view & by_view[:, :1]).flatten(1)
        valid = valid.flatten()
        if not bool(valid.any()):
            return None, {}
        out = render(gaussians, batch["crop_cameras"], background=1.0, backend=self.render_backend)
        pick = lambda t: t.flatten(0, 1)[valid]
        rgb, alpha = pick(out.rgb).permute(0, 3, 1, 2), pick(out.alpha).permute(0, 3, 1, 2)
        logits = None if out.features is None else self.model.decode_semantics(pick(out.features), calibrated=False).permute(0, 3, 1, 2)
        labels = pick(batch["crop_labels"]).long() if "crop_labels" in batch else None
        return self.loss(rgb, alpha, logits, pick(batch["crop_images"]).float(), pick(batch["crop_masks"]).float(), labels)
