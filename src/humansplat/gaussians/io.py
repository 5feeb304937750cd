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

__all__ = ["save_ply", "load_ply", "save_splat"]

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}


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
            raise ValueError(f"{path}: not a PLY file")
        fmt, elements, current = None, [], None
        while True:
            line = f.readline()
            if not line:
                raise ValueError(f"{path}: truncated PLY header (no end_header)")
            words = line.decode("ascii", "replace").split()
            if not words or words[0] in ("comment", "obj_info"):
                continue
            if words[0] == "end_header":
                break
            if words[0] == "format":
                fmt = words[1] if len(words) > 1 else None
            elif words[0] == "element" and len(words) == 3:
                current = (words[1], int(words[2]), [])
                elements.append(current)
            elif words[0] == "property" and current is not None and len(words) >= 3:
                if words[1] == "list":  # fine after the vertex element (e.g. faces), which we never read
                    if current[0] == "vertex":
                        raise ValueError(f"{path}: list property {words[-1]!r} in the vertex element is not supported")
                    continue
                if words[1] not in _PLY_TYPES:
                    raise ValueError(f"{path}: unknown PLY property type {words[1]!r}")
                current[2].append((words[2], _PLY_TYPES[words[1]]))
            else:
                raise ValueError(f"{path}: malformed PLY header line {line.strip()!r}")
        if fmt != "binary_little_endian":
            raise ValueError(f"{path}: PLY format {fmt!r} is not supported (need binary_little_endian)")
        if not elements or elements[0][0] != "vertex":
            raise ValueError(f"{path}: the first PLY element must be 'vertex'")
        _, n, props = elements[0]
        dtype = np.dtype([(name, "<" + t) for name, t in props])
        buf = f.read(n * dtype.itemsize)
        if len(buf) < n * dtype.itemsize:
            raise ValueError(f"{path}: truncated PLY data ({len(buf)} of {n * dtype.itemsize} bytes)")
        return np.frombuffer(buf, dtype=dtype, count=n)


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
        raise ValueError(f"{path}: not a 3D Gaussian PLY (missing properties {', '.join(missing)})")

    def stack(cols: list[str]) -> torch.Tensor:
        out = np.empty((len(v), len(cols)), np.float32)
        for i, c in enumerate(cols):
            out[:, i] = v[c]
        return torch.from_numpy(out)

    n_rest = len([n for n in names if re.fullmatch(r"f_rest_\d+", n)])
    K = 1 + n_rest // 3
    if n_rest % 3 or K not in (1, 4, 9, 16):
        raise ValueError(f"{path}: {n_rest} f_rest properties do not make SH degree 0..3")
    N = len(v)
    dc = stack(["f_dc_0", "f_dc_1", "f_dc_2"])
    rest = stack([f"f_rest_{i}" for i in range(n_rest)]).reshape(N, 3, K - 1).transpose(1, 2)
    n_feat = len([n for n in names if re.fullmatch(r"feat_\d+", n)])
    return Gaussians(
        means=stack(["x", "y", "z"]),
        quats=stack(["rot_0", "rot_1", "rot_2", "rot_3"]),
        log_scales=stack(["scale_0", "scale_1", "scale_2"]),
        opacity_logits=stack(["opacity"])[:, 0],
        sh=torch.cat([dc[:, None, :], rest], 1).contiguous(),
        features=stack([f"feat_{i}" for i in range(n_feat)]) if n_feat else None,
    )


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
