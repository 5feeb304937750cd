"""Held objects: foreground attached to the chosen person's hands that a person-only segmentation misses.

Selfie segmentation and Pose's person mask see people, not bags: a duffel bag or a tote held at the hip is
background to them (``human3diffusion/09.jpg``, ``lhm/000057.png``). Here the background behind the person
is estimated (the person inpainted on a small copy, then a median filter wider than a bag, which keeps the
backdrop's own edges), and the pixels that differ from it are foreground. A connected region of that
foreground is a held object when it touches the matte within a hand's reach of a confident hand landmark,
is no larger than the person and stays off the photo's border; shade (darker, not below half, same hue:
shadows, a floor's falloff) is not foreground. Only on plain backgrounds: when much of the
photo away from the person differs from the estimate (a street, a bookshelf), nothing is added.
"""

from __future__ import annotations

import numpy as np

from .instances import LANDMARK_CONF, body_scale

__all__ = ["held_objects", "background_difference"]

HANDS = (15, 16, 17, 18, 19, 20, 21, 22)  # MediaPipe wrists, pinkies, index fingers, thumbs
REACH_TORSOS = 0.2  # an object must come this close (torso lengths) to a hand landmark
SMALL_SIDE = 192  # the background is estimated on a copy this long
MEDIAN_TORSOS = 1.5  # median window, torso lengths: well over a held bag's width, so the bag is not backdrop
SHADE = 0.5  # a pixel at least this share of the background's lightness, of its hue, is shade
DIFF = 22.0  # colour distance (8-bit Lab) from the background estimate that counts as foreground
PLAIN = 0.04  # at most this share of the photo far from the person may differ: else the background is busy
FAR_TORSOS = 0.6  # "far from the person" for that share
MAX_OBJECT = 0.6  # an object is at most this share of the person's matte
CLOSE_TORSOS = 0.03  # gaps this wide in an object (a tote's mesh, a strap) are closed


def background_difference(img8: np.ndarray, person: np.ndarray, scale: float, cv2,
                          people: np.ndarray | None = None) -> np.ndarray | None:
    """(H, W) bool: pixels of ``img8`` (H, W, 3 uint8 RGB) whose colour differs from the estimated
    background behind ``person`` (H, W bool); None when the background is not plain. ``people`` (H, W
    bool, e.g. the segmentation) are not backdrop either: other people do not make it busy."""
    if people is not None:
        person = person | people
    H, W = person.shape
    f = SMALL_SIDE / max(H, W)
    size = (max(8, round(W * f)), max(8, round(H * f)))
    small = cv2.resize(img8, size, interpolation=cv2.INTER_AREA)
    hole = cv2.resize(person.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
    hole = cv2.dilate(hole, np.ones((5, 5), np.uint8))
    bg = cv2.inpaint(small, hole, 3, cv2.INPAINT_TELEA)
    k = int(MEDIAN_TORSOS * scale * f) | 1
    bg = cv2.medianBlur(bg, min(max(k, 5), 255))
    bg = cv2.resize(bg, (W, H), interpolation=cv2.INTER_LINEAR)
    lab = lambda a: cv2.cvtColor(a, cv2.COLOR_RGB2LAB).astype(np.float32)
    a, b = lab(img8), lab(bg)
    diff = np.linalg.norm(a - b, axis=-1) > DIFF
    # a shadow or the backdrop's shading: darker, not much darker, the same hue
    shade = (a[..., 0] < b[..., 0]) & (a[..., 0] >= SHADE * b[..., 0]) & (np.linalg.norm(a[..., 1:] - b[..., 1:], axis=-1) < DIFF / 2)
    diff &= ~shade
    far = cv2.distanceTransform((~person).astype(np.uint8), cv2.DIST_L2, 5) > FAR_TORSOS * scale
    if far.sum() < 0.1 * H * W or (diff & far).sum() > PLAIN * far.sum():
        return None
    return diff


def held_objects(img8: np.ndarray, matte: np.ndarray, landmarks: np.ndarray, cv2,
                 foreground: np.ndarray | None = None, people: np.ndarray | None = None) -> np.ndarray:
    """(H, W) bool: regions of ``foreground`` (default: ``background_difference``, given ``people``) outside
    ``matte`` (H, W) in [0, 1] that touch it within reach of a confident hand landmark of ``landmarks``."""
    H, W = matte.shape
    none = np.zeros((H, W), bool)
    person = matte > 0.5
    hands = [i for i in HANDS if landmarks[i, 2] >= LANDMARK_CONF and 0 <= landmarks[i, 0] < W and 0 <= landmarks[i, 1] < H]
    if not person.any() or not hands:
        return none
    scale = body_scale(landmarks, 0.15 * max(H, W))
    if foreground is None:
        foreground = background_difference(img8, person, scale, cv2, people)
        if foreground is None:
            return none
    zone = np.zeros((H, W), np.uint8)
    for i in hands:
        cv2.circle(zone, (int(landmarks[i, 0]), int(landmarks[i, 1])), max(3, int(REACH_TORSOS * scale)), 1, -1)
    rim = cv2.dilate(person.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool) & ~person & zone.astype(bool)
    c = max(3, int(CLOSE_TORSOS * scale)) | 1
    fg = cv2.morphologyEx(foreground.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((c, c), np.uint8)).astype(bool)
    n, labels, stats, _ = cv2.connectedComponentsWithStats((fg & ~person).astype(np.uint8), connectivity=8)
    out = np.zeros((H, W), np.uint8)
    for lab in np.unique(labels[rim]):
        if lab == 0 or stats[lab, cv2.CC_STAT_AREA] > MAX_OBJECT * person.sum():
            continue
        x, y, w, h = stats[lab, :4]
        if x == 0 or y == 0 or x + w == W or y + h == H:  # runs off the photo: the backdrop's edge, not an object
            continue
        contours, _ = cv2.findContours((labels == lab).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, 1, -1)  # the object whole: its dark or backdrop-coloured inside too
    return out.astype(bool) & ~person
