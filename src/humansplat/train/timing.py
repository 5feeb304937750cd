"""Where a training step's wall time goes: one accumulator per phase, read by ``benchmarks/train_scaling.py``.

The phases tile the loop (each ``mark`` closes the phase that began at the previous one), so they add up to
the loop's wall time. Without ``profile`` a mark is one ``perf_counter`` call: on CUDA the host runs ahead
of the GPU, so GPU work lands in whichever phase next waits for it (the log's ``.item()``, the stop flag's
all-reduce). With ``profile`` every mark synchronises the device first, so each phase holds its own GPU
work, and the trainer adds a ``wait`` phase: an all-reduce of one number before the backward pass, i.e. the
time this rank waits for the slowest rank to finish its data and forward pass.
"""

from __future__ import annotations

import time

import torch

PHASES = ("data", "forward", "wait", "backward", "optimizer", "sync", "checkpoint", "log")
PHASE_NOTES = {
    "data": "engine.sample on the rank's own device",
    "forward": "task.loss (model forward and loss)",
    "wait": "--profile only: waiting for the slowest rank before the backward pass",
    "backward": "loss.backward, with DDP's gradient all-reduce overlapped in it",
    "optimizer": "gradient clipping and AdamW",
    "sync": "the per-step all-reduce of the stop / checkpoint flags and elapsed time",
    "checkpoint": "task.finish and rank 0's checkpoint writes (the other ranks wait in the next collective)",
    "log": "logging, TensorBoard and the progress bar",
}


def warmup_steps(total: int) -> int:
    """Steps left out of the measured totals (allocator, cuDNN and autotuning warm-up): a fifth, at most 5."""
    return min(5, total // 5)


class StepTimer:
    def __init__(self, device: torch.device, profile: bool = False, warmup: int = 0):
        self.device, self.profile, self.warmup = device, profile, warmup
        self.sync_device = profile and device.type == "cuda"
        self.steps = 0  # steps finished in this run (a resumed run counts from 0)
        self.totals = dict.fromkeys(PHASES, 0.0)
        self._t = self._measured_from = time.perf_counter()

    def _now(self) -> float:
        if self.sync_device:
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def start(self) -> None:
        self._t = self._measured_from = self._now()

    def mark(self, phase: str) -> None:
        now = self._now()
        self.totals[phase] += now - self._t
        self._t = now

    def step_done(self) -> None:
        self.steps += 1
        if self.steps == self.warmup:  # measure from here
            self.totals = dict.fromkeys(PHASES, 0.0)
            self._measured_from = self._t

    def summary(self) -> dict:
        measured = self.steps - self.warmup if self.steps > self.warmup else self.steps  # too short: all of it
        wall = self._t - self._measured_from
        return {"steps": measured, "warmup_steps": self.steps - measured, "wall_s": wall,
                "steps_per_s": measured / wall if wall > 0 else 0.0, "profile": self.profile,
                "phases_s": dict(self.totals)}
