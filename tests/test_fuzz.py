"""Random byte mutations of a real PNG, JPEG and Gaussian .ply (seeded, a few seconds): loading ends in a
result or in one of our one-line errors naming the file, never in another exception or a hang."""

from __future__ import annotations

import io
import os
import random
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from humansplat.gaussians import Gaussians, PlyError, load_ply, save_ply
from humansplat.preprocess import ImageError, load_image

PHOTO = Path(__file__).resolve().parents[1] / "examples" / "pexels-zdmit-6780091.png"
MUTATIONS = int(os.environ.get("HUMANSPLAT_FUZZ", "40"))  # per format; raise it to fuzz for longer
SECONDS_PER_LOAD = 5.0  # a load slower than this counts as a hang
HEAD = 256  # bytes at the start (headers, chunk tables) get half of the mutations


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One to three random edits: flipped bytes, random or extreme runs, a cut, an insertion, a repeat."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(min(len(b), HEAD)) if rng.random() < 0.5 else rng.randrange(len(b))
        kind = rng.randrange(6)
        if kind == 0:
            b[at] ^= 1 << rng.randrange(8)
        elif kind == 1:
            b[at : at + rng.randint(1, 16)] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif kind == 2:
            b[at : at + rng.randint(1, 8)] = bytes([rng.choice((0x00, 0x7F, 0x80, 0xFF))]) * rng.randint(1, 8)
        elif kind == 3:
            del b[rng.randrange(len(b)) :]
        elif kind == 4:
            b[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 32)))
        else:
            n = rng.randint(1, 64)
            b[at:at] = b[at : at + n]
        if not b:
            b = bytearray(b"\0")
    return bytes(b)


def _fuzz(tmp_path: Path, original: bytes, suffix: str, load, errors: tuple[type[Exception], ...], seed: int) -> None:
    rng = random.Random(seed)
    loaded = 0
    for i in range(MUTATIONS):
        path = tmp_path / f"m{i:03d}{suffix}"
        path.write_bytes(mutate(original, rng))
        t = time.perf_counter()
        try:
            load(path)
            loaded += 1
        except errors as e:
            msg = str(e)
            assert str(path) in msg and "\n" not in msg, f"mutation {i}: {msg!r}"
        assert time.perf_counter() - t < SECONDS_PER_LOAD, f"mutation {i} took {time.perf_counter() - t:.1f} s"
        path.unlink()
    assert loaded < MUTATIONS  # the mutations did break files (a fuzzer that breaks nothing tests nothing)


@pytest.mark.parametrize("fmt, seed", [("PNG", 1), ("JPEG", 2)])
def test_mutated_images_load_or_fail_cleanly(tmp_path, fmt, seed):
    rgba = Image.open(PHOTO)
    small = Image.new("RGB", rgba.size, "white")
    small.paste(rgba, mask=rgba.getchannel("A"))
    small.thumbnail((96, 96))
    buf = io.BytesIO()
    small.save(buf, fmt)
    _fuzz(tmp_path, buf.getvalue(), "." + fmt.lower(), lambda p: load_image(p, min_side=16), (ImageError,), seed)


def test_mutated_ply_loads_or_fails_cleanly(tmp_path):
    g = torch.Generator().manual_seed(0)
    n = 12
    scene = Gaussians(torch.randn(n, 3, generator=g), torch.randn(n, 4, generator=g), torch.randn(n, 3, generator=g),
                      torch.randn(n, generator=g), torch.randn(n, 4, 3, generator=g), torch.randn(n, 2, generator=g))  # fmt: skip
    original = save_ply(scene, tmp_path / "scene.ply").read_bytes()
    _fuzz(tmp_path, original, ".ply", load_ply, (PlyError,), 3)
