"""One base for every model we ship: a config dataclass, ``save_pretrained`` / ``from_pretrained``, fp16 export.

A model directory holds ``model.safetensors`` and ``config.json`` (the config's fields plus ``model_type``),
written atomically and checked on load: a wrong model type, a config that does not fit the dataclass, weights
that do not match the config, or files that are not what they claim all raise ``WeightsError`` (a
``ValueError``) naming the file. ``MODEL_TYPES`` maps each ``model_type`` to its class (see ``register``), so
``load_pretrained(dir)`` builds whatever a directory holds.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from humansplat.config import ConfigError, from_dict, to_dict
from humansplat.utils import atomic_dir

__all__ = ["MODEL_TYPES", "PretrainedModel", "WeightsError", "load_checked", "load_pretrained", "read_model_dir", "register"]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
MODEL_TYPES: dict[str, type[PretrainedModel]] = {}
M = TypeVar("M", bound="PretrainedModel")


class WeightsError(ValueError):
    """A model directory that cannot be loaded: the message names the file and what is wrong."""


def register(cls: type[M]) -> type[M]:
    """Class decorator: make ``cls.model_type`` loadable by ``load_pretrained``."""
    if cls.model_type in MODEL_TYPES and MODEL_TYPES[cls.model_type] is not cls:
        raise ValueError(f"model type {cls.model_type!r} registered twice")
    MODEL_TYPES[cls.model_type] = cls
    return cls


class PretrainedModel(nn.Module):
    """Base of our models: ``self.config`` is an instance of ``config_class``; ``model_type`` names the kind."""

    model_type: ClassVar[str]
    config_class: ClassVar[type]

    def save_pretrained(self, directory: str | os.PathLike, dtype: torch.dtype | None = None) -> Path:
        """Weights (cast to ``dtype`` if given, e.g. fp16 for shipping) and config, swapped in atomically."""
        from safetensors.torch import save_file

        config = {"model_type": self.model_type, **to_dict(self.config)}
        with atomic_dir(directory) as tmp:
            tensors = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu().contiguous()
                       for k, v in self.state_dict().items()}
            save_file(tensors, str(tmp / WEIGHTS_FILE))
            (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        return Path(directory)

    @classmethod
    def from_pretrained(cls: type[M], directory: str | os.PathLike, device: str | torch.device = "cpu") -> M:
        config, state = read_model_dir(directory, cls.model_type)
        model = cls(cls.config_from_dict(config, f"{Path(directory) / CONFIG_FILE}"))
        load_checked(model, state, str(Path(directory) / WEIGHTS_FILE))
        return model.to(device).eval()

    @classmethod
    def config_from_dict(cls, data: dict, where: str = "config") -> Any:
        try:
            return from_dict(cls.config_class, data, where)
        except ConfigError as e:
            raise WeightsError(str(e)) from None


def read_model_dir(directory: str | os.PathLike, model_type: str | None = None) -> tuple[dict, dict[str, torch.Tensor]]:
    """Read and check a model directory: (config without ``model_type``, state dict)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    cfg_path, weights = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    for p in (cfg_path, weights):
        if not p.is_file():
            raise WeightsError(f"{p}: missing (a model directory holds {CONFIG_FILE} and {WEIGHTS_FILE})")
    try:
        config = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise WeightsError(f"{cfg_path}: not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise WeightsError(f"{cfg_path}: expected a JSON object, got {type(config).__name__}")
    found = config.pop("model_type", None)
    if model_type is not None and found != model_type:
        raise WeightsError(f"{cfg_path}: model_type is {found!r}, expected {model_type!r}")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise WeightsError(f"{weights}: not a readable safetensors file ({' '.join(str(e).split())})") from None
    return config, state


def load_pretrained(directory: str | os.PathLike, device: str | torch.device = "cpu") -> PretrainedModel:
    """Whatever model a directory holds, by its ``model_type``."""
    import humansplat.models  # noqa: F401  (registers the model types)

    cfg_path = Path(directory) / CONFIG_FILE
    try:
        model_type = json.loads(cfg_path.read_text()).get("model_type")
    except FileNotFoundError:
        raise WeightsError(f"{cfg_path}: missing (a model directory holds {CONFIG_FILE} and {WEIGHTS_FILE})") from None
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
        raise WeightsError(f"{cfg_path}: not a JSON object ({e})") from None
    if model_type not in MODEL_TYPES:
        raise WeightsError(f"{cfg_path}: unknown model_type {model_type!r} (known: {sorted(MODEL_TYPES)})")
    return MODEL_TYPES[model_type].from_pretrained(directory, device)


def load_checked(module: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """load_state_dict with a readable error listing missing, unexpected and mis-shaped tensors."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        raise WeightsError(f"{where}: weights do not match the config: missing {missing[:5]}, unexpected {unexpected[:5]}, "
                           f"shape mismatches {shapes[:5]}")
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
