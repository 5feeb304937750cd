"""`humansplat reconstruct` end to end on CPU with a tiny untrained reconstructor: outputs, bad files, API."""

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from humansplat.body import BodyModel, BodyParams
from humansplat.cameras import Cameras, project_points
from humansplat.cli import main
from humansplat.gaussians import load_ply, render
from humansplat.keypoints import COCO_KEYPOINTS, VISIBLE_CONFIDENCE

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "examples" / "pexels-zdmit-6780091.png"
BODY_PHOTO = ROOT / "examples" / "pexels-photo-6311555-removebg.png"  # a photo whose body fit is trusted
OUTPUTS = {"gaussians.ply", "gaussians.splat", "turntable.mp4", "turntable.gif", "views.png", "parts.png", "report.json"}


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    from humansplat.body import BodyModel, BodyParams
    from humansplat.models import Reconstructor, ReconstructorConfig

    cfg = json.loads((ROOT / "configs" / "tiny.json").read_text())["model"]
    torch.manual_seed(0)
    model = Reconstructor(Reconstructor.config_from_dict(cfg, "tiny"))
    model.set_anchor_template(BodyModel.load()(BodyParams.neutral()).vertices[0])
    return model.save_pretrained(tmp_path_factory.mktemp("weights") / "tiny")


def photo_variants(folder: Path) -> dict[str, Path]:
    """The same person as CMYK JPEG, 16-bit PNG, EXIF-rotated and huge JPEGs, plus broken and unusable files."""
    folder.mkdir(parents=True, exist_ok=True)
    rgba = Image.open(PHOTO)
    rgb = Image.new("RGB", rgba.size, "white")
    rgb.paste(rgba, mask=rgba.getchannel("A"))
    files = {}
    files["cmyk"] = folder / "cmyk.jpg"
    rgb.convert("CMYK").save(files["cmyk"], quality=90)
    files["sixteen"] = folder / "sixteen.png"
    Image.fromarray((np.asarray(rgb.convert("L"), np.uint16) * 257)).save(files["sixteen"])
    files["rotated"] = folder / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: viewers turn it 90 degrees clockwise
    rgb.transpose(Image.Transpose.ROTATE_90).save(files["rotated"], exif=exif.tobytes(), quality=90)
    files["huge"] = folder / "huge.jpg"  # 8000 px tall: loaded downscaled, reconstructed as usual
    rgb.resize((rgb.width * 8000 // rgb.height, 8000)).save(files["huge"], quality=80)
    files["corrupt"] = folder / "corrupt.png"
    buf = io.BytesIO()
    rgb.save(buf, "PNG")
    files["corrupt"].write_bytes(buf.getvalue()[:400])
    files["empty"] = folder / "empty.jpg"
    files["empty"].write_bytes(b"")
    files["text"] = folder / "notes.png"
    files["text"].write_text("not an image")
    files["tiny"] = folder / "tiny.png"
    rgb.resize((20, 30)).save(files["tiny"])
    files["blank"] = folder / "blank.png"  # an image with nobody in it
    Image.new("RGB", (256, 256), (90, 140, 200)).save(files["blank"])
    return files


def test_reconstruct_batch_good_and_bad_files(tmp_path, weights, capsys):
    files = photo_variants(tmp_path / "in")
    out = tmp_path / "out"
    args = [str(files[k]) for k in ("corrupt", "cmyk", "empty", "text", "sixteen", "tiny", "rotated", "blank", "huge")]
    code = main(["reconstruct", *args, "-o", str(out), "--weights", str(weights), "--device", "cpu", "--frames", "4", "--size", "64"])
    err = capsys.readouterr().err
    assert code == 1
    made = sorted(p.name for p in out.iterdir())
    assert made == ["cmyk", "huge", "rotated", "sixteen"]  # nothing at all for the failures, no temporary folders
    for name in made:
        assert OUTPUTS <= {p.name for p in (out / name).iterdir()}
    bad_lines = [line for line in err.splitlines() if line.startswith("humansplat reconstruct:")]
    assert len(bad_lines) == 6  # five unusable files, one blank photo, then the summary line
    for key in ("corrupt", "empty", "text", "tiny", "blank"):
        assert sum(files[key].name in line for line in bad_lines) == 1
    assert "5 of 9 failed" in bad_lines[-1]
    report = json.loads((out / "huge" / "report.json").read_text())
    assert report["inputs"]["scale"] < 0.3  # the 8000 px photo was worked on at a bounded size


def test_report_camera_reproduces_the_photo_view(tmp_path, weights):
    assert main(["reconstruct", str(PHOTO), "-o", str(tmp_path), "--weights", str(weights), "--device", "cpu", "--frames", "2", "--size", "64"]) == 0
    folder = tmp_path / PHOTO.stem
    report = json.loads((folder / "report.json").read_text())
    assert report["structure_prior"] in ("body", "template_free")
    assert set(report["timings_s"]) >= {"preprocess", "body_fit", "reconstruct"}
    assert len(report["weights_sha256"]) == 64
    cam = Cameras.from_dict(report["input_camera"])
    assert (cam.width, cam.height) == (512, 512)
    g = load_ply(folder / "gaussians.ply")
    assert g.num == report["num_gaussians"]
    # every Gaussian sits in the photo's view frustum of the recorded camera (pixel-aligned ones on their
    # pixel rays, anchors placed from the body or the matte)
    uv, z = project_points(g.means, cam[0])
    inside = (z > 0) & (uv >= 0).all(-1) & (uv[:, 0] < cam.width) & (uv[:, 1] < cam.height)
    assert inside.float().mean() > 0.9
    assert render(g, cam.resized(64, 64)).alpha.max() > 0


def test_pipeline_is_a_list_of_named_stages(weights):
    """Each stage reports its name, time and output as it ends; a stage can be skipped; the body given to the
    report is the one the Gaussians were built on (template-free or not)."""
    from humansplat.pipeline import Pipeline
    from humansplat.preprocess import preprocess

    inputs = preprocess(BODY_PHOTO, resolution=128)
    pipe = Pipeline(weights, "cpu", refine_steps=2)
    events = []
    result = pipe(inputs, on_stage=events.append)
    assert [e.name for e in events] == ["body_fit", "reconstruct", "crop", "refine"]  # preprocessing was given
    assert [e.index for e in events] == [0, 1, 2, 3] and all(e.total == 4 for e in events)
    assert all(e.seconds == result.timings[e.name] for e in events)
    assert events[1].output is not None and events[-1].output.num == result.gaussians.num
    pipe.skip.add("refine")
    assert "refine" not in pipe(inputs).timings
    # one world frame: the body posed from the report's parameters is the body the anchors came from, centred
    # on the origin, and seen by the report's camera it lands on the photo's keypoints as the fit did
    report = json.loads(json.dumps(result.report()))
    assert report["structure_prior"] == "body" and report["kind"] == "humansplat-reconstruction"
    fit = report["body_fit"]
    posed = BodyModel.load()(BodyParams.from_dict(fit["params"]))
    assert torch.allclose(posed.vertices[0], result.body_vertices, atol=1e-4)
    lo, hi = posed.vertices[0].amin(0), posed.vertices[0].amax(0)
    assert ((lo + hi) / 2).norm() < 0.01
    offset = torch.tensor(report["world_offset"])
    assert torch.allclose(result.fit.output.vertices[0] - offset, posed.vertices[0], atol=1e-4)
    cam = Cameras.from_dict(report["input_camera"])
    uv, _ = project_points(posed.keypoints[0], cam[0])
    kps = torch.tensor([report["inputs"]["keypoints"][n][:2] for n in COCO_KEYPOINTS])
    seen = torch.tensor([report["inputs"]["keypoints"][n][2] for n in COCO_KEYPOINTS]) >= VISIBLE_CONFIDENCE
    assert abs(float((uv - kps).norm(dim=-1)[seen].mean()) - fit["reprojection_px"]) < 0.5
    assert fit["untrusted_limbs"] == list(result.untrusted_limbs)


def test_untrusted_limb_gets_no_anchors(weights):
    """A limb the fit misses (one of at most MAX_UNTRUSTED_LIMBS) keeps the body prior for the rest: its anchors
    are dropped and the reconstruction runs with the others, so the photo's pixels alone shape that limb."""
    from humansplat.body.limbs import limb_vertices
    from humansplat.pipeline import Pipeline, stages
    from humansplat.preprocess import preprocess

    inputs = preprocess(BODY_PHOTO, resolution=128)
    pipe = Pipeline(weights, "cpu", refine_steps=0)
    fitted = stages.fit_photo(inputs, pipe.body, iters=40)
    whole = stages.place_in_world(pipe.model, pipe.body, inputs, fitted)
    fitted.untrusted_limbs = ("left_leg",)
    part = stages.place_in_world(pipe.model, pipe.body, inputs, fitted)
    on_leg = limb_vertices(whole.anchors.labels[0], ["left_leg"])
    assert whole.structure_prior == part.structure_prior == "body" and on_leg.any()
    assert part.anchors.xyz.shape[1] == whole.anchors.xyz.shape[1] - int(on_leg.sum())
    assert not limb_vertices(part.anchors.labels[0], ["left_leg"]).any()
    assert torch.equal(part.body_vertices, whole.body_vertices)  # the reported body keeps the leg
    fewer = stages.reconstruct_gaussians(pipe.model, inputs, part)
    assert fewer.num == stages.reconstruct_gaussians(pipe.model, inputs, whole).num - int(on_leg.sum()) * pipe.model.config.gaussians_per_anchor


def test_python_api_returns_gaussians(weights):
    import humansplat

    g = humansplat.reconstruct(PHOTO, device="cpu", weights=weights)
    assert g.batch_shape == () and g.num > 100
    assert torch.isfinite(g.means).all()


def test_missing_weights_is_a_clear_error(tmp_path, capsys):
    code = main(["reconstruct", str(PHOTO), "-o", str(tmp_path / "o"), "--weights", str(tmp_path / "nothing")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no weights in" in err[0]
    assert not (tmp_path / "o").exists()


def test_half_body_is_cut_where_the_photo_ends(tmp_path, weights):
    """A photo cut at the waist is centred on a padded square crop; the reconstruction keeps only what
    projects inside the photo itself, so nothing is made up in the padding below the cut."""
    from humansplat.pipeline import Pipeline
    from humansplat.preprocess import preprocess

    rgba = Image.open(PHOTO)
    top = rgba.crop((0, 0, rgba.width, rgba.height * 45 // 100))
    path = tmp_path / "half.png"
    top.save(path)
    inputs = preprocess(path, resolution=128)
    u0, v0, u1, v1 = inputs.photo_box
    assert inputs.is_partial and v1 < 120 and u1 - u0 > 60  # the photo ends above the crop's bottom edge
    result = Pipeline(weights, "cpu", refine_steps=0)(inputs)
    uv, z = project_points(result.gaussians.means, result.camera)
    assert result.cropped_to_view and result.gaussians.num > 0 and (z > 0).all()
    assert float(uv.reshape(-1, 2)[:, 1].max()) <= v1 + 0.005 * 128 + 1e-3


def test_seeded_pipeline_with_full_refinement_is_bit_identical(weights):
    """Two pipelines with the same seed give the same Gaussians to the bit on CPU, refinement included."""
    from humansplat.pipeline import Pipeline
    from humansplat.preprocess import preprocess

    inputs = preprocess(PHOTO, resolution=512)
    a, b = (Pipeline(weights, "cpu", seed=0, fit_iters=12, refine_steps=4, refine_mode="full")(inputs) for _ in range(2))
    assert a.meta["refine_mode"] == "full" and "input_view_psnr_refined_db" in a.meta
    for name in ("means", "quats", "log_scales", "opacity_logits", "sh", "features"):
        assert torch.equal(getattr(a.gaussians, name), getattr(b.gaussians, name)), name
