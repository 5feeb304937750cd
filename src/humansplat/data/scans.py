"""Real scans rendered like the synthetic data: ``ScanDataset`` over THuman2.x-style folders.

    ROOT/<id>/<id>.obj      textured mesh (metres, +Y up, facing +Z), ``mtllib`` -> ``map_Kd`` texture
                            (or the folder's only .png/.jpg); vertex colours ``v x y z r g b`` also work
    ROOT/<id>/fit.json      optional: the subject's body fit, ``BodyParams.to_dict()`` in the scan's frame

A scan becomes surfel Gaussians (area-uniform samples, texture colours as captured: no relighting), is
centred like the synthetic subjects (bounding-box centre at the origin) and rendered to the same views,
maps and cameras as ``SyntheticEngine.sample`` (``protocol="train"``) or the benchmark's 36 views
(``protocol="benchmark"``). Part labels need the fit: each surface sample takes the class of its nearest
body vertex, or, farther than 2 cm from the body, the garment class that covers that part (Upper/Lower
clothing, shoes, hair on the head, apparel near the hands) -- an approximation. Without a fit the
labels are -1 (unknown) wherever the mask is set.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from humansplat.body.parts import CLASS_ID as C
from humansplat.body.parts import NUM_CLASSES
from humansplat.cameras import Cameras
from humansplat.data import views as vw
from humansplat.data.engine import LABEL_CHANNELS, EngineConfig, render_maps
from humansplat.data.shards import ShardWriter, batch_to_subjects, shard_seed
from humansplat.data.surfels import COVER, Surfels
from humansplat.gaussians import Gaussians
from humansplat.meshes import face_areas, interpolate, sample_surface, vertex_normals
from humansplat.utils import pick_device, progress

__all__ = ["ScanDataset", "load_obj", "write_scans"]

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def load_obj(path: str | Path) -> dict:
    """A Wavefront OBJ: vertices (V,3), faces (F,3) (polygons fanned), and when present uv (T,2),
    face_uv (F,3), vertex colours (V,3) in [0,1] and the texture file named by the material."""
    path = Path(path)
    v, vc, vt, f, ft, mtllib = [], [], [], [], [], None
    with open(path, errors="replace") as fh:
        for line in fh:
            if line.startswith("v "):
                parts = line.split()
                v.append(parts[1:4])
                if len(parts) >= 7:
                    vc.append(parts[4:7])
            elif line.startswith("vt "):
                vt.append(line.split()[1:3])
            elif line.startswith("f "):
                corners = [c.split("/") for c in line.split()[1:]]
                for k in range(1, len(corners) - 1):
                    tri = (corners[0], corners[k], corners[k + 1])
                    f.append([int(c[0]) for c in tri])
                    if all(len(c) > 1 and c[1] for c in tri):
                        ft.append([int(c[1]) for c in tri])
            elif line.startswith("mtllib "):
                mtllib = line.split(maxsplit=1)[1].strip()
    if not v or not f:
        raise ValueError(f"{path}: no vertices or faces")
    faces = np.asarray(f, dtype=np.int64)
    nv = len(v)
    faces = np.where(faces < 0, faces + nv, faces - 1)
    out = {"vertices": np.asarray(v, dtype=np.float32), "faces": faces}
    if len(vc) == nv:
        col = np.asarray(vc, dtype=np.float32)
        out["colors"] = col / 255.0 if col.max() > 1.0 else col
    if vt and len(ft) == len(faces):
        out["uv"] = np.asarray(vt, dtype=np.float32)
        fuv = np.asarray(ft, dtype=np.int64)
        out["face_uv"] = np.where(fuv < 0, fuv + len(vt), fuv - 1)
    out["texture"] = _texture_file(path, mtllib)
    return out


def _texture_file(obj: Path, mtllib: str | None) -> Path | None:
    if mtllib and (obj.parent / mtllib).is_file():
        for line in (obj.parent / mtllib).read_text(errors="replace").splitlines():
            m = re.match(r"\s*map_Kd\s+(.+)", line)
            if m and (obj.parent / m.group(1).strip()).is_file():
                return obj.parent / m.group(1).strip()
    images = sorted(p for p in obj.parent.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
    return images[0] if len(images) == 1 else None


class ScanDataset(torch.utils.data.Dataset):
    """Scans rendered to the synthetic data's views; items have the keys of ``ShardDataset`` items
    (``body_*`` are None without a fit) and ``batch(indices)`` gives the engine's batch format."""

    def __init__(self, root: str | Path, resolution: int = 256, views: int = 16, protocol: str = "train", device=None,
                 points: int | None = None, config: EngineConfig | None = None) -> None:  # fmt: skip
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: no such folder")
        self.ids = sorted(p.name for p in self.root.iterdir() if (p / f"{p.name}.obj").is_file())
        if not self.ids:
            raise ValueError(f"{self.root}: no <id>/<id>.obj scans found")
        if protocol not in ("train", "benchmark"):
            raise ValueError(f"protocol must be 'train' or 'benchmark', not {protocol!r}")
        self.protocol = protocol
        self.config = config or EngineConfig(resolution=resolution, views=views)
        self.points = points or int(1.5 * self.config.body_points)
        self.device = pick_device(str(device) if device is not None else None)
        self._body = None

    def __len__(self) -> int:
        return len(self.ids)

    def meta(self, seed: int = 0, shard_size: int = 8) -> dict:
        from humansplat import __version__
        from humansplat.body import SAPIENS_CLASSES

        views = 36 if self.protocol == "benchmark" else self.config.views
        return {"kind": "scans", "source": str(self.root.resolve()), "scans": self.ids, "protocol": self.protocol,
                "subjects": len(self), "shard_size": shard_size, "views": 1 + views, "resolution": self.config.resolution,
                "seed": seed, "points": self.points, "label_names": SAPIENS_CLASSES, "humansplat_version": __version__}  # fmt: skip

    def _body_model(self):
        if self._body is None:
            from humansplat.body import BodyModel

            self._body = BodyModel.load("cpu")
        return self._body

    def subject(self, index: int, generator: torch.Generator) -> tuple[Gaussians, dict]:
        """One scan as Gaussians (1, N) on the render device, centred, and its body (or None)."""
        from humansplat.body import BodyParams

        folder = self.root / self.ids[index]
        mesh = load_obj(folder / f"{self.ids[index]}.obj")
        verts = torch.from_numpy(mesh["vertices"])
        faces = torch.from_numpy(mesh["faces"])
        centre = (verts.amin(0) + verts.amax(0)) / 2
        verts = verts - centre
        face, bary = sample_surface(verts[None], faces, self.points, generator)
        means = interpolate(verts[None], faces, face, bary)
        normals = F.normalize(interpolate(vertex_normals(verts[None], faces), faces, face, bary), dim=-1)
        colors = self._colors(mesh, face[0], bary[0])[None]
        body = {"params": None, "vertices": None, "keypoints": None}
        labels = torch.full((1, self.points), -1, dtype=torch.long)
        if (folder / "fit.json").is_file():
            params = BodyParams.from_dict(json.loads((folder / "fit.json").read_text()))
            params.transl = params.transl - centre
            out = self._body_model()(params)
            labels = _labels_from_body(means[0], out.vertices[0], self._body_model().vertex_labels)[None]
            body = {"params": params, "vertices": out.vertices[0], "keypoints": out.keypoints[0]}
        spacing = (face_areas(verts, faces).sum() / self.points).sqrt()
        tri = faces[face[0]]
        surf = Surfels(
            means=means, normals=normals, tangents=F.normalize(verts[tri[:, 1]] - verts[tri[:, 0]], dim=-1)[None],
            scales=torch.full((1, self.points, 2), float(COVER * 1.1 * spacing)), coords=means,
            material=torch.zeros_like(labels), labels=labels, opacity=torch.ones(1, self.points),
        )  # fmt: skip
        onehot = torch.zeros(1, self.points, len(LABEL_CHANNELS))
        known = labels >= 0
        channel = torch.tensor([LABEL_CHANNELS.index(c) if c in LABEL_CHANNELS else 0 for c in range(NUM_CLASSES)])
        onehot[known] = F.one_hot(channel[labels[known]], len(LABEL_CHANNELS)).float()
        g = Gaussians.from_activated(surf.means, surf.rotations(), surf.scales3(), surf.opacity, colors=colors,
                                     features=torch.cat([normals, onehot], -1))  # fmt: skip
        return g.to(self.device), body

    def _colors(self, mesh: dict, face: Tensor, bary: Tensor) -> Tensor:
        if mesh.get("texture") is not None and "uv" in mesh:
            from PIL import Image

            tex = torch.from_numpy(np.asarray(Image.open(mesh["texture"]).convert("RGB"), dtype=np.float32) / 255.0)
            uv = torch.from_numpy(mesh["uv"])[torch.from_numpy(mesh["face_uv"])[face]]  # (n,3,2)
            uv = (uv * bary[..., None]).sum(1) % 1.0
            grid = torch.stack([uv[:, 0] * 2 - 1, (1 - uv[:, 1]) * 2 - 1], -1)[None, None]
            return F.grid_sample(tex.permute(2, 0, 1)[None], grid, mode="bilinear", align_corners=False)[0, :, 0].T
        if "colors" in mesh:
            return interpolate(torch.from_numpy(mesh["colors"]), torch.from_numpy(mesh["faces"]), face, bary)
        return torch.full((face.shape[0], 3), 0.7)

    def cameras(self, g: Gaussians, body: dict, generator: torch.Generator) -> Cameras:
        c = self.config
        stride = max(1, self.points // 4096)
        pts = g.means[:, ::stride].cpu()
        valid = torch.ones(pts.shape[:2], dtype=torch.bool)
        if self.protocol == "benchmark":
            orbit = vw.benchmark_views(pts, valid, c.resolution, 36, c.fov, 0.9)
            return Cameras.cat([orbit[:, :1], orbit], 1)
        kp = body["keypoints"][None] if body["keypoints"] is not None else torch.zeros(1, 17, 3)
        known = body["keypoints"] is not None  # crops need keypoints
        inp = vw.input_views(pts, valid, kp, c.resolution, generator, c.input_fov, c.input_elevation, c.input_azimuth_std,
                             c.input_any_azimuth, c.input_fill, c.half_body * known, c.roll_std, c.head_only * known)  # fmt: skip
        return Cameras.cat([inp, vw.orbit_views(pts, valid, c.views, c.resolution, generator, c.fov, c.elevation, c.fill)], 1)

    @torch.no_grad()
    def batch(self, index: int, seed: int = 0) -> dict:
        """Scan ``index`` in the engine's batch format (B = 1); its randomness comes from ``seed``."""
        generator = torch.Generator().manual_seed(shard_seed(seed, index))
        g, body = self.subject(index, generator)
        cams = self.cameras(g, body, generator).to(self.device)
        out = render_maps(g, cams, 1.0, self.config.backend)
        out["cameras"] = cams
        out["body_params"] = body["params"]
        out["body_vertices"] = None if body["vertices"] is None else body["vertices"][None]
        out["body_keypoints"] = None if body["keypoints"] is None else body["keypoints"][None]
        return out

    def __getitem__(self, index: int) -> dict:
        b = self.batch(index)
        item = {k: (v[0] if isinstance(v, Tensor) else v) for k, v in b.items()}
        item["cameras"] = b["cameras"][0]
        return item


def _labels_from_body(points: Tensor, body_vertices: Tensor, vertex_labels: Tensor, near: float = 0.02) -> Tensor:
    """Sapiens ids of scan samples from the nearest vertex of the fitted body; far ones get the garment
    class of their body part."""
    best_d, best_i = [], []
    for chunk in points.split(4096):
        d = torch.cdist(chunk, body_vertices)
        m = d.min(1)
        best_d.append(m.values)
        best_i.append(m.indices)
    d, idx = torch.cat(best_d), torch.cat(best_i)
    part = vertex_labels[idx]
    cover = torch.full((NUM_CLASSES,), C["Apparel"], dtype=torch.long)
    for name in ("Torso", "Left_Upper_Arm", "Right_Upper_Arm", "Left_Lower_Arm", "Right_Lower_Arm"):
        cover[C[name]] = C["Upper_Clothing"]
    for name in ("Left_Upper_Leg", "Right_Upper_Leg", "Left_Lower_Leg", "Right_Lower_Leg"):
        cover[C[name]] = C["Lower_Clothing"]
    cover[C["Left_Foot"]], cover[C["Right_Foot"]] = C["Left_Shoe"], C["Right_Shoe"]
    cover[C["Face_Neck"]] = C["Hair"]
    return torch.where(d <= near, part, cover[part])


def write_scans(scans: ScanDataset, writer: ShardWriter, seed: int = 0) -> None:
    """Render every scan into the shards of ``writer`` (made with ``scans.meta``); resumable."""
    todo = writer.missing()
    with progress(total=sum(len(writer.shard_range(i)) for i in todo), desc="scans") as bar:
        for i in todo:
            subjects = []
            for index in writer.shard_range(i):
                b = scans.batch(index, seed)
                if b["body_params"] is None:  # no fit: empty body arrays
                    from humansplat.body import BodyParams

                    b["body_params"] = BodyParams(torch.zeros(1, 0), torch.zeros(1, 0, 3), torch.zeros(1, 0))
                    b["body_vertices"], b["body_keypoints"] = torch.zeros(1, 0, 3), torch.zeros(1, 0, 3)
                subjects += batch_to_subjects(b, index)
                bar.update(1)
            writer.write(i, subjects)
    writer.finish()
