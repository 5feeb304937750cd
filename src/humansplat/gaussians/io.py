"""Gaussian files: the INRIA 3DGS ``.ply`` layout (read and write, exact round trip) and ``.splat``.

.ply: one binary little-endian ``vertex`` element with float properties
``x y z nx ny nz f_dc_0..2 f_rest_0.. opacity scale_0..2 rot_0..3``: opacity as a logit, scale as a
log, rotation as a raw quaternion (w, x, y, z), ``f_rest`` grouped per colour channel (all R
coefficients, then G, then B). Our extra per-Gaussian features, when present, follow as
``feat_0..`` (viewers ignore unknown properties). Coordinates are written exactly as they are in
the world frame of ``humansplat.cameras`` (+Y up, subject facing +Z): no axis is flipped.

.splat: 32 bytes per Gaussian (antimatter15 layout): position 3 x float32, scale 3 x float32
(activated), RGBA 4 x uint8 (DC colour and opacity), rotation 4 x uint8 ((q + 1) * 128, w x y z),
sorted by decreasing opacity * volume so that web viewers show the important splats first.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch

from humansplat.gaussians.container import Gaussians
from humansplat.gaussians.sh import sh_to_rgb
from humansplat.utils import atomic_path

__all__ = ["PlyError", "save_ply", "load_ply", "save_splat"]

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}


class PlyError(ValueError):
    """A .ply that cannot be loaded: the message is one line naming the file and what is wrong."""


def _ply_names(sh_k: int, n_features: int) -> list[str]:
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(3 * (sh_k - 1))]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    names += [f"feat_{i}" for i in range(n_features)]
    return names


def _unbatched(g: Gaussians, what: str) -> Gaussians:
    if len(g.batch_shape):
        raise ValueError(f"{what}: expected unbatched Gaussians (N, ...), got batch shape {tuple(g.batch_shape)}")
    return g.detach().to("cpu", torch.float32)


def save_ply(gaussians: Gaussians, path: str | os.PathLike) -> Path:
    """Write the INRIA 3DGS .ply layout (atomically)."""
    g = _unbatched(gaussians, "save_ply")
    N, K = g.num, g.sh.shape[-2]
    F = 0 if g.features is None else g.features.shape[-1]
    rest = g.sh[:, 1:, :].transpose(1, 2).reshape(N, 3 * (K - 1))  # channel-major, as INRIA
    cols = [g.means, torch.zeros(N, 3), g.sh[:, 0, :], rest, g.opacity_logits[:, None], g.log_scales, g.quats]
    if F:
        cols.append(g.features)
    data = torch.cat(cols, 1).numpy().astype("<f4")
    names = _ply_names(K, F)
    header = "ply\nformat binary_little_endian 1.0\n" f"element vertex {N}\n"
    header += "".join(f"property float {n}\n" for n in names) + "end_header\n"
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(header.encode("ascii"))
            f.write(np.ascontiguousarray(data).tobytes())
    return path


def _read_ply_vertices(path: Path) -> np.ndarray:
    with open(path, "rb") as f:
        if f.readline().strip() != b"ply":
            raise PlyError(f"{path}: not a PLY file")
        fmt, elements, current = None, [], None
        while True:
            line = f.readline()
            if not line:
                raise PlyError(f"{path}: truncated PLY header (no end_header)")
            words = line.decode("ascii", "replace").split()
            if not words or words[0] in ("comment", "obj_info"):
                continue
            if words[0] == "end_header":
                break
            if words[0] == "format":
                fmt = words[1] if len(words) > 1 else None
            elif words[0] == "element" and len(words) == 3:
                if not (words[2].isascii() and words[2].isdigit()):
                    raise PlyError(f"{path}: PLY element {words[1]!r} has count {words[2]!r}, not a whole number >= 0")
                current = (words[1], int(words[2]), [])
                elements.append(current)
            elif words[0] == "property" and current is not None and len(words) >= 3:
                if words[1] == "list":  # fine after the vertex element (e.g. faces), which we never read
                    if current[0] == "vertex":
                        raise PlyError(f"{path}: list property {words[-1]!r} in the vertex element is not supported")
                    continue
                if words[1] not in _PLY_TYPES:
                    raise PlyError(f"{path}: unknown PLY property type {words[1]!r}")
                current[2].append((words[2], _PLY_TYPES[words[1]]))
            else:
                raise PlyError(f"{path}: malformed PLY header line {line.strip()!r}")
        if fmt != "binary_little_endian":
            raise PlyError(f"{path}: PLY format {fmt!r} is not supported (need binary_little_endian)")
        if not elements or elements[0][0] != "vertex":
            raise PlyError(f"{path}: the first PLY element must be 'vertex'")
        _, n, props = elements[0]
        try:
            dtype = np.dtype([(name, "<" + t) for name, t in props])
        except (ValueError, TypeError) as e:  # e.g. a property named twice
            raise PlyError(f"{path}: bad vertex properties ({e})") from None
        if dtype.itemsize == 0:
            raise PlyError(f"{path}: the vertex element has no properties")
        need, have = n * dtype.itemsize, os.fstat(f.fileno()).st_size - f.tell()
        if need > have:  # checked before reading: a huge count must not allocate
            raise PlyError(f"{path}: truncated PLY data: the header claims {n} vertices ({need} bytes), the file holds {have} bytes")
        return np.frombuffer(f.read(need), dtype=dtype, count=n)


def load_ply(path: str | os.PathLike) -> Gaussians:
    """Read a 3DGS .ply (INRIA layout; any SH degree 0..3; extra ``feat_*`` properties as features)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    v = _read_ply_vertices(path)
    names = set(v.dtype.names)
    needed = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    missing = [n for n in needed if n not in names]
    if missing:
        raise PlyError(f"{path}: not a 3D Gaussian PLY (missing properties {', '.join(missing)})")
    rest, feat = _numbered(path, names, "f_rest"), _numbered(path, names, "feat")
    K = 1 + len(rest) // 3
    if len(rest) % 3 or K not in (1, 4, 9, 16):
        raise PlyError(f"{path}: {len(rest)} f_rest properties do not make SH degree 0..3")
    cols = needed + rest + feat
    N = len(v)
    a = np.empty((N, len(cols)), np.float32)
    with np.errstate(over="ignore", invalid="ignore"):  # doubles beyond float32 become inf: refused below
        for i, c in enumerate(cols):
            a[:, i] = v[c]
    _check_finite(path, a, cols)
    t = torch.from_numpy(a)  # columns in the order of ``cols``: needed (means 0:3, dc 3:6, opacity 6, scales 7:10, rot 10:14), rest, feat
    return Gaussians(
        means=t[:, 0:3].contiguous(),
        quats=t[:, 10:14].contiguous(),
        log_scales=t[:, 7:10].contiguous(),
        opacity_logits=t[:, 6].contiguous(),
        sh=torch.cat([t[:, None, 3:6], t[:, 14 : 14 + len(rest)].reshape(N, 3, K - 1).transpose(1, 2)], 1).contiguous(),
        features=t[:, 14 + len(rest) :].contiguous() if feat else None,
    )


def _numbered(path: Path, names: set[str], prefix: str) -> list[str]:
    """``prefix_0 .. prefix_{n-1}``: all of them, or an error naming the gaps."""
    found = sorted(int(n[len(prefix) + 1 :]) for n in names if re.fullmatch(rf"{prefix}_\d+", n))
    if found != list(range(len(found))):
        raise PlyError(f"{path}: {prefix}_* properties are not numbered 0..{len(found) - 1} (found {found[:8]})")
    return [f"{prefix}_{i}" for i in found]


def _check_finite(path: Path, a: np.ndarray, cols: list[str]) -> None:
    """Refuse NaN or infinite values: one would render the whole scene white (a corrupt file, not a scene)."""
    bad = ~np.isfinite(a)
    count = int(bad.sum())
    if count:
        where = [c for c, b in zip(cols, bad.any(0)) if b]
        raise PlyError(f"{path}: {count} non-finite value{'s' * (count > 1)} (NaN or inf) in {int(bad.any(1).sum())} of {len(a)} Gaussians "
                       f"(properties {', '.join(where[:6])}{', ...' if len(where) > 6 else ''}): the file is corrupt")


SPLAT_DTYPE = np.dtype([("position", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rot", "u1", 4)])


def save_splat(gaussians: Gaussians, path: str | os.PathLike) -> Path:
    """Write the 32-byte-per-splat ``.splat`` format (atomically), most important splats first."""
    g = _unbatched(gaussians, "save_splat")
    rgba = torch.cat([sh_to_rgb(g.sh[:, 0, :]), g.opacities[:, None]], 1)
    importance = g.log_scales.sum(1).exp() * g.opacities
    order = torch.argsort(importance, descending=True, stable=True)
    out = np.empty(g.num, dtype=SPLAT_DTYPE)
    out["position"] = g.means[order].numpy()
    out["scale"] = g.scales[order].numpy()
    out["rgba"] = (rgba[order] * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    out["rot"] = (g.rotations[order] * 128 + 128).round().clamp(0, 255).to(torch.uint8).numpy()
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(out.tobytes())
    return path
