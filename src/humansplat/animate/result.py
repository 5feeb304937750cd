"""A ``humansplat reconstruct`` result folder read back: the Gaussians and the body fitted around them.

Contract: ``report.json``'s ``body_fit.params`` (``BodyParams.to_dict()``) posed with ``BodyModel`` lies
on the Gaussians of ``gaussians.ply`` (the same world frame; ``world_offset`` says how far that frame was
shifted from the photo's camera frame).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from humansplat.body import BodyModel, BodyParams
from humansplat.gaussians import Gaussians, load_ply

__all__ = ["Result", "ResultError", "load_result", "skinned_result"]


class ResultError(ValueError):
    """A result folder that cannot be animated (one-line message)."""


@dataclass
class Result:
    path: Path
    gaussians: Gaussians
    params: BodyParams  # batch 1, in the Gaussians' frame
    report: dict


def load_result(path: str | Path) -> Result:
    path = Path(path)
    ply, report_file = path / "gaussians.ply", path / "report.json"
    if not ply.is_file() or not report_file.is_file():
        raise ResultError(f"{path}: not a reconstruction folder (needs gaussians.ply and report.json)")
    try:
        report = json.loads(report_file.read_text())
    except (OSError, ValueError) as e:
        raise ResultError(f"{report_file}: unreadable ({' '.join(str(e).split())})") from None
    fit = report.get("body_fit")
    if report.get("structure_prior") == "template_free" or not isinstance(fit, dict) or "params" not in fit:
        raise ResultError(f"{path}: reconstructed without a body fit (template-free), so there is no rig to animate or export with")
    try:
        params = BodyParams.from_dict(fit["params"])
        gaussians = load_ply(ply)
    except (KeyError, TypeError, ValueError, OSError) as e:
        raise ResultError(f"{path}: {' '.join(str(e).split())}") from None
    if gaussians.num == 0:
        raise ResultError(f"{ply}: no Gaussians")
    return Result(path, gaussians, params[:1], report)


def skinned_result(path: str | Path, body: BodyModel | None = None):
    """``(result, SkinnedGaussians, body)`` for a result folder."""
    from humansplat.animate.skinning import bind

    result = load_result(path)
    body = body or BodyModel.load()
    return result, bind(result.gaussians, body, result.params), body
