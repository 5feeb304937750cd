"""Find the person in a photo, matte them and locate 2D keypoints, offline with MediaPipe's bundled models.

Route: a person mask (the file's alpha when it has one, else MediaPipe selfie segmentation) and face
detections give person candidates (connected components of the mask, split where one component holds
several faces; faces outside the mask add candidates of their own). The largest candidate, or the one
``person=K`` selects (0 = largest), is cropped with the other candidates painted out, and MediaPipe Pose
(single-person, model_complexity=1, the only one in the wheel) gives 33 landmarks and its own person mask
there. Landmarks become COCO-17 keypoints with confidences; the matte is edge-refined with a guided filter
and grown by the objects the person holds (attached.py: segmentation is person-only).
"""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass

import numpy as np

from humansplat.keypoints import VISIBLE_CONFIDENCE

from .attached import held_objects
from .framing import framing_of
from .instances import MP_FACE, MP_HIPS, MP_SHOULDERS, body_scale, find_others, own_matte, skeleton_image

__all__ = ["PersonNotFound", "Person", "detect_person", "require_photo_extra", "MEDIAPIPE_TO_COCO17", "framing_of"]
# MediaPipe Pose landmark index of each COCO-17 keypoint (both use the subject's own left/right).
MEDIAPIPE_TO_COCO17 = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)

MASK_THRESHOLD = 0.5
LIMB_EDGE = 0.03  # confident landmarks this close (share of the crop's side) to its edge widen the crop...
LIMB_MARGIN = 0.1  # ...by this margin around them
SAME_TORSOS = 0.25  # two Pose results whose torso and head landmarks agree this well are one person
OUTSIDE_CONFIDENCE = 0.05  # cap for landmarks MediaPipe places outside the image (extrapolated limbs)


class PersonNotFound(ValueError):
    """No person could be found in the image (or the requested one does not exist)."""


@dataclass
class Person:
    """One person in a loaded image (pixel coordinates of that image, continuous, centres at +0.5).

    keypoints (17, 2) COCO-17 order, confidence (17,) in [0, 1], mask (H, W) float matte in [0, 1],
    box (x0, y0, x1, y1) around mask and confident keypoints, candidates: how many people were found,
    landmarks (33, 3): MediaPipe's landmarks as (x px, y px, confidence).
    """

    keypoints: np.ndarray
    confidence: np.ndarray
    mask: np.ndarray
    box: tuple[float, float, float, float]
    candidates: int
    landmarks: np.ndarray


@dataclass
class _Candidate:
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive), integer pixels
    mask: np.ndarray | None  # (H, W) bool, None for a face-only candidate

    @property
    def area(self) -> int:
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])


PHOTO_MODULES = ("cv2", "mediapipe")  # what the `photo` extra installs (mediapipe brings OpenCV)


def require_photo_extra() -> None:
    """Raise a one-line RuntimeError naming the extra to install when MediaPipe or OpenCV is missing."""
    import importlib.util

    missing = [m for m in PHOTO_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise RuntimeError(f"photo preprocessing needs {' and '.join(missing)}: pip install 'humansplat[photo]' "
                           f"(or -e '.[photo]' in a checkout)")


def detect_person(rgb: np.ndarray, alpha: np.ndarray | None = None, person: int | None = None) -> Person:
    """Find person ``person`` (0 = the largest, the default) in an (H, W, 3) float image with optional matte."""
    require_photo_extra()
    import cv2

    H, W = rgb.shape[:2]
    if alpha is not None:  # cut-outs: put them on white, as the detectors expect a plausible background
        rgb = rgb * alpha[..., None] + (1.0 - alpha[..., None])
    img8 = (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)
    seg = alpha if alpha is not None else _run("selfie", img8).segmentation_mask
    faces = _faces(img8)
    cands = _candidates(seg > MASK_THRESHOLD, faces, W, H, cv2)
    index = 0 if person is None else int(person)
    if not 0 <= index < max(len(cands), 1):
        raise PersonNotFound(f"person {index} requested but only {len(cands)} found (0 = the largest)")
    cand = cands[index] if cands else _Candidate((0, 0, W, H), None)

    # crop around the candidate, other candidates painted out, and run Pose there
    x0, y0, x1, y1 = _expand(cand.box, 0.2, W, H)
    crop = img8[y0:y1, x0:x1].copy()
    others = [c.mask for i, c in enumerate(cands) if i != index and c.mask is not None]
    if others:
        paint = np.any(others, axis=0) & ~(cand.mask if cand.mask is not None else False)
        crop[paint[y0:y1, x0:x1]] = 255
    res, (x0, y0, x1, y1) = _pose_with_retries(img8, crop, (x0, y0, x1, y1), full_ok=len(cands) <= 1)
    if res is None:
        raise PersonNotFound("no person found in the image" if not cands else f"no body pose found for person {index}")

    lms = _landmarks(res.pose_landmarks.landmark, x0, y0, x1 - x0, y1 - y0, W, H)
    grown = _grow_to_landmarks((x0, y0, x1, y1), lms, W, H)
    if grown != (x0, y0, x1, y1):  # a limb (a kick, a raised arm) reaches past the crop: Pose again, wider
        wide = img8[grown[1]:grown[3], grown[0]:grown[2]].copy()
        if others:
            wide[paint[grown[1]:grown[3], grown[0]:grown[2]]] = 255
        again = _run("pose", wide)
        wider = None if again.pose_landmarks is None else _landmarks(again.pose_landmarks.landmark, *grown[:2], grown[2] - grown[0], grown[3] - grown[1], W, H)
        if wider is not None and _same_person(lms, wider):
            res, (x0, y0, x1, y1), lms = again, grown, wider
    kp, conf = lms[MEDIAPIPE_TO_COCO17, :2], lms[MEDIAPIPE_TO_COCO17, 2]
    if alpha is not None:
        mask = alpha if len(cands) <= 1 else alpha * _dilate(cand.mask if cand.mask is not None else np.ones((H, W), bool), cv2)
    else:
        mask = np.zeros((H, W), np.float32)  # Pose's own person mask, for the region it ran on
        if res.segmentation_mask is not None:
            mask[y0:y1, x0:x1] = _refine(res.segmentation_mask, rgb[y0:y1, x0:x1], cv2)
    # held objects (a bag): the alpha, or the colours that differ from a plain backdrop, attached at a hand
    held = held_objects(img8, mask, lms, cv2, None if alpha is None else alpha > MASK_THRESHOLD, seg > MASK_THRESHOLD)
    mask = np.where(held, 1.0 if alpha is None else alpha, mask)
    mask = _own(mask, seg, lms, img8, faces, alpha is not None, cv2)
    return Person(kp, conf, mask.astype(np.float32), _box(mask, kp, conf, W, H), len(cands), lms)


# ---------------------------------------------------------------------------------------------- internals


@contextlib.contextmanager
def _quiet_stderr():
    """Silence MediaPipe's native (C++) log lines, which bypass Python's logging."""
    try:
        fd = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        _flush_c_stdio()  # native lines still buffered would otherwise appear once stderr is back
        os.dup2(fd, 2)
        os.close(fd)


def _flush_c_stdio() -> None:
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):
        pass


@functools.cache
def _model(name: str):
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    require_photo_extra()
    import mediapipe as mp
    sol = mp.solutions
    with _quiet_stderr():
        if name == "pose":
            return sol.pose.Pose(static_image_mode=True, model_complexity=1, enable_segmentation=True, min_detection_confidence=0.5)
        if name == "selfie":
            return sol.selfie_segmentation.SelfieSegmentation(model_selection=0)
        if name == "face":
            return sol.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5)
    raise KeyError(name)


def _run(name: str, img8: np.ndarray):
    model = _model(name)
    with _quiet_stderr():
        return model.process(np.ascontiguousarray(img8))


def _pose_with_retries(img8: np.ndarray, crop: np.ndarray, box: tuple, full_ok: bool):
    """Pose on the crop; if nothing is found, on its grayscale (unusual skin or costume colours), then on
    the whole image (when there is a single candidate). Returns (result or None, box the result is in)."""
    H, W = img8.shape[:2]
    tries = [(crop, box), (_gray(crop), box)]
    if full_ok and box != (0, 0, W, H):
        tries += [(img8, (0, 0, W, H)), (_gray(img8), (0, 0, W, H))]
    for image, where in tries:
        res = _run("pose", image)
        if res.pose_landmarks is not None:
            return res, where
    return None, box


def _gray(img8: np.ndarray) -> np.ndarray:
    return np.repeat(img8.mean(-1, keepdims=True).astype(np.uint8), 3, axis=-1)


def _faces(img8: np.ndarray) -> list[tuple[float, float, float, float]]:
    H, W = img8.shape[:2]
    res = _run("face", img8)
    out = []
    for det in res.detections or []:
        b = det.location_data.relative_bounding_box
        out.append((b.xmin * W, b.ymin * H, (b.xmin + b.width) * W, (b.ymin + b.height) * H))
    return out


def _candidates(fg: np.ndarray, faces: list, W: int, H: int, cv2) -> list[_Candidate]:
    """Person candidates from a foreground mask and face boxes: segmented ones largest first, then
    boxes guessed below faces that the mask missed."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg.astype(np.uint8), connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = [i + 1 for i, a in enumerate(areas) if a >= max(0.05 * areas.max(), 0.002 * W * H)] if n > 1 else []
    cands: list[_Candidate] = []
    used = [False] * len(faces)
    for lab in keep:
        comp = labels == lab
        inside = [j for j, f in enumerate(faces) if _at(comp, (f[0] + f[2]) / 2, (f[1] + f[3]) / 2)]
        for j in inside:
            used[j] = True
        parts = _split_by_heads(comp, [faces[j] for j in _heads([faces[j] for j in inside], inside)], W)
        cands += [_Candidate(_mask_box(part), part) for part in parts]
    for j, (fx0, fy0, fx1, fy1) in enumerate(faces):
        if not used[j]:  # a face the mask missed: guess a body box below it
            fw, fh = fx1 - fx0, fy1 - fy0
            box = (fx0 - 1.5 * fw, fy0 - 0.5 * fh, fx1 + 1.5 * fw, fy1 + 7.0 * fh)
            box = tuple(int(np.clip(v, 0, lim)) for v, lim in zip(box, (W, H, W, H)))
            if box[2] > box[0] and box[3] > box[1]:
                cands.append(_Candidate(box, None))
    return sorted(cands, key=lambda c: (c.mask is None, -c.area))  # segmented people before face-only guesses


def _heads(boxes: list, ids: list[int]) -> list[int]:
    """The face detections that can be separate people's heads: scanning from the top, a face below
    another one in the same column (a false detection on a shirt print, a hand) is dropped."""
    order = sorted(range(len(boxes)), key=lambda k: boxes[k][1])
    kept: list[int] = []
    for k in order:
        x0, _, x1, _ = boxes[k]
        if all(abs((x0 + x1) - (boxes[m][0] + boxes[m][2])) / 2 > 0.75 * ((x1 - x0) + (boxes[m][2] - boxes[m][0])) for m in kept):
            kept.append(k)
    return [ids[k] for k in kept]


def _split_by_heads(comp: np.ndarray, heads: list, W: int) -> list[np.ndarray]:
    """One foreground blob holding several heads (people touching): each pixel goes to the horizontally
    nearest head. Left whole when there are fewer than two heads or a part would be a sliver."""
    if len(heads) < 2:
        return [comp]
    centres = np.array([(f[0] + f[2]) / 2 for f in heads])
    owner = np.abs((np.arange(W) + 0.5)[None, :] - centres[:, None]).argmin(0)
    parts = [comp & (owner == k)[None, :] for k in range(len(heads))]
    area = comp.sum()
    if min(p.sum() for p in parts) < 0.15 * area:
        return [comp]
    return parts


def _at(mask: np.ndarray, x: float, y: float) -> bool:
    H, W = mask.shape
    return bool(mask[min(max(int(y), 0), H - 1), min(max(int(x), 0), W - 1)])


def _mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    return int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1


def _expand(box, frac: float, W: int, H: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    dx, dy = frac * (x1 - x0), frac * (y1 - y0)
    return max(0, int(x0 - dx)), max(0, int(y0 - dy)), min(W, int(np.ceil(x1 + dx))), min(H, int(np.ceil(y1 + dy)))


def _landmarks(lms, x0: int, y0: int, cw: int, ch: int, W: int, H: int) -> np.ndarray:
    """(33, 3): x, y in image pixels and a confidence (visibility x presence, capped outside the image)."""
    out = np.zeros((len(lms), 3), np.float32)
    for i, lm in enumerate(lms):
        conf = lm.visibility * (lm.presence if lm.HasField("presence") else 1.0)
        x, y = x0 + lm.x * cw, y0 + lm.y * ch
        if not (0.0 <= x <= W and 0.0 <= y <= H):
            conf = min(conf, OUTSIDE_CONFIDENCE)
        out[i] = (x, y, np.clip(conf, 0.0, 1.0))
    return out


def _dilate(mask: np.ndarray, cv2) -> np.ndarray:
    r = max(3, int(0.02 * max(mask.shape)))
    return cv2.dilate(mask.astype(np.uint8), np.ones((r, r), np.uint8)).astype(np.float32)


def _grow_to_landmarks(box: tuple[int, int, int, int], lms: np.ndarray, W: int, H: int) -> tuple[int, int, int, int]:
    """``box`` grown to hold the confident landmarks inside the image with a margin, or ``box`` itself
    when they already lie well inside it."""
    ok = (lms[:, 2] >= VISIBLE_CONFIDENCE) & (lms[:, 0] >= 0) & (lms[:, 0] <= W) & (lms[:, 1] >= 0) & (lms[:, 1] <= H)
    if not ok.any():
        return box
    x0, y0, x1, y1 = box
    lo, hi = lms[ok, :2].min(0), lms[ok, :2].max(0)
    m = LIMB_EDGE * max(x1 - x0, y1 - y0)  # a side already at the photo's edge cannot grow
    if (x0 == 0 or lo[0] - m >= x0) and (y0 == 0 or lo[1] - m >= y0) and (x1 == W or hi[0] + m <= x1) and (y1 == H or hi[1] + m <= y1):
        return box
    return _expand((min(x0, lo[0]), min(y0, lo[1]), max(x1, hi[0]), max(y1, hi[1])), LIMB_MARGIN, W, H)


def _same_person(a: np.ndarray, b: np.ndarray) -> bool:
    """Two Pose results (33, 3) on the same person: their torso and head landmarks agree."""
    ids = [i for i in (*MP_FACE, *MP_SHOULDERS, *MP_HIPS) if a[i, 2] >= VISIBLE_CONFIDENCE and b[i, 2] >= VISIBLE_CONFIDENCE]
    scale = body_scale(a, 0.1 * float(np.ptp(a[:, :2], 0).max()))
    return bool(ids) and float(np.median(np.linalg.norm(a[ids, :2] - b[ids, :2], axis=1))) < SAME_TORSOS * scale


def _own(mask: np.ndarray, seg: np.ndarray, lms: np.ndarray, img8: np.ndarray, faces: list, keep_floating: bool, cv2) -> np.ndarray:
    """The chosen person's pixels of ``mask`` only (instances.py): other people are found around them
    (Pose on the photo with the chosen one painted out, and faces away from the chosen head)."""
    H, W = mask.shape
    me = skeleton_image(lms, (H, W), cv2)

    def pose(image: np.ndarray) -> np.ndarray | None:
        res = _run("pose", image)
        return None if res.pose_landmarks is None else _landmarks(res.pose_landmarks.landmark, 0, 0, W, H, W, H)

    others = find_others(img8, np.maximum(seg, mask), me, lms, pose, cv2)
    near = cv2.distanceTransform((me == 0).astype(np.uint8), cv2.DIST_L2, 5)
    for fx0, fy0, fx1, fy1 in faces:  # another head: a face away from the chosen skeleton (not a shirt print)
        if _at(near > 2 * (fx1 - fx0), (fx0 + fx1) / 2, (fy0 + fy1) / 2):
            seed = np.zeros((H, W), np.uint8)
            cv2.rectangle(seed, (int(fx0), int(fy0)), (int(fx1), int(fy1)), 1, -1)
            others.append(seed)
    if not others and keep_floating:  # a single person's cut-out: its alpha is authoritative
        return mask
    return own_matte(mask, me, others, cv2)


def _refine(mask: np.ndarray, rgb: np.ndarray, cv2) -> np.ndarray:
    """Sharpen a coarse soft mask (from a 256-px model) into a matte: a guided filter snaps it to image
    edges, then a smoothstep over [0.3, 0.7] narrows the blurry transition that leaves halos."""
    r = max(2, int(round(0.006 * max(mask.shape))))
    try:
        mask = cv2.ximgproc.guidedFilter(rgb.astype(np.float32), mask.astype(np.float32), r, 1e-3)
    except AttributeError:  # opencv without the contrib modules: smoothstep only
        pass
    t = np.clip((mask - 0.3) / 0.4, 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


def _box(mask: np.ndarray, kp: np.ndarray, conf: np.ndarray, W: int, H: int) -> tuple[float, float, float, float]:
    """Person box: the matte's extent, grown to include confidently seen keypoints inside the image."""
    pts = [kp[conf >= VISIBLE_CONFIDENCE]]
    fg = mask > MASK_THRESHOLD
    if fg.any():
        x0, y0, x1, y1 = _mask_box(fg)
        pts.append(np.array([[x0, y0], [x1, y1]], np.float32))
    pts = np.concatenate(pts, 0)
    if len(pts) == 0:
        raise PersonNotFound("a pose was found but neither a person mask nor a confident keypoint")
    lo, hi = np.clip(pts.min(0), 0, (W, H)), np.clip(pts.max(0), 0, (W, H))
    return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])
