"""Skinned Gaussians: every Gaussian bound to the fitted Anny rig, unposed to the zero pose, reposed.

Binding: a Gaussian takes the linear-blend-skinning weights of the body surface near it — anny's
weights diffused over the mesh (``SMOOTH_ITERS`` rounds of neighbour averaging, so the blend between
bones is wide enough that clothing bridging two limbs stretches instead of tearing), then averaged over
its ``K_NEAR`` nearest body vertices. The farther a Gaussian lies off the body (loose clothes, hair),
the more its weights lean towards a wide average over ``K_WIDE`` vertices (full at ``FAR_M``).

Moving: each Gaussian is anchored to the body surface (its nearest vertex, ``ANCHOR_K``) and turned
by the rotation of its blended bone transform ``A = sum_j w_j M_j`` (M: the zero pose to a pose, from
``BodyModel``; the rotation is the polar factor of A's linear part): ``mean' = anchor' + R' R^T (mean -
anchor)``, covariance ``R' R^T Σ R R'^T``. So a Gaussian on the body
moves with the body's own vertices, its offset and shape turn rigidly, and volumes are kept. (Moving by
``A' A^-1`` itself, plain LBS, blows up where the fitted pose bends deeply: in the crease of a crouch
two bones 90° apart blend into a near-singular A, and unposing or reposing from it flings the
Gaussians there tens of centimetres away, scaled up many times.) SH beyond degree 0 is not rotated.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from humansplat.body import BodyModel, BodyParams
from humansplat.gaussians import Gaussians

__all__ = ["SkinnedGaussians", "bind", "smooth_vertex_weights", "transfer_weights", "transform_gaussians"]

SMOOTH_ITERS = 3  # rounds of neighbour averaging of anny's weights over the body mesh
K_NEAR = 8  # body vertices averaged for a Gaussian on the body
K_WIDE = 48  # ... and for one far off it
FAR_M = 0.12  # distance off the body at which the wide average takes over entirely
SIGMA_MIN_M = 0.02  # smallest kernel width of the inverse-distance average
ANCHOR_K = 1  # body vertices a Gaussian is anchored to (more average across a crease's two sides, which part)


@dataclass
class SkinnedGaussians:
    """Gaussians (N) as reconstructed, in the fitted pose; ``weights`` (N, J) their skinning weights;
    ``bind`` (N, 4, 4) each one's blended transform from the zero pose to the fitted pose; ``params`` the
    fitted body (batch 1); ``anchor_idx``/``anchor_w`` (N, K) the body vertices each one is anchored to
    and their weights; ``anchor_fitted``/``anchor_zero`` (N, 3) the anchors in the fitted pose and in the
    zero pose at zero transl."""

    gaussians: Gaussians
    weights: Tensor
    bind: Tensor
    params: BodyParams
    anchor_idx: Tensor
    anchor_w: Tensor
    anchor_fitted: Tensor
    anchor_zero: Tensor

    def _anchor(self, vertices: Tensor) -> Tensor:
        """(..., N, 3) the anchors on body vertices (..., Nv, 3)."""
        return torch.einsum("nk,...nkc->...nc", self.anchor_w, vertices[..., self.anchor_idx, :])

    def _rigid(self, R: Tensor, anchor: Tensor) -> Tensor:
        """(..., N, 4, 4) transforms turning by R (..., N, 3, 3) about the fitted anchors onto ``anchor``."""
        T = torch.zeros(*R.shape[:-2], 4, 4, dtype=R.dtype)
        T[..., :3, :3], T[..., 3, 3] = R, 1.0
        T[..., :3, 3] = anchor - (R @ self.anchor_fitted[..., None])[..., 0]
        return T

    def transforms(self, body: BodyModel, params: BodyParams) -> Tensor:
        """(F, N, 4, 4) per-Gaussian rigid transforms from the reconstruction to each of F poses (the
        fitted phenotype is kept; ``params`` give pose and transl)."""
        target = BodyParams(self.params.phenotype.expand(params.batch_size, -1), params.pose, params.transl)
        with torch.no_grad():
            out = body(target.to(body.device))
        M = out.bone_transforms.to(self.weights)  # (F, J, 4, 4)
        R = _rotation(torch.einsum("nj,fjab->fnab", self.weights, M[..., :3, :3])) @ _rotation(self.bind[:, :3, :3]).transpose(1, 2)
        return self._rigid(R, self._anchor(out.vertices.to(self.weights)))

    def posed(self, body: BodyModel, params: BodyParams) -> list[Gaussians]:
        """The Gaussians in each of the F poses of ``params``."""
        return [transform_gaussians(self.gaussians, T) for T in self.transforms(body, params)]

    def canonical(self) -> Gaussians:
        """The Gaussians unposed to the zero pose at zero transl (feet on y = 0, pelvis on the Y axis)."""
        return transform_gaussians(self.gaussians, self._rigid(_rotation(self.bind[:, :3, :3]).transpose(1, 2), self.anchor_zero))


def _rotation(L: Tensor) -> Tensor:
    """The rotation (polar factor, det +1) nearest to each linear map (..., 3, 3)."""
    import roma

    return roma.special_procrustes(L)


def smooth_vertex_weights(weights: Tensor, faces: Tensor, iters: int | None = None) -> Tensor:
    """(Nv, J) per-vertex weights averaged ``iters`` times with the mesh neighbours (rows stay summing to 1)."""
    iters = SMOOTH_ITERS if iters is None else iters
    nv = weights.shape[0]
    edges = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = torch.cat([edges, edges.flip(1)])
    adj = torch.sparse_coo_tensor(edges.T, torch.ones(len(edges)), (nv, nv), check_invariants=False).coalesce()
    adj = torch.sparse_coo_tensor(adj.indices(), torch.ones_like(adj.values()), (nv, nv), check_invariants=False)
    degree = torch.sparse.sum(adj, 1).to_dense()[:, None] + 1
    w = weights.float()
    for _ in range(iters):
        w = (torch.sparse.mm(adj, w) + w) / degree
    return w / w.sum(1, keepdim=True)


def transfer_weights(points: Tensor, vertices: Tensor, vertex_weights: Tensor) -> Tensor:
    """(N, J) weights for points (N, 3) from the surface vertices (Nv, 3) carrying (Nv, J) weights."""
    return _transfer(points, vertices, vertex_weights)[0]


def _transfer(points: Tensor, vertices: Tensor, vertex_weights: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``transfer_weights``, plus the (N, ANCHOR_K) nearest vertices and their kernel weights (the anchors)."""
    from scipy.spatial import cKDTree

    tree = cKDTree(vertices.detach().cpu().double().numpy())
    dist, idx = tree.query(points.detach().cpu().double().numpy(), k=K_WIDE)
    dist, idx = torch.from_numpy(dist).float(), torch.from_numpy(idx)
    sigma = dist[:, :1].clamp_min(SIGMA_MIN_M)

    def kernel(k: int, scale: float) -> Tensor:
        kern = torch.exp(-((dist[:, :k] / (scale * sigma)) ** 2))  # (N, k)
        return kern / kern.sum(1, keepdim=True)

    def average(k: int, scale: float) -> Tensor:
        return torch.einsum("nk,nkj->nj", kernel(k, scale), vertex_weights[idx[:, :k]])

    far = (dist[:, :1] / FAR_M).clamp(0, 1)
    w = (1 - far) * average(K_NEAR, 1.0) + far * average(K_WIDE, 3.0)
    return w / w.sum(1, keepdim=True), idx[:, :ANCHOR_K], kernel(ANCHOR_K, 1.0)


def bind(gaussians: Gaussians, body: BodyModel, params: BodyParams) -> SkinnedGaussians:
    """Bind unbatched Gaussians (N) to the body ``params`` (batch 1) they were reconstructed around."""
    if gaussians.batch_shape:
        raise ValueError("bind: expected unbatched Gaussians (N)")
    params = params.to(body.device)
    with torch.no_grad():
        out = body(params)
        zero = body(BodyParams(params.phenotype, torch.zeros_like(params.pose), torch.zeros_like(params.transl))).vertices[0].cpu().float()
    vertex_weights = smooth_vertex_weights(body.skinning_weights.detach().cpu(), body.faces.cpu())
    g = gaussians.to("cpu", torch.float32)
    fitted = out.vertices[0].cpu().float()
    weights, idx, kern = _transfer(g.means, fitted, vertex_weights)
    bind_t = torch.einsum("nj,jab->nab", weights, out.bone_transforms[0].cpu().float())
    anchor = [torch.einsum("nk,nkc->nc", kern, v[idx]) for v in (fitted, zero)]
    return SkinnedGaussians(g, weights, bind_t, params.to("cpu"), idx, kern, *anchor)


def transform_gaussians(g: Gaussians, T: Tensor) -> Gaussians:
    """Unbatched Gaussians (N) moved by per-Gaussian affine transforms T (N, 4, 4): means by T, the
    covariance by its linear part, re-decomposed into a rotation and scales."""
    import roma

    L = T[:, :3, :3]
    means = (L @ g.means[..., None])[..., 0] + T[:, :3, 3]
    R = roma.unitquat_to_rotmat(g.rotations[:, [1, 2, 3, 0]])  # ours (w, x, y, z) -> roma (x, y, z, w)
    LRS = L @ R * g.scales[:, None, :]
    evals, evecs = torch.linalg.eigh(LRS @ LRS.transpose(1, 2))
    evecs = evecs * torch.where(torch.linalg.det(evecs) < 0, -1.0, 1.0)[:, None, None]  # a proper rotation
    q = roma.rotmat_to_unitquat(evecs)[:, [3, 0, 1, 2]]
    log_scales = 0.5 * evals.clamp_min(1e-20).log()
    return replace(g, means=means, quats=q, log_scales=log_scales)
