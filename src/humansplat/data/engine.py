"""The synthetic human engine: batches of dressed, posed, lit subjects rendered from many views.

    engine = SyntheticEngine(EngineConfig(resolution=256, views=16), device="cuda")
    batch = engine.sample(8, generator=torch.Generator().manual_seed(0))

One call draws phenotypes and poses (:mod:`humansplat.body`), outfits (:mod:`.subjects`), builds the
subjects' surfels (:mod:`.dressing`, :mod:`.loose`), bakes light into their colours (:mod:`.shading`),
turns them into Gaussians and renders RGB, alpha, depth, normals and part labels in one pass of the
Gaussian renderer (gsplat on CUDA): normals and a one-hot code of the part labels ride along as feature
channels. Subjects are centred: the posed body's bounding-box centre is the world origin.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.profiler import record_function

from humansplat.body import BodyModel, BodyParams
from humansplat.body.parts import CLASS_ID, NUM_CLASSES
from humansplat.cameras import Cameras
from humansplat.config import from_dict, to_dict
from humansplat.data import views as vw
from humansplat.data.crops import crop_cameras, region_boxes, region_vertex_masks
from humansplat.data.device import constant, to_device
from humansplat.data.dressing import BodySurface, body_surfels
from humansplat.data.loose import loose_surfels
from humansplat.data.shading import sample_lights, shade
from humansplat.data.subjects import Outfit, expose_rare_parts, place_logos, recolor_garments, sample_outfits, surfel_albedo
from humansplat.data.surfels import Surfels
from humansplat.gaussians import Gaussians, render
from humansplat.utils import pick_device

__all__ = ["EngineConfig", "SyntheticEngine", "SubjectBatch", "LABEL_CHANNELS", "render_maps"]

# Classes that get a feature channel (all but Background and the teeth, which no subject has): with
# 3 normal channels that makes 28 features, so RGB + features + depth fill gsplat's 32-channel kernel.
LABEL_CHANNELS = [c for c in range(1, NUM_CLASSES) if c not in (CLASS_ID["Lower_Teeth"], CLASS_ID["Upper_Teeth"])]


@dataclass
class EngineConfig:
    """Everything that shapes the data; ``points``/``detail`` default from the resolution."""

    resolution: int = 256
    views: int = 16
    points: int | None = None  # body surface samples per subject (default 0.3 * resolution^2)
    detail: float | None = None  # density of the loose parts' grids (default (resolution / 512)^2)
    fov: float = 39.6  # orbit views (HumanSplat's fov)
    elevation: tuple[float, float] = (-10.0, 30.0)
    fill: tuple[float, float] = (0.75, 0.92)
    input_fov: tuple[float, float] = (30.0, 65.0)
    input_elevation: tuple[float, float] = (-10.0, 25.0)
    input_azimuth_std: float = 25.0
    input_any_azimuth: float = 0.15
    input_fill: tuple[float, float] = (0.7, 0.95)
    half_body: float = 0.2
    head_only: float = 0.0  # share of input views framed as portraits (head down to the chest or chin; views.input_views)
    free_colors: float = 0.0  # share of garments coloured from the whole hue circle instead of the palette
    rare_parts: float = 0.0  # share of subjects showing bare feet, socks over bare feet, a bare midriff or a bare torso
    roll_std: float = 3.0
    years: tuple[float, float] = (4.0, 85.0)
    pose_kinds: tuple[str, ...] | None = None
    render_chunk: int = 0  # subjects per renderer call; 0: as many as fit ~4 GB of raw render output
    crop_size: int = 0  # > 0: also zoomed crops of the face and hands at this size (data/crops.py); 0: none
    backend: str = "auto"

    @property
    def body_points(self) -> int:
        return self.points or max(2000, int(0.3 * self.resolution**2))

    @property
    def loose_detail(self) -> float:
        return self.detail or max(0.02, (self.resolution / 512) ** 2)

    def to_dict(self) -> dict:
        return to_dict(self)

    @staticmethod
    def from_dict(d: dict, where: str = "data") -> "EngineConfig":
        """Strict (humansplat.config): an unknown key or a wrong type is an error, not silently dropped."""
        return from_dict(EngineConfig, d, where)


@dataclass
class SubjectBatch:
    """Subjects ready to render: Gaussians (B, N) and what describes them."""

    gaussians: Gaussians
    params: BodyParams  # world placement: body(params).vertices == vertices
    vertices: Tensor  # (B, Nv, 3)
    keypoints: Tensor  # (B, 17, 3)
    points: Tensor  # (B, P, 3) a subsample of the visible surfaces (for framing cameras)
    valid: Tensor  # (B, P)
    outfit: Outfit


def render_maps(gaussians: Gaussians, cameras: Cameras, background: float = 1.0, backend: str = "auto", chunk: int = 0) -> dict[str, Tensor]:
    """Render Gaussians whose features are [normal (3), label one-hot over LABEL_CHANNELS] into
    channels-first maps: images (B,V,3,H,W), masks (B,V,1,H,W), depths (B,V,1,H,W) (0 where the mask is
    below 1/2), normals (B,V,3,H,W) world unit normals (0 there too), labels (B,V,H,W) int64 class ids
    (-1 where the surface carries no label, e.g. scans without a body fit)."""
    B = gaussians.means.shape[0]
    V, H, W = cameras.batch_shape[-1], cameras.height, cameras.width
    chunk = chunk or max(1, int(4e9 // (V * H * W * 32 * 4)))
    ids = constant((0, *LABEL_CHANNELS), gaussians.device)
    outs: dict[str, list[Tensor]] = {k: [] for k in ("images", "masks", "depths", "normals", "labels")}
    for s in range(0, B, chunk):
        g = Gaussians(**{f.name: None if getattr(gaussians, f.name) is None else getattr(gaussians, f.name)[s : s + chunk] for f in dataclasses.fields(Gaussians)})
        with record_function("data.rasterize"):
            r = render(g, cameras[s : s + chunk].to(gaussians.device), background=background, backend=backend)
        fg = r.alpha > 0.5
        feats = r.features
        outs["images"].append(r.rgb.clamp(0, 1).permute(0, 1, 4, 2, 3))
        outs["masks"].append(r.alpha.clamp(0, 1).permute(0, 1, 4, 2, 3))
        outs["depths"].append(torch.where(fg, r.depth, 0.0).permute(0, 1, 4, 2, 3))
        outs["normals"].append(torch.where(fg, F.normalize(feats[..., :3], dim=-1), 0.0).permute(0, 1, 4, 2, 3))
        code = feats[..., 3:]
        known = code.sum(-1) > 0.25
        outs["labels"].append(torch.where(fg[..., 0], torch.where(known, ids[1:][code.argmax(-1)], -1), 0))
    return {k: torch.cat(v) for k, v in outs.items()}


class SyntheticEngine:
    """Batched synthetic subjects and their renders; the body model is loaded once."""

    def __init__(
        self,
        config: EngineConfig | None = None,
        device: str | torch.device | None = None,
        body: BodyModel | None = None,
        build_device: str | torch.device | None = None,
    ) -> None:
        """``device`` renders (default: CUDA when available); subjects are built on ``build_device``
        (default: the same). Building on the CPU makes subjects bit-identical on every machine (CUDA
        scatter-adds are not), which the benchmark set relies on."""
        from humansplat.body.pose_prior import PosePrior

        self.config = config or EngineConfig()
        self.device = pick_device(str(device) if device is not None else None)
        self.build_device = pick_device(str(build_device)) if build_device is not None else self.device
        self.body = body.to(self.build_device) if body is not None else BodyModel.load(self.build_device)
        self.surface = BodySurface(self.body)
        self.region_masks = region_vertex_masks(self.body.vertex_labels).to(self.device)  # (R, Nv): the crops' regions
        with torch.no_grad():
            self.prior = PosePrior(self.body(BodyParams.neutral(device=self.build_device)).joints[0].cpu())

    @torch.no_grad()
    def subjects(self, batch_size: int, generator: torch.Generator | None = None, pose: Tensor | None = None) -> SubjectBatch:
        """Draw and build ``batch_size`` subjects (all random choices from ``generator``, on the CPU).
        ``pose`` (B, J, 3): build them in this pose instead of the drawn one; every other draw is the
        same, so the same generator state gives the same subjects in another pose."""
        from humansplat.body.phenotypes import sample_phenotypes
        from humansplat.body.pose_prior import sample_poses

        cfg, dev, B = self.config, self.build_device, batch_size
        g = generator if generator is not None else torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,))))
        # random choices are drawn on the CPU ("data.draws") and reach the device in one copy per dtype
        with record_function("data.body"):
            with record_function("data.draws"):
                phen = sample_phenotypes(B, g, years=cfg.years)
                drawn = sample_poses(B, g, kinds=cfg.pose_kinds, prior=self.prior)
            pose = drawn if pose is None else pose.to(drawn)
            params = to_device(BodyParams(phen, pose, torch.zeros(B, 3)), dev)
            posed, rest = self.body.posed_and_rest(params)
        with record_function("data.outfits"):
            with record_function("data.draws"):
                outfit = sample_outfits(phen, g)
                recolor_garments(outfit, cfg.free_colors, g)  # these draw nothing at 0: the benchmark set stays the same
                expose_rare_parts(outfit, cfg.rare_parts, g)
            outfit = to_device(outfit, dev)
            place_logos(outfit, rest.keypoints, g)
            with record_function("data.draws"):
                lights = sample_lights(B, g)
            lights = to_device(lights, dev)
        with record_function("data.dressing"):
            tight, _, parts = body_surfels(self.surface, posed, rest, outfit, cfg.body_points, g)
        with record_function("data.loose"):
            loose = loose_surfels(posed, rest, self.surface.vertex_labels, tight.means, parts, outfit, cfg.loose_detail)
        surf = Surfels.cat([tight, loose])
        centre = (posed.vertices.amin(1) + posed.vertices.amax(1)) / 2
        surf.means = surf.means - centre[:, None]
        params.transl = params.transl - centre
        with record_function("data.colors"):
            colors = shade(surfel_albedo(surf, outfit), surf.normals, lights)
        with record_function("data.gaussians"):
            onehot = (surf.labels[..., None] == constant(tuple(LABEL_CHANNELS), dev)).to(colors.dtype)  # no range check: no sync
            gauss = Gaussians.from_activated(
                means=surf.means,
                rotations=surf.rotations(),
                scales=surf.scales3(),
                opacities=surf.opacity,
                colors=colors,
                features=torch.cat([surf.normals, onehot], -1),
            )
        stride = max(1, surf.means.shape[1] // 4096)
        points, valid = surf.means[:, ::stride], surf.opacity[:, ::stride] > 0
        return SubjectBatch(gauss, params, posed.vertices - centre[:, None], posed.keypoints - centre[:, None], points, valid, outfit)

    @torch.no_grad()
    def render(self, subjects: SubjectBatch, cameras: Cameras) -> dict[str, Tensor]:
        """Maps (see ``render_maps``) of subjects through cameras with batch shape (B, V)."""
        return render_maps(subjects.gaussians.to(self.device), cameras, 1.0, self.config.backend, self.config.render_chunk)

    def cameras(self, subjects: SubjectBatch, generator: torch.Generator) -> Cameras:
        """The input view (index 0) and the orbit views of each subject: batch (B, 1 + views), on the
        build device."""
        c = self.config
        inp = vw.input_views(subjects.points, subjects.valid, subjects.keypoints, c.resolution, generator, c.input_fov, c.input_elevation,
                             c.input_azimuth_std, c.input_any_azimuth, c.input_fill, c.half_body, c.roll_std, c.head_only)  # fmt: skip
        orbit = vw.orbit_views(subjects.points, subjects.valid, c.views, c.resolution, generator, c.fov, c.elevation, c.fill)
        return Cameras.cat([inp, orbit], dim=1)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> dict:
        """A training batch: images/masks/depths/normals/labels with views (input, orbit...), cameras
        (B, 1+V), and the body: body_vertices (B,Nv,3), body_params, body_keypoints (B,17,3)."""
        g = generator if generator is not None else torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,))))
        subjects = self.subjects(batch_size, g)
        cams = self.cameras(subjects, g).to(self.device)
        out = self.render(subjects, cams)
        dev = self.device
        out.update(cameras=cams, body_vertices=subjects.vertices.to(dev), body_params=subjects.params.to(dev), body_keypoints=subjects.keypoints.to(dev))
        if self.config.crop_size > 0:
            out.update(self.region_crops(subjects, cams, g))
        return out

    @torch.no_grad()
    def region_crops(self, subjects: SubjectBatch, cameras: Cameras, generator: torch.Generator) -> dict:
        """Crops of each of ``CROP_REGIONS`` through the input view and one orbit view drawn per subject, at
        ``crop_size`` px (data/crops.py): crop_images (B, C, 3, S, S), crop_masks (B, C, 1, S, S), crop_labels
        (B, C, S, S), crop_cameras (B, C), crop_valid (B, C) bool; C = 2 views x regions, view by view."""
        B, V = cameras.batch_shape
        orbit = torch.randint(1, V, (B,), generator=generator).to(cameras.K.device)
        rows, views = torch.arange(B, device=orbit.device)[:, None], torch.stack([torch.zeros_like(orbit), orbit], 1)
        two = Cameras(cameras.K[rows, views], cameras.w2c[rows, views], cameras.width, cameras.height)  # (B, 2)
        vertices = subjects.vertices.to(self.device)
        found = [region_boxes(vertices[:, m], two) for m in self.region_masks]
        boxes, valid = torch.stack([b for b, _ in found], 2), torch.stack([v for _, v in found], 2)  # (B, 2, R, ...)
        R = boxes.shape[2]
        per_crop = Cameras(two.K[:, :, None].expand(B, 2, R, 3, 3), two.w2c[:, :, None].expand(B, 2, R, 4, 4), two.width, two.height)
        crops = crop_cameras(per_crop, boxes, self.config.crop_size).reshape(B, 2 * R)
        maps = self.render(subjects, crops)
        return {"crop_images": maps["images"], "crop_masks": maps["masks"], "crop_labels": maps["labels"], "crop_cameras": crops,
                "crop_valid": valid.reshape(B, 2 * R)}
