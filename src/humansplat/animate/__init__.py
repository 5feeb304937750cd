"""Animatable avatars: Gaussians skinned to the fitted Anny rig, unposed and reposed. See docs/animate.md."""

from humansplat.animate.motion import POSE_NAMES, Motion, MotionError, load_motion, named_pose, save_motion, subject_params, t_pose, walk_cycle
from humansplat.animate.result import Result, ResultError, load_result, skinned_result
from humansplat.animate.skinning import SkinnedGaussians, bind, transform_gaussians

__all__ = [
    "POSE_NAMES",
    "Motion",
    "MotionError",
    "load_motion",
    "save_motion",
    "named_pose",
    "t_pose",
    "walk_cycle",
    "subject_params",
    "Result",
    "ResultError",
    "load_result",
    "skinned_result",
    "SkinnedGaussians",
    "bind",
    "transform_gaussians",
]
