"""Skinned Gaussians: every Gaussian bound to the fitted Anny rig, unposed to the zero pose, reposed.

Binding: a Gaussian takes the linear-blend-skinning weights of the body surface near it — anny's
weights diffused over the mesh (``SMOOTH_ITERS`` rounds of neighbour averaging, so the blend between
bones is wide enough that clothing bridging two limbs stretches instead of tearing), then averaged over
its ``K_NEAR`` nearest body vertices. The farther a Gaussian lies off the body (loose clothes, hair),
the more its weights lean towards a wide average over ``K_WIDE`` vertices (full at ``FAR_M``).

Moving: the blended bone transform ``A = sum_j w_j M_j`` (M: the zero pose to a pose, from
``BodyModel``) moves the mean, and its linear part ``L`` the covariance (``L S² L^T``, re-decomposed into
rotation and scale), so rotations and scales follow the bones. SH beyond degree 0 is not rotated.
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


@dataclass
class SkinnedGaussians:
    """Gaussians (N) as reconstructed, in the fitted pose; ``weights`` (N, J) their skinning weights;
    ``bind`` (N, 4, 4) each one's blended transform from the zero pose to the fitted pose; ``params`` the
    fitted body (batch 1)."""

    gaussians: Gaussians
    weights: Tensor
    bind: Tensor
    params: BodyParams

    def transforms(self, body: BodyModel, params: BodyParams) -> Tensor:
        """(F, N, 4, 4) per-Gaussian transforms from the reconstruction to each of F poses (the fitted
        phenotype is kept; ``params`` give pose and transl)."""
        target = BodyParams(self.params.phenotype.expand(params.batch_size, -1), params.pose, params.transl)
        with torch.no_grad():
            M = body(target.to(body.device)).bone_transforms.to(self.weights)  # (F, J, 4, 4)
        return torch.einsum("nj,fjab->fnab", self.weights, M) @ torch.linalg.inv(self.bind)

    def posed(self, body: BodyModel, params: BodyParams) -> list[Gaussians]:
        """The Gaussians in each of the F poses of ``params``."""
        return [transform_gaussians(self.gaussians, T) for T in self.transforms(body, params)]

    def canonical(self) -> Gaussians:
        """The Gaussians unposed to the zero pose at zero transl (feet on y = 0, pelvis on the Y axis)."""
        return transform_gaussians(self.gaussians, torch.linalg.inv(self.bind))


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
    from scipy.spatial import cKDTree

    tree = cKDTree(vertices.detach().cpu().double().numpy())
    dist, idx = tree.query(points.detach().cpu().double().numpy(), k=K_WIDE)
    dist, idx = torch.from_numpy(dist).float(), torch.from_numpy(idx)
    sigma = dist[:, :1].clamp_min(SIGMA_MIN_M)

    def average(k: int, scale: float) -> Tensor:
        kernel = torch.exp(-((dist[:, :k] / (scale * sigma)) ** 2))  # (N, k)
        kernel = kernel / kernel.sum(1, keepdim=True)
        return torch.einsum("nk,nkj->nj", kernel, vertex_weights[idx[:, :k]])

    far = (dist[:, :1] / FAR_M).clamp(0, 1)
    w = (1 - far) * average(K_NEAR, 1.0) + far * average(K_WIDE, 3.0)
    return w / w.sum(1, keepdim=True)


def bind(gaussians: Gaussians, body: BodyModel, params: BodyParams) -> SkinnedGaussians:
    """Bind unbatched Gaussians (N) to the body ``params`` (batch 1) they were reconstructed around."""
    if gaussians.batch_shape:
        raise ValueError("bind: expected unbatched Gaussians (N)")
    params = params.to(body.device)
    with torch.no_grad():
        out = body(params)
    vertex_weights = smooth_vertex_weights(body.skinning_weights.detach().cpu(), body.faces.cpu())
    g = gaussians.to("cpu", torch.float32)
    weights = transfer_weights(g.means, out.vertices[0].cpu(), vertex_weights)
    bind_t = torch.einsum("nj,jab->nab", weights, out.bone_transforms[0].cpu().float())
    return SkinnedGaussians(g, weights, bind_t, params.to("cpu"))


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
