"""Images, videos and turntables: what every stage writes for people to look at.

Frames are (H, W, 3) arrays or tensors, float in [0, 1] or uint8. Every writer is atomic (a
temporary name, renamed when complete), so a failed run never leaves a half-written file.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from PIL import Image

from humansplat.cameras import Cameras, orbit_cameras
from humansplat.utils import atomic_path

__all__ = ["to_uint8", "save_image", "write_video", "write_gif", "contact_sheet", "turntable_cameras", "frame_points"]


def to_uint8(image) -> np.ndarray:
    """(H, W, C) float in [0, 1] (clipped) or uint8, tensor or array -> uint8 array; C of 1 becomes grey RGB."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().float().numpy() if image.dtype != torch.uint8 else image.cpu().numpy()
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, -1)
    return np.ascontiguousarray(image)


def save_image(path: str | os.PathLike, image) -> Path:
    """Write a PNG/JPEG (by suffix) atomically."""
    path = Path(path)
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}.get(path.suffix.lower(), "PNG")
    with atomic_path(path) as tmp:
        Image.fromarray(to_uint8(image)).save(tmp, format=fmt)
    return path


def write_video(path: str | os.PathLike, frames: Iterable, fps: float = 24.0, quality: int = 8) -> Path:
    """Write an H.264 .mp4 (yuv420p, playable everywhere); odd sizes are padded to even."""
    import imageio_ffmpeg

    path = Path(path)
    frames = iter(frames)
    first = to_uint8(next(frames))
    h, w = first.shape[:2]
    H, W = h + h % 2, w + w % 2

    def padded(f: np.ndarray) -> np.ndarray:
        if f.shape[:2] != (h, w):
            raise ValueError(f"write_video: frame size {f.shape[:2]} differs from the first frame {(h, w)}")
        return np.pad(f, ((0, H - h), (0, W - w), (0, 0)), mode="edge") if (H, W) != (h, w) else f

    with atomic_path(path) as tmp:
        writer = imageio_ffmpeg.write_frames(
            str(tmp), (W, H), fps=fps, codec="libx264", quality=quality, macro_block_size=1,
            output_params=["-f", "mp4", "-movflags", "+faststart"], ffmpeg_log_level="error",
        )
        writer.send(None)
        try:
            writer.send(padded(first))
            for f in frames:
                writer.send(padded(to_uint8(f)))
        finally:
            writer.close()
    return path


def write_gif(path: str | os.PathLike, frames: Iterable, fps: float = 12.0, max_size: int | None = 320) -> Path:
    """Write a looping GIF, downscaled so that its longer side is at most ``max_size`` pixels."""
    path = Path(path)
    images = [Image.fromarray(to_uint8(f)) for f in frames]
    if not images:
        raise ValueError("write_gif: no frames")
    if max_size and max(images[0].size) > max_size:
        s = max_size / max(images[0].size)
        size = (max(1, round(images[0].width * s)), max(1, round(images[0].height * s)))
        images = [im.resize(size, Image.LANCZOS) for im in images]
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0, disposal=1)
    return path


def contact_sheet(images: Sequence, cols: int | None = None, pad: int = 4, background: int = 255) -> np.ndarray:
    """Tile same-sized images into one uint8 grid (``cols`` defaults to a near-square layout)."""
    ims = [to_uint8(im) for im in images]
    if not ims:
        raise ValueError("contact_sheet: no images")
    h, w = ims[0].shape[:2]
    if any(im.shape[:2] != (h, w) for im in ims):
        raise ValueError("contact_sheet: images differ in size")
    cols = cols or math.ceil(math.sqrt(len(ims)))
    rows = math.ceil(len(ims) / cols)
    sheet = np.full((rows * h + (rows + 1) * pad, cols * w + (cols + 1) * pad, 3), background, np.uint8)
    for i, im in enumerate(ims):
        r, c = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        sheet[y : y + h, x : x + w] = im
    return sheet


def frame_points(points: torch.Tensor, weights: torch.Tensor | None = None, quantile: float = 0.01) -> tuple[torch.Tensor, float]:
    """Centre and radius of the bulk of a point set (N, 3): the box between per-axis quantiles of the
    points with weight > 0.1 (e.g. opacity), which ignores stray floaters. Returns ((3,), radius)."""
    p = points.detach().reshape(-1, 3).float().cpu()
    if weights is not None:
        keep = weights.detach().reshape(-1).cpu() > 0.1
        if keep.sum() >= 8:
            p = p[keep]
    if len(p) == 0:
        return torch.zeros(3), 1.0
    if len(p) > 200_000:
        p = p[torch.randperm(len(p), generator=torch.Generator().manual_seed(0))[:200_000]]
    lo, hi = torch.quantile(p, quantile, dim=0), torch.quantile(p, 1 - quantile, dim=0)
    return (lo + hi) / 2, max(float((hi - lo).norm() / 2), 1e-3)


def turntable_cameras(
    n_frames: int,
    size: int | tuple[int, int] = 512,
    elevation: float = 5.0,
    fov: float = 30.0,
    center=(0.0, 0.0, 0.0),
    radius: float | None = None,
    fit_radius: float = 1.0,
    margin: float = 1.1,
) -> Cameras:
    """``n_frames`` cameras orbiting ``center`` about world +Y, starting in front (+Z, azimuth 0) and
    turning towards the subject's left (+X). Without ``radius``, the distance fits a sphere of
    ``fit_radius`` (times ``margin``) in the field of view."""
    if n_frames < 1:
        raise ValueError("turntable_cameras: n_frames must be >= 1")
    width, height = (size, size) if isinstance(size, int) else size
    if radius is None:
        half = math.radians(fov) / 2
        half = min(half, math.atan(math.tan(half) * width / height))  # the narrower side
        radius = fit_radius * margin / math.sin(half)
    az = torch.arange(n_frames, dtype=torch.float32) * (360.0 / n_frames)
    return orbit_cameras(az, elevation, radius, target=tuple(float(c) for c in center), fov_deg=fov, size=(width, height))
