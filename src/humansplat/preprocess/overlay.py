"""Pictures for people: keypoint skeletons and rendered-body overlays on the preprocessed photo."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw

from humansplat.media import to_uint8

__all__ = ["to_pil", "draw_keypoints", "overlay", "paint_mesh", "COCO17_EDGES"]

# COCO-17 skeleton; colour by side in the subject's frame: left warm, right cool, centre green
COCO17_EDGES = (
    (0, 1), (0, 2), (1, 3), (2, 4), (5, 6), (5, 11), (6, 12), (11, 12),
    (5, 7), (7, 9), (6, 8), (8, 10), (11, 13), (13, 15), (12, 14), (14, 16),
)  # fmt: skip
_LEFT, _RIGHT, _MID = (240, 90, 40), (40, 120, 240), (40, 190, 90)


def _side(i: int) -> tuple[int, int, int]:
    return _MID if i == 0 else _LEFT if i % 2 == 1 else _RIGHT


def to_pil(image) -> Image.Image:
    """(3, H, W) / (1, H, W) tensor, or anything :func:`humansplat.media.to_uint8` takes -> RGB PIL image."""
    if isinstance(image, torch.Tensor) and image.dim() == 3 and image.shape[0] in (1, 3):
        image = image.permute(1, 2, 0)
    return Image.fromarray(to_uint8(image)).convert("RGB")


def draw_keypoints(image, keypoints, confidence, threshold: float = 0.5) -> Image.Image:
    """Skeleton over ``image``: seen keypoints (confidence >= threshold) filled, the others as hollow
    grey rings; edges only between seen keypoints. Drawn at 2x and downsampled for smooth lines."""
    base = to_pil(image)
    W, H = base.size
    big = base.resize((2 * W, 2 * H), Image.Resampling.BICUBIC)
    d = ImageDraw.Draw(big)
    kp = np.asarray(keypoints, np.float64) * 2
    conf = np.asarray(confidence, np.float64)
    r = max(3, round(W / 110))
    for a, b in COCO17_EDGES:
        if conf[a] >= threshold and conf[b] >= threshold:
            colour = _MID if (a, b) in ((5, 6), (11, 12)) else _side(b)
            d.line([tuple(kp[a]), tuple(kp[b])], fill=colour, width=r)
    for i, ((x, y), c) in enumerate(zip(kp, conf)):
        box = [x - 1.6 * r, y - 1.6 * r, x + 1.6 * r, y + 1.6 * r]
        if c >= threshold:
            d.ellipse(box, fill=_side(i), outline=(255, 255, 255), width=max(1, r // 3))
        else:
            d.ellipse(box, outline=(150, 150, 150), width=max(1, r // 2))
    return big.resize((W, H), Image.Resampling.LANCZOS)


def overlay(image, colour, mask, opacity: float = 0.65) -> Image.Image:
    """Blend ``colour`` (3, H, W) over ``image`` where ``mask`` (1, H, W) is set."""
    img = np.asarray(to_pil(image), np.float32) / 255
    col = np.asarray(to_pil(colour), np.float32) / 255
    m = mask.detach().cpu().float().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask, np.float32)
    m = np.clip(m.reshape(img.shape[:2]), 0, 1)[..., None] * opacity
    return to_pil(img * (1 - m) + col * m)


def paint_mesh(vertices: torch.Tensor, faces: torch.Tensor, face_colours: torch.Tensor, camera, supersample: int = 2):
    """Quick preview render of a mesh in one camera: painter's algorithm (faces drawn far to near with
    OpenCV polygon fills, back faces culled), flat colours shaded by the angle to the camera.

    vertices (V, 3) world, faces (F, 3), face_colours (F, 3) in [0, 1]; camera: a single
    :class:`humansplat.cameras.Cameras`. Returns rgb (H, W, 3) and alpha (H, W) float arrays in [0, 1].
    Meant for pictures (fit overlays), not for training signals: there is no z-buffer.
    """
    from humansplat.preprocess.person import require_photo_extra

    require_photo_extra()
    import cv2

    from humansplat.cameras import project_points
    from humansplat.meshes import face_normals

    cam = camera.to("cpu")
    K, w2c = cam.K.reshape(3, 3), cam.w2c.reshape(4, 4)
    v = vertices.detach().cpu().float()
    f = faces.detach().cpu().long()
    uv, z = project_points(v, type(cam)(K, w2c, cam.width, cam.height))
    tri = v[f]  # (F, 3, 3)
    n = face_normals(v, f)
    centre = -(w2c[:3, :3].T @ w2c[:3, 3])
    view = torch.nn.functional.normalize(centre - tri.mean(1), dim=-1)
    facing = (n * view).sum(-1)
    zf = z[f]
    keep = (facing > 0) & (zf.min(-1).values > 1e-3)
    order = torch.argsort(zf.mean(-1)[keep], descending=True)
    idx = keep.nonzero()[:, 0][order]
    shade = (0.3 + 0.7 * facing.clamp(0, 1))[:, None]
    col = (face_colours.detach().cpu().float() * shade).clamp(0, 1)
    s = supersample
    H, W = cam.height * s, cam.width * s
    shift = 4  # sub-pixel precision of the polygon fill (1/16 px)
    # continuous pixel coordinates (centres at +0.5) -> OpenCV's integer-centred grid, in fixed point
    pts = ((uv[f[idx]] * s - 0.5) * (1 << shift)).round().numpy().astype(np.int32)
    cols = (col[idx].numpy() * 255).round().astype(np.uint8)
    rgb = np.zeros((H, W, 3), np.uint8)
    alpha = np.zeros((H, W), np.uint8)
    for p, c in zip(pts, cols):
        if np.abs(p).max() > (1 << 29):  # nearly at the camera plane: skip rather than overflow
            continue
        cv2.fillConvexPoly(rgb, p, c.tolist(), lineType=cv2.LINE_8, shift=shift)
        cv2.fillConvexPoly(alpha, p, 255, lineType=cv2.LINE_8, shift=shift)
    if s > 1:
        rgb = cv2.resize(rgb, (cam.width, cam.height), interpolation=cv2.INTER_AREA)
        alpha = cv2.resize(alpha, (cam.width, cam.height), interpolation=cv2.INTER_AREA)
    return rgb.astype(np.float32) / 255, alpha.astype(np.float32) / 255
