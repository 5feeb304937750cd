"""The reference rasterizer in plain PyTorch: any device, differentiable through autograd.

It follows gsplat's "classic" 3DGS pipeline step for step, so the two backends agree:
EWA projection with the INRIA frustum clamp of the Jacobian, a 0.3 px dilation of the 2D covariance,
near/far culling, opacity-aware extents (exactly the pixels where alpha >= 1/255, at most 3.33 sigma),
per-pixel depth order, alpha = min(0.999, o * exp(-q)), alphas below 1/255 skipped, and
front-to-back compositing that stops a pixel before the Gaussian that would take its transmittance
to <= 1e-4. Since the extents are exact, our binning tile size (8 px) does not change the result.

Speed comes from vectorising over (tile, Gaussian slot, pixel): Gaussians are binned to tiles and
sorted by depth per tile; tiles are processed in groups and their lists in chunks of slots. Per
chunk, log-alphas are one small matmul (quadratic-form coefficients x pixel monomials), the
transmittance a cumulative product over slots, and tiles whose pixels are all saturated leave the
loop early. Memory is bounded by the chunk size (``max_elements``), not by the scene; with
gradients on big workloads, chunks are recomputed in the backward pass rather than stored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

__all__ = ["rasterize_torch", "compositing_weights", "project_gaussians", "quat_to_rotmat", "EPS2D", "ALPHA_MIN", "ALPHA_MAX", "T_MIN", "TILE"]

EPS2D = 0.3  # px^2 added to the 2D covariance (INRIA / gsplat "classic")
ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.999  # gsplat's clamp (INRIA's CUDA code uses 0.99)
T_MIN = 1e-4
TILE = 8  # our binning tile (gsplat uses 16); results do not depend on it
_EXTENT_MAX = 3.33
_RECOMPUTE_ELEMENTS = 1 << 26  # above this many (tile, slot, pixel) evaluations, recompute in backward


def _take(t: Tensor, index: Tensor) -> Tensor:
    """``t[index]`` along dim 0 through index_select: its backward (index_add) sums repeated indices in a
    fixed order, where advanced indexing's (index_put with accumulate) uses unordered atomic adds on a
    multi-threaded CPU, so gradients, and refinement with them, differed between runs in the last bit."""
    return t.index_select(0, index.reshape(-1)).reshape(*index.shape, *t.shape[1:])


def quat_to_rotmat(q: Tensor) -> Tensor:
    """Rotation matrices (..., 3, 3) of unit quaternions (w, x, y, z)."""
    w, x, y, z = q.unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        -1,
    ).reshape(*q.shape[:-1], 3, 3)


def project_gaussians(means, quats, scales, opacities, w2c, K, width, height, near, far):
    """EWA projection of (B, N) Gaussians into (B, V) cameras.

    Returns means2d (B,V,N,2), conics (B,V,N,3) = (a, b, c) of the inverse covariance [[a,b],[b,c]],
    depths (B,V,N), radii (B,V,N,2) integer pixel extents (0 = culled, no gradient).
    """
    R, t = w2c[..., :3, :3], w2c[..., :3, 3]  # (B,V,3,3), (B,V,3)
    p = torch.einsum("bvij,bnj->bvni", R, means) + t[:, :, None, :]
    x, y, z = p.unbind(-1)
    fx, fy = K[..., 0, 0, None], K[..., 1, 1, None]
    cx, cy = K[..., 0, 2, None], K[..., 1, 2, None]
    # INRIA clamp: the Jacobian is evaluated at the mean pulled back to 1.3x the frustum
    zs = torch.where(z.abs() < 1e-8, torch.full_like(z, 1e-8), z)
    lim_x = (width - cx) / fx + 0.3 * width / (2 * fx), cx / fx + 0.3 * width / (2 * fx)
    lim_y = (height - cy) / fy + 0.3 * height / (2 * fy), cy / fy + 0.3 * height / (2 * fy)
    tx = zs * torch.minimum(torch.maximum(x / zs, -lim_x[1]), lim_x[0])
    ty = zs * torch.minimum(torch.maximum(y / zs, -lim_y[1]), lim_y[0])
    zero = torch.zeros_like(z)
    J = torch.stack([fx / zs, zero, -fx * tx / zs**2, zero, fy / zs, -fy * ty / zs**2], -1).reshape(*z.shape, 2, 3)
    M = quat_to_rotmat(quats) * scales[..., None, :]  # (B,N,3,3): covariance = M M^T
    A = J @ (R[:, :, None] @ M[:, None])  # (B,V,N,2,3)
    cov = A @ A.transpose(-1, -2)
    a, b, c = cov[..., 0, 0] + EPS2D, cov[..., 0, 1], cov[..., 1, 1] + EPS2D
    det = a * c - b * b
    det_safe = torch.where(det > 0, det, torch.ones_like(det))
    conics = torch.stack([c / det_safe, -b / det_safe, a / det_safe], -1)
    means2d = torch.stack([fx * x / zs + cx, fy * y / zs + cy], -1)

    with torch.no_grad():
        op = opacities[:, None, :].expand_as(z)
        extent = torch.sqrt(2.0 * torch.log(op.clamp_min(ALPHA_MIN) / ALPHA_MIN)).clamp_max(_EXTENT_MAX)
        radii = torch.stack([torch.ceil(extent * a.clamp_min(0).sqrt()), torch.ceil(extent * c.clamp_min(0).sqrt())], -1)
        u, v = means2d[..., 0], means2d[..., 1]
        valid = (
            (z >= near) & (z <= far) & (det > 0) & (op >= ALPHA_MIN)
            & (u + radii[..., 0] > 0) & (u - radii[..., 0] < width)
            & (v + radii[..., 1] > 0) & (v - radii[..., 1] < height)
        )
        radii = torch.where(valid[..., None], radii, torch.zeros_like(radii)).to(torch.int32)
    return means2d, conics, z, radii


def _bin_to_tiles(means2d: Tensor, radii: Tensor, depths: Tensor, tiles_x: int, tiles_y: int):
    """Pairs (tile, instance) sorted by tile then depth; ``means2d`` etc. are per visible instance."""
    t0x = torch.floor((means2d[:, 0] - radii[:, 0]) / TILE).clamp(0, tiles_x).long()
    t1x = torch.ceil((means2d[:, 0] + radii[:, 0]) / TILE).clamp(0, tiles_x).long()
    t0y = torch.floor((means2d[:, 1] - radii[:, 1]) / TILE).clamp(0, tiles_y).long()
    t1y = torch.ceil((means2d[:, 1] + radii[:, 1]) / TILE).clamp(0, tiles_y).long()
    wx = t1x - t0x
    counts = wx * (t1y - t0y)
    order = torch.argsort(depths)  # expand in depth order, then a stable sort by tile keeps it
    counts_o = counts[order]
    inst = torch.repeat_interleave(order, counts_o)
    start = torch.cumsum(counts_o, 0) - counts_o
    local = torch.arange(inst.numel(), device=inst.device) - torch.repeat_interleave(start, counts_o)
    w = wx[inst]
    tile_x = t0x[inst] + local % w
    tile_y = t0y[inst] + local // w
    return tile_y * tiles_x + tile_x, inst


def rasterize_torch(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    w2c: Tensor,
    K: Tensor,
    width: int,
    height: int,
    background: Tensor,
    near: float = 0.01,
    far: float = 100.0,
    max_elements: int | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Render (B, N) Gaussians into (B, V) cameras.

    means (B,N,3), quats (B,N,4) unit (w,x,y,z), scales (B,N,3), opacities (B,N) in (0,1),
    colors (B,N,D) or per view (B,V,N,D), w2c (B,V,4,4), K (B,V,3,3), background (B,V,D).
    Returns colours (B,V,H,W,D) over the background, alpha (B,V,H,W,1) and expected depth (B,V,H,W,1).
    ``max_elements`` bounds the (tile, slot, pixel) block evaluated at once (default: cache-sized on
    CPU, larger on GPU).
    """
    B, N = means.shape[:2]
    V = w2c.shape[1]
    D = colors.shape[-1]
    dev, dt = means.device, means.dtype
    t = _tiled_instances(means, quats, scales, opacities, w2c, K, width, height, near, far)
    col = _take(colors.reshape(-1, D), t.flat if colors.dim() == 4 else (t.img // V) * N + t.gid)
    feats = torch.cat([col, t.dep[:, None]], -1)  # depth rides along as one more channel
    P = TILE * TILE
    I = B * V
    # With gradients on a big workload, each group's compositing is recomputed in the backward pass
    # instead of storing its (tile, slot, pixel) intermediates: memory stays bounded by the group.
    recompute = torch.is_grad_enabled() and any(x.requires_grad for x in (t.m2d, t.con, t.opa, feats)) and t.pair_inst.numel() * P > _RECOMPUTE_ELEMENTS
    out_tiles, out_T, out_ids = [], [], []
    for group, slots in _tile_groups(t, max_elements):
        args = (group, t.counts, t.offsets, t.pair_inst, t.m2d, t.con, t.opa, feats, t.basis, t.tiles_x, t.n_tiles, slots, dt)
        if recompute:
            acc, T = checkpoint(_composite_group, *args, use_reentrant=False)
        else:
            acc, T = _composite_group(*args)
        out_tiles.append(acc)
        out_T.append(T)
        out_ids.append(group)

    acc_all = torch.zeros(I * t.n_tiles, P, D + 1, device=dev, dtype=dt)
    T_all = torch.ones(I * t.n_tiles, P, device=dev, dtype=dt)
    if out_ids:
        ids = torch.cat(out_ids)
        acc_all = acc_all.index_copy(0, ids, torch.cat(out_tiles))
        T_all = T_all.index_copy(0, ids, torch.cat(out_T))

    def to_image(x: Tensor) -> Tensor:
        c = x.shape[-1]
        x = x.reshape(B, V, t.tiles_y, t.tiles_x, TILE, TILE, c).permute(0, 1, 2, 4, 3, 5, 6)
        return x.reshape(B, V, t.tiles_y * TILE, t.tiles_x * TILE, c)[:, :, :height, :width]

    acc_img = to_image(acc_all)
    T = to_image(T_all[..., None])
    alpha = 1.0 - T
    rgb = acc_img[..., :D] + T * background[:, :, None, None, :]
    depth = acc_img[..., D:] / alpha.clamp_min(1e-10)
    return rgb, alpha, depth


def compositing_weights(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, w2c: Tensor, K: Tensor, width: int,
                        height: int, near: float = 0.01, far: float = 100.0, max_elements: int | None = None,
                        ) -> tuple[Tensor, Tensor, Tensor, Tensor]:  # fmt: skip
    """The weights with which ``rasterize_torch`` composites each Gaussian into each pixel (no gradient):
    its colour output is exactly ``rgb[pixel] = sum_k weights[k] * colors[cols[k]] + T[pixel] * background``
    over the entries k with ``rows[k] == pixel``. Geometry fixed, a render is linear in the colours.

    Arguments as ``rasterize_torch``. Returns rows (M,) pixel indices into the flattened (B,V,H,W) images,
    cols (M,) indices into the flattened (B,V,N) per-view colours, weights (M,) = alpha * transmittance
    before the Gaussian, and the final transmittance T (B,V,H,W).
    """
    B, N = means.shape[:2]
    V = w2c.shape[1]
    dt = means.dtype
    with torch.no_grad():
        t = _tiled_instances(means, quats, scales, opacities, w2c, K, width, height, near, far)
        found: list[tuple[Tensor, Tensor, Tensor]] = []
        T_all = torch.ones(B * V * t.n_tiles, TILE * TILE, device=means.device, dtype=dt)
        for group, slots in _tile_groups(t, max_elements):
            _, T = _composite_group(group, t.counts, t.offsets, t.pair_inst, t.m2d, t.con, t.opa, None, t.basis,
                                    t.tiles_x, t.n_tiles, slots, dt, found)  # fmt: skip
            T_all[group] = T
        if not found:  # nothing visible
            empty = torch.zeros(0, dtype=torch.long, device=means.device)
            found = [(empty, empty, empty, empty.to(dt))]
        tile, pix, inst, weights = (torch.cat(x) for x in zip(*found))
        img, local = tile // t.n_tiles, tile % t.n_tiles
        y = (local // t.tiles_x) * TILE + pix // TILE
        x = (local % t.tiles_x) * TILE + pix % TILE
        inside = (y < height) & (x < width)
        rows = ((img * height + y) * width + x)[inside]
        cols = t.flat[inst[inside]]
        T = T_all.reshape(B, V, t.tiles_y, t.tiles_x, TILE, TILE).permute(0, 1, 2, 4, 3, 5)
        T = T.reshape(B, V, t.tiles_y * TILE, t.tiles_x * TILE)[:, :, :height, :width]
    return rows, cols, weights[inside], T


@dataclass
class _Tiled:
    """Visible (image, Gaussian) instances, binned to tiles and depth-sorted per tile."""

    flat: Tensor  # (n,) index into the flattened (B*V, N) instances
    img: Tensor  # (n,) image index b * V + v
    gid: Tensor  # (n,) Gaussian index
    m2d: Tensor  # (n, 2) projected means
    con: Tensor  # (n, 3) conics
    dep: Tensor  # (n,) camera depths
    opa: Tensor  # (n,) opacities
    pair_inst: Tensor  # (pairs,) instances in (tile, depth) order
    counts: Tensor  # (B*V*tiles,) pairs per tile
    offsets: Tensor  # (B*V*tiles,) first pair of each tile
    busy: Tensor  # tiles with pairs, longest lists first
    basis: Tensor  # (6, TILE*TILE) pixel monomials
    tiles_x: int
    tiles_y: int
    n_tiles: int


def _tiled_instances(means, quats, scales, opacities, w2c, K, width, height, near, far) -> _Tiled:
    B, N = means.shape[:2]
    V = w2c.shape[1]
    dev, dt = means.device, means.dtype
    means2d, conics, depths, radii = project_gaussians(means, quats, scales, opacities, w2c, K, width, height, near, far)
    flat = torch.nonzero((radii > 0).all(-1).reshape(-1)).squeeze(1)
    img, gid = flat // N, flat % N
    m2d = _take(means2d.reshape(-1, 2), flat)
    dep = _take(depths.reshape(-1), flat)
    tiles_x, tiles_y = math.ceil(width / TILE), math.ceil(height / TILE)
    n_tiles = tiles_x * tiles_y
    with torch.no_grad():
        tile_local, pair_inst = _bin_to_tiles(m2d, radii.reshape(-1, 2)[flat], dep, tiles_x, tiles_y)
        tile_id = img[pair_inst] * n_tiles + tile_local
        tile_id, order = torch.sort(tile_id, stable=True)
        pair_inst = pair_inst[order]
        counts = torch.bincount(tile_id, minlength=B * V * n_tiles)
        offsets = torch.cumsum(counts, 0) - counts
        busy = torch.nonzero(counts).squeeze(1)
        busy = busy[torch.argsort(counts[busy], descending=True)]  # similar list lengths per group
        # monomials (x^2, y^2, xy, x, y, 1) of the pixel centres, relative to the tile centre
        ly, lx = torch.meshgrid(torch.arange(TILE, device=dev), torch.arange(TILE, device=dev), indexing="ij")
        x, y = (lx.reshape(-1).to(dt) + 0.5 - TILE / 2), (ly.reshape(-1).to(dt) + 0.5 - TILE / 2)
        basis = torch.stack([x * x, y * y, x * y, x, y, torch.ones_like(x)])  # (6,P)
    return _Tiled(flat, img, gid, m2d, _take(conics.reshape(-1, 3), flat), dep, _take(opacities.reshape(-1), (img // V) * N + gid),
                  pair_inst, counts, offsets, busy, basis, tiles_x, tiles_y, n_tiles)  # fmt: skip


def _tile_groups(t: _Tiled, max_elements: int | None):
    """Yields (tiles, slots): groups of busy tiles with similar list lengths, sized to ``max_elements``."""
    if max_elements is None:
        max_elements = 1 << 21 if t.basis.device.type == "cpu" else 1 << 25
    start = 0
    while start < t.busy.numel():
        slots = max(8, min(64, int(t.counts[t.busy[start]])))
        G = max(1, max_elements // (slots * TILE * TILE))
        yield t.busy[start : start + G], slots
        start += G


def _composite_group(group, counts, offsets, pair_inst, m2d, con, opa, feats, basis, tiles_x, n_tiles, slots, dt, found=None):
    """Front-to-back compositing of the tiles ``group``.

    Per chunk of depth slots, the log-alpha of every (tile, slot, pixel) is one small matmul of a
    Gaussian's quadratic-form coefficients (in coordinates centred on the tile) with the pixels'
    monomials; transmittance is a cumulative product over slots. Returns the weighted feature sums
    (G,P,C) (None when ``feats`` is None) and the final transmittance (G,P). A list ``found`` receives
    every nonzero weight as (tile, pixel, instance, weight) tensors (``compositing_weights``).
    """
    dev = basis.device
    G, P = group.numel(), basis.shape[1]
    acc = None if feats is None else torch.zeros(G, P, feats.shape[-1], device=dev, dtype=dt)
    T = torch.ones(G, P, device=dev, dtype=dt)
    done = torch.zeros(G, P, dtype=torch.bool, device=dev)
    n = counts[group]
    t_local = group % n_tiles
    centre = torch.stack([(t_local % tiles_x) * TILE, (t_local // tiles_x) * TILE], -1).to(dt) + TILE / 2  # (G,2)
    log_amin = math.log(ALPHA_MIN)
    alive = torch.arange(G, device=dev)
    s = 0
    while alive.numel() > 0:
        with torch.no_grad():
            k = torch.arange(s, s + slots, device=dev)
            valid = k[None, :] < n[alive, None]  # (A,S)
            inst = pair_inst[(offsets[group[alive], None] + k[None, :]).clamp_max(pair_inst.numel() - 1)]
        mx, my = (_take(m2d, inst) - centre[alive][:, None, :]).unbind(-1)  # (A,S) means relative to the tile centre
        a, b, c = _take(con, inst).unbind(-1)
        const = torch.log(_take(opa, inst)) - (0.5 * a * mx * mx + 0.5 * c * my * my + b * mx * my)
        const = torch.where(valid, const, torch.full_like(const, -1e30))
        coef = torch.stack([-0.5 * a, -0.5 * c, -b, a * mx + b * my, c * my + b * mx, const], -1)  # (A,S,6)
        log_alpha = torch.nn.functional.threshold(coef @ basis, log_amin, -math.inf)  # (A,S,P)
        alpha = torch.exp(log_alpha).clamp_max(ALPHA_MAX)
        one_minus = 1.0 - alpha
        T_in = torch.where(done[alive], torch.zeros_like(T[alive]), T[alive])  # finished pixels take nothing
        T_after = torch.cumprod(one_minus, 1) * T_in[:, None, :]
        w = T_after / one_minus - T_after  # alpha * transmittance before the Gaussian
        with torch.no_grad():
            inc = T_after > T_MIN  # a prefix of the slots: the pixel stops before crossing T_MIN
        w = torch.where(inc, w, torch.zeros_like(w))
        if found is not None:
            a, k, p = torch.nonzero(w > 0, as_tuple=True)
            found.append((group[alive[a]], p, inst[a, k], w[a, k, p]))
        if feats is not None:
            acc = acc.index_add(0, alive, torch.einsum("asp,asc->apc", w, _take(feats, inst)))
        T = T.index_put((alive,), T[alive] - w.sum(1))
        with torch.no_grad():
            done = done.index_put((alive,), done[alive] | ~inc[:, -1, :])
            s += slots
            alive = alive[(n[alive] > s) & ~done[alive].all(1)]
    return acc, T
