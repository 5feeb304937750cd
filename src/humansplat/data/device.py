"""Getting values onto the build device without stalling it.

On a GPU every ``torch.tensor(..., device=cuda)`` and every blocking ``.to(cuda)`` of host memory waits
for all queued work: the engine's fixed cost per batch. Small constants are therefore made once per
device (``constant``), and the CPU-drawn choices of a batch travel in one copy per dtype, from pinned
memory and without blocking (``to_device``).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TypeVar

import torch
from torch import Tensor

__all__ = ["constant", "to_device"]

T = TypeVar("T")


@functools.lru_cache(maxsize=256)
def _constant(values: tuple, dtype: torch.dtype | None, device: torch.device) -> Tensor:
    return torch.tensor(values, dtype=dtype, device=device)


def constant(values: tuple, device: torch.device | str, dtype: torch.dtype | None = None) -> Tensor:
    """A small tensor of ``values`` (a tuple, nested for more dims) on ``device``, made once per device
    and shared: never write into it."""
    return _constant(values, dtype, torch.device(device))


def _leaves(obj, path: tuple = ()) -> list[tuple[tuple, Tensor]]:
    if isinstance(obj, Tensor):
        return [(path, obj)]
    if isinstance(obj, tuple):
        return [leaf for i, x in enumerate(obj) for leaf in _leaves(x, (*path, i))]
    return [leaf for f in dataclasses.fields(obj) for leaf in _leaves(getattr(obj, f.name), (*path, f.name))]


def _rebuild(obj, values: dict[tuple, Tensor], path: tuple = ()):
    if isinstance(obj, Tensor):
        return values[path]
    if isinstance(obj, tuple):
        return tuple(_rebuild(x, values, (*path, i)) for i, x in enumerate(obj))
    return dataclasses.replace(obj, **{f.name: _rebuild(getattr(obj, f.name), values, (*path, f.name)) for f in dataclasses.fields(obj)})


def to_device(obj: T, device: torch.device | str) -> T:
    """A copy of a tensor or a (nested) dataclass or tuple of CPU tensors on ``device``: one transfer per dtype, pinned and
    non-blocking to CUDA. The values are exactly those of ``obj``."""
    device = torch.device(device)
    leaves = _leaves(obj)
    if all(t.device == device for _, t in leaves):
        return obj
    values: dict[tuple, Tensor] = {}
    for dtype in dict.fromkeys(t.dtype for _, t in leaves):
        group = [(p, t) for p, t in leaves if t.dtype == dtype]
        flat = torch.cat([t.detach().cpu().reshape(-1) for _, t in group])
        if device.type == "cuda":
            flat = flat.pin_memory().to(device, non_blocking=True)
        else:
            flat = flat.to(device)
        for (p, t), part in zip(group, flat.split([t.numel() for _, t in group])):
            values[p] = part.view(t.shape)
    return _rebuild(obj, values)
