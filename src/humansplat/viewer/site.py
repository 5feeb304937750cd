"""Build and serve the viewer: a folder with ``index.html``, ``viewer.js``, the vendored gsplat.js and the
scene (``scene.json`` plus ``.splat`` files) that any static web server can host.

The scene holds the colour splats, the same splats in body-part colours (labels decoded from the ply's
``feat_*`` by the reconstructor's semantic decoder) and, when the result folder has posed frames
(``animation/*.ply``, as ``humansplat animate`` writes them), one pair of splat files per frame.
"""

from __future__ import annotations

import functools
import http.server
import json
import shutil
from pathlib import Path

import torch

from humansplat.gaussians import Gaussians, load_ply, save_splat
from humansplat.utils import atomic_dir

STATIC = Path(__file__).parent / "static"
ANIMATION_DIRS = ("animation/frames", "animation", "frames")  # where posed .ply frames of a result are looked for
# (`humansplat animate RESULT --motion walk -o RESULT/animation` writes the first)
ANIMATION_FPS = 24
MAX_FRAMES = 240  # more frames than this are thinned evenly (every frame is a file the page loads)


def viewer_frame(g: Gaussians) -> Gaussians:
    """The Gaussians turned half a turn about X: our world is +Y up (subject facing +Z); gsplat.js (this
    viewer's and Gradio's) draws +Y down. Display files only; the result's own files keep the world frame."""
    w, x, y, z = g.quats.unbind(-1)
    flip = torch.tensor([1.0, -1.0, -1.0])
    return Gaussians(g.means * flip, torch.stack([-x, w, -z, y], -1), g.log_scales, g.opacity_logits, g.sh, g.features)


def save_display_splat(g: Gaussians, path: Path) -> Path:
    """A ``.splat`` for the web viewers (in ``viewer_frame``)."""
    return save_splat(viewer_frame(g), path)


def part_colours(g: Gaussians, model) -> Gaussians:
    """The same Gaussians coloured by decoded body part (flat DC colour, no view dependence)."""
    from humansplat.body import colorize_labels
    from humansplat.gaussians.sh import rgb_to_sh

    with torch.no_grad():
        labels = model.decode_semantics(g.features).argmax(-1)
    rgb = colorize_labels(labels).float() / 255
    sh = torch.zeros_like(g.sh)
    sh[:, 0] = rgb_to_sh(rgb)
    return Gaussians(g.means, g.quats, g.log_scales, g.opacity_logits, sh, g.features)


def load_semantics(weights: str | Path | None):
    """The shipped (or given: a pipeline or reconstructor folder) reconstructor on the CPU, for its semantic
    decoder; None when it cannot be loaded."""
    from humansplat.models import Reconstructor
    from humansplat.pipeline import resolve_weights

    try:
        return Reconstructor.from_pretrained(resolve_weights(weights)["reconstructor"], torch.device("cpu")).eval()
    except (OSError, ValueError, RuntimeError):
        return None


def animation_frames(result_dir: Path) -> list[Path]:
    """Posed .ply frames of a result (the first of ``ANIMATION_DIRS`` that has any), at most ``MAX_FRAMES``."""
    for name in ANIMATION_DIRS:
        frames = sorted((result_dir / name).glob("*.ply"))
        if frames:
            step = -(-len(frames) // MAX_FRAMES)
            return frames[::step]
    return []


def _write_pair(g: Gaussians, model, folder: Path, stem: str) -> dict:
    """``stem.splat`` (colours) and, when the model can decode the features, ``stem-parts.splat``."""
    entry = {"colour": f"{stem}.splat"}
    save_display_splat(g, folder / entry["colour"])
    usable = model is not None and g.features is not None and g.features.shape[-1] == model.semantic_decoder.in_features
    if usable:
        entry["parts"] = f"{stem}-parts.splat"
        save_display_splat(part_colours(g, model), folder / entry["parts"])
    return entry


def build_site(result_dir: str | Path, out: str | Path, weights: str | Path | None = None, model=None) -> dict:
    """Write the viewer for ``result_dir`` (with ``gaussians.ply``, or only ``gaussians.splat``) into ``out``
    (atomically). Returns the scene manifest that the page reads as ``scene.json``."""
    result_dir, out = Path(result_dir), Path(out)
    ply, splat = result_dir / "gaussians.ply", result_dir / "gaussians.splat"
    if not ply.is_file() and not splat.is_file():
        raise FileNotFoundError(f"{result_dir}: no gaussians.ply or gaussians.splat (not a reconstruction folder)")
    if model is None and ply.is_file():
        model = load_semantics(weights)
    with atomic_dir(out) as tmp:
        shutil.copytree(STATIC, tmp, dirs_exist_ok=True)
        scene = tmp / "scene"
        scene.mkdir()
        if ply.is_file():
            g = load_ply(ply)
            manifest = {"num_gaussians": g.num, **_write_pair(g, model, scene, "gaussians")}
        else:  # a bare .splat is in the world frame: the page turns it
            shutil.copyfile(splat, scene / "gaussians.splat")
            manifest = {"num_gaussians": splat.stat().st_size // 32, "colour": "gaussians.splat", "frame": "world"}
        frames = animation_frames(result_dir)
        if frames:
            (scene / "frames").mkdir()
            manifest["frames"] = [_write_pair(load_ply(f), model, scene / "frames", f"{i:04d}") for i, f in enumerate(frames)]
            manifest["fps"] = ANIMATION_FPS
        manifest["name"] = result_dir.name
        manifest["parts_note"] = "" if "parts" in manifest else "no part colours: the result has no semantic features the weights can decode"
        manifest["animation_note"] = "" if frames else "not animated: no posed frames in " + " or ".join(f"{d}/" for d in ANIMATION_DIRS) + " (humansplat animate writes them)"
        (scene / "scene.json").write_text(json.dumps(manifest, indent=1))
    return manifest


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".js": "text/javascript", ".splat": "application/octet-stream"}

    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's name
        pass


def serve(folder: str | Path, host: str = "127.0.0.1", port: int = 8000) -> http.server.ThreadingHTTPServer:
    """A static file server for ``folder`` (call ``serve_forever`` on it; port 0 picks a free one)."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    return http.server.ThreadingHTTPServer((host, port), handler)
