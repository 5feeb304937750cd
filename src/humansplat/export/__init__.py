"""Exports of a reconstruction: a watertight coloured mesh, a rigged glTF avatar, Gaussians as glTF.

``export_result(RESULT_DIR, OUT, formats)`` is the one entry point (``humansplat export`` calls it):

- ``mesh``: ``mesh.obj`` and ``mesh.glb``, the mesh fused from the Gaussians (:mod:`.mesh`), in the
  reconstruction's pose and frame, vertex-coloured;
- ``glb``: ``avatar.glb``, that mesh unposed to anny's zero pose and skinned to the rig (:mod:`.gltf`);
  opens and poses in Blender, three.js and game engines;
- ``gltf-splats``: ``gaussians.gltf`` (KHR_gaussian_splatting) beside ``gaussians.ply`` and ``.splat``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

__all__ = ["FORMATS", "export_result"]

FORMATS = ("glb", "mesh", "gltf-splats")


def export_result(result_dir: str | Path, out: str | Path, formats=FORMATS, progress_bar: bool = True, mesh_grid: int | None = None,
                  mesh_view_size: int | None = None, mesh_azimuths: int | None = None) -> list[Path]:  # fmt: skip
    """Write ``formats`` (any of ``FORMATS``) of the result folder into ``out`` (atomically: all or
    nothing); ``mesh_grid`` voxels along the longest side, ``mesh_view_size`` px fusion views and
    ``mesh_azimuths`` views per ring (defaults in :mod:`.mesh`). Raises ``humansplat.animate.ResultError`` for a folder without a body fit when the format
    needs the rig, ``ValueError`` for an unknown format."""
    from humansplat.animate import load_result
    from humansplat.utils import MANIFEST, atomic_dir

    formats = list(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"unknown export formats {unknown}; choose from {', '.join(FORMATS)}")
    result = load_result(result_dir)
    out = Path(out)
    with atomic_dir(out) as tmp:
        if "gltf-splats" in formats:
            _write_splats(result.gaussians, tmp)
        if "mesh" in formats or "glb" in formats:
            from humansplat.export.mesh import AZIMUTHS, GRID, VIEW_SIZE, gaussians_to_mesh

            mesh = gaussians_to_mesh(result.gaussians, mesh_grid or GRID, mesh_view_size or VIEW_SIZE, progress_bar, mesh_azimuths or AZIMUTHS)
            if "mesh" in formats:
                mesh.export(tmp / "mesh.obj")
                mesh.export(tmp / "mesh.glb")
            if "glb" in formats:
                _write_avatar(mesh, result.params, tmp / "avatar.glb")
    return sorted(p for p in out.rglob("*") if p.is_file() and p.name != MANIFEST)


def _write_splats(gaussians, folder: Path) -> None:
    from humansplat.export.gltf import write_splats_gltf
    from humansplat.gaussians import save_ply, save_splat

    write_splats_gltf(folder / "gaussians.gltf", gaussians)
    save_ply(gaussians, folder / "gaussians.ply")
    save_splat(gaussians, folder / "gaussians.splat")


def _write_avatar(mesh, params, path: Path) -> None:
    """The mesh (in the fitted pose) bound to the fitted body, unposed to the zero pose, as a rigged glb."""
    from humansplat.animate.skinning import smooth_vertex_weights, transfer_weights
    from humansplat.body import BONE_NAMES, BONE_PARENTS, BodyModel, BodyParams
    from humansplat.export.gltf import write_rigged_glb

    body = BodyModel.load()
    with torch.no_grad():
        posed = body(params)
        zero = body(BodyParams(params.phenotype, torch.zeros_like(params.pose), torch.zeros_like(params.transl)))
    v = torch.from_numpy(np.asarray(mesh.vertices)).float()
    weights = transfer_weights(v, posed.vertices[0], smooth_vertex_weights(body.skinning_weights.detach().cpu(), body.faces.cpu()))
    A = torch.einsum("nj,jab->nab", weights, posed.bone_transforms[0].float())
    rest = (torch.linalg.inv(A) @ torch.cat([v, torch.ones(len(v), 1)], 1)[..., None])[:, :3, 0]
    colors = np.asarray(mesh.visual.vertex_colors) if mesh.visual.kind == "vertex" else None
    write_rigged_glb(path, rest.numpy(), np.asarray(mesh.faces), colors, weights.numpy(), zero.joints[0].numpy(), BONE_NAMES, BONE_PARENTS)
