"""The fixed held-out benchmark set, on the peers' evaluation protocol.

Synthetic subjects drawn from a fixed seed, each rendered from 36 cameras at 0 deg elevation
(azimuth 0, 10, ..., 350 deg; 39.6 deg field of view, HumanSplat's) at 512 x 512 on white, one distance
per subject so that it spans 90% of the frame; the input view (index 0) is the frontal view (the same
camera as orbit view 0). Subjects are built on the CPU so the arrays, and with them the shard files,
are the same bytes on every run of the same version (rendering on the same kind of device).
Bump ``PROTOCOL["version"]`` whenever the engine's output changes.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch

from humansplat.cameras import Cameras
from humansplat.data.engine import EngineConfig, SyntheticEngine
from humansplat.data.shards import ShardWriter, fill_shards
from humansplat.data.views import benchmark_views

__all__ = ["PROTOCOL", "benchmark_batch", "make_benchmark"]

PROTOCOL = {
    "name": "humansplat-synthetic-benchmark",
    "version": 2,  # 2: box surfels with exact face frames (float-rounding changes)
    "seed": 20241106,
    "subjects": 50,
    "views": 36,
    "resolution": 512,
    "fov_deg": 39.6,
    "elevation_deg": 0.0,
    "fill": 0.9,
    "background": "white",
    "input_view": "index 0: frontal (azimuth 0, elevation 0), the same camera as orbit view 0 (index 1)",
}


def benchmark_batch(engine: SyntheticEngine, n: int, generator: torch.Generator, protocol: dict = PROTOCOL) -> dict:
    """n subjects rendered on the protocol's cameras, in the engine's batch format (1 + views views)."""
    s = engine.subjects(n, generator)
    orbit = benchmark_views(s.points, s.valid, protocol["resolution"], protocol["views"], protocol["fov_deg"], protocol["fill"])
    cams = Cameras.cat([orbit[:, :1], orbit], 1).to(engine.device)
    out = engine.render(s, cams)
    dev = engine.device
    out.update(cameras=cams, body_vertices=s.vertices.to(dev), body_params=s.params.to(dev), body_keypoints=s.keypoints.to(dev))
    return out


def make_benchmark(
    root: str | Path,
    device: str | None = None,
    subjects: int | None = None,
    batch_size: int = 2,
    shard_size: int = 10,
    show_progress: bool | None = None,
    protocol: dict | None = None,
) -> Path:
    """Write (or finish writing) the benchmark set into ``root``; returns its SHA256SUMS path.
    ``protocol`` overrides entries of ``PROTOCOL`` (tests use tiny sets)."""
    from humansplat import __version__
    from humansplat.body import SAPIENS_CLASSES

    protocol = {**PROTOCOL, **(protocol or {})}
    protocol["subjects"] = int(subjects or protocol["subjects"])
    config = EngineConfig(resolution=protocol["resolution"], views=protocol["views"], fov=protocol["fov_deg"])
    engine = SyntheticEngine(config, device=device, build_device="cpu")
    meta = {
        "kind": "benchmark",
        "protocol": protocol,
        "subjects": protocol["subjects"],
        "shard_size": shard_size,
        "views": 1 + protocol["views"],
        "resolution": protocol["resolution"],
        "seed": protocol["seed"],
        "engine": config.to_dict(),
        "label_names": SAPIENS_CLASSES,
        "humansplat_version": __version__,
    }
    writer = ShardWriter(root, meta)
    fill_shards(writer, partial(benchmark_batch, engine, protocol=protocol), protocol["seed"], batch_size, show_progress)
    return writer.root / "SHA256SUMS"
