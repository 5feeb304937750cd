"""The parametric body prior: Anny with the 28-class Sapiens part labels, a pose prior, fitting to
2D keypoints and condition renders. See docs/body.md."""

from humansplat.body.model import (
    BONE_NAMES,
    BONE_PARENTS,
    COCO_KEYPOINTS,
    NEUTRAL_PHENOTYPE,
    PHENOTYPE_NAMES,
    BodyModel,
    BodyOutput,
    BodyParams,
)
from humansplat.body.conditions import render_body_conditions
from humansplat.body.fit import FitConfig, FitResult, fit_body
from humansplat.body.parts import CLASS_ID, SAPIENS_CLASSES, SAPIENS_PALETTE, colorize_labels
from humansplat.body.phenotypes import age_to_years, sample_phenotypes, years_to_age
from humansplat.body.pose_prior import POSE_KINDS, PosePrior, default_pose_prior, ground_params, sample_poses

__all__ = [
    "BodyModel",
    "BodyParams",
    "BodyOutput",
    "BONE_NAMES",
    "BONE_PARENTS",
    "PHENOTYPE_NAMES",
    "COCO_KEYPOINTS",
    "NEUTRAL_PHENOTYPE",
    "SAPIENS_CLASSES",
    "SAPIENS_PALETTE",
    "CLASS_ID",
    "colorize_labels",
    "sample_phenotypes",
    "age_to_years",
    "years_to_age",
    "POSE_KINDS",
    "PosePrior",
    "default_pose_prior",
    "sample_poses",
    "ground_params",
    "fit_body",
    "FitResult",
    "FitConfig",
    "render_body_conditions",
]
