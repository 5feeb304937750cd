"""Every network we train and ship, on one base (``PretrainedModel``: config dataclass, ``save_pretrained`` /
``from_pretrained``, fp16 export) and one registry (``MODEL_TYPES``, read by ``load_pretrained``).

- ``Autoencoder``: the small VAE whose frozen encoder gives the latent space;
- ``Reconstructor``: the latent reconstruction transformer (input views + 3D anchors -> Gaussians);
- ``NovelViewGenerator``: the multi-view latent diffusion model (photo + body -> K novel views).

A new model is a module here with a config dataclass and a ``@register``-ed ``PretrainedModel`` subclass.
"""

from humansplat.models.autoencoder import Autoencoder, AutoencoderConfig
from humansplat.models.generator import GeneratorConfig, NovelViewGenerator
from humansplat.models.base import MODEL_TYPES, PretrainedModel, WeightsError, load_checked, load_pretrained, read_model_dir, register
from humansplat.models.anchors import Anchors, farthest_point_indices, template_free_anchors
from humansplat.models.reconstructor import Reconstructor, ReconstructorConfig

__all__ = [
    "MODEL_TYPES",
    "Anchors",
    "Autoencoder",
    "AutoencoderConfig",
    "GeneratorConfig",
    "NovelViewGenerator",
    "PretrainedModel",
    "Reconstructor",
    "ReconstructorConfig",
    "WeightsError",
    "farthest_point_indices",
    "load_checked",
    "load_pretrained",
    "read_model_dir",
    "register",
    "template_free_anchors",
]
