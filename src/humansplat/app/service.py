"""What one request does, apart from the page: check the upload, run the pipeline stage by stage,
write the result into the app's work folder, and expire old results (nothing outlives the app)."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from humansplat.app import stages

RESULT_TTL_S = 3600  # a result stays downloadable this long (then its folder is removed)
DOWNLOADS = ("gaussians.ply", "gaussians.splat", "gaussians.glb", "report.json")
PREVIEW = "preview.splat"  # shown as soon as the Gaussians exist (before the renders), turned for gsplat.js


class RequestError(ValueError):
    """A problem with the user's upload or options: shown in the page as one line."""


@dataclass
class Update:
    """One step of a request, for the page: the stages so far, and the files once they exist."""

    stages: list[stages.StageEvent]
    message: str
    splat: Path | None = None
    folder: Path | None = None
    done: bool = False
    files: dict[str, Path] = field(default_factory=dict)


class Service:
    """One loaded pipeline and a work folder of results (uploads and outputs), removed by ``close``."""

    def __init__(self, pipe, root: Path, max_upload_bytes: int, refine_steps: int, frames: int, size: int):
        self.pipe, self.root = pipe, Path(root)
        self.results = self.root / "results"
        self.results.mkdir(parents=True, exist_ok=True)
        self.max_upload_bytes, self.refine_steps, self.frames, self.size = max_upload_bytes, refine_steps, frames, size
        self._expiry = threading.Lock()

    @property
    def novel_views_supported(self) -> bool:
        return stages.has_novel_views(self.pipe)

    def check_upload(self, path: str | None) -> Path:
        if not path:
            raise RequestError("Upload a photo of a person (or pick an example) first.")
        p = Path(path)
        if not p.is_file():
            raise RequestError("The upload did not arrive; please try again.")
        size = p.stat().st_size
        if size > self.max_upload_bytes:
            raise RequestError(f"The photo is {size / 1e6:.1f} MB; the limit is {self.max_upload_bytes / 1e6:.0f} MB.")
        if size == 0:
            raise RequestError(f"{p.name} is empty.")
        return p

    def reconstruct(self, path: str | None, person: int = 0, seed: int = 0, refine: bool = True, novel_views: bool | None = None,
                    on_stage: Callable[[stages.StageEvent], None] | None = None) -> Iterator[Update]:
        """Yield an update when the Gaussians exist (``splat``) and when every output is written (``done``)."""
        from humansplat.viewer import save_display_splat
        from humansplat.preprocess import ImageError, PersonNotFound

        photo = self.check_upload(path)
        if not 0 <= person <= 99:
            raise RequestError(f"Person must be between 0 and 99, got {person}.")
        self.expire()
        pipe = stages.variant(self.pipe, int(seed), self.refine_steps if refine else 0, novel_views is not False)
        events: list[stages.StageEvent] = []

        def record(event: stages.StageEvent) -> None:
            events.append(event)
            if on_stage is not None:
                on_stage(event)

        try:
            result = stages.run(pipe, str(photo), person=int(person), name=photo.stem, on_stage=record)
        except (ImageError, PersonNotFound) as e:
            raise RequestError(_one_line(e).replace(str(photo), photo.name)) from None
        request = Path(tempfile.mkdtemp(prefix=f"{time.time():.0f}-{uuid.uuid4().hex[:8]}-", dir=self.results))
        splat = save_display_splat(result.gaussians, request / PREVIEW)
        yield Update(list(events), f"{result.gaussians.num:,} Gaussians ({result.structure_prior} prior); rendering the views…", splat)
        folder = stages.write(result, pipe, request / _safe_name(photo.stem), self.frames, self.size)
        events.append(stages.StageEvent("outputs", result.timings["write_outputs"], len(events), len(events) + 1, folder))
        files = {p.name: p for p in sorted(folder.iterdir()) if p.is_file()}
        yield Update(events, f"Done: {result.gaussians.num:,} Gaussians, {result.structure_prior} prior.", splat, folder, True, files)

    def expire(self, ttl: float = RESULT_TTL_S) -> None:
        """Remove the results older than ``ttl`` seconds (their folder names start with their creation time)."""
        with self._expiry:
            now = time.time()
            for d in self.results.iterdir():
                created = d.name.split("-", 1)[0]
                if created.isdigit() and now - int(created) > ttl:
                    shutil.rmtree(d, ignore_errors=True)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _safe_name(stem: str) -> str:
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem).strip(".")
    return name[:80] or "photo"
