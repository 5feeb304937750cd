"""`humansplat view`: the static site (scene files, part colours, frames) and, in headless Chromium, that
the splat is drawn in the subject's colours, the part toggle works and no request leaves the machine."""

import json
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from browser import CHROMIUM, Browser, drawn_fraction
from humansplat.cli import main
from humansplat.gaussians import Gaussians, save_ply
from humansplat.gaussians.io import SPLAT_DTYPE
from humansplat.gaussians.rasterize_torch import quat_to_rotmat
from humansplat.gaussians.sh import rgb_to_sh
from humansplat.viewer import build_site, serve
from humansplat.viewer.site import viewer_frame
from test_reconstruct import weights  # noqa: F401 - the tiny untrained reconstructor fixture

RED = (0.85, 0.1, 0.1)
SCREENSHOTS = os.environ.get("HUMANSPLAT_SCREENSHOTS")  # a folder: keep the browser tests' screenshots there


def red_box(features: int, n: int = 12) -> Gaussians:
    """A 0.5 x 1.7 x 0.3 m box of opaque red Gaussians centred at the origin (a stand-in for a person)."""
    axes = [torch.linspace(-0.25, 0.25, n), torch.linspace(-0.85, 0.85, 3 * n), torch.linspace(-0.15, 0.15, n // 2)]
    means = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    N = len(means)
    sh = torch.zeros(N, 1, 3)
    sh[:, 0] = rgb_to_sh(torch.tensor(RED))
    return Gaussians(means, torch.tensor([1.0, 0, 0, 0]).expand(N, 4).clone(), torch.full((N, 3), -3.2), torch.full((N,), 4.0), sh,
                     torch.randn(N, features, generator=torch.Generator().manual_seed(0)))


@pytest.fixture(scope="module")
def result(tmp_path_factory, weights) -> Path:  # noqa: F811
    from humansplat.models import Reconstructor

    folder = tmp_path_factory.mktemp("result") / "box"
    folder.mkdir()
    g = red_box(Reconstructor.from_pretrained(weights).config.feature_dim)
    save_ply(g, folder / "gaussians.ply")
    (folder / "animation").mkdir()
    for i in range(3):
        save_ply(Gaussians(g.means + torch.tensor([0.1 * i, 0, 0]), g.quats, g.log_scales, g.opacity_logits, g.sh, g.features),
                 folder / "animation" / f"{i:04d}.ply")
    return folder


def read_splat(path: Path):
    return np.frombuffer(path.read_bytes(), SPLAT_DTYPE)


def test_site_has_colours_parts_and_frames(result, weights, tmp_path):  # noqa: F811
    site = tmp_path / "site"
    assert main(["view", str(result), "--out", str(site), "--weights", str(weights)]) == 0
    manifest = json.loads((site / "scene" / "scene.json").read_text())
    assert manifest["num_gaussians"] == 12 * 36 * 6 and manifest["parts"] and len(manifest["frames"]) == 3
    assert manifest["parts_note"] == "" and manifest["animation_note"] == ""
    colour, parts = read_splat(site / "scene" / manifest["colour"]), read_splat(site / "scene" / manifest["parts"])
    assert (colour["rgba"][:, 0] > 200).all() and (colour["rgba"][:, 1] < 40).all()  # red
    assert len(parts) == len(colour) and (parts["position"] == colour["position"]).all()
    assert not (parts["rgba"][:, :3] == colour["rgba"][:, :3]).all(-1).all()  # recoloured by part
    assert colour["position"][:, 1].min() == pytest.approx(-0.85, abs=1e-5)  # turned for gsplat.js: +Y down
    for entry in manifest["frames"]:
        assert (site / "scene" / "frames" / entry["colour"]).is_file() and (site / "scene" / "frames" / entry["parts"]).is_file()
    vendored = site / "vendor" / "gsplat"
    assert (vendored / "LICENSE").is_file() and (vendored / "gsplat.js").stat().st_size < 200_000
    assert "http" not in (site / "index.html").read_text() + (site / "viewer.js").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name != "site"]  # no temporary folders left


def test_site_without_ply_or_frames(result, tmp_path, capsys):
    bare = tmp_path / "bare"
    bare.mkdir()
    assert main(["view", str(bare), "--out", str(tmp_path / "x")]) == 2
    assert "no gaussians.ply or gaussians.splat" in capsys.readouterr().err
    shutil.copy(result / "gaussians.ply", bare)
    manifest = build_site(bare, tmp_path / "y", model=None)
    assert "parts" not in manifest and "frames" not in manifest
    assert manifest["parts_note"] and "not animated" in manifest["animation_note"]
    assert main(["view", str(tmp_path / "missing")]) == 2


def test_viewer_frame_is_a_half_turn_about_x():
    g = red_box(2, n=2)
    g.quats = torch.nn.functional.normalize(torch.randn(g.num, 4, generator=torch.Generator().manual_seed(1)), dim=-1)
    t = viewer_frame(g)
    flip = torch.diag(torch.tensor([1.0, -1.0, -1.0]))
    assert torch.allclose(t.means, g.means @ flip)
    assert torch.allclose(quat_to_rotmat(t.rotations), flip @ quat_to_rotmat(g.rotations), atol=1e-5)  # R' = Rx(180) R


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_viewer_draws_the_splat_offline(result, weights, tmp_path):  # noqa: F811
    site = build_site(result, tmp_path / "site", weights) and tmp_path / "site"
    server = serve(site, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with Browser(640, 480) as b:
            b.open(f"http://127.0.0.1:{server.server_address[1]}/")
            b.wait_for("window.humansplatViewer && window.humansplatViewer.ready", 90)
            time.sleep(2)  # the sort worker and fade-in
            b.eval("document.getElementById('play').click()")  # pause the animation
            assert b.eval("window.humansplatViewer.playing") is False
            shot = b.screenshot()
            middle = (270, 190, 370, 290)
            assert drawn_fraction(shot, middle) > 0.5
            r, g, bl = np.asarray(shot.crop(middle), float).reshape(-1, 3).mean(0)
            assert r > 150 and g < 90 and bl < 90, (r, g, bl)  # the subject's red
            b.eval("document.getElementById('parts').click()")
            time.sleep(1)
            parts = b.screenshot()
            assert drawn_fraction(parts, middle) > 0.5 and (np.asarray(parts.crop(middle)) != np.asarray(shot.crop(middle))).any()
            assert b.outside_requests() == [] and any(u.endswith(".splat") for u in b.requests)
            if SCREENSHOTS:
                shot.save(Path(SCREENSHOTS) / "viewer-test.png")
    finally:
        server.shutdown()
