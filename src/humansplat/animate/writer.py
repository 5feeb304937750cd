"""Writing an animation of a result folder: canonical.ply, posed .ply files and a video of the motion."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from humansplat.animate.motion import Motion, named_pose, subject_params
from humansplat.animate.result import skinned_result

__all__ = ["animate_result"]

ORBIT_ELEVATION = 5.0  # degrees
FOV = 30.0
RENDER_BATCH = 4  # frames per renderer call


def animate_result(result_dir: str | Path, out: str | Path, motion: Motion | None = None, pose: str | None = None,
                   frame: int | None = None, orbit: bool = False, size: int = 384, video: bool = True) -> list[Path]:  # fmt: skip
    """Repose the reconstruction in ``result_dir`` to a named ``pose`` or through a ``motion`` and write,
    atomically into ``out``: ``canonical.ply`` (zero pose), ``frames/NNNN.ply`` (every frame, or only
    ``frame``), ``motion.mp4``/``.gif`` (fixed front camera, or ``orbit``ing once over the motion) and
    ``animation.json``. Returns the files written."""
    from humansplat.gaussians import render, save_ply
    from humansplat.media import frame_points, to_uint8, turntable_cameras, write_gif, write_video
    from humansplat.utils import MANIFEST, atomic_dir, progress

    if (motion is None) == (pose is None):
        raise ValueError("animate_result: give exactly one of motion or pose")
    result, skinned, body = skinned_result(result_dir)
    if pose is not None:
        motion = Motion(named_pose(pose, body)[None], None, 1.0)
    if frame is not None and not 0 <= frame < motion.frames:
        raise ValueError(f"frame {frame} is outside the motion's {motion.frames} frames")
    params = subject_params(body, skinned.params, motion)
    picks = range(motion.frames) if frame is None else [frame]
    posed = []
    for i in progress(range(motion.frames), desc="repose", unit="frame"):
        posed += skinned.posed(body, params[i])
    out = Path(out)
    with atomic_dir(out) as tmp:
        save_ply(skinned.canonical(), tmp / "canonical.ply")
        for i in picks:
            save_ply(posed[i], tmp / "frames" / f"{i:04d}.ply")
        if video:
            allpts = torch.cat([g.means for g in posed])
            centre, extent = frame_points(allpts, torch.cat([g.opacities for g in posed]))
            n = motion.frames
            cams = turntable_cameras(n if orbit else 1, size, ORBIT_ELEVATION, FOV, centre.tolist(), fit_radius=extent)
            images = []
            with torch.no_grad():
                for i in progress(range(n), desc="render", unit="frame"):
                    images.append(to_uint8(render(posed[i], cams[i : i + 1] if orbit else cams).rgb[0]))
            fps = motion.fps if n > 1 else 1.0
            write_video(tmp / "motion.mp4", images, fps=fps)
            write_gif(tmp / "motion.gif", images, fps=min(fps, 15.0))
        info = {"source": str(result.path), "frames": motion.frames, "fps": motion.fps, "pose": pose, "written_frames": list(picks),
                "camera": "orbit" if orbit else "fixed", "params": params.to_dict()}  # fmt: skip
        (tmp / "animation.json").write_text(json.dumps(info) + "\n")
    return sorted(p for p in out.rglob("*") if p.is_file() and p.name != MANIFEST)
