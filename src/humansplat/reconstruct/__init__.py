"""Feed-forward reconstruction: input views + 3D anchors (body prior or template-free) -> 3D Gaussians."""

from humansplat.reconstruct.autoencoder import Autoencoder, AutoencoderConfig
from humansplat.reconstruct.model import (
    Anchors,
    Reconstructor,
    ReconstructorConfig,
    farthest_point_indices,
    template_free_anchors,
)

__all__ = [
    "Anchors",
    "Autoencoder",
    "AutoencoderConfig",
    "Reconstructor",
    "ReconstructorConfig",
    "farthest_point_indices",
    "template_free_anchors",
]


class _CallableModule(__import__("types").ModuleType):
    """``humansplat.reconstruct(image)`` is the whole photo -> Gaussians pipeline (humansplat.pipeline.reconstruct),
    while ``humansplat.reconstruct`` stays the package of the reconstruction stage."""

    def __call__(self, image, **kwargs):
        from humansplat.pipeline import reconstruct

        return reconstruct(image, **kwargs)


__import__("sys").modules[__name__].__class__ = _CallableModule
