"""`humansplat fit`: outputs on a real photo, bad files in a batch, exit codes, no partial outputs."""

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("mediapipe")
pytest.importorskip("anny")

from humansplat.cli import main
from humansplat.pipeline import stages
from humansplat.preprocess.crop import CAMERA_DISTANCE
from humansplat.commands import common
from humansplat.utils import MANIFEST

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "photos"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FILES = ("input.png", "matte.png", "keypoints.png", "body_front.png", "body_side.png", "body.json", "body.obj")
S = 256


def _photo() -> Path:
    for p in [PHOTOS / "pexels" / "pexels-zdmit-6780091.png", *sorted(EXAMPLES.glob("*.png"))]:
        if p.exists():
            return p
    pytest.skip("no pexels photo available (../shared/photos or examples/)")


def _cli(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["fit", *map(str, argv)])
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """One real photo between two bad files, in one run (the fit itself is the slow part: done once)."""
    d = tmp_path_factory.mktemp("fit")
    (d / "notes.png").write_text("not an image\n")
    (d / "empty.jpg").write_bytes(b"")
    photo = d / "person.png"
    photo.write_bytes(_photo().read_bytes())
    real, fits = stages.fit_photo, []
    stages.fit_photo = lambda *a, **k: fits.append(real(*a, **k)) or fits[-1]  # keep the result for reuse
    try:
        rc, out, err = _cli(d / "notes.png", photo, d / "empty.jpg", "-o", d / "out", "--resolution", S)
    finally:
        stages.fit_photo = real
    return d, rc, out, err, fits


def test_bad_files_do_not_stop_the_batch(batch):
    d, rc, out, err, _ = batch
    assert rc == 1
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert any("notes.png" in ln and "not an image" in ln for ln in lines)
    assert any("empty.jpg" in ln and "empty" in ln for ln in lines)
    assert any("2 of 3 failed" in ln for ln in lines)
    assert len(lines) == 3  # one line per failure plus the summary, no tracebacks
    assert sorted(p.name for p in (d / "out").iterdir()) == ["person"]  # nothing for the bad files, no temp folders
    assert "person.png" in out


def test_outputs_of_a_photo(batch):
    d, *_ = batch
    folder = d / "out" / "person"
    assert sorted(p.name for p in folder.iterdir()) == sorted((*FILES, MANIFEST))
    for name in FILES:
        if name.endswith(".png"):
            assert Image.open(folder / name).size == (S, S)
    matte = np.asarray(Image.open(folder / "matte.png"))
    assert 0.05 < (matte > 127).mean() < 0.6
    front = np.asarray(Image.open(folder / "body_front.png")).astype(float)
    photo = np.asarray(Image.open(folder / "input.png")).astype(float)
    assert np.abs(front - photo).mean() > 2  # the body was drawn over the photo
    assert (np.asarray(Image.open(folder / "body_side.png")) < 250).any(-1).mean() > 0.02


def test_body_json_rerenders_the_photo_view(batch):
    """body.json's parameters rebuild body.obj, and its camera projects the body onto the keypoints."""
    from humansplat.body import BodyModel, BodyParams
    from humansplat.cameras import Cameras, project_points

    d, *_ = batch
    folder = d / "out" / "person"
    rec = json.loads((folder / "body.json").read_text())
    cam = Cameras.from_dict(rec["camera"])
    assert (cam.width, cam.height) == (S, S)
    assert torch.allclose(cam.centers, torch.tensor([0.0, 0.0, CAMERA_DISTANCE]), atol=1e-5)
    body = BodyModel.load()
    out = body(BodyParams.from_dict(rec["body"]))
    lines = (folder / "body.obj").read_text().splitlines()
    verts = np.array([[float(x) for x in ln.split()[1:4]] for ln in lines if ln.startswith("v ")])
    assert len(verts) == body.num_vertices and sum(ln.startswith("f ") for ln in lines) == len(body.faces)
    assert np.abs(out.vertices[0].numpy() - verts).max() < 1e-4
    uv, z = project_points(out.keypoints[0], cam)
    assert (z > 0).all()
    kps = rec["fit"]["keypoints"]
    fitted = torch.tensor([k["fitted"] for k in kps.values()])
    assert torch.allclose(uv, fitted, atol=1e-2)
    seen = [k for k in kps.values() if k["confidence"] >= 0.5]
    median = float(np.median([k["error_px"] for k in seen]))
    assert median < 0.05 * S  # the fit lands on the photo's keypoints
    limbs = rec["fit"]["limb_reprojection_px"]
    assert set(limbs) == {"core", "left_arm", "right_arm", "left_leg", "right_leg"}
    assert rec["fit"]["untrusted_limbs"] == [n for n in limbs if n != "core" and n in rec["fit"]["note"]]
    assert rec["image"]["framing"] == "full_body" and rec["image"]["intrinsics_source"] == "assumed"


def test_failure_while_writing_leaves_the_previous_result(batch, monkeypatch):
    d, *_ = batch
    folder = d / "out" / "person"
    before = (folder / "body.json").read_bytes()
    # Re-run with the fit replaced by the one already made (the fit is tested above; this is about the
    # files) and the OBJ writer failing after the other files were written.
    fitted = batch[-1][0]

    def broken_obj(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(stages, "fit_photo", lambda *a, **k: fitted)
    monkeypatch.setattr("humansplat.meshes.save_obj", broken_obj)
    rc, _, err = _cli(d / "person.png", "-o", d / "out", "--resolution", S)
    assert rc == 1 and "disk full" in err
    assert (folder / "body.json").read_bytes() == before
    assert sorted(p.name for p in (d / "out").iterdir()) == ["person"]
    monkeypatch.undo()
    monkeypatch.setattr(stages, "fit_photo", lambda *a, **k: fitted)
    rc, _, _ = _cli(d / "person.png", "-o", d / "out2", "--resolution", S)
    assert rc == 0 and sorted(p.name for p in (d / "out2" / "person").iterdir()) == sorted((*FILES, MANIFEST))


def test_usage_errors_exit_2(tmp_path):
    rc, _, err = _cli(tmp_path, "-o", tmp_path / "out")  # an empty folder
    assert rc == 2 and "no images" in err
    rc, _, err = _cli(tmp_path / "x.png", "-o", tmp_path / "out", "--resolution", "8")
    assert rc == 2 and "--resolution" in err


def test_inputs_and_names(tmp_path):
    for name in ("b.png", "a.JPG", "notes.txt", ".hidden.png"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.png").write_bytes(b"x")
    paths = common.collect_images([str(tmp_path), str(tmp_path / "sub" / "a.png"), "missing.png"])
    assert [p.name for p in paths] == ["a.JPG", "b.png", "a.png", "missing.png"]
    assert common.output_names(paths) == ["a", "b", "a-2", "missing"]
