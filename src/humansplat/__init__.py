"""humansplat: one photo of a person in, a 3D Gaussian-splat human out."""

__version__ = "0.1.0"
