"""`humansplat render`: writes a turntable video, gif and contact sheet; clear errors for bad files."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from humansplat.cli import main
from humansplat.gaussians import Gaussians, save_ply


def tiny_scene(path):
    g = torch.Generator().manual_seed(0)
    n = 40
    gs = Gaussians.from_activated(
        torch.randn(n, 3, generator=g) * 0.2 + torch.tensor([5.0, 1.0, -2.0]),  # off-centre: auto-framing must find it
        torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=-1),
        torch.rand(n, 3, generator=g) * 0.05 + 0.02,
        torch.rand(n, generator=g) * 0.5 + 0.4,
        colors=torch.rand(n, 3, generator=g) * 0.5,
    )
    return save_ply(gs, path)


def test_render_writes_mp4_gif_and_sheet(tmp_path, capsys):
    scene = tiny_scene(tmp_path / "scene.ply")
    out = tmp_path / "out"
    code = main(["render", str(scene), "-o", str(out), "--frames", "6", "--size", "33", "--sheet", "4", "--save-frames", "--device", "cpu"])
    assert code == 0
    mp4 = (out / "turntable.mp4").read_bytes()
    assert mp4[4:8] == b"ftyp" and len(mp4) > 500
    gif = Image.open(out / "turntable.gif")
    assert gif.n_frames == 6 and gif.size == (33, 33)
    sheet = np.asarray(Image.open(out / "contact_sheet.png").convert("RGB"))
    assert sheet.shape == (33 + 2 * 4, 4 * 33 + 5 * 4, 3)
    frames = sorted((out / "frames").glob("*.png"))
    assert len(frames) == 6
    first = np.asarray(Image.open(frames[0]).convert("RGB")).astype(float)
    assert (first.min(-1) < 200).mean() > 0.02  # the scene is in view (dark Gaussians on white)
    assert not list(out.glob(".*tmp"))  # nothing half-written left behind
    assert "turntable.mp4" in capsys.readouterr().out


def test_missing_file_is_one_line_exit_2(tmp_path, capsys):
    assert main(["render", str(tmp_path / "nope.ply"), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no such file" in err
    assert not (tmp_path / "o").exists()


def test_malformed_file_is_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.ply"
    bad.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty float x\nend_header\n" + b"\0" * 12)
    assert main(["render", str(bad), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing properties" in err
    assert not (tmp_path / "o").exists()
