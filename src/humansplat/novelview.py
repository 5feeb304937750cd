"""The novel-view stage between body fit and reconstruction: photo (+ fitted body) -> K generated views.

    views = generate_views(generator, photo, camera, body_vertices, body=body, seed=0)   # NovelViews
    gaussians = reconstruct_with_views(reconstructor, photo, camera, views, anchors)      # (1, N)

Everything is in the reconstructor's world frame (metres, +Y up, subject centred at the origin): the
target cameras orbit the origin at ``GeneratorConfig.view_azimuths`` from the photo's azimuth, at a
distance where the body (or, template-free, a person of ``height`` metres) fills ``view_fill`` of the frame.
The body's condition maps (camera-frame normals, mask, part one-hot: ``body.conditions``' maps, splatted
with a z-buffer) are made at twice the latent resolution and averaged down to it. Without a body (``body_vertices=None``) the
generator runs template-free.

A draft generator (``GeneratorConfig.draft``) also takes the reconstructor's Gaussians of the photo
(``draft_gaussians``): rendered on white at each target camera and encoded, they are the drafts it refines
(``draft_latents``).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from humansplat.body.model import BodyModel
from humansplat.body.parts import SAPIENS_CLASSES
from humansplat.cameras import Cameras, orbit_cameras, orbit_positions, plucker_rays, project_points
from humansplat.gaussians import Gaussians, render
from humansplat.models.generator import NovelViewGenerator, ViewConditions
from humansplat.models.anchors import Anchors
from humansplat.models.reconstructor import Reconstructor

__all__ = ["NovelViews", "body_condition_maps", "draft_latents", "draft_views", "generate_views", "photo_azimuth", "reconstruct_with_views",
           "sample_latents", "target_cameras", "view_conditions"]

CONDITION_SUPERSAMPLE = 2  # condition maps are rendered at this multiple of the latent grid, then averaged
CONDITION_POINTS_PER_PIXEL = 4  # body surface samples per pixel of the condition maps (hole-free)
CONDITION_MIN_POINTS = 256
SURFACE_TOLERANCE_M = 0.02  # samples this far behind the nearest one still count as the visible surface
NEAR_M = 0.05
DEFAULT_HEIGHT_M = 1.7  # template-free: the assumed height of the person, placing the target cameras


@dataclass
class NovelViews:
    """K generated views: images (K,3,S,S) in [0,1], cameras (K,) at S x S, latents (K,C,h,w), seconds (wall)."""

    images: Tensor
    cameras: Cameras
    latents: Tensor
    seconds: float


def photo_azimuth(camera: Cameras) -> Tensor:
    """Azimuth in degrees of camera centres around the origin (0 on +Z, 90 on +X), shape of the batch."""
    c = camera.centers
    return torch.rad2deg(torch.atan2(c[..., 0], c[..., 2]))


def target_cameras(generator: NovelViewGenerator, camera: Cameras, body_vertices: Tensor | None = None,
                   height: float = DEFAULT_HEIGHT_M) -> Cameras:
    """The K default target cameras for one photo (camera: batch () or (1,)); body_vertices (Nv,3) or None."""
    from humansplat.data.views import fit_distance

    c = generator.config
    az = photo_azimuth(camera.reshape(-1)[0]).cpu() + torch.tensor(c.view_azimuths)
    el = torch.full_like(az, c.view_elevation)
    direction = orbit_positions(az, el, torch.ones_like(az))  # (K,3) unit, towards the cameras
    if body_vertices is not None:
        pts = body_vertices.detach().float().cpu()[None]
        radius = float(fit_distance(pts, torch.ones(pts.shape[:2], dtype=torch.bool), torch.zeros(1, len(az), 3), direction[None],
                                    c.view_fov, c.view_fill).amax())
    else:
        radius = height / 2 / (math.tan(math.radians(c.view_fov) / 2) * c.view_fill)
    return orbit_cameras(az, el, radius, fov_deg=c.view_fov, size=c.image_size).to(camera.K.device)


def body_condition_maps(body: BodyModel, vertices: Tensor, cameras: Cameras, latent_size: int,
                        generator: torch.Generator | None = None) -> Tensor:
    """Condition maps of bodies (B,Nv,3) seen by cameras (B,K) -> (B,K,CONDITION_CHANNELS,h,w), h = latent_size:
    camera-frame normals (OpenCV; facing the camera: z < 0), mask, part one-hot, averaged over 2x2 sub-pixels.

    The same maps as ``body.conditions.render_body_conditions`` but splatted as points with a z-buffer
    (the nearest surface sample per pixel, samples within ``SURFACE_TOLERANCE_M`` of it averaged): at these
    sizes it takes milliseconds where the Gaussian rasteriser's CPU path takes seconds (deep overdraw)."""
    from humansplat.meshes import interpolate, sample_surface, vertex_normals

    size = latent_size * CONDITION_SUPERSAMPLE
    B, K = cameras.batch_shape
    cams = cameras.resized(size, size).to(vertices.device, torch.float32)
    with torch.autocast(vertices.device.type, enabled=False):
        vertices = vertices.float()
        faces = body.faces.to(vertices.device)
        face, bary = sample_surface(vertices, faces, max(CONDITION_MIN_POINTS, CONDITION_POINTS_PER_PIXEL * size * size), generator)
        points = interpolate(vertices, faces, face, bary)  # (B,P,3)
        normals = F.normalize(interpolate(vertex_normals(vertices, faces), faces, face, bary), dim=-1)
        nearest = faces[face].gather(-1, bary.argmax(-1, keepdim=True))[..., 0]
        labels = body.vertex_labels.to(vertices.device)[nearest]  # (B,P)
        uv, z = project_points(points[:, None], cams)  # (B,K,P,2), (B,K,P)
        col, row = uv[..., 0].floor().long(), uv[..., 1].floor().long()
        inside = (z > NEAR_M) & (col >= 0) & (col < size) & (row >= 0) & (row < size)
        pixels = B * K * size * size
        view = torch.arange(B * K, device=z.device).reshape(B, K, 1)
        flat = torch.where(inside, (view * size + row.clamp(0, size - 1)) * size + col.clamp(0, size - 1), pixels)  # pixels: a dump slot
        zmin = torch.full((pixels + 1,), float("inf"), device=z.device).scatter_reduce(0, flat.flatten(), z.flatten(), "amin")
        front = inside & (z <= zmin[flat] + SURFACE_TOLERANCE_M)
        R = cams.w2c[..., :3, :3]  # (B,K,3,3)
        cam_normals = torch.einsum("bkij,bpj->bkpi", R, normals)
        onehot = F.one_hot(labels, len(SAPIENS_CLASSES)).to(z)[:, None].expand(B, K, -1, -1)
        feats = torch.cat([cam_normals, torch.ones_like(z)[..., None], onehot], -1) * front[..., None]
        acc = torch.zeros(pixels + 1, feats.shape[-1], device=z.device).index_add_(0, flat.flatten(), feats.flatten(0, 2))[:pixels]
        count = acc[:, 3:4]
        maps = torch.where(count > 0, acc / count.clamp_min(1), torch.zeros_like(acc))
        maps[:, :3] = F.normalize(maps[:, :3], dim=-1)
        maps = maps.reshape(B * K, size, size, -1).permute(0, 3, 1, 2)
        return F.avg_pool2d(maps, CONDITION_SUPERSAMPLE).unflatten(0, (B, K))


@torch.no_grad()
def draft_views(generator: NovelViewGenerator, gaussians: Gaussians, cameras: Cameras, backend: str = "auto") -> Tensor:
    """The drafts: Gaussians (B,N) rendered on white at target cameras (B,K), at the generator's image size
    (the cameras are resized to it) -> (B,K,3,S,S) in [0,1]. Rendered in float32, outside any autocast."""
    s = generator.config.image_size
    with torch.autocast(gaussians.device.type, enabled=False):
        g = dataclasses.replace(gaussians, features=None)._map(lambda t: t.float())  # colours only
        out = render(g, cameras.to(g.device, torch.float32).resized(s, s), background=1.0, backend=backend)
    return out.rgb.permute(0, 1, 4, 2, 3).clamp(0, 1)


@torch.no_grad()
def draft_latents(generator: NovelViewGenerator, gaussians: Gaussians, cameras: Cameras, backend: str = "auto") -> Tensor:
    """The drafts' latents (B,K,C,h,w) (``draft_views``, encoded by the generator's frozen autoencoder)."""
    views = draft_views(generator, gaussians, cameras, backend)
    return generator.encode(views.flatten(0, 1)).unflatten(0, views.shape[:2])


def view_conditions(generator: NovelViewGenerator, photos: Tensor, photo_cameras: Cameras, cameras: Cameras,
                    body_maps: Tensor | None, draft: Tensor | None = None) -> ViewConditions:
    """photos (B,3,H,W) with cameras (B,) at H x W; target cameras (B,K); body_maps (B,K,Cc,h,w) or None;
    draft (B,K,C,h,w): the drafts' latents (draft generators) or None."""
    c = generator.config
    h = c.latent_size
    B = photos.shape[0]
    dev = photos.device
    with torch.autocast(dev.type, enabled=False):
        photo_rays = plucker_rays(photo_cameras.to(dev, torch.float32), h, h)
        target_rays = plucker_rays(cameras.to(dev, torch.float32), h, h)
    keep = torch.ones(B, dtype=torch.bool, device=dev)
    body_keep = keep if body_maps is not None else torch.zeros_like(keep)
    return ViewConditions(generator.encode(photos), photo_rays, target_rays, body_maps, keep, body_keep, draft)


def sample_latents(generator: NovelViewGenerator, cond: ViewConditions, seed: int | torch.Generator = 0, steps: int | None = None,
                   guidance: float | None = None) -> Tensor:
    """Target latents (B,K,C,h,w); the start noise comes from a CPU generator (the same on every device)."""
    c = generator.config
    gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))
    B, K = cond.target_rays.shape[:2]
    noise = torch.randn(B, K, c.autoencoder.latent_channels, c.latent_size, c.latent_size, generator=gen)
    return generator.sample(cond, noise.to(cond.photo_latent.device), steps, guidance)


@torch.no_grad()
def generate_views(generator: NovelViewGenerator, photo: Tensor, camera: Cameras, body_vertices: Tensor | None = None,
                   steps: int | None = None, guidance: float | None = None, seed: int = 0, body: BodyModel | None = None,
                   cameras: Cameras | None = None, height: float = DEFAULT_HEIGHT_M, draft_gaussians: Gaussians | None = None,
                   render_backend: str = "auto") -> NovelViews:
    """One photo (3,H,W) in [0,1] on white, square, with its camera (batch () or (1,), H x W, world frame of
    the body) -> K generated views. ``body_vertices`` (Nv,3): the fitted body (needs ``body``, the BodyModel,
    loaded if not given); None: template-free. ``cameras`` (K,): other target cameras than the default orbit.
    ``steps`` / ``guidance`` default to the generator's config; ``seed`` fixes the sample.
    ``draft_gaussians`` (N,) or (1,N): the reconstructor's Gaussians of the photo, in the same world frame;
    a draft generator (``config.draft``) needs them (their renders at the target cameras are its drafts,
    rendered with ``render_backend``), any other generator takes none."""
    dev = next(generator.parameters()).device
    if generator.config.draft and draft_gaussians is None:
        raise ValueError("generate_views: this is a draft generator (config.draft): pass draft_gaussians, the reconstructor's "
                         "Gaussians of the photo, whose renders at the target views it refines")
    if not generator.config.draft and draft_gaussians is not None:
        raise ValueError("generate_views: draft_gaussians given, but this generator takes no drafts (config.draft is false)")
    t0 = time.perf_counter()
    camera = camera.reshape(1).to(dev, torch.float32)
    if cameras is None:
        cameras = target_cameras(generator, camera, body_vertices, height)
    cameras = cameras.to(dev, torch.float32).reshape(1, -1)
    s = generator.config.image_size
    photo = generator.resize(photo[None].to(dev))
    body_maps = None
    if body_vertices is not None:
        body = body or BodyModel.load(dev)
        body_maps = body_condition_maps(body, body_vertices.to(dev).float()[None], cameras, generator.config.latent_size,
                                        torch.Generator(dev).manual_seed(int(seed)))
    draft = None
    if draft_gaussians is not None:
        g = draft_gaussians.to(dev)
        g = g if len(g.batch_shape) else g._map(lambda t: t[None])  # (1, N)
        draft = draft_latents(generator, g, cameras, render_backend)
    cond = view_conditions(generator, photo, camera.resized(s, s), cameras.resized(s, s), body_maps, draft)
    latents = sample_latents(generator, cond, seed, steps, guidance)[0]
    images = generator.decode(latents)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return NovelViews(images, cameras.reshape(-1).resized(s, s), latents, time.perf_counter() - t0)


def reconstruct_with_views(model: Reconstructor, photo: Tensor, camera: Cameras, views: NovelViews | None,
                           anchors: Anchors) -> Gaussians:
    """The reconstructor on the photo (3,H,W) with its camera (batch () or (1,)) plus the generated views as
    extra inputs (view 0 the photo, then the K views); ``views=None``: the photo alone. Anchors for batch 1.
    Returns Gaussians (1, N): the photo's per-pixel Gaussians first, then each view's, then the anchors'."""
    s = model.config.image_size
    dev = photo.device
    camera = camera.reshape(1).to(dev, torch.float32)
    image = photo[None].float()
    if image.shape[-2:] != (s, s):
        image = F.interpolate(image, size=(s, s), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
        camera = camera.resized(s, s)
    if views is None:
        return model(image[None], camera.reshape(1, 1), anchors)
    extra = views.images.to(dev).float()
    extra_cams = views.cameras.to(dev, torch.float32)
    if extra.shape[-2:] != (s, s):
        extra = F.interpolate(extra, size=(s, s), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
        extra_cams = extra_cams.resized(s, s)
    images = torch.cat([image, extra])[None]
    return model(images, Cameras.cat([camera, extra_cams]).reshape(1, -1), anchors)
