"""The one place where the app meets the pipeline: a request's own view of the loaded pipeline, running it
with per-stage events (``Pipeline.__call__(..., on_stage=)``), and writing its result (``humansplat.outputs``)."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Callable

from humansplat.outputs import write_result
from humansplat.pipeline import Pipeline, Reconstruction, StageEvent
from humansplat.refine import RefineConfig

__all__ = ["StageEvent", "has_novel_views", "run", "variant", "write"]


def has_novel_views(pipe: Pipeline) -> bool:
    """Whether the loaded pipeline has a novel-view generator (the app shows its switch only then)."""
    return pipe.generator is not None


def variant(pipe: Pipeline, seed: int, refine_steps: int, novel_views: bool = True) -> Pipeline:
    """The same loaded models with another seed, refinement and novel-view choice: a shallow copy (its own
    ``skip`` set too), so that concurrent requests with different options never change each other's pipeline."""
    out = copy.copy(pipe)
    out.seed = seed
    out.refine = RefineConfig(steps=refine_steps, mode=pipe.refine.mode)
    out.skip = {s for s in pipe.skip if s not in ("refine", "novel_views")}
    if refine_steps <= 0:
        out.skip.add("refine")
    if not novel_views or pipe.generator is None:
        out.skip.add("novel_views")
    out.meta = {**pipe.meta, "seed": seed}
    return out


def run(pipe: Pipeline, image, person: int | None = None, name: str | None = None,
        on_stage: Callable[[StageEvent], None] | None = None) -> Reconstruction:  # fmt: skip
    """``pipe(image, person, name)``, calling ``on_stage`` after each stage as it ends."""
    return pipe(image, person=person, name=name, on_stage=on_stage)


def write(result: Reconstruction, pipe: Pipeline, folder: Path, frames: int, size: int) -> Path:
    """Every output of one result into ``folder`` (atomically); the seconds it took go into ``result.timings``."""
    t = time.perf_counter()
    write_result(result, folder, pipe, frames=frames, size=size)
    result.timings["write_outputs"] = time.perf_counter() - t
    return folder
