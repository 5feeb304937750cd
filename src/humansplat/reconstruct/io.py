"""Model directories: ``model.safetensors`` + ``config.json``, written atomically, checked on load."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from humansplat.utils import atomic_dir


def config_to_dict(config: Any) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(config)))  # tuples -> lists, plain JSON types


def config_from_dict(cls: type, data: dict, where: str = "config") -> Any:
    """Build dataclass ``cls`` from ``data``; nested dataclass fields are built recursively.
    Unknown keys are an error (a config written for another model version must not load silently)."""
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown} for {cls.__name__}")
    kwargs = {}
    for key, value in data.items():
        ftype = names[key].type
        sub = getattr(cls, "__nested__", {}).get(key)
        if sub is not None and isinstance(value, dict):
            value = config_from_dict(sub, value, f"{where}.{key}")
        elif isinstance(value, list) and "tuple" in str(ftype):
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


def save_model_dir(directory: str | os.PathLike, state: dict[str, torch.Tensor], config: dict, dtype: torch.dtype | None = None) -> Path:
    """Write weights + config into a fresh temporary directory, then swap it in place of ``directory``."""
    with atomic_dir(directory) as tmp:
        tensors = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu().contiguous() for k, v in state.items()}
        save_file(tensors, str(tmp / "model.safetensors"))
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return Path(directory)


def load_model_dir(directory: str | os.PathLike, model_type: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """Read and check a model directory; returns (config dict without 'model_type', state dict)."""
    directory = Path(directory)
    cfg_path, weights = directory / "config.json", directory / "model.safetensors"
    if not cfg_path.is_file() or not weights.is_file():
        raise FileNotFoundError(f"{directory}: expected config.json and model.safetensors")
    config = json.loads(cfg_path.read_text())
    found = config.pop("model_type", None)
    if found != model_type:
        raise ValueError(f"{directory}: config.json is for model_type {found!r}, expected {model_type!r}")
    return config, load_file(str(weights))


def load_checked(module: torch.nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """load_state_dict with a readable error listing missing, unexpected and mis-shaped tensors."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        raise ValueError(f"{where}: weights do not match the config: missing {missing[:5]}, unexpected {unexpected[:5]}, "
                         f"shape mismatches {shapes[:5]}")
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
