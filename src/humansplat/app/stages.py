"""The one place where the app meets the pipeline: running it with per-stage events and writing a result.

The pipeline is being reshaped into stages (``Pipeline.__call__(..., on_stage=callback)`` and
``humansplat.outputs.write_outputs``). Until that lands, ``run`` calls the pipeline as it is and reports
``result.timings`` as the stages once it returns; after it lands, only this module needs to change.
"""

from __future__ import annotations

import copy
import inspect
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

# The pipeline's stages in order (the names of ``result.timings`` and of ``on_stage`` events).
STAGES = ("preprocess", "body_fit", "novel_views", "reconstruct", "crop", "refine")


@dataclass
class StageEvent:
    """What ``on_stage`` receives after each stage (the same fields as the pipeline's own events)."""

    name: str
    seconds: float
    index: int
    total: int


def supports(pipe, argument: str) -> bool:
    """Whether ``pipe(image, ...)`` takes ``argument`` (e.g. "on_stage", "novel_views")."""
    return argument in inspect.signature(pipe.__call__).parameters


def variant(pipe, seed: int, refine_steps: int):
    """The same loaded models with another seed and refinement: a shallow copy, so that concurrent
    requests with different options never change each other's pipeline."""
    from humansplat.refine import RefineConfig

    out = copy.copy(pipe)
    out.seed = seed
    out.refine = RefineConfig(steps=refine_steps)
    out.meta = {**pipe.meta, "seed": seed}
    return out


def run(pipe, image, person: int | None = None, name: str | None = None, novel_views: bool | None = None,
        on_stage: Callable[[StageEvent], None] | None = None):
    """``pipe(image, person, name)``, calling ``on_stage`` after each stage (live when the pipeline
    reports stages, else from ``result.timings`` once it is done)."""
    kwargs = {}
    if novel_views is not None and supports(pipe, "novel_views"):
        kwargs["novel_views"] = novel_views
    if on_stage is not None and supports(pipe, "on_stage"):
        return pipe(image, person=person, name=name, on_stage=on_stage, **kwargs)
    result = pipe(image, person=person, name=name, **kwargs)
    if on_stage is not None:
        done = [k for k in result.timings if k in STAGES]
        for i, k in enumerate(done):
            on_stage(StageEvent(k, result.timings[k], i, len(done)))
    return result


def write(result, pipe, folder: Path, frames: int, size: int) -> Path:
    """Every output of one result into ``folder`` (atomically); the seconds it took go into ``result.timings``."""
    t = time.perf_counter()
    try:
        from humansplat.outputs import write_outputs  # the staged pipeline's home for it
    except ImportError:
        from humansplat.commands.reconstruct import write_outputs

        write_outputs(result, pipe, folder, frames, size)
    else:
        write_outputs(result, folder, pipe, frames=frames, size=size)
    result.timings["write_outputs"] = time.perf_counter() - t
    return folder
