"""ScanDataset: THuman2.x-style scan folders rendered to the synthetic data's views and labels (CPU, tiny)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from humansplat.body import CLASS_ID
from humansplat.data.scans import ScanDataset, load_obj


def _write_pillar(folder, name="scan01"):
    """A textured capped cylinder 1.6 m tall: the texture is red on its upper half, blue below."""
    folder.mkdir(parents=True)
    U, V, r, h = 24, 12, 0.25, 1.6
    lines = ["mtllib scan.mtl"]
    for j in range(V + 1):
        for i in range(U + 1):
            a = 2 * math.pi * i / U
            lines.append(f"v {r * math.sin(a):.5f} {h * j / V:.5f} {r * math.cos(a):.5f}")
            lines.append(f"vt {i / U:.5f} {j / V:.5f}")
    for j in range(V):
        for i in range(U):
            a, b = j * (U + 1) + i + 1, j * (U + 1) + i + 2
            c, d = a + U + 1, b + U + 1
            lines.append(f"f {a}/{a} {b}/{b} {d}/{d} {c}/{c}")  # a quad, counter-clockwise from outside
    (folder / f"{name}.obj").write_text("\n".join(lines) + "\n")
    (folder / "scan.mtl").write_text("newmtl m\nmap_Kd tex.png\n")
    tex = np.zeros((64, 64, 3), np.uint8)
    tex[:32] = (220, 30, 30)  # image top = v > 0.5 = upper half
    tex[32:] = (30, 30, 220)
    Image.fromarray(tex).save(folder / "tex.png")


def test_load_obj_reads_uvs_and_material(tmp_path):
    _write_pillar(tmp_path / "scan01")
    m = load_obj(tmp_path / "scan01" / "scan01.obj")
    assert m["faces"].shape == (24 * 12 * 2, 3) and m["face_uv"].shape == m["faces"].shape
    assert m["texture"].name == "tex.png" and m["faces"].min() == 0


def test_scan_renders_with_its_texture(tmp_path):
    _write_pillar(tmp_path / "scan01")
    ds = ScanDataset(tmp_path, resolution=48, views=3, protocol="benchmark", device="cpu", points=6000)
    assert len(ds) == 1
    item = ds[0]
    assert item["images"].shape == (37, 3, 48, 48) and item["cameras"].batch_shape == (37,)
    fg = item["masks"][0, 0] > 0.5
    assert fg.float().mean() > 0.05
    assert (item["labels"][0][fg] == -1).all() and (item["labels"][0][~fg] == 0).all()  # no fit: unknown
    rgb = item["images"][0]
    rows = torch.nonzero(fg.any(1)).squeeze(1)
    top, bottom = rows[: len(rows) // 3], rows[-len(rows) // 3 :]
    red_top = rgb[0][top][:, fg[top].any(0)].mean() - rgb[2][top][:, fg[top].any(0)].mean()
    blue_bottom = rgb[2][bottom][:, fg[bottom].any(0)].mean() - rgb[0][bottom][:, fg[bottom].any(0)].mean()
    assert red_top > 0.3 and blue_bottom > 0.3
    assert item["body_params"] is None


def test_scan_with_a_body_fit_gets_part_labels(tmp_path):
    from humansplat.body import BodyModel, BodyParams

    body = BodyModel.load("cpu")
    params = BodyParams.neutral(1)
    params.transl[:] = torch.tensor([0.3, 0.0, -0.2])  # the scan's own frame is not centred
    with torch.no_grad():
        v = body(params).vertices[0].numpy()
    folder = tmp_path / "person"
    folder.mkdir()
    lines = [f"v {x:.5f} {y:.5f} {z:.5f} 0.8 0.6 0.5" for x, y, z in v]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in body.faces.tolist()]
    (folder / "person.obj").write_text("\n".join(lines) + "\n")
    (folder / "fit.json").write_text(json.dumps(params.to_dict()))
    ds = ScanDataset(tmp_path, resolution=48, views=2, protocol="train", device="cpu", points=8000)
    b = ds.batch(0)
    fg = b["masks"][:, :, 0] > 0.5
    labels = b["labels"][fg]
    assert (labels > 0).all()
    present = set(labels.unique().tolist())
    assert {CLASS_ID["Face_Neck"], CLASS_ID["Torso"]} <= present
    # the body moved with the scan: its vertices are centred like the scan
    centre = (b["body_vertices"][0].amin(0) + b["body_vertices"][0].amax(0)) / 2
    assert centre.abs().max() < 0.02


def test_cli_renders_scans_into_shards(tmp_path):
    from humansplat.cli import main
    from humansplat.data.shards import ShardDataset, collate

    _write_pillar(tmp_path / "scans" / "a", "a")
    _write_pillar(tmp_path / "scans" / "b", "b")
    out = tmp_path / "out"
    assert main(["data", "scans", str(tmp_path / "scans"), "-o", str(out), "--views", "2", "--res", "32", "--device", "cpu"]) == 0
    ds = ShardDataset(out)
    assert len(ds) == 2
    batch = collate([ds[0], ds[1]])
    assert batch["images"].shape == (2, 3, 3, 32, 32) and batch["body_params"] is None
    assert (batch["labels"][batch["masks"][:, :, 0] > 0.5] == -1).all()
    assert main(["data", "scans", str(tmp_path / "nothing"), "-o", str(tmp_path / "o2")]) == 2


@pytest.mark.parametrize("bad", ["", "v 0 0 0\n"])
def test_load_obj_rejects_empty_meshes(tmp_path, bad):
    p = tmp_path / "x.obj"
    p.write_text(bad)
    with pytest.raises(ValueError):
        load_obj(p)
