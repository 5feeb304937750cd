"""Synthetic training data: dressed, posed, lit humans rendered from many views on the fly (GPU or CPU),
sharded datasets on disk, the fixed benchmark set, and real scans rendered the same way.
See docs/data.md."""

from humansplat.data.engine import LABEL_CHANNELS, EngineConfig, SubjectBatch, SyntheticEngine, render_maps

__all__ = ["SyntheticEngine", "EngineConfig", "SubjectBatch", "LABEL_CHANNELS", "render_maps"]
