"""`humansplat export`: the fused mesh, the rigged avatar and the KHR_gaussian_splatting glTF, each read
back by an independent reader (trimesh, pygltflib)."""

import json
import shutil

import numpy as np
import pytest
import torch

from humansplat.body import BONE_NAMES, BONE_PARENTS, BodyParams
from humansplat.export import export_result
from test_animate import make_result


@pytest.fixture(scope="module")
def exported(body, tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    params, g = make_result(body, root / "subject", pose_name="standing", turn=0.0, transl=(0.0, 0.0, 0.0))
    files = export_result(root / "subject", root / "out", progress_bar=False, mesh_grid=48, mesh_view_size=64, mesh_azimuths=3)
    return root, params, g, files


def _accessor(doc, index: int) -> np.ndarray:
    import pygltflib as gl

    acc = doc.accessors[index]
    view = doc.bufferViews[acc.bufferView]
    dtype = {gl.FLOAT: np.float32, gl.UNSIGNED_BYTE: np.uint8, gl.UNSIGNED_INT: np.uint32}[acc.componentType]
    width = {"SCALAR": 1, "VEC3": 3, "VEC4": 4, "MAT4": 16}[acc.type]
    blob = doc.binary_blob() if doc.buffers[0].uri is None else doc.decode_data_uri(doc.buffers[0].uri)
    data = np.frombuffer(blob, dtype, acc.count * width, view.byteOffset + (acc.byteOffset or 0))
    return data.reshape(acc.count, width) if width > 1 else data


def test_files(exported):
    root, _, _, files = exported
    assert sorted(p.name for p in files) == ["avatar.glb", "gaussians.gltf", "gaussians.ply", "gaussians.splat", "mesh.glb", "mesh.obj"]


def test_mesh_is_watertight_coloured_and_on_the_body(exported, body):
    import trimesh

    root, params, g, _ = exported
    mesh = trimesh.load(root / "out" / "mesh.obj", process=False)
    assert mesh.is_watertight and mesh.volume > 0.03  # an adult body: ~0.06-0.08 m³
    with torch.no_grad():
        surface = body(params).vertices[0]
    d = torch.cdist(torch.from_numpy(np.asarray(mesh.vertices)).float(), surface).amin(1)
    assert float(d.median()) < 0.04  # within the coarse test grid's voxels (~4 cm)
    colors = np.asarray(mesh.visual.vertex_colors)[:, :3]
    assert colors.std(0).max() > 20  # the part colours, not one grey
    glb = trimesh.load(root / "out" / "mesh.glb", force="mesh")
    assert len(glb.faces) == len(mesh.faces)


def test_rigged_avatar(exported, body):
    import pygltflib

    root, params, _, _ = exported
    doc = pygltflib.GLTF2().load(str(root / "out" / "avatar.glb"))
    skin = doc.skins[0]
    names = [doc.nodes[j].name for j in skin.joints]
    assert names == BONE_NAMES
    for j, p in enumerate(BONE_PARENTS):  # the hierarchy is the rig's
        if p >= 0:
            assert skin.joints[j] in doc.nodes[skin.joints[p]].children
    prim = doc.meshes[0].primitives[0]
    n = doc.accessors[prim.attributes.POSITION].count
    assert doc.accessors[prim.attributes.JOINTS_0].count == n == doc.accessors[prim.attributes.WEIGHTS_0].count
    weights = _accessor(doc, prim.attributes.WEIGHTS_0)
    assert np.allclose(weights.sum(1), 1, atol=1e-5) and _accessor(doc, prim.attributes.JOINTS_0).max() < len(BONE_NAMES)
    # inverse bind matrices invert the joints' global bind transforms (accumulated node translations)
    ibm = _accessor(doc, skin.inverseBindMatrices).reshape(-1, 4, 4).transpose(0, 2, 1)
    world = np.zeros((len(BONE_NAMES), 3))
    for j, p in enumerate(BONE_PARENTS):
        world[j] = np.asarray(doc.nodes[skin.joints[j]].translation) + (world[p] if p >= 0 else 0)
    for j in range(len(BONE_NAMES)):
        T = np.eye(4)
        T[:3, 3] = world[j]
        assert np.allclose(ibm[j] @ T, np.eye(4), atol=1e-5)
    with torch.no_grad():  # the skeleton is the fitted body's, in the zero pose
        zero = body(BodyParams(params.phenotype, torch.zeros_like(params.pose), torch.zeros(1, 3))).joints[0].numpy()
    assert np.abs(world - zero).max() < 1e-4
    pos = _accessor(doc, prim.attributes.POSITION)
    assert pos[:, 1].min() > -0.05 and pos[:, 1].max() < 2.0  # the bind-pose mesh stands on the floor


def test_splats_gltf_matches_the_gaussians(exported):
    import pygltflib

    root, _, g, _ = exported
    doc = pygltflib.GLTF2().load(str(root / "out" / "gaussians.gltf"))
    prim = doc.meshes[0].primitives[0]
    assert prim.mode == pygltflib.POINTS and "KHR_gaussian_splatting" in prim.extensions and "KHR_gaussian_splatting" in doc.extensionsUsed
    attrs = json.loads((root / "out" / "gaussians.gltf").read_text())["meshes"][0]["primitives"][0]["attributes"]
    read = {k: _accessor(doc, v) for k, v in attrs.items()}
    p = "KHR_gaussian_splatting:"
    assert np.allclose(read["POSITION"], g.means.numpy(), atol=1e-6)
    assert np.allclose(read[p + "ROTATION"], g.rotations[:, [1, 2, 3, 0]].numpy(), atol=1e-6)
    assert np.allclose(read[p + "SCALE"], g.scales.numpy(), rtol=1e-5)
    assert np.allclose(read[p + "OPACITY"], g.opacities.numpy(), atol=1e-6)
    assert np.allclose(read[p + "SH_DEGREE_0_COEF_0"], g.sh[:, 0].numpy(), atol=1e-6)


def test_export_errors_leave_nothing(tmp_path, exported, capsys):
    from humansplat.cli import main

    root, _, g, _ = exported
    assert main(["export", str(root / "subject"), "--formats", "glb,fbx", "-o", str(tmp_path / "x")]) == 2
    tf = tmp_path / "tf"
    tf.mkdir()
    (tf / "report.json").write_text(json.dumps({"structure_prior": "template_free", "body_fit": None}))
    shutil.copy(root / "subject" / "gaussians.ply", tf)
    capsys.readouterr()
    assert main(["export", str(tf), "-o", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err
    assert "template-free" in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
