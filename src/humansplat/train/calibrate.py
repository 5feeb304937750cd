"""Part-logit recalibration after training: one shift per class, fitted on fresh engine subjects.

The semantic loss weights its classes (``LossConfig.class_weights``, ``semantic_balance``) and the face and hand
crops add more of those pixels, so the trained decoder answers for a world with more lips, hands and bare arms
than a whole view holds: on the benchmark v10 paints 2-10 times the true area of the bare arms and upper legs.
The remedy is logit adjustment: a per-class shift on the logits
that minimises the *unweighted* cross-entropy of the foreground classes on whole views drawn from the
training distribution (``fit_semantic_shift``; the model's foreground/background odds are kept). The subjects
come from the engine with a seed of their own (never the benchmark's); the shift is recorded in the model's
config (``ReconstructorConfig.semantic_shift``, applied by ``decode_semantics``) and the raw decoder, which
training keeps updating, is left as it is. A training run fits it at its last checkpoint
(``TrainConfig.calibrate_subjects``); ``scripts/calibrate_semantics.py`` fits it for weights trained before.

    shift = calibrate_semantics(model, engine, subjects=32, generator=torch.Generator().manual_seed(0))
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from humansplat.data.engine import SyntheticEngine
from humansplat.gaussians import render

__all__ = ["CALIBRATION_SEED", "PIXEL_STRIDE", "calibrate_semantics", "fit_semantic_shift", "semantic_logits"]

CALIBRATION_SEED = 20261207  # the calibration's engine subjects are drawn from it (plus a run's seed): never the benchmark's
PIXEL_STRIDE = 3  # every third labelled pixel of every view: neighbours repeat each other
LBFGS_ROUNDS = 3


@torch.no_grad()
def semantic_logits(model, engine: SyntheticEngine, batch: dict, stride: int = PIXEL_STRIDE) -> tuple[Tensor, Tensor]:
    """The model's raw part logits (N, C) and the true labels (N,) on every view of an engine batch (the input
    view reconstructed with the true body as anchors), at every ``stride``-th labelled pixel."""
    anchors = model.body_anchors(batch["body_vertices"], engine.body.vertex_labels.to(batch["body_vertices"].device))
    gaussians = model(batch["images"][:, :1], batch["cameras"][:, :1], anchors)
    out = render(gaussians, batch["cameras"], background=1.0)
    logits = model.decode_semantics(out.features, calibrated=False).float()
    labels = batch["labels"].long()
    known = labels >= 0
    return logits[known][::stride], labels[known][::stride]


def fit_semantic_shift(logits: Tensor, labels: Tensor) -> Tensor:
    """The per-class shift (C,) for ``logits`` (N, C) against ``labels`` (N,), class 0 the background.

    The foreground classes' shifts minimise the cross-entropy among the foreground classes on the foreground
    pixels (convex: L-BFGS finds them in a few rounds); then one offset keeps the model's own odds of foreground
    against background, on average over those pixels, and the background's shift is 0. Fitting the background
    too would trade the silhouette's edge pixels, which a whole view holds many of, for the parts."""
    fg = labels > 0
    z, y = logits[fg][:, 1:], labels[fg] - 1
    shift = torch.zeros(z.shape[1], device=z.device, requires_grad=True)
    opt = torch.optim.LBFGS([shift], max_iter=100, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(z + shift, y)
        loss.backward()
        return loss

    with torch.enable_grad():
        for _ in range(LBFGS_ROUNDS):
            opt.step(closure)
    shift = shift.detach()
    shift = shift - (torch.logsumexp(z + shift, -1) - torch.logsumexp(z, -1)).mean()
    return torch.cat([shift.new_zeros(1), shift]).cpu()


def calibrate_semantics(model, engine: SyntheticEngine, subjects: int, generator: torch.Generator, batch_size: int = 4,
                        progress=None) -> tuple[float, ...]:  # fmt: skip
    """Fit ``model``'s part-logit shift on ``subjects`` fresh engine subjects (body anchors); returns it as the
    tuple ``ReconstructorConfig.semantic_shift`` takes. ``progress``: an optional bar, updated per batch."""
    if model.config.anchor_mode != "body":
        raise ValueError("calibrate_semantics: the model must take body anchors (anchor_mode 'body')")
    logits, labels = [], []
    for start in range(0, subjects, batch_size):
        batch = engine.sample(min(batch_size, subjects - start), generator)
        lg, lb = semantic_logits(model, engine, batch)
        logits.append(lg)
        labels.append(lb)
        if progress is not None:
            progress.update(1)
    return tuple(round(float(v), 4) for v in fit_semantic_shift(torch.cat(logits), torch.cat(labels)))
