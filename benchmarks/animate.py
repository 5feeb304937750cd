"""Reposing and meshing, measured on synthetic subjects (CPU is fine).

For each subject the engine builds it twice from the same draws: in its sampled pose (A) and in a
second pose (B: the walking template at mid-stride, a different kind for every subject's draw). The
shipped reconstructor sees the frontal view of A (with the ground-truth body, as humansplat.evaluate
does); its Gaussians are scored on orbit views of A, then skinned to body A, reposed to body B and
scored against the engine's renders of B. "GT reposed" skins the engine's own Gaussians of A to B:
what skinning alone loses (clothes that LBS cannot move like cloth). Mesh: the mesh fused from the
reconstruction (humansplat.export.mesh) against the subject's ground-truth surface (the engine's
surfels of A): Chamfer distance (mean of both directions, cm) and normal consistency (mean |cos|).

    python benchmarks/animate.py --subjects 5 --res 256
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch

from humansplat.animate import bind
from humansplat.body.pose_prior import template_poses
from humansplat.cameras import Cameras
from humansplat.data.engine import EngineConfig, SyntheticEngine
from humansplat.data.views import benchmark_views
from humansplat.metrics import psnr
from humansplat.export.mesh import gaussians_to_mesh
from humansplat.gaussians import render
from humansplat.models import Reconstructor
from humansplat.train.losses import ssim

WEIGHTS = "src/humansplat/weights/humansplat-main"
SEED = 20250613
VIEWS = 8
MIN_OPACITY = 0.02


def scores(g, cams: Cameras, images: torch.Tensor, masks: torch.Tensor) -> np.ndarray:
    """(3,) mean PSNR, SSIM, masked PSNR of Gaussians g through cameras (V) against images (V,3,H,W)."""
    rgb = render(g, cams, background=1.0).rgb.permute(0, 3, 1, 2).clamp(0, 1)
    err = (rgb - images).square()
    fg = masks > 0.5
    masked = psnr((err * fg).sum(dim=(1, 2, 3)) / (3 * fg.sum(dim=(1, 2, 3))).clamp_min(1))
    return np.array([float(psnr(err.mean(dim=(1, 2, 3))).mean()), float(ssim(rgb, images).mean()), float(masked.mean())])


def mesh_accuracy(mesh, points: torch.Tensor, normals: torch.Tensor) -> tuple[float, float]:
    from scipy.spatial import cKDTree

    mv, mn = np.asarray(mesh.vertices), np.asarray(mesh.vertex_normals)
    p, n = points.numpy(), normals.numpy()
    d1, i1 = cKDTree(p).query(mv)
    d2, i2 = cKDTree(mv).query(p)
    chamfer = 100 * (d1.mean() + d2.mean()) / 2
    nc = (np.abs((mn * n[i1]).sum(1)).mean() + np.abs((n * mn[i2]).sum(1)).mean()) / 2
    return float(chamfer), float(nc)


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--subjects", type=int, default=5)
    ap.add_argument("--res", type=int, default=256)
    ap.add_argument("--mesh-grid", type=int, default=96)
    args = ap.parse_args()
    model = Reconstructor.from_pretrained(WEIGHTS, "cpu").eval()
    engine = SyntheticEngine(EngineConfig(resolution=args.res), device="cpu", build_device="cpu")
    second = template_poses("walking", torch.tensor([math.pi / 2]))
    rows = []
    for k in range(args.subjects):
        a = engine.subjects(1, torch.Generator().manual_seed(SEED + k))
        b = engine.subjects(1, torch.Generator().manual_seed(SEED + k), pose=second)
        cams = {}
        for name, s in (("a", a), ("b", b)):
            orbit = benchmark_views(s.points, s.valid, args.res, VIEWS, 39.6, 0.9)  # (1, V)
            cams[name] = orbit
        maps = {n: engine.render(s, cams[n]) for n, s in (("a", a), ("b", b))}
        anchors = model.body_anchors(a.vertices, engine.body.vertex_labels)
        g = model(maps["a"]["images"][:, :1], cams["a"][:, :1], anchors)[0]
        g = g.select(g.opacities >= MIN_OPACITY)
        skinned = bind(g, engine.body, a.params)
        reposed = skinned.posed(engine.body, b.params)[0]
        truth = a.gaussians[0]
        truth_reposed = bind(truth, engine.body, a.params).posed(engine.body, b.params)[0]
        ia, ma, ib, mb = maps["a"]["images"][0], maps["a"]["masks"][0], maps["b"]["images"][0], maps["b"]["masks"][0]
        mesh = gaussians_to_mesh(g, args.mesh_grid, 128, progress_bar=False)
        keep = truth.opacities > 0.5
        chamfer, nc = mesh_accuracy(mesh, truth.means[keep], torch.nn.functional.normalize(truth.features[keep, :3], dim=-1))
        rows.append(np.concatenate([scores(g, cams["a"][0], ia, ma), scores(reposed, cams["b"][0], ib, mb),
                                    scores(truth_reposed, cams["b"][0], ib, mb), [chamfer, nc, float(mesh.is_watertight)]]))  # fmt: skip
        print(f"subject {k}: " + " ".join(f"{x:.3f}" for x in rows[-1]), flush=True)
    r = np.mean(rows, 0)
    print(f"\n{args.subjects} subjects, {args.res} px, {VIEWS} orbit views each, CPU")
    print("| | PSNR | SSIM | masked PSNR |\n|---|---|---|---|")
    for i, name in enumerate(["reconstruction, original pose A", "reconstruction reposed to pose B", "GT Gaussians reposed to pose B"]):
        print(f"| {name} | {r[3 * i]:.2f} | {r[3 * i + 1]:.4f} | {r[3 * i + 2]:.2f} |")
    print(f"\n| mesh | Chamfer (cm) | normal consistency | watertight |\n|---|---|---|---|\n| fused from the reconstruction | {r[9]:.2f} | {r[10]:.3f} | {int(r[11] * args.subjects)}/{args.subjects} |")


if __name__ == "__main__":
    main()
