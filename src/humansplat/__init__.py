"""humansplat: one photo of a person in, a 3D Gaussian-splat human out.

``humansplat.reconstruct(image)`` returns the Gaussians of the person in a photo (see humansplat.pipeline).
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "reconstruct":  # imported on first use: the package itself stays light
        import importlib

        return importlib.import_module("humansplat.reconstruct")
    raise AttributeError(f"module 'humansplat' has no attribute {name!r}")
