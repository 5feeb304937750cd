"""How much of the person a photo shows: 'full_body', 'half_body' or 'head_only'.

Keypoint confidences alone misread in-the-wild photos: MediaPipe is unsure of legs under a long gown or
in a kick (full bodies read as half), and sure of shoulders just at the bottom edge of a head shot (read
as half). So the matte and the keypoints' positions decide too:

- full body: a knee or ankle is seen; or one is at least *hinted* (low confidence, but placed inside the
  photo on the matte, not extrapolated past the photo's edge); or the matte goes on well below the hips
  (a torso length or more) and ends inside the photo, above its bottom edge (a gown to the floor);
- head only: nothing below the head is seen; or the matte stops less than a head's width below the
  shoulder line (the photo ends at the neck);
- half body otherwise.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from humansplat.cameras import Cameras, project_points
from humansplat.keypoints import ANKLES, EARS, EYES, HIPS, KNEES, SHOULDERS, VISIBLE_CONFIDENCE

__all__ = ["framing_of", "framing_heights", "visible_height", "FRAMINGS", "VISIBLE_HEIGHT_M"]

FRAMINGS = ("full_body", "half_body", "head_only")
# metres of person each framing shows: template-free anchors need it (one view cannot tell scale)
VISIBLE_HEIGHT_M = {"full_body": 1.7, "half_body": 0.85, "head_only": 0.3}
LEGS = [*range(KNEES.start, KNEES.stop), *range(ANKLES.start, ANKLES.stop)]
HINTED = 0.1  # a leg keypoint this confident, inside the photo and on the matte, counts as seen
MATTE = 0.5  # matte value counted as the person
EDGE_PX = 0.01  # the matte "reaches" the bottom edge within this fraction of the photo's height
GOWN_TORSOS = 1.0  # matte below the hips by this many torso lengths (shoulders to hips) = legs under it
NECK_HEADS = 1.0  # matte below the shoulder line by less than this many head widths = a head shot
EYES_TO_HEAD = 2.5  # head width / eye distance, when the ears are not both seen


def framing_of(confidence: np.ndarray, keypoints: np.ndarray | None = None, mask: np.ndarray | None = None) -> str:
    """Framing from COCO-17 ``confidence`` (17,), and when given, ``keypoints`` (17, 2) in the pixels of
    ``mask`` (H, W), the person's matte over the whole photo."""
    conf = np.asarray(confidence, np.float32)
    seen = conf >= VISIBLE_CONFIDENCE
    if seen[LEGS].any():
        return "full_body"
    body_seen = bool(seen[SHOULDERS].any() or seen[HIPS].any())
    if keypoints is None or mask is None:
        return "half_body" if body_seen else "head_only"
    kp, fg = np.asarray(keypoints, np.float32), np.asarray(mask) > MATTE
    if not fg.any():
        return "half_body" if body_seen else "head_only"
    if _legs_hinted(conf, kp, fg) or _gown(seen, kp, fg):
        return "full_body"
    if not body_seen or _head_shot(seen, kp, fg):
        return "head_only"
    return "half_body"


def _legs_hinted(conf: np.ndarray, kp: np.ndarray, fg: np.ndarray) -> bool:
    """A leg keypoint with some confidence that lies on the matte inside the photo (not extrapolated)."""
    H, W = fg.shape
    for i in LEGS:
        x, y = kp[i]
        if conf[i] >= HINTED and 0 <= x < W and 0 <= y < H and fg[int(y), int(x)]:
            return True
    return False


def _gown(seen: np.ndarray, kp: np.ndarray, fg: np.ndarray) -> bool:
    """Shoulders and hips seen, and the matte goes on a torso length below the hips, ending in the photo."""
    if not (seen[SHOULDERS].any() and seen[HIPS].any()):
        return False
    H = fg.shape[0]
    shoulder_y, hip_y = kp[SHOULDERS][seen[SHOULDERS], 1].mean(), kp[HIPS][seen[HIPS], 1].mean()
    torso = hip_y - shoulder_y
    bottom = _lowest_row(fg)
    return bool(torso > 0 and bottom < H * (1 - EDGE_PX) and bottom - hip_y >= GOWN_TORSOS * torso)


def _head_shot(seen: np.ndarray, kp: np.ndarray, fg: np.ndarray) -> bool:
    """No hips, and the matte stops within a head's width below the shoulder line (the photo ends at the neck)."""
    if seen[HIPS].any() or not seen[SHOULDERS].any():
        return False
    if seen[EARS].all():
        head = float(np.linalg.norm(np.diff(kp[EARS], axis=0)))
    elif seen[EYES].all():
        head = EYES_TO_HEAD * float(np.linalg.norm(np.diff(kp[EYES], axis=0)))
    else:
        return False
    shoulder_y = float(kp[SHOULDERS][seen[SHOULDERS], 1].mean())
    return _lowest_row(fg) - shoulder_y < NECK_HEADS * head


def _lowest_row(fg: np.ndarray) -> float:
    return float(np.nonzero(fg.any(1))[0][-1] + 1)


def visible_height(framing: str) -> float:
    """``VISIBLE_HEIGHT_M`` of a framing; a whole person for one it does not know."""
    return VISIBLE_HEIGHT_M.get(framing, VISIBLE_HEIGHT_M["full_body"])


def framing_heights(keypoints: Tensor | None, cameras: Cameras) -> Tensor | None:
    """(B,) the visible height (``VISIBLE_HEIGHT_M``) that `humansplat reconstruct` assumes for each photo, from
    the true COCO-17 ``keypoints`` (B, 17, 3) seen by the photo's ``cameras`` (batch (B,)): how training and
    evaluation place template-free anchors as a user's photo gets them. The keypoint rules of ``framing_of``:
    full body when a knee or ankle is in the frame; head only when no shoulder or hip is, or the frame ends
    less than a head's width below the shoulder line; half body otherwise. Without keypoints (None or
    (B, 0, 3): a scan without a body) None, which the anchors read as their model's whole-person default."""
    if keypoints is None or keypoints.shape[-2] == 0:
        return None
    h = VISIBLE_HEIGHT_M
    uv, z = project_points(keypoints.float(), cameras)
    inside = (z > 0) & (uv >= 0).all(-1) & (uv[..., 0] < cameras.width) & (uv[..., 1] < cameras.height)
    legs = inside[:, LEGS].any(1)
    body = inside[:, SHOULDERS].any(1) | inside[:, HIPS].any(1)
    eyes = keypoints[:, EYES].float()
    head_m = EYES_TO_HEAD * (eyes[:, 0] - eyes[:, 1]).norm(dim=-1)
    head_px = cameras.K[:, 1, 1] * head_m / z[:, EYES].mean(1).clamp_min(1e-3)
    neck_only = cameras.height - uv[:, SHOULDERS, 1].mean(1) < NECK_HEADS * head_px
    return torch.where(legs, h["full_body"], torch.where(~body | neck_only, h["head_only"], h["half_body"]))
