"""The body's four limbs and its core (torso and head), by COCO keypoint and by Sapiens body part: what a
fit's trust is judged on limb by limb (humansplat.pipeline.stages.fit_photo), and which body vertices an
untrusted limb takes out of the reconstruction's anchors.

Left and right are the subject's own. A limb is judged on its elbow and wrist (knee and ankle): the shoulder
(hip) belongs to the core, which every trusted fit needs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from humansplat.body.parts import CLASS_ID
from humansplat.keypoints import COCO_KEYPOINTS

__all__ = ["LIMBS", "CORE", "LIMB_PARTS", "limb_errors", "limb_vertices"]

LIMBS: dict[str, tuple[int, ...]] = {
    f"{side}_{limb}": tuple(COCO_KEYPOINTS.index(f"{side}_{k}") for k in keys)
    for limb, keys in (("arm", ("elbow", "wrist")), ("leg", ("knee", "ankle")))
    for side in ("left", "right")
}
CORE: tuple[int, ...] = tuple(i for i in range(len(COCO_KEYPOINTS)) if all(i not in v for v in LIMBS.values()))
LIMB_PARTS: dict[str, tuple[str, ...]] = {
    f"{side}_{limb}": tuple(f"{side.capitalize()}_{part}" for part in parts)
    for limb, parts in (("arm", ("Upper_Arm", "Lower_Arm", "Hand")), ("leg", ("Upper_Leg", "Lower_Leg", "Foot")))
    for side in ("left", "right")
}


def limb_errors(error_px: Tensor, seen: Tensor) -> dict[str, float | None]:
    """Mean error (17,) over the seen (17,) keypoints of the core and of each limb (None: none of it seen)."""
    out: dict[str, float | None] = {}
    for name, idx in {"core": CORE, **LIMBS}.items():
        sel = torch.tensor(idx)
        mask = seen[sel].bool()
        out[name] = float(error_px[sel][mask].mean()) if bool(mask.any()) else None
    return out


def limb_vertices(vertex_labels: Tensor, limbs: tuple[str, ...] | list[str]) -> Tensor:
    """(Nv,) True for the body vertices whose Sapiens part belongs to one of ``limbs`` (names of ``LIMBS``)."""
    unknown = set(limbs) - set(LIMB_PARTS)
    if unknown:
        raise ValueError(f"unknown limbs {sorted(unknown)}; choose from {sorted(LIMB_PARTS)}")
    ids = torch.tensor([CLASS_ID[p] for limb in limbs for p in LIMB_PARTS[limb]], dtype=torch.long)
    return torch.isin(vertex_labels.long().cpu(), ids).to(vertex_labels.device)
