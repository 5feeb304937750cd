"""The COCO-17 keypoints, named once: the order every detector output, fit and data record uses.

Left and right are the subject's own. Pairs are slices (``kps[:, SHOULDERS]`` is a view of (..., 2, D)), so
``kps[:, HIPS].mean(1)`` is the pelvis centre.
"""

from __future__ import annotations

COCO_KEYPOINTS: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
NUM_KEYPOINTS = len(COCO_KEYPOINTS)
VISIBLE_CONFIDENCE = 0.5  # a keypoint counts as seen at or above this confidence


def _pair(part: str) -> slice:
    i = COCO_KEYPOINTS.index(f"left_{part}")
    assert COCO_KEYPOINTS[i + 1] == f"right_{part}"
    return slice(i, i + 2)


NOSE = COCO_KEYPOINTS.index("nose")
EYES, EARS, SHOULDERS, ELBOWS, WRISTS, HIPS, KNEES, ANKLES = map(
    _pair, ("eye", "ear", "shoulder", "elbow", "wrist", "hip", "knee", "ankle"))
