"""Square crop around the person at the model's resolution, and the intrinsics that crop implies.

Intrinsics of a photo: given by the caller, else from the EXIF 35 mm-equivalent focal length (only when
the EXIF size says the frame is uncropped), else assumed: a 50 degree field of view across the long side
(f = 1.07 x the long side; about a 39 mm lens in 35 mm terms). Phone main cameras are 24-28 mm (65-74
degrees), but photos of people are mostly zoomed (2x portrait modes, 48-52 mm: 38-40 degrees) or
cropped after the fact, which narrows the field of view; 50 degrees sits between the two, so the
perspective error is bounded either way. The pixel grid follows humansplat.cameras (centres at +0.5),
so crop and resize move K exactly: a 3D point lands on the same image content before and after.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from humansplat.cameras import (
    Cameras,
    crop_intrinsics,
    intrinsics_from_fov,
    orbit_cameras,
    resize_intrinsics,
)
from humansplat.keypoints import COCO_KEYPOINTS

from humansplat.utils import atomic_path

from .image_io import ImageError, LoadedImage, focal_from_35mm, load_image
from .person import detect_person, framing_of

__all__ = ["Preprocessed", "preprocess", "square_crop", "photo_intrinsics", "DEFAULT_FOV_DEG", "FILL"]

DEFAULT_FOV_DEG = 50.0  # assumed field of view across the photo's long side when nothing says otherwise
CAMERA_DISTANCE = 2.5  # metres from the world origin to the photo's camera (fitting moves the body there)
FILL = 0.88  # the person's box fills this fraction of the crop's side (a margin of 6% each side)


@dataclass
class Preprocessed:
    """A photo ready for the model: the person centred on white in a square at ``resolution``.

    image (3, S, S) float in [0, 1] on white; mask (1, S, S) matte; keypoints (17, 2) COCO-17 in crop
    pixels with confidence (17,); K (3, 3) intrinsics of the crop; crop_box (x0, y0, x1, y1) of the
    crop in original-photo pixels (may extend past the photo: that part is padding); original_size
    (W, H) of the photo after EXIF orientation; scale = loaded / original size (< 1 for huge photos);
    K_original (3, 3) intrinsics of the full original photo and intrinsics_source ('given', 'exif' or
    'assumed'); framing 'full_body', 'half_body' or 'head_only'; candidates: people found in the photo.
    """

    image: Tensor
    mask: Tensor
    keypoints: Tensor
    confidence: Tensor
    K: Tensor
    crop_box: tuple[float, float, float, float]
    original_size: tuple[int, int]
    scale: float
    framing: str
    source: str | None
    K_original: Tensor
    intrinsics_source: str
    candidates: int = 1
    landmarks: Tensor | None = field(default=None, repr=False)  # (33, 3) MediaPipe landmarks, crop px + conf

    @property
    def resolution(self) -> int:
        return self.image.shape[-1]

    @property
    def is_partial(self) -> bool:
        """True for half-body and head-only photos (legs, or everything below the shoulders, unseen)."""
        return self.framing != "full_body"

    @property
    def photo_box(self) -> tuple[float, float, float, float]:
        """(u0, v0, u1, v1): where the photo itself lies in the crop, in crop pixels; the rest is padding."""
        x0, y0, x1, y1 = self.crop_box
        (W, H), S = self.original_size, self.resolution
        sx, sy = S / (x1 - x0), S / (y1 - y0)
        return max(0.0, -x0 * sx), max(0.0, -y0 * sy), min(float(S), (W - x0) * sx), min(float(S), (H - y0) * sy)

    def camera(self, distance: float = CAMERA_DISTANCE) -> Cameras:
        """The photo's camera in the project's world frame (batch of 1).

        It sits on +Z at ``distance`` looking toward -Z at the origin (``orbit_cameras(azimuth=0)``, in
        front of a subject who faces +Z), with the crop's intrinsics K; a body fit places the body in front
        of it, so re-rendering with this camera reproduces the photo's viewpoint.
        """
        cam = orbit_cameras(0.0, 0.0, radius=distance, size=self.resolution)
        return Cameras(self.K[None].clone(), cam.w2c, self.resolution, self.resolution)

    def to_dict(self) -> dict:
        """JSON-friendly summary (no pixels)."""
        return {
            "source": self.source,
            "resolution": self.resolution,
            "original_size": list(self.original_size),
            "scale": self.scale,
            "crop_box": list(self.crop_box),
            "K": self.K.tolist(),
            "K_original": self.K_original.tolist(),
            "intrinsics_source": self.intrinsics_source,
            "framing": self.framing,
            "candidates": self.candidates,
            "keypoints": {n: [*map(float, xy), float(c)] for n, xy, c in zip(COCO_KEYPOINTS, self.keypoints, self.confidence)},
        }


    def save(self, path: str | os.PathLike) -> Path:
        """One ``.safetensors`` file (atomically): the tensors, and the other fields as JSON in its metadata.
        Nothing in it is pickled, so a file from anyone can be loaded safely (``Preprocessed.load``)."""
        from safetensors.torch import save_file

        tensors = {k: getattr(self, k).detach().cpu().contiguous() for k in _TENSORS if getattr(self, k) is not None}
        fields = {k: getattr(self, k) for k in _FIELDS}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"format": SAVED_FORMAT, "fields": json.dumps(fields)})
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Preprocessed:
        """Read a file written by ``save``; ``ImageError`` naming the file for anything else."""
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), "pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
            if meta.get("format") != SAVED_FORMAT:
                raise ValueError(f"format {meta.get('format')!r}, expected {SAVED_FORMAT!r}")
            fields = json.loads(meta["fields"])
            if not isinstance(fields, dict) or set(fields) != set(_FIELDS) or set(_TENSORS) - set(tensors) - {"landmarks"}:
                raise ValueError("fields or tensors missing")
            S = tensors["image"].shape[-1]
            shapes = {"image": (3, S, S), "mask": (1, S, S), "keypoints": (17, 2), "confidence": (17,), "K": (3, 3), "K_original": (3, 3)}
            wrong = [k for k, shape in shapes.items() if tuple(tensors[k].shape) != shape]
            if wrong:
                raise ValueError(f"wrong shape of {', '.join(wrong)}")
            fields["crop_box"], fields["original_size"] = tuple(map(float, fields["crop_box"])), tuple(map(int, fields["original_size"]))
            return cls(**{k: tensors.get(k) for k in _TENSORS}, **fields)
        except (SafetensorError, OSError, ValueError, TypeError, KeyError) as e:
            raise ImageError(f"{path}: not a preprocessed photo ({' '.join(str(e).split())[:200]})") from None


SAVED_FORMAT = "humansplat-preprocessed-1"  # Preprocessed.save: safetensors, fields as JSON in its metadata
_TENSORS = ("image", "mask", "keypoints", "confidence", "K", "K_original", "landmarks")
_FIELDS = ("crop_box", "original_size", "scale", "framing", "source", "intrinsics_source", "candidates")


def preprocess(
    src,
    resolution: int = 512,
    person: int | None = None,
    K: Tensor | None = None,
    fov_deg: float = DEFAULT_FOV_DEG,
) -> Preprocessed:
    """Load a photo (path, bytes, PIL image or array), find the person, matte, crop and resize.

    ``person`` picks among several people (0 = the largest, the default); ``K`` gives the original photo's
    intrinsics when known, else they come from EXIF or ``fov_deg`` across the long side. Raises
    ``ImageError`` for unusable files and ``PersonNotFound`` when nobody is found.
    """
    img = src if isinstance(src, LoadedImage) else load_image(src)
    found = detect_person(img.rgb, img.alpha, person)
    K0, k_source = photo_intrinsics(img, K, fov_deg)
    W, H = img.size
    sx, sy = W / img.original_size[0], H / img.original_size[1]
    K_loaded = resize_intrinsics(K0, sx, sy)

    x0, y0, x1, y1 = found.box
    side = max(x1 - x0, y1 - y0, 8.0) / FILL
    image, mask, (cx0, cy0, cside) = square_crop(img.rgb, found.mask, ((x0 + x1) / 2, (y0 + y1) / 2), side, resolution)
    s = resolution / cside
    K_crop = resize_intrinsics(crop_intrinsics(K_loaded, cx0, cy0), s)
    kp = (found.keypoints - np.array([cx0, cy0], np.float32)) * s
    lms = found.landmarks.copy()
    lms[:, :2] = (lms[:, :2] - np.array([cx0, cy0], np.float32)) * s
    return Preprocessed(
        image=image,
        mask=mask,
        keypoints=torch.from_numpy(kp.astype(np.float32)),
        confidence=torch.from_numpy(found.confidence.astype(np.float32)),
        K=K_crop,
        crop_box=(cx0 / sx, cy0 / sy, (cx0 + cside) / sx, (cy0 + cside) / sy),
        original_size=img.original_size,
        scale=img.scale,
        framing=framing_of(found.confidence, found.keypoints, found.mask),
        source=img.source,
        K_original=K0,
        intrinsics_source=k_source,
        candidates=found.candidates,
        landmarks=torch.from_numpy(lms),
    )


def photo_intrinsics(img: LoadedImage, K: Tensor | None = None, fov_deg: float = DEFAULT_FOV_DEG) -> tuple[Tensor, str]:
    """Intrinsics of the original photo and where they came from ('given', 'exif' or 'assumed')."""
    W, H = img.original_size
    if K is not None:
        return torch.as_tensor(K, dtype=torch.float32).reshape(3, 3).clone(), "given"
    if img.focal_35mm:
        f = focal_from_35mm(img.focal_35mm, W, H)
        return torch.tensor([[f, 0.0, W / 2], [0.0, f, H / 2], [0.0, 0.0, 1.0]]), "exif"
    return intrinsics_from_fov(fov_deg, W, H, axis="x" if W >= H else "y"), "assumed"


def square_crop(
    rgb: np.ndarray, mask: np.ndarray, center: tuple[float, float], side: float, resolution: int
) -> tuple[Tensor, Tensor, tuple[int, int, int]]:
    """Composite on white with ``mask``, cut the square of ``side`` px centred at ``center`` (padding
    outside the image: white, mask 0) and resize it to ``resolution``.

    Returns image (3, S, S), mask (1, S, S) and the integer square (x0, y0, side) in input pixels, so
    that input pixel coordinates map to crop ones by ``(p - (x0, y0)) * S / side``.
    """
    H, W = mask.shape
    side_i = max(1, int(math.ceil(side)))
    x0, y0 = int(round(center[0] - side_i / 2)), int(round(center[1] - side_i / 2))
    m = np.clip(mask, 0.0, 1.0).astype(np.float32)
    comp = rgb * m[..., None] + (1.0 - m[..., None])
    canvas = np.ones((side_i, side_i, 4), np.float32)
    canvas[..., 3] = 0.0
    ax0, ay0, ax1, ay1 = max(x0, 0), max(y0, 0), min(x0 + side_i, W), min(y0 + side_i, H)
    if ax1 > ax0 and ay1 > ay0:
        canvas[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0, :3] = comp[ay0:ay1, ax0:ax1]
        canvas[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0, 3] = m[ay0:ay1, ax0:ax1]
    t = torch.from_numpy(canvas).permute(2, 0, 1)[None]
    if side_i != resolution:
        t = F.interpolate(t, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=side_i > resolution)
    t = t[0].clamp(0.0, 1.0)
    return t[:3].contiguous(), t[3:].contiguous(), (x0, y0, side_i)


def preprocess_cached(src, cache: Path | None, resolution: int = 512, key: str | None = None) -> Preprocessed:
    """``preprocess(src)``, kept in ``cache`` as ``<key>.safetensors`` (a second call loads it): for tools that
    run the same photos again and again (benchmarks, contact sheets). ``key`` defaults to ``<folder>-<stem>``
    of a path; other sources (an array) need one to be cached."""
    if key is None and isinstance(src, (str, Path)):
        key = f"{Path(src).parent.name}-{Path(src).stem}"
    cached = None if cache is None or key is None else Path(cache) / f"{key}.safetensors"
    if cached is not None and cached.is_file():
        return Preprocessed.load(cached)
    pre = preprocess(str(src) if isinstance(src, Path) else src, resolution=resolution)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        pre.save(cached)
    return pre
