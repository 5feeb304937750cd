"""What the photo commands (`fit`, `reconstruct`) share: collecting inputs, naming and checking outputs,
one-line errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".jfif"}


def collect_images(items: list[str]) -> list[Path]:
    """Files as given (kept even when not images: they fail with a clear message); folders expanded to
    the images directly inside them, sorted, broken links to images included (they fail, loudly)."""
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            out += sorted(f for f in p.iterdir() if not f.name.startswith(".") and _is_image_entry(f))
        else:
            out.append(p)
    return out


def _is_image_entry(f: Path) -> bool:
    if f.is_symlink() and not f.exists():  # dangling: an image by its name or its target's
        return bool({f.suffix.lower(), Path(os.readlink(f)).suffix.lower()} & IMAGE_SUFFIXES)
    return f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES


def check_outputs(out: Path, folders: list[str] = ()) -> None:
    """Before any work: ``out`` must be (or become) a writable folder, and each result folder ``out/<name>``
    must be absent or a humansplat result we may replace. Raises ``UserError``."""
    from humansplat.cli import UserError
    from humansplat.utils import OutputError, check_replaceable, check_writable

    try:
        check_writable(out)
        for name in folders:
            check_replaceable(out / name)
    except OutputError as e:
        raise UserError(str(e)) from None


def output_names(paths: list[Path]) -> list[str]:
    """One folder name per photo: its stem, made unique with -2, -3, ... when stems repeat."""
    seen: dict[str, int] = {}
    names = []
    for p in paths:
        n = seen.get(p.stem, 0) + 1
        seen[p.stem] = n
        names.append(p.stem if n == 1 else f"{p.stem}-{n}")
    return names


def describe_error(path: Path, e: Exception) -> str:
    from humansplat.preprocess import ImageError, PersonNotFound

    msg = " ".join(str(e).split()) or type(e).__name__
    if isinstance(e, ImageError):
        return msg  # already names the file
    if isinstance(e, PersonNotFound):
        return f"{path}: {msg}"
    return f"{path}: {type(e).__name__}: {msg}"
