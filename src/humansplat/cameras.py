"""Camera conventions for the whole project, in one place.

- OpenCV cameras: x right, y down, z forward (into the scene). ``w2c`` maps world to camera.
- Pixel coordinates are continuous: pixel ``(i, j)`` covers ``[j, j+1) x [i, i+1)`` and its centre is
  ``(j + 0.5, i + 0.5)`` (gsplat's convention); ``cx = W / 2`` is the image centre.
- World units are metres, world +Y is up, the subject faces +Z, so the subject's left hand is at +X.
- Orbit cameras: azimuth 0 is in front of the subject (on +Z), azimuth 90 on the subject's left (+X);
  positive elevation is above, looking down.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "Cameras",
    "intrinsics_from_fov",
    "fov_from_intrinsics",
    "look_at",
    "orbit_cameras",
    "orbit_positions",
    "plucker_rays",
    "pixel_rays",
    "project_points",
    "crop_intrinsics",
    "resize_intrinsics",
]


@dataclass
class Cameras:
    """A batch of pinhole cameras sharing one image size.

    K: (..., 3, 3) intrinsics in pixels; w2c: (..., 4, 4) world-to-camera (OpenCV).
    """

    K: Tensor
    w2c: Tensor
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.K.shape[-2:] != (3, 3) or self.w2c.shape[-2:] != (4, 4):
            raise ValueError(f"Cameras: K must be (...,3,3) and w2c (...,4,4), got {tuple(self.K.shape)}, {tuple(self.w2c.shape)}")
        if self.K.shape[:-2] != self.w2c.shape[:-2]:
            raise ValueError(f"Cameras: batch shapes differ: {tuple(self.K.shape[:-2])} vs {tuple(self.w2c.shape[:-2])}")

    @property
    def batch_shape(self) -> torch.Size:
        return self.K.shape[:-2]

    def __len__(self) -> int:
        return self.K.shape[0] if self.K.dim() > 2 else 1

    def __getitem__(self, index) -> "Cameras":
        return Cameras(self.K[index], self.w2c[index], self.width, self.height)

    @property
    def c2w(self) -> Tensor:
        return torch.linalg.inv(self.w2c)

    @property
    def centers(self) -> Tensor:
        """Camera centres in world coordinates, (..., 3)."""
        R, t = self.w2c[..., :3, :3], self.w2c[..., :3, 3:]
        return -(R.transpose(-1, -2) @ t)[..., 0]

    def to(self, device=None, dtype=None) -> "Cameras":
        return Cameras(self.K.to(device, dtype), self.w2c.to(device, dtype), self.width, self.height)

    def reshape(self, *shape: int) -> "Cameras":
        return Cameras(self.K.reshape(*shape, 3, 3), self.w2c.reshape(*shape, 4, 4), self.width, self.height)

    def resized(self, width: int, height: int) -> "Cameras":
        """The same cameras rendering an image resized to (width, height)."""
        K = resize_intrinsics(self.K, width / self.width, height / self.height)
        return Cameras(K, self.w2c, width, height)

    @staticmethod
    def cat(cams: list["Cameras"], dim: int = 0) -> "Cameras":
        sizes = {(c.width, c.height) for c in cams}
        if len(sizes) != 1:
            raise ValueError(f"Cameras.cat: image sizes differ: {sizes}")
        return Cameras(torch.cat([c.K for c in cams], dim), torch.cat([c.w2c for c in cams], dim), *sizes.pop())

    def to_dict(self) -> dict:
        """JSON-friendly record (what every reconstruction report stores)."""
        return {
            "convention": "opencv",
            "width": self.width,
            "height": self.height,
            "K": self.K.detach().cpu().double().tolist(),
            "w2c": self.w2c.detach().cpu().double().tolist(),
        }

    @staticmethod
    def from_dict(d: dict) -> "Cameras":
        if d.get("convention", "opencv") != "opencv":
            raise ValueError(f"unsupported camera convention {d.get('convention')!r}")
        return Cameras(torch.tensor(d["K"], dtype=torch.float32), torch.tensor(d["w2c"], dtype=torch.float32), int(d["width"]), int(d["height"]))


def intrinsics_from_fov(fov_deg: float, width: int, height: int, axis: str = "y") -> Tensor:
    """Pinhole K with square pixels and the principal point at the image centre.

    ``fov_deg`` is the vertical field of view (``axis='y'``) or the horizontal one (``axis='x'``).
    """
    half = math.tan(math.radians(fov_deg) / 2)
    f = (height if axis == "y" else width) / (2 * half)
    return torch.tensor([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])


def fov_from_intrinsics(K: Tensor, height: int) -> float:
    """Vertical field of view in degrees."""
    return math.degrees(2 * math.atan(height / (2 * float(K[..., 1, 1].reshape(-1)[0]))))


def look_at(eye: Tensor, target: Tensor, up: Tensor | None = None) -> Tensor:
    """World-to-camera (OpenCV) matrices looking from ``eye`` to ``target``; (..., 3) -> (..., 4, 4)."""
    eye, target = torch.as_tensor(eye, dtype=torch.float32), torch.as_tensor(target, dtype=torch.float32)
    eye, target = torch.broadcast_tensors(eye, target)
    if up is None:
        up = torch.tensor([0.0, 1.0, 0.0], device=eye.device)
    up = torch.as_tensor(up, dtype=eye.dtype, device=eye.device).expand_as(eye)
    z = torch.nn.functional.normalize(target - eye, dim=-1)  # forward
    x = torch.cross(z, up, dim=-1)  # right = forward x up (y points down)
    # looking straight along +-up: pick any perpendicular right vector
    degenerate = x.norm(dim=-1, keepdim=True) < 1e-6
    e_z = torch.zeros_like(z)  # made in place: no copy from the host (a device sync on CUDA)
    e_z[..., 2] = 1.0
    alt = torch.cross(z, e_z, dim=-1)
    x = torch.nn.functional.normalize(torch.where(degenerate, alt, x), dim=-1)
    y = torch.cross(z, x, dim=-1)  # down
    R = torch.stack([x, y, z], dim=-2)  # rows: camera axes in world
    w2c = torch.zeros(*eye.shape[:-1], 4, 4, dtype=eye.dtype, device=eye.device)
    w2c[..., :3, :3] = R
    w2c[..., :3, 3] = -(R @ eye.unsqueeze(-1))[..., 0]
    w2c[..., 3, 3] = 1.0
    return w2c


def orbit_positions(azimuth_deg: Tensor, elevation_deg: Tensor, radius: Tensor | float) -> Tensor:
    """Points on a sphere around the origin: azimuth 0 on +Z, 90 on +X; elevation up from the XZ plane."""
    az = torch.deg2rad(torch.as_tensor(azimuth_deg, dtype=torch.float32))
    el = torch.deg2rad(torch.as_tensor(elevation_deg, dtype=torch.float32))
    az, el = torch.broadcast_tensors(az, el)
    r = torch.as_tensor(radius, dtype=torch.float32)
    return torch.stack([torch.cos(el) * torch.sin(az), torch.sin(el), torch.cos(el) * torch.cos(az)], -1) * r[..., None]


def orbit_cameras(
    azimuth_deg,
    elevation_deg=0.0,
    radius=2.5,
    target=(0.0, 0.0, 0.0),
    fov_deg: float = 30.0,
    size: int | tuple[int, int] = 512,
) -> Cameras:
    """Cameras on an orbit around ``target``, all looking at it. Angles broadcast against each other."""
    width, height = (size, size) if isinstance(size, int) else size
    target = torch.as_tensor(target, dtype=torch.float32)
    eye = orbit_positions(azimuth_deg, elevation_deg, radius)
    eye = eye.reshape(-1, 3) + target
    w2c = look_at(eye, target.expand_as(eye))
    K = intrinsics_from_fov(fov_deg, width, height).expand(eye.shape[0], 3, 3).clone()
    return Cameras(K, w2c, width, height)


def pixel_rays(cameras: Cameras, height: int | None = None, width: int | None = None) -> tuple[Tensor, Tensor]:
    """World-space ray origins and unit directions through pixel centres: (..., H, W, 3) each.

    With ``height``/``width`` other than the cameras' size, rays are taken at the centres of a coarser
    (or finer) grid over the same image.
    """
    H, W = height or cameras.height, width or cameras.width
    K, c2w = cameras.K, cameras.c2w
    dev, dt = K.device, K.dtype
    v, u = torch.meshgrid(
        (torch.arange(H, device=dev, dtype=dt) + 0.5) * (cameras.height / H),
        (torch.arange(W, device=dev, dtype=dt) + 0.5) * (cameras.width / W),
        indexing="ij",
    )
    fx, fy = K[..., 0, 0, None, None], K[..., 1, 1, None, None]
    cx, cy = K[..., 0, 2, None, None], K[..., 1, 2, None, None]
    d_cam = torch.stack([(u - cx) / fx, (v - cy) / fy, torch.ones_like(u).expand_as((u - cx) / fx)], -1)
    d = torch.einsum("...ij,...hwj->...hwi", c2w[..., :3, :3], d_cam)
    d = torch.nn.functional.normalize(d, dim=-1)
    o = c2w[..., None, None, :3, 3].expand_as(d)
    return o, d


def unproject_depth(cameras: Cameras, depth: Tensor) -> Tensor:
    """World points (..., H, W, 3) of camera-z ``depth`` maps (..., H, W), the cameras' batch shape first: each
    pixel centre of an H x W grid over the image (``pixel_rays``) taken out along its ray to that depth."""
    origin, direction = pixel_rays(cameras, *depth.shape[-2:])
    forward = cameras.w2c[..., 2, :3][..., None, None, :]  # camera +z axis in world
    cos = (direction * forward).sum(-1).clamp_min(1e-3)
    return origin + direction * (depth / cos)[..., None]


def plucker_rays(cameras: Cameras, height: int | None = None, width: int | None = None) -> Tensor:
    """Plücker ray maps (o x d, d) as (..., 6, H, W), the per-pixel camera encoding of the reconstructor."""
    o, d = pixel_rays(cameras, height, width)
    return torch.cat([torch.cross(o, d, dim=-1), d], -1).movedim(-1, -3)


def project_points(points: Tensor, cameras: Cameras) -> tuple[Tensor, Tensor]:
    """Project world points (..., N, 3) into cameras (...): pixel coordinates (..., N, 2) and depth (..., N)."""
    R, t = cameras.w2c[..., :3, :3], cameras.w2c[..., :3, 3]
    X = points @ R.transpose(-1, -2) + t[..., None, :]
    z = X[..., 2]
    uv = X @ cameras.K.transpose(-1, -2)
    uv = uv[..., :2] / z.clamp(min=1e-8)[..., None]
    return uv, z


def crop_intrinsics(K: Tensor, x0: float | Tensor, y0: float | Tensor) -> Tensor:
    """Intrinsics after cropping the image so that pixel (x0, y0) becomes the new origin (tensors: one per camera)."""
    K = K.clone()
    K[..., 0, 2] -= x0
    K[..., 1, 2] -= y0
    return K


def resize_intrinsics(K: Tensor, sx: float | Tensor, sy: float | Tensor | None = None) -> Tensor:
    """Intrinsics after resizing the image by factors (sx, sy) (continuous-pixel convention; tensors of shape
    (..., 1): one per camera)."""
    sy = sx if sy is None else sy
    K = K.clone()
    K[..., 0, :] *= sx
    K[..., 1, :] *= sy
    return K
