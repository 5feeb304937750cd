"""glTF writers (pygltflib): a mesh skinned to the Anny rig, and Gaussians as KHR_gaussian_splatting.

Rigged .glb: the mesh in the bind pose (anny's zero pose), ``JOINTS_0``/``WEIGHTS_0`` (the 4 strongest
bones per vertex), one node per bone named as the rig's bones, parented as the rig, each placed at its
bone head with no rotation (so a bone's local rotation is ``BodyParams.pose``'s, written in the zero
pose's world axes), and inverse bind matrices that undo the bind translations.

Gaussians: one ``POINTS`` primitive carrying the ``KHR_gaussian_splatting`` extension, with the
attributes ``POSITION``, ``KHR_gaussian_splatting:ROTATION`` (unit quaternion x, y, z, w),
``KHR_gaussian_splatting:SCALE`` (linear standard deviations), ``KHR_gaussian_splatting:OPACITY``
(linear, 0..1) and ``KHR_gaussian_splatting:SH_DEGREE_l_COEF_n`` (RGB SH coefficients), plus
``COLOR_0`` so viewers without the extension show coloured points; the extension object names the ellipse
kernel, BT.709 colours, camera-distance sorting and perspective projection (the ratified extension's
attribute names and property values, checked against its published text and two independent readers' docs).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["write_rigged_glb", "write_splats_gltf", "SPLAT_EXTENSION"]

SPLAT_EXTENSION = "KHR_gaussian_splatting"
INFLUENCES = 4  # bones per vertex in JOINTS_0 / WEIGHTS_0
_FLOAT, _UBYTE, _UINT = 5126, 5121, 5125
_ARRAY, _ELEMENTS = 34962, 34963
_TYPES = {1: "SCALAR", 2: "VEC2", 3: "VEC3", 4: "VEC4", 16: "MAT4"}


class _Builder:
    """One binary buffer, its views and accessors."""

    def __init__(self) -> None:
        import pygltflib as gl

        self.gl = gl
        self.doc = gl.GLTF2(asset=gl.Asset(generator="humansplat", version="2.0"))
        self.blob = bytearray()

    def accessor(self, array: np.ndarray, component: int, target: int | None = _ARRAY, minmax: bool = False) -> int:
        gl = self.gl
        array = np.ascontiguousarray(array)
        width = 1 if array.ndim == 1 else int(np.prod(array.shape[1:]))
        self.blob += b"\0" * (-len(self.blob) % 4)
        self.doc.bufferViews.append(gl.BufferView(buffer=0, byteOffset=len(self.blob), byteLength=array.nbytes, target=target))
        self.blob += array.tobytes()
        flat = array.reshape(len(array), width)
        acc = gl.Accessor(bufferView=len(self.doc.bufferViews) - 1, componentType=component, count=len(array), type=_TYPES[width],
                          min=flat.min(0).tolist() if minmax else None, max=flat.max(0).tolist() if minmax else None)  # fmt: skip
        self.doc.accessors.append(acc)
        return len(self.doc.accessors) - 1

    def save(self, path: Path, binary: bool) -> None:
        from humansplat.utils import atomic_path

        gl = self.gl
        self.doc.buffers = [gl.Buffer(byteLength=len(self.blob))]
        self.doc.set_binary_blob(bytes(self.blob))
        if not binary:  # .gltf: the buffer embedded as a data URI
            self.doc.convert_buffers(gl.BufferFormat.DATAURI)
        with atomic_path(path) as tmp:
            self.doc.save_binary(str(tmp)) if binary else self.doc.save_json(str(tmp))


def write_rigged_glb(path: str | Path, vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None, weights: np.ndarray,
                     joints: np.ndarray, names: list[str], parents: list[int]) -> Path:  # fmt: skip
    """vertices (V, 3) in the bind pose; faces (F, 3); colors (V, 3|4) uint8 or None; weights (V, J) rows
    summing to 1; joints (J, 3) bone heads in the bind pose; parents (J,) (-1 for the root)."""
    b = _Builder()
    gl, doc = b.gl, b.doc
    top = np.argsort(-weights, 1)[:, :INFLUENCES]
    w = np.take_along_axis(weights, top, 1).astype(np.float32)
    w /= w.sum(1, keepdims=True)
    attrs = gl.Attributes(POSITION=b.accessor(vertices.astype(np.float32), _FLOAT, minmax=True),
                          JOINTS_0=b.accessor(top.astype(np.uint8), _UBYTE), WEIGHTS_0=b.accessor(w, _FLOAT))  # fmt: skip
    if colors is not None:
        attrs.COLOR_0 = b.accessor(colors[:, :3].astype(np.float32) / 255, _FLOAT)
    indices = b.accessor(faces.astype(np.uint32).reshape(-1), _UINT, target=_ELEMENTS)
    doc.meshes = [gl.Mesh(name="body", primitives=[gl.Primitive(attributes=attrs, indices=indices, mode=4)])]
    J = len(names)
    doc.nodes = [gl.Node(name=names[j], translation=(joints[j] - (joints[parents[j]] if parents[j] >= 0 else 0)).tolist()) for j in range(J)]
    for j, p in enumerate(parents):
        if p >= 0:
            doc.nodes[p].children.append(j)
    ibm = np.tile(np.eye(4, dtype=np.float32), (J, 1, 1))
    ibm[:, :3, 3] = -joints
    ibm_acc = b.accessor(np.ascontiguousarray(ibm.transpose(0, 2, 1)).reshape(J, 16), _FLOAT, target=None)  # column-major
    root = parents.index(-1)
    doc.skins = [gl.Skin(name="anny_game_engine", joints=list(range(J)), skeleton=root, inverseBindMatrices=ibm_acc)]
    doc.nodes.append(gl.Node(name="avatar", mesh=0, skin=0))
    doc.nodes.append(gl.Node(name="humansplat", children=[root, J]))
    doc.scenes = [gl.Scene(nodes=[J + 1])]
    doc.scene = 0
    b.save(Path(path), binary=True)
    return Path(path)


def write_splats_gltf(path: str | Path, gaussians) -> Path:
    """Unbatched Gaussians as a KHR_gaussian_splatting glTF (.gltf JSON with an embedded buffer, or .glb)."""
    import torch

    b = _Builder()
    gl, doc = b.gl, b.doc
    g = gaussians.to("cpu", torch.float32)
    prefix = f"{SPLAT_EXTENSION}:"
    attrs = {
        "POSITION": b.accessor(g.means.numpy(), _FLOAT, minmax=True),
        "COLOR_0": b.accessor(np.concatenate([g.colors().clamp(0, 1).numpy(), g.opacities[:, None].numpy()], 1), _FLOAT),
        prefix + "ROTATION": b.accessor(g.rotations[:, [1, 2, 3, 0]].numpy(), _FLOAT),
        prefix + "SCALE": b.accessor(g.scales.numpy(), _FLOAT),
        prefix + "OPACITY": b.accessor(g.opacities.numpy(), _FLOAT),
    }
    for k in range(g.sh.shape[-2]):
        degree = int(np.floor(np.sqrt(k)))
        attrs[prefix + f"SH_DEGREE_{degree}_COEF_{k - degree * degree}"] = b.accessor(g.sh[:, k].numpy(), _FLOAT)
    ext = {"kernel": "ellipse", "colorSpace": "BT.709", "sortingMethod": "cameraDistance", "projection": "perspective"}
    prim = gl.Primitive(attributes=gl.Attributes(), mode=0, extensions={SPLAT_EXTENSION: ext})
    prim.attributes = attrs  # custom attribute names: a plain dict, written as given
    doc.meshes = [gl.Mesh(name="gaussians", primitives=[prim])]
    doc.nodes = [gl.Node(name="gaussians", mesh=0)]
    doc.scenes = [gl.Scene(nodes=[0])]
    doc.scene = 0
    doc.extensionsUsed = [SPLAT_EXTENSION]
    path = Path(path)
    b.save(path, binary=path.suffix.lower() == ".glb")
    return path
