"""Small helpers shared by every stage: atomic writes (files and folders, never replacing what we did not
write), output checks made before any work, seeding, progress bars, device choice."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import torch


MANIFEST = ".humansplat-manifest.json"  # in every folder atomic_dir writes: the files we wrote there
STALE_AFTER_S = 24 * 3600  # a temporary of ours this old is stale even when its pid is (again) alive
_TEMP_TAG = "humansplat"  # temporaries are named .<name>.humansplat-<pid>-<token>.tmp (or .old)
_TEMP_RE = re.compile(rf"^\..+\.{_TEMP_TAG}-(\d+)-[0-9a-z_]+\.(?:tmp|old)$")
_LISTED_EXTRAS = 3  # unlisted files named in an error message


class OutputError(ValueError):
    """An output location that must not or cannot be written: one line naming the path."""


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.{_TEMP_TAG}-{os.getpid()}-"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{_temp_prefix(path)}{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``path``; only if the block succeeds does it take the name
    ``path``, with a manifest (``MANIFEST``) of the files it holds. A folder already at ``path`` is
    replaced only if it is one of ours holding nothing its manifest does not list, else ``OutputError``
    (checked on entry and again before the swap). On failure nothing is left; stale temporaries of
    killed runs beside ``path`` are removed on entry."""
    path = Path(path)
    check_replaceable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(path.parent)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the result is an ordinary folder
    try:
        yield tmp
        files = _listing(tmp)
        (tmp / MANIFEST).write_text(json.dumps({"written_by": _TEMP_TAG, "files": files}, indent=1) + "\n")
        if path.exists() or path.is_symlink():
            check_replaceable(path)  # again: the user may have added something while we worked
            old = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".old", dir=path.parent))
            os.replace(path, old / "previous")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
def _listing(folder: Path) -> list[str]:
    """Every file (and link) under ``folder`` as a relative POSIX path, sorted; the top manifest left out."""
    out = []
    for root, dirs, files in os.walk(folder):
        rel = Path(root).relative_to(folder)
        out += [(rel / f).as_posix() for f in files]
        out += [(rel / d).as_posix() for d in dirs if (Path(root) / d).is_symlink()]  # links to folders: listed, not entered
    return sorted(f for f in out if f != MANIFEST)


def check_replaceable(path: str | os.PathLike) -> None:
    """``OutputError`` unless ``path`` is absent or a folder atomic_dir wrote that holds only what its
    manifest lists, or subfolders atomic_dir wrote into it later (e.g. ``humansplat animate RESULT -o
    RESULT/animation``), themselves replaceable: we never delete what we did not write."""
    path = Path(path)
    if not (path.exists() or path.is_symlink()):
        return
    advice = "move it away or choose another output"
    if path.is_symlink() or not path.is_dir():
        raise OutputError(f"{path} exists and is not a folder humansplat wrote: not replacing it ({advice})")
    try:
        listed = json.loads((path / MANIFEST).read_text())["files"]
        if not isinstance(listed, list) or not all(isinstance(f, str) for f in listed):
            raise TypeError
        extra = sorted(set(_listing(path)) - set(listed))
    except (OSError, ValueError, KeyError, TypeError):
        raise OutputError(f"{path} exists and is not a humansplat result (no {MANIFEST}): not replacing it ({advice})") from None
    for sub in sorted({f.split("/")[0] for f in extra if "/" in f and (path / f.split("/")[0] / MANIFEST).is_file()}):
        check_replaceable(path / sub)  # a folder of ours inside: its own manifest vouches for its files
        extra = [f for f in extra if not f.startswith(sub + "/")]
    if extra:
        more = f" and {len(extra) - _LISTED_EXTRAS} more" if len(extra) > _LISTED_EXTRAS else ""
        raise OutputError(f"{path} holds files humansplat did not write ({', '.join(extra[:_LISTED_EXTRAS])}{more}): "
                          f"not replacing it (move them away or choose another output)")


def check_writable(path: str | os.PathLike) -> None:
    """``OutputError`` unless the folder ``path`` exists or can be made, and can be written into: called
    by every command before its work, so a bad ``-o`` fails at once."""
    path = Path(path)
    probe = path
    while not (probe.exists() or probe.is_symlink()) and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"{path}: {'exists and ' if probe == path else f'{probe} '}is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: {'' if probe == path else f'{probe} '}is not writable (permission denied)")


def check_writable_file(path: str | os.PathLike) -> None:
    """``OutputError`` unless the file ``path`` can be written (its folder checked as ``check_writable``)."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a folder, expected a file name")
    check_writable(path.parent)


def _pid_alive(pid: int) -> bool:
    if os.name != "posix" or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OverflowError:  # no pid is that large
        return False
    return True


def clean_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporaries of ours in ``folder`` (named by atomic_path / atomic_dir) left by a killed
    process: those whose process is gone, or older than ``STALE_AFTER_S``. Anything else is left alone."""
    folder = Path(folder)
    removed = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    now = time.time()
    for p in entries:
        m = _TEMP_RE.match(p.name)
        try:
            if not m or (_pid_alive(int(m[1])) and now - p.lstat().st_mtime < STALE_AFTER_S):
                continue
            if p.name.endswith(".old") and (p / "previous").exists():
                check_replaceable(p / "previous")  # a folder moved aside: removed only if it is ours
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
            removed.append(p)
        except (OSError, OutputError):
            continue
    return removed


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU generator seeded the same way."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def pick_device(name: str | None = None) -> torch.device:
    """'cuda' when available unless told otherwise; a clear error when CUDA is asked for but absent."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("CUDA was requested but no CUDA device is available")
    return dev


def progress(iterable=None, total: int | None = None, desc: str = "", disable: bool | None = None, **kw):
    """A tqdm progress bar on stderr, hidden when stderr is not a terminal unless HUMANSPLAT_PROGRESS=1."""
    from tqdm.auto import tqdm

    if disable is None:
        disable = not (sys.stderr.isatty() or os.environ.get("HUMANSPLAT_PROGRESS") == "1")
    return tqdm(iterable, total=total, desc=desc, disable=disable, dynamic_ncols=True, **kw)
