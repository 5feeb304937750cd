"""Photo preprocessing: load any image, find and matte the person, 2D keypoints, square crop + intrinsics.

Entry point: ``preprocess(path_or_array, resolution=512, person=None) -> Preprocessed``.
"""

from .crop import (
    DEFAULT_FOV_DEG,
    Preprocessed,
    photo_intrinsics,
    preprocess,
    preprocess_cached,
    square_crop,
)
from .image_io import ImageError, LoadedImage, load_image
from .person import PersonNotFound, detect_person, require_photo_extra

__all__ = [
    "preprocess",
    "preprocess_cached",
    "Preprocessed",
    "load_image",
    "LoadedImage",
    "ImageError",
    "PersonNotFound",
    "detect_person",
    "require_photo_extra",
    "photo_intrinsics",
    "square_crop",
    "DEFAULT_FOV_DEG",
]
