"""Load any common image file (or array) into one canonical form: float RGB in [0, 1] plus an optional matte.

Handles EXIF orientation, alpha (an existing alpha channel is taken as the person's matte), grayscale,
16-bit PNG/TIFF, CMYK JPEG (through its ICC profile when it has one), palette images, multi-frame files
(first frame), huge images (downscaled on load, the factor recorded) and tiny, empty, corrupt or
non-image files (an ``ImageError`` with a one-line message).
"""

from __future__ import annotations

import io
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["ImageError", "LoadedImage", "load_image", "focal_from_35mm", "MAX_SIDE", "MIN_SIDE"]

MAX_SIDE = 2048  # longer side after loading; larger images are downscaled (``LoadedImage.scale`` < 1)
MIN_SIDE = 64  # shorter side below this is refused: too few pixels to find a person in
MIN_MATTE_TRANSPARENT = 0.02  # an alpha is a matte when at least this fraction of pixels is transparent
_MAX_PIXELS = 400_000_000  # refuse to decode anything larger (decompression-bomb guard)
_EXIF_FOCAL_35MM = 0xA405  # FocalLengthIn35mmFilm, in the Exif sub-IFD
_EXIF_IFD = 0x8769


class ImageError(ValueError):
    """The input is not a usable image; the message is one line naming the file and the reason."""


@dataclass
class LoadedImage:
    """An image as every later stage sees it.

    rgb: (H, W, 3) float32 in [0, 1]; alpha: (H, W) float32 matte in [0, 1], or None when the file had
    no alpha or a nearly opaque one (< 2% transparent pixels, flattened onto white). ``original_size`` is (width, height) after EXIF orientation, before downscaling;
    ``scale`` = loaded size / original size. ``focal_35mm`` is the EXIF 35 mm-equivalent focal length
    when the file records one for an uncropped frame, else None.
    """

    rgb: np.ndarray
    alpha: np.ndarray | None
    original_size: tuple[int, int]
    scale: float
    source: str | None = None
    focal_35mm: float | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) as loaded."""
        return self.rgb.shape[1], self.rgb.shape[0]


def load_image(src, max_side: int = MAX_SIDE, min_side: int = MIN_SIDE) -> LoadedImage:
    """Load a path, bytes, PIL image or array ((H,W), (H,W,3) or (H,W,4); uint8, uint16 or float in [0,1])."""
    source = str(src) if isinstance(src, (str, os.PathLike)) else None
    name = source or type(src).__name__
    if isinstance(src, np.ndarray):
        rgb, alpha = _from_array(src, name)
        original = (rgb.shape[1], rgb.shape[0])
        new = _target_size(*original, min_side, max_side, name)
        if new != original:
            rgb = _resize(rgb, new)
            alpha = None if alpha is None else _resize(alpha[..., None], new)[..., 0]
        return LoadedImage(rgb, alpha, original, new[0] / original[0], source, None)

    im, full_size = _open(src, name)
    focal = _exif_focal_35mm(im)
    try:
        decoded = im.size  # smaller than full_size when a large JPEG was decoded at reduced scale
        im = _canonical(ImageOps.exif_transpose(im), name)
        original = full_size[::-1] if im.size != decoded else full_size
        new = _target_size(*original, min_side, max_side, name)
        if new != im.size:  # resize in PIL before going to float: fast, antialiased, alpha premultiplied
            if im.mode == "RGBA":
                im = im.convert("RGBa").resize(new, Image.Resampling.LANCZOS, reducing_gap=3.0).convert("RGBA")
            else:
                im = im.resize(new, Image.Resampling.LANCZOS, reducing_gap=3.0)
        rgb, alpha = _to_float(im)
    except ImageError:
        raise
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageError(f"{name}: cannot decode image ({_one_line(e)})") from None
    return LoadedImage(rgb, alpha, original, new[0] / original[0], source, focal)


def _open(src, name: str) -> tuple[Image.Image, tuple[int, int]]:
    """Open and decode; also return the full stored size (before any reduced-scale JPEG decode)."""
    if isinstance(src, Image.Image):
        return src, src.size
    if isinstance(src, (bytes, bytearray)):
        if not src:
            raise ImageError(f"{name}: empty input")
        src = io.BytesIO(src)
    else:
        path = Path(src)
        if path.is_symlink() and not path.exists():
            raise ImageError(f"{name}: broken symbolic link (to {os.readlink(path)}, which does not exist)")
        if not path.exists():
            raise ImageError(f"{name}: no such file")
        if path.is_dir():
            raise ImageError(f"{name}: is a directory, not an image")
        if path.stat().st_size == 0:
            raise ImageError(f"{name}: empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(src)
            if im.width * im.height > _MAX_PIXELS:
                raise ImageError(f"{name}: {im.width}x{im.height} px is too large to decode")
            full_size = im.size
            if im.format == "JPEG" and max(im.size) > 2 * MAX_SIDE:
                im.draft(im.mode, (MAX_SIDE, MAX_SIDE))  # decode at a reduced size (DCT scaling): fast and small
            im.seek(0)
            im.load()  # decode now so truncated files fail here, with a clear message
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image file (unrecognised format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{name}: image is too large to decode safely") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise ImageError(f"{name}: corrupt or truncated image ({_one_line(e)})") from None
    return im, full_size


def _target_size(w: int, h: int, min_side: int, max_side: int, name: str) -> tuple[int, int]:
    if min(w, h) < min_side:
        raise ImageError(f"{name}: image is {w}x{h} px, too small (the shorter side must be at least {min_side} px)")
    if max(w, h) <= max_side:
        return w, h
    s = max_side / max(w, h)
    return max(1, round(w * s)), max(1, round(h * s))


def _canonical(im: Image.Image, name: str) -> Image.Image:
    """Convert any PIL mode to 'RGB', 'RGBA' or 'F' (high-bit-depth grayscale scaled to [0, 1])."""
    mode = im.mode
    if mode == "CMYK":
        return _cmyk_to_rgb(im)
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        a = np.asarray(im).astype(np.float32)
        top = float(a.max()) if a.size else 0.0
        peak = 1.0 if (mode == "F" and top <= 1.0) else 255.0 if (mode in ("F", "I") and top <= 255.0) else 65535.0
        return Image.fromarray(np.clip(a / peak, 0.0, 1.0).astype(np.float32), mode="F")
    has_alpha = mode in ("PA", "LA", "La", "RGBa", "RGBA") or (mode == "P" and "transparency" in im.info)
    try:
        return im.convert("RGBA" if has_alpha else "RGB")
    except (ValueError, OSError) as e:
        raise ImageError(f"{name}: unsupported image mode {mode!r} ({_one_line(e)})") from None


def _to_float(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    if im.mode == "F":
        g = np.clip(np.asarray(im, dtype=np.float32), 0.0, 1.0)
        return np.repeat(g[..., None], 3, axis=-1), None
    a = np.asarray(im, dtype=np.float32) / 255.0
    return _split_alpha(a)


def _split_alpha(a: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(H, W, 3|4) -> rgb, matte. An alpha counts as a matte only when a real part of the image is
    transparent; a nearly opaque one (a stray transparent border) is flattened onto white instead."""
    if a.shape[-1] != 4:
        return np.ascontiguousarray(a), None
    rgb, alpha = a[..., :3], a[..., 3]
    if (alpha < 0.5).mean() >= MIN_MATTE_TRANSPARENT:
        return np.ascontiguousarray(rgb), np.ascontiguousarray(alpha)
    return np.ascontiguousarray(rgb * alpha[..., None] + (1.0 - alpha[..., None])), None


def _cmyk_to_rgb(im: Image.Image) -> Image.Image:
    """CMYK to sRGB through the embedded ICC profile when there is one, else Pillow's naive conversion."""
    icc = im.info.get("icc_profile")
    if icc:
        try:
            from PIL import ImageCms

            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            return ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except Exception:  # a broken profile: fall back to the naive conversion below
            pass
    return im.convert("RGB")


def _from_array(a: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[-1] not in (1, 3, 4) or a.size == 0:
        raise ImageError(f"{name}: expected an (H,W), (H,W,3) or (H,W,4) array, got shape {a.shape}")
    if a.dtype == np.uint8:
        a = a.astype(np.float32) / 255.0
    elif a.dtype == np.uint16:
        a = a.astype(np.float32) / 65535.0
    elif np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float32)
        if not np.isfinite(a).all():
            raise ImageError(f"{name}: array contains NaN or infinite values")
        a = np.clip(a, 0.0, 1.0)
    else:
        raise ImageError(f"{name}: unsupported array dtype {a.dtype}")
    return _split_alpha(np.repeat(a, 3, axis=-1) if a.shape[-1] == 1 else a)


def _resize(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Antialiased resize of an (H, W, C) float image to (width, height), channel by channel in float."""
    chans = [np.asarray(Image.fromarray(a[..., c]).resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)) for c in range(a.shape[-1])]
    return np.clip(np.stack(chans, -1), 0.0, 1.0).astype(np.float32)


def _exif_focal_35mm(im: Image.Image) -> float | None:
    """The 35 mm-equivalent focal length, only when the EXIF pixel size says the frame is uncropped."""
    try:
        exif = im.getexif()
        sub = exif.get_ifd(_EXIF_IFD)
        f35 = float(sub.get(_EXIF_FOCAL_35MM, 0) or 0)
        ew, eh = sub.get(0xA002), sub.get(0xA003)  # ExifImageWidth / ExifImageHeight
    except Exception:
        return None
    if not (8.0 <= f35 <= 1200.0) or not ew or not eh:
        return None
    if sorted((int(ew), int(eh))) != sorted(im.size):
        return None
    return f35


def _one_line(e: BaseException) -> str:
    msg = " ".join(str(e).split()) or type(e).__name__
    return msg[:200]


def focal_from_35mm(f35: float, width: int, height: int) -> float:
    """Focal length in pixels from a 35 mm-equivalent focal length (matched on the frame diagonal)."""
    return f35 * math.hypot(width, height) / math.hypot(36.0, 24.0)
