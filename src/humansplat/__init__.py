"""humansplat: one photo of a person in, a 3D Gaussian-splat human out.

``humansplat.reconstruct(image)`` returns the Gaussians of the person in a photo; ``humansplat.Pipeline``
keeps the models loaded and returns the whole result (see humansplat.pipeline). Both are imported on first
use, so ``import humansplat`` stays light.
"""

__version__ = "0.1.0"

_LAZY = {"reconstruct": "humansplat.pipeline", "Pipeline": "humansplat.pipeline", "Reconstruction": "humansplat.pipeline"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'humansplat' has no attribute {name!r}")
