"""A contact sheet of synthetic subjects: per subject its input view, three orbit views and the part
labels of the input view, several subjects per row."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from humansplat.body import colorize_labels
from humansplat.cameras import Cameras
from humansplat.data import views as vw
from humansplat.data.engine import SyntheticEngine

__all__ = ["contact_sheet"]


def contact_sheet(engine: SyntheticEngine, subjects: int = 64, per_row: int = 4, panel: int = 128, seed: int = 0, batch_size: int = 8) -> np.ndarray:
    """(H, W, 3) uint8 image; renders at the engine's resolution, shown at ``panel`` pixels."""
    g = torch.Generator().manual_seed(seed)
    cfg = engine.config
    tiles = []
    for start in range(0, subjects, batch_size):
        n = min(batch_size, subjects - start)
        s = engine.subjects(n, g)
        inp = vw.input_views(s.points, s.valid, s.keypoints, cfg.resolution, g, cfg.input_fov, cfg.input_elevation,
                             cfg.input_azimuth_std, cfg.input_any_azimuth, cfg.input_fill, cfg.half_body, cfg.roll_std, cfg.head_only)  # fmt: skip
        orbit = vw.orbit_views(s.points, s.valid, 3, cfg.resolution, g, cfg.fov, cfg.elevation, cfg.fill)
        maps = engine.render(s, Cameras.cat([inp, orbit], 1).to(engine.device))
        rgb = F.interpolate(maps["images"].flatten(0, 1), size=(panel, panel), mode="area").unflatten(0, (n, 4))
        lab = colorize_labels(maps["labels"][:, 0].cpu()).permute(0, 3, 1, 2).float() / 255
        lab = torch.where(lab.sum(1, keepdim=True) == 0, torch.ones_like(lab), lab)  # background white
        lab = F.interpolate(lab, size=(panel, panel), mode="nearest")
        row = torch.cat([rgb.cpu(), lab[:, None]], 1)  # (n, 5, 3, p, p)
        row = F.pad(row, (1, 1, 1, 1), value=0.85)
        tiles.append(row.permute(0, 2, 3, 1, 4).flatten(3, 4))  # (n, 3, p+2, 5(p+2))
    tiles = torch.cat(tiles)
    pad = (-len(tiles)) % per_row
    tiles = torch.cat([tiles, torch.ones(pad, *tiles.shape[1:])])
    tiles = F.pad(tiles, (4, 4, 4, 4), value=1.0)
    grid = tiles.unflatten(0, (-1, per_row)).permute(2, 0, 3, 1, 4)  # (3, rows, h, per_row, w)
    grid = grid.reshape(3, grid.shape[1] * grid.shape[2], per_row * grid.shape[4])
    return (grid.permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
