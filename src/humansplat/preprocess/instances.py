"""One person's matte in a group photo: foreground pixels belong to the nearest person's skeleton.

Segmentation (the file's alpha, selfie segmentation, Pose's own person mask) does not tell people apart:
the chosen person's mask holds the arm of the person beside them, or the legs of the one behind. Here
each person is their MediaPipe skeleton (the 35 landmark connections plus the filled torso), drawn into
the photo; a foreground pixel belongs to the person whose skeleton is nearest, and the chosen person
keeps their own pixels that are connected to their skeleton (held objects and limbs outside Pose's mask
stay: they are attached; stray blobs go).

The others are found by painting the chosen person out (their skeleton grown by a limb's width) and
running Pose again, up to ``MAX_OTHERS`` times; a result counts as another person only with a face and
enough confident landmarks off the painted region. Face detections outside the chosen head add heads.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["skeleton_image", "own_matte", "find_others", "body_scale"]

LANDMARK_CONF = 0.3  # landmarks at least this confident draw a person's skeleton
MAX_OTHERS = 3  # other people searched for around the chosen one
PAINT_TORSOS = 0.35  # the chosen skeleton grown by this many torso lengths is painted out to find others
OTHER_MIN_LANDMARKS = 8  # another person needs this many confident landmarks off the painted region
UNEXPLAINED = 0.08  # search for others only when this share of the foreground is far from the skeleton
FAR_TORSOS = 0.6  # "far from the skeleton": more than this many torso lengths
# MediaPipe Pose landmark ids (33 landmarks, not COCO's 17)
MP_FACE = (0, 2, 5, 7, 8)  # nose, eyes, ears
MP_SHOULDERS, MP_HIPS = (11, 12), (23, 24)
TORSO = (11, 12, 24, 23)  # polygon: left shoulder, right shoulder, right hip, left hip
CONNECTIONS = (
    (0, 1), (0, 4), (1, 2), (2, 3), (3, 7), (4, 5), (5, 6), (6, 8), (9, 10), (11, 12), (11, 13), (11, 23),
    (12, 14), (12, 24), (13, 15), (14, 16), (15, 17), (15, 19), (15, 21), (16, 18), (16, 20), (16, 22),
    (17, 19), (18, 20), (23, 24), (23, 25), (24, 26), (25, 27), (26, 28), (27, 29), (27, 31), (28, 30),
    (28, 32), (29, 31), (30, 32),
)  # fmt: skip  MediaPipe's POSE_CONNECTIONS (a test checks them against mediapipe's)


def skeleton_image(landmarks: np.ndarray, shape: tuple[int, int], cv2, thickness: int = 3) -> np.ndarray:
    """(H, W) uint8, 1 on the skeleton of (33, 3) landmarks (x px, y px, confidence): the connections
    between confident landmarks, the torso filled, the head joined to the shoulders' midpoint."""
    img = np.zeros(shape, np.uint8)
    ok = landmarks[:, 2] >= LANDMARK_CONF
    pt = lambda i: (int(round(landmarks[i, 0])), int(round(landmarks[i, 1])))
    for a, b in CONNECTIONS:
        if ok[a] and ok[b]:
            cv2.line(img, pt(a), pt(b), 1, thickness)
    if ok[list(TORSO)].all():
        cv2.fillPoly(img, [np.array([pt(i) for i in TORSO], np.int32)], 1)
    if ok[0] and ok[list(MP_SHOULDERS)].all():
        mid = tuple(int(round(v)) for v in landmarks[list(MP_SHOULDERS), :2].mean(0))
        cv2.line(img, pt(0), mid, 1, thickness)
    for i in np.nonzero(ok)[0]:
        cv2.circle(img, pt(i), thickness, 1, -1)
    return img


def body_scale(landmarks: np.ndarray, fallback: float) -> float:
    """Torso length in pixels (shoulders' midpoint to hips' midpoint), else ``fallback``."""
    lm = landmarks
    if (lm[list(MP_SHOULDERS + MP_HIPS), 2] >= LANDMARK_CONF).all():
        return float(np.linalg.norm(lm[list(MP_SHOULDERS), :2].mean(0) - lm[list(MP_HIPS), :2].mean(0)))
    return fallback


def _distance(skeleton: np.ndarray, cv2) -> np.ndarray:
    return cv2.distanceTransform((skeleton == 0).astype(np.uint8), cv2.DIST_L2, 5)


def own_matte(mask: np.ndarray, chosen: np.ndarray, others: list[np.ndarray], cv2) -> np.ndarray:
    """The part of ``mask`` (H, W) in [0, 1] that belongs to the ``chosen`` skeleton image ((H, W) from
    ``skeleton_image``) and not to ``others``' (skeleton images, or any seed masks such as face boxes):
    pixels nearer the chosen skeleton than to every other one, connected to the chosen skeleton."""
    fg = mask > 0.5
    if not fg.any() or not chosen.any():
        return mask
    owned = fg
    if others:
        d_me = _distance(chosen, cv2)
        d_other = np.min([_distance(o, cv2) for o in others], axis=0)
        owned = fg & (d_me <= d_other)
    n, labels = cv2.connectedComponents(owned.astype(np.uint8), connectivity=8)
    touching = np.unique(labels[(chosen > 0) & owned])
    keep = np.isin(labels, touching[touching > 0])
    if not keep.any():  # the skeleton misses the mask entirely (odd Pose result): leave it alone
        return mask
    # soft edges survive inside the kept region; what belongs to others, or floats, is cut
    grown = cv2.dilate(keep.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    unclaimed = ~fg & grown  # the soft rim just outside the kept pixels
    return np.where(keep | unclaimed, mask, 0.0).astype(np.float32)


def find_others(img8: np.ndarray, mask: np.ndarray, chosen: np.ndarray, landmarks: np.ndarray,
                pose: Callable[[np.ndarray], np.ndarray | None], cv2) -> list[np.ndarray]:
    """Skeleton images of other people near the chosen one: the chosen person (their skeleton grown by
    ``PAINT_TORSOS`` torso lengths) is painted white and Pose runs again, up to ``MAX_OTHERS`` times.
    ``pose(image) -> (33, 3) landmarks in its pixels or None``; ``mask`` the foreground (H, W)."""
    H, W = mask.shape
    scale = body_scale(landmarks, 0.15 * max(H, W))
    fg = mask > 0.5
    far = _distance(chosen, cv2) > FAR_TORSOS * scale
    if not fg.any() or (fg & far).sum() < UNEXPLAINED * fg.sum():
        return []
    r = max(3, int(PAINT_TORSOS * scale))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    painted = cv2.dilate(chosen, kernel).astype(bool)
    others: list[np.ndarray] = []
    image = img8.copy()
    for _ in range(MAX_OTHERS):
        image[painted] = 255
        lms = pose(image)
        if lms is None:
            break
        ok = lms[:, 2] >= LANDMARK_CONF
        inside = (lms[:, 0] >= 0) & (lms[:, 0] < W) & (lms[:, 1] >= 0) & (lms[:, 1] < H)
        xi, yi = np.clip(lms[:, 0].astype(int), 0, W - 1), np.clip(lms[:, 1].astype(int), 0, H - 1)
        off = ok & inside & ~painted[yi, xi]
        if off.sum() < OTHER_MIN_LANDMARKS or not off[list(MP_FACE)].any():
            break
        skel = skeleton_image(lms, (H, W), cv2)
        others.append(skel)
        painted |= cv2.dilate(skel, kernel).astype(bool)
    return others
