"""Synthetic (and scan) datasets on disk: a folder of shards in a documented, versioned format.

Layout (format ``humansplat-shards``, version 1; docs/data.md has the full description)::

    DIR/dataset.json          what the folder holds: format, version, subject count, shard size,
                              views, resolution, seed, engine config, array list; written first
    DIR/shard-00000.npz       subjects 0 .. shard_size-1, then shard-00001.npz, ...
    DIR/SHA256SUMS            checksums of every shard, written once all shards exist

A shard is a zip of ``.npy`` members named ``<k>/<array>`` (k = subject index within the shard), so one
subject is read without decoding the others. Members are deflate-compressed with fixed timestamps: the
same arrays always give the same bytes. Arrays per subject (V1 = 1 + views, index 0 the input view):

    images   uint8   (V1, 3, H, W)   sRGB * 255 over white
    masks    uint8   (V1, H, W)      alpha * 255
    depths   float16 (V1, H, W)      camera z in metres, 0 where alpha < 1/2
    normals  int8    (V1, 3, H, W)   world unit normals * 127, 0 where alpha < 1/2
    labels   uint8   (V1, H, W)      Sapiens class ids, 0 background, 255 unknown (scans without a fit)
    K        float32 (V1, 3, 3)      OpenCV intrinsics (pixels)
    w2c      float32 (V1, 4, 4)      OpenCV world-to-camera
    phenotype, pose, transl  float32 (6,), (J, 3), (3,)  BodyParams (body(params) gives ``vertices``)
    vertices float32 (Nv, 3)         posed body vertices; keypoints float32 (17, 3)
                                     (all five empty, first dim 0, for scans without a body fit)
    subject  int64   ()              the subject's index in the dataset

Writing is resumable: a shard is written under a temporary name and renamed when complete, and
``ShardWriter`` skips shards that already exist.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from humansplat.utils import atomic_path, clean_stale_temporaries

__all__ = ["FORMAT", "VERSION", "ShardWriter", "check_dataset_root", "ShardDataset", "collate", "batch_to_subjects", "write_npz", "shard_seed"]

FORMAT = "humansplat-shards"
VERSION = 1
ARRAYS = {
    "images": ("uint8", "(V1, 3, H, W) sRGB * 255 over a white background"),
    "masks": ("uint8", "(V1, H, W) alpha * 255"),
    "depths": ("float16", "(V1, H, W) camera z in metres, 0 where alpha < 1/2"),
    "normals": ("int8", "(V1, 3, H, W) world unit normals * 127, 0 where alpha < 1/2"),
    "labels": ("uint8", "(V1, H, W) Sapiens class ids, 0 background, 255 unknown"),
    "K": ("float32", "(V1, 3, 3) OpenCV intrinsics in pixels"),
    "w2c": ("float32", "(V1, 4, 4) OpenCV world-to-camera"),
    "phenotype": ("float32", "(P,) BodyParams.phenotype"),
    "pose": ("float32", "(J, 3) BodyParams.pose"),
    "transl": ("float32", "(3,) BodyParams.transl"),
    "vertices": ("float32", "(Nv, 3) posed body vertices, world"),
    "keypoints": ("float32", "(17, 3) COCO-17 body keypoints, world"),
    "subject": ("int64", "() index of the subject in the dataset"),
}


def shard_seed(seed: int, shard: int) -> int:
    """The generator seed of one shard: shards are independent, so any subset can be (re)made."""
    return int(hashlib.sha256(f"humansplat/{seed}/{shard}".encode()).hexdigest()[:15], 16)


def write_npz(path: str | Path, members: dict[str, np.ndarray]) -> Path:
    """A deterministic ``.npz`` (zip of .npy, deflate, fixed timestamps), written atomically."""
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", allowZip64=True) as zf:
            for name, arr in members.items():
                info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
                zf.writestr(info, buf.getvalue())
    return Path(path)


def batch_to_subjects(batch: dict, first: int) -> list[dict[str, np.ndarray]]:
    """Engine batch (see ``SyntheticEngine.sample``) -> per-subject arrays in the shard encoding."""
    B = batch["images"].shape[0]
    enc = {
        "images": (batch["images"].clamp(0, 1) * 255).round().to(torch.uint8),
        "masks": (batch["masks"][:, :, 0].clamp(0, 1) * 255).round().to(torch.uint8),
        "depths": batch["depths"][:, :, 0].to(torch.float16),
        "normals": (batch["normals"].clamp(-1, 1) * 127).round().to(torch.int8),
        "labels": batch["labels"].to(torch.uint8),
        "K": batch["cameras"].K.float(),
        "w2c": batch["cameras"].w2c.float(),
        "phenotype": batch["body_params"].phenotype.float(),
        "pose": batch["body_params"].pose.float(),
        "transl": batch["body_params"].transl.float(),
        "vertices": batch["body_vertices"].float(),
        "keypoints": batch["body_keypoints"].float(),
    }
    enc = {k: v.detach().cpu().numpy() for k, v in enc.items()}
    return [{**{k: v[b] for k, v in enc.items()}, "subject": np.asarray(first + b, dtype=np.int64)} for b in range(B)]


def check_dataset_root(root: str | Path) -> None:
    """``FileExistsError`` when ``root`` is a file, or a folder that holds files but no dataset: we write
    only into a new folder or into one of our datasets."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"{root} exists and is not a folder")
    if root.is_dir() and not (root / "dataset.json").exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} is not empty and holds no humansplat dataset (no dataset.json)")


class ShardWriter:
    """Writes a dataset folder shard by shard; ``meta`` (JSON-able) describes what is being made.

    If ``root`` already holds a dataset, its description must equal ``meta`` (same plan): then the
    shards that exist are kept and only the missing ones need writing (``missing``)."""

    def __init__(self, root: str | Path, meta: dict) -> None:
        self.root = Path(root)
        self.meta = {"format": FORMAT, "version": VERSION, **meta, "arrays": {k: {"dtype": d, "shape": s} for k, (d, s) in ARRAYS.items()}}
        self.meta = json.loads(json.dumps(self.meta))  # tuples -> lists, as they read back
        for key in ("subjects", "shard_size"):
            if int(self.meta.get(key, 0)) <= 0:
                raise ValueError(f"dataset meta needs a positive {key!r}")
        check_dataset_root(self.root)
        path = self.root / "dataset.json"
        if path.exists():
            old = json.loads(path.read_text())
            if old != self.meta:
                diff = sorted(k for k in set(old) | set(self.meta) if old.get(k) != self.meta.get(k))
                raise FileExistsError(f"{self.root} holds a different dataset (differs in: {', '.join(diff)})")
        else:
            self.root.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                tmp.write_text(json.dumps(self.meta, indent=1, sort_keys=True) + "\n")
        clean_stale_temporaries(self.root)  # left by an interrupted write (only ours, only dead ones)

    @property
    def num_shards(self) -> int:
        return -(-int(self.meta["subjects"]) // int(self.meta["shard_size"]))

    def shard_range(self, i: int) -> range:
        n, s = int(self.meta["subjects"]), int(self.meta["shard_size"])
        return range(i * s, min(n, (i + 1) * s))

    def path(self, i: int) -> Path:
        return self.root / f"shard-{i:05d}.npz"

    def missing(self) -> list[int]:
        return [i for i in range(self.num_shards) if not self._complete(i)]

    def _complete(self, i: int) -> bool:
        try:
            with zipfile.ZipFile(self.path(i)) as zf:
                return len(zf.namelist()) == len(self.shard_range(i)) * len(ARRAYS)
        except (OSError, zipfile.BadZipFile):
            return False

    def write(self, i: int, subjects: list[dict[str, np.ndarray]]) -> Path:
        if len(subjects) != len(self.shard_range(i)):
            raise ValueError(f"shard {i} needs {len(self.shard_range(i))} subjects, got {len(subjects)}")
        members = {f"{k}/{name}": s[name] for k, s in enumerate(subjects) for name in ARRAYS}
        return write_npz(self.path(i), members)

    def finish(self) -> Path:
        """Write SHA256SUMS once every shard exists."""
        if self.missing():
            raise RuntimeError(f"{len(self.missing())} shards are missing")
        lines = [f"{hashlib.sha256(self.path(i).read_bytes()).hexdigest()}  {self.path(i).name}" for i in range(self.num_shards)]
        with atomic_path(self.root / "SHA256SUMS") as tmp:
            tmp.write_text("\n".join(lines) + "\n")
        return self.root / "SHA256SUMS"


class ShardDataset(torch.utils.data.Dataset):
    """Subjects of a dataset folder, each as the engine's batch dict without the batch dim (use
    ``collate`` to batch them: the result has exactly the keys and shapes of ``SyntheticEngine.sample``)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        path = self.root / "dataset.json"
        if not path.exists():
            raise FileNotFoundError(f"{self.root} is not a dataset folder (no dataset.json)")
        self.meta = json.loads(path.read_text())
        if self.meta.get("format") != FORMAT or int(self.meta.get("version", 0)) > VERSION:
            raise ValueError(f"{self.root}: unsupported dataset format {self.meta.get('format')!r} v{self.meta.get('version')}")
        self.shard_size = int(self.meta["shard_size"])
        self._open: tuple[int, np.lib.npyio.NpzFile] | None = None

    def __len__(self) -> int:
        return int(self.meta["subjects"])

    def _shard(self, i: int):
        if self._open is None or self._open[0] != i:
            if self._open is not None:
                self._open[1].close()
            self._open = (i, np.load(self.root / f"shard-{i:05d}.npz"))
        return self._open[1]

    def raw(self, index: int) -> dict[str, np.ndarray]:
        """The stored arrays of one subject."""
        if not 0 <= index < len(self):
            raise IndexError(index)
        z = self._shard(index // self.shard_size)
        k = index % self.shard_size
        return {name: z[f"{k}/{name}"] for name in ARRAYS}

    def __getitem__(self, index: int) -> dict:
        from humansplat.body import BodyParams
        from humansplat.cameras import Cameras

        a = {k: torch.from_numpy(np.asarray(v)) for k, v in self.raw(index).items()}
        H, W = a["masks"].shape[-2:]
        labels = a["labels"].long()
        has_body = a["phenotype"].numel() > 0
        return {
            "images": a["images"].float() / 255,
            "masks": a["masks"].float()[:, None] / 255,
            "depths": a["depths"].float()[:, None],
            "normals": torch.nn.functional.normalize(a["normals"].float(), dim=1) * (a["normals"] != 0).any(1, keepdim=True),
            "labels": torch.where(labels == 255, -1, labels),
            "cameras": Cameras(a["K"], a["w2c"], int(W), int(H)),
            "body_params": BodyParams(a["phenotype"][None], a["pose"][None], a["transl"][None]) if has_body else None,
            "body_vertices": a["vertices"] if has_body else None,
            "body_keypoints": a["keypoints"] if has_body else None,
        }


def collate(items: list[dict]) -> dict:
    """Batch ``ShardDataset`` (or ``ScanDataset``) items into the engine's batch format; the body entries
    are None unless every item has a body."""
    from humansplat.body import BodyParams
    from humansplat.cameras import Cameras

    has_body = all(it["body_params"] is not None for it in items)
    out: dict = {k: torch.stack([it[k] for it in items]) for k in items[0] if isinstance(items[0][k], Tensor) and (has_body or not k.startswith("body_"))}
    cams = [it["cameras"] for it in items]
    out["cameras"] = Cameras(torch.stack([c.K for c in cams]), torch.stack([c.w2c for c in cams]), cams[0].width, cams[0].height)
    out["body_params"] = BodyParams.cat([it["body_params"] for it in items]) if has_body else None
    for k in ("body_vertices", "body_keypoints"):
        out.setdefault(k, None)
    return out


def fill_shards(writer: ShardWriter, make, seed: int, batch_size: int, show_progress: bool | None = None) -> int:
    """Write every missing shard of ``writer`` with ``make(n, generator) -> engine batch dict``; shard i
    draws from a generator seeded with ``shard_seed(seed, i)``. Returns the number of shards written."""
    from humansplat.utils import progress

    todo = writer.missing()
    total = sum(len(writer.shard_range(i)) for i in todo)
    with progress(total=total, desc="subjects", disable=None if show_progress is None else not show_progress) as bar:
        for i in todo:
            g = torch.Generator().manual_seed(shard_seed(seed, i))
            ids = writer.shard_range(i)
            subjects: list[dict] = []
            for start in range(0, len(ids), batch_size):
                n = min(batch_size, len(ids) - start)
                subjects += batch_to_subjects(make(n, g), ids.start + start)
                bar.update(n)
            writer.write(i, subjects)
    writer.finish()
    return len(todo)
