"""Training objectives: RGB (MSE + L1), mask, SSIM, semantic cross-entropy, optional LPIPS, all weighted per
pixel by the hierarchical part reweighting (face, mouth and hands count more; weights in the config)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from humansplat.body.parts import CLASS_ID, SAPIENS_CLASSES


@dataclass
class LossConfig:
    rgb_mse: float = 1.0
    rgb_l1: float = 0.5
    mask: float = 1.0
    ssim: float = 0.2
    semantic: float = 0.1
    semantic_balance: float = 0.0  # the semantic CE weights class c by (its share of the batch's pixels)^-balance
    # (0: plain; 0.5: inverse square root, so rare parts such as lips, hands, feet are not drowned by clothing)
    pixel_views: float = 0.0  # the input views once more, from the per-pixel Gaussians alone (they must explain what is seen)
    anchor_views: float = 0.0  # the novel views once more, from the anchor Gaussians alone (they must hold the body off-angle)
    pixel_depth: float = 0.0  # L1 (metres) of the per-pixel Gaussians' depth against the true surface (no streaks off it)
    streaks: float = 0.0  # per-pixel Gaussians stretched along their input view's rays (streak_penalty)
    streak_max_ratio: float = 1.5  # along-ray / across-ray spread allowed for free (a surfel at a grazing angle: <~1.4)
    region_crops: float = 0.0  # the face and hand crops (data.crop_size > 0: zoomed renders, data/crops.py) scored with
    # these same losses, at this weight: HumanSplat's hierarchical losses at a higher resolution
    template_free_framed: bool = False  # template-free steps supervise only what the photo frames (``step.framed_pixels``):
    # a portrait's novel views show a whole body that head-sized anchors cannot hold (they learnt a haze for it)
    lpips: float = 0.0  # used only when lpips_weights names a local file
    lpips_weights: str | None = None  # safetensors with our LPIPS-VGG layout (see LPIPS); never downloaded
    # hierarchical reweighting: pixel weight = weight of its ground-truth part (1 for classes not listed);
    # level 1 the body, level 2 head and hands, level 3 the mouth
    class_weights: dict[str, float] = field(default_factory=lambda: {
        "Face_Neck": 2.0, "Hair": 1.5, "Left_Hand": 2.0, "Right_Hand": 2.0,
        "Lower_Lip": 3.0, "Upper_Lip": 3.0, "Lower_Teeth": 3.0, "Upper_Teeth": 3.0, "Tongue": 3.0,
    })


def pixel_depth_error(means: Tensor, w2c: Tensor, depths: Tensor, grid: int, weights: Tensor | None = None,
                      max_spread: float = 0.05) -> Tensor:  # fmt: skip
    """Mean |camera depth of each per-pixel Gaussian - true depth of its pixel block| in metres, over the
    blocks wholly on the subject whose true depth spreads less than ``max_spread`` (one surface, not an edge).

    means (B, V*grid*grid, 3) in (view, row, column) order; w2c (B, V, 4, 4); depths (B, V, 1, H, W), 0 off
    the subject, with H, W multiples of grid; optional weights (B, V*grid*grid), e.g. the opacities."""
    B, V = depths.shape[:2]
    d = depths.flatten(0, 1).float()
    k = (d.shape[-2] // grid, d.shape[-1] // grid)
    lo, hi, mean = -F.max_pool2d(-d, k), F.max_pool2d(d, k), F.avg_pool2d(d, k)
    valid = ((lo > 0) & (hi - lo < max_spread)).float()
    if weights is not None:
        valid = valid * weights.reshape(B * V, 1, grid, grid)
    z = (means.reshape(B, V, grid * grid, 3) * w2c[:, :, None, 2, :3]).sum(-1) + w2c[:, :, None, 2, 3]
    err = (z.reshape(B * V, 1, grid, grid) - mean).abs()
    return (err * valid).sum() / valid.sum().clamp(min=1.0)


def streak_penalty(means: Tensor, quats: Tensor, log_scales: Tensor, weights: Tensor, w2c: Tensor,
                   max_ratio: float = 1.5) -> Tensor:  # fmt: skip
    """Weighted mean of relu(log(along / across) - log(max_ratio)): ``along`` a Gaussian's spread (standard
    deviation) along the ray from its view's camera centre through its mean, ``across`` the RMS spread of
    the two directions across that ray. A per-pixel Gaussian that covers a surface seen at a grazing angle
    by stretching along its ray looks fine from the input view and is a streak from the side.

    means, log_scales (B, V*P, 3), quats (B, V*P, 4) raw (w, x, y, z), in (view, pixel) order; weights
    (B, V*P), e.g. the opacities (detach them unless the model may buy its way out with transparency);
    w2c (B, V, 4, 4) the views the Gaussians were predicted from."""
    from humansplat.gaussians.rasterize_torch import quat_to_rotmat

    B, V = w2c.shape[:2]
    R, t = w2c[..., :3, :3], w2c[..., :3, 3:]
    centres = -(R.transpose(-1, -2) @ t)[..., 0]  # (B, V, 3)
    m = means.reshape(B, V, -1, 3)
    ray = F.normalize(m - centres[:, :, None], dim=-1).reshape(means.shape)
    rot = quat_to_rotmat(F.normalize(quats, dim=-1))  # (B, N, 3, 3), columns the principal axes
    var = (2 * log_scales).exp()
    proj = (rot * ray[..., :, None]).sum(-2)  # (B, N, 3): the ray in each Gaussian's principal frame
    along = (proj.square() * var).sum(-1)
    across = ((var.sum(-1) - along) / 2).clamp_min(1e-12)
    excess = F.relu(0.5 * torch.log(along.clamp_min(1e-12) / across) - math.log(max_ratio))
    return (excess * weights).sum() / weights.sum().clamp_min(1e-8)


def balance_weights(labels: Tensor, num_classes: int, power: float) -> Tensor:
    """Per-pixel weights (same shape as ``labels``) ∝ (share of the pixels with that label)^-power, mean 1."""
    share = torch.bincount(labels.flatten(), minlength=num_classes).float()
    share = share / share.sum()
    per_class = share.clamp_min(1e-8).pow(-power)
    weights = per_class[labels]
    return weights / weights.mean()


def class_weight_table(weights: dict[str, float]) -> Tensor:
    unknown = sorted(set(weights) - set(CLASS_ID))
    if unknown:
        raise ValueError(f"class_weights: unknown Sapiens classes {unknown}")
    table = torch.ones(len(SAPIENS_CLASSES))
    for name, w in weights.items():
        table[CLASS_ID[name]] = float(w)
    return table


def _gaussian_window(size: int, sigma: float, device, dtype) -> Tensor:
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-x.square() / (2 * sigma**2))
    return g / g.sum()


def ssim_map(x: Tensor, y: Tensor, window: int = 11, sigma: float = 1.5, data_range: float = 1.0) -> Tensor:
    """SSIM map (N,C,H',W') of images (N,C,H,W) (Gaussian window, valid convolution, Wang et al. constants)."""
    C = x.shape[1]
    window = min(window, x.shape[-1], x.shape[-2])
    window -= 1 - window % 2  # odd, and no larger than the image
    g = _gaussian_window(window, sigma, x.device, x.dtype)
    kx, ky = g.view(1, 1, 1, -1).repeat(C, 1, 1, 1), g.view(1, 1, -1, 1).repeat(C, 1, 1, 1)

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(F.conv2d(t, kx, groups=C), ky, groups=C)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    return ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))


def ssim(x: Tensor, y: Tensor, **kw) -> Tensor:
    """Mean SSIM per image, (N,)."""
    return ssim_map(x, y, **kw).mean(dim=(1, 2, 3))


class LPIPS(nn.Module):
    """LPIPS with a VGG-16 trunk: unit-normalised activations at relu1_2 .. relu5_3, squared differences
    weighted per channel by non-negative 1x1 layers, averaged over pixels and summed over layers.

    Weights come only from a local safetensors file with keys ``features.{i}.weight/bias`` (VGG-16 conv
    layers, indexed as in the usual ``features`` Sequential) and ``lin{k}.weight`` (1, C_k, 1, 1).
    """

    CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
    TAPS = (3, 8, 15, 22, 29)  # ReLU indices after conv1_2, conv2_2, conv3_3, conv4_3, conv5_3

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in self.CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU()]
                cin = v
        self.features = nn.Sequential(*layers)
        chans = (64, 128, 256, 512, 512)
        for k, c in enumerate(chans):
            self.register_parameter(f"lin{k}", nn.Parameter(torch.ones(1, c, 1, 1) / c))
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)

    @classmethod
    def from_file(cls, path: str | Path) -> LPIPS:
        from safetensors.torch import load_file

        from humansplat.models.base import load_checked

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"LPIPS weights not found: {path} (they are never downloaded)")
        model = cls()
        load_checked(model, load_file(str(path)), str(path))
        return model.eval()

    def _taps(self, x: Tensor) -> list[Tensor]:
        out, h = [], (x - self.shift) / self.scale
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self.TAPS:
                out.append(h)
            if i == self.TAPS[-1]:
                break
        return out

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Per-image distance (N,) for images (N,3,H,W) in [0,1]."""
        total = 0.0
        for k, (a, b) in enumerate(zip(self._taps(x * 2 - 1), self._taps(y * 2 - 1))):
            a = a / (a.norm(dim=1, keepdim=True) + 1e-10)
            b = b / (b.norm(dim=1, keepdim=True) + 1e-10)
            total = total + ((a - b).square() * getattr(self, f"lin{k}")).sum(1).mean(dim=(1, 2))
        return total


class ReconstructionLoss(nn.Module):
    """Weighted sum of the objectives over rendered views; returns (total, scalar logs as tensors)."""

    def __init__(self, config: LossConfig):
        super().__init__()
        self.config = config
        self.register_buffer("class_weights", class_weight_table(config.class_weights), persistent=False)
        self.lpips = LPIPS.from_file(config.lpips_weights) if config.lpips_weights and config.lpips > 0 else None

    def forward(self, rgb: Tensor, alpha: Tensor, logits: Tensor | None, target_rgb: Tensor, target_mask: Tensor,
                target_labels: Tensor | None, valid: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """rgb (N,3,H,W), alpha (N,1,H,W), logits (N,C,H,W) or None; targets: images (N,3,H,W) in [0,1] on
        white, masks (N,1,H,W), labels (N,H,W) int64 Sapiens ids (None: no reweighting, no semantics).
        ``valid`` (N,1,H,W) in [0,1] or None: the pixels that are supervised at all (elsewhere the targets are
        the prediction itself, so no term pulls there; SSIM windows across the edge still see both).
        Logged values are detached tensors, so logging costs no device sync."""
        c = self.config
        if target_labels is not None:
            w = self.class_weights[target_labels.clamp(0, len(SAPIENS_CLASSES) - 1)][:, None]  # (N,1,H,W)
        else:
            w = torch.ones_like(target_mask)
        ssim_target = target_rgb
        if valid is not None:
            w = w * valid
            ssim_target = torch.where(valid > 0, target_rgb, rgb.detach())
        wsum = w.sum().clamp_min(1e-6) * 3
        mse = ((rgb - target_rgb).square() * w).sum() / wsum
        l1 = ((rgb - target_rgb).abs() * w).sum() / wsum
        if valid is None:
            mask = F.mse_loss(alpha, target_mask)
        else:
            mask = ((alpha - target_mask).square() * valid).sum() / valid.sum().clamp_min(1e-6)
        ssim_val = ssim(rgb, ssim_target).mean()
        total = c.rgb_mse * mse + c.rgb_l1 * l1 + c.mask * mask + c.ssim * (1 - ssim_val)
        logs = {"loss/mse": mse.detach(), "loss/l1": l1.detach(), "loss/mask": mask.detach(), "loss/ssim": ssim_val.detach()}
        if logits is not None and target_labels is not None and c.semantic > 0:
            ce = F.cross_entropy(logits.float(), target_labels, reduction="none")
            wc = w[:, 0] if c.semantic_balance <= 0 else w[:, 0] * balance_weights(target_labels, logits.shape[1], c.semantic_balance)
            ce = (ce * wc).sum() / wc.sum()
            total = total + c.semantic * ce
            fg = target_labels > 0
            acc = ((logits.argmax(1) == target_labels) & fg).sum() / fg.sum().clamp_min(1)
            logs.update({"loss/semantic": ce.detach(), "metric/fg_part_acc": acc.detach()})
        if self.lpips is not None:
            lp = self.lpips(rgb, target_rgb).mean()
            total = total + c.lpips * lp
            logs["loss/lpips"] = lp.detach()
        with torch.no_grad():
            logs["metric/psnr"] = -10 * torch.log10(F.mse_loss(rgb.clamp(0, 1), target_rgb) + 1e-10)
        logs["loss/total"] = total.detach()
        return total, logs
