"""Photo preprocessing: robust loading, person detection, crop + intrinsics."""

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from humansplat.cameras import (
    Cameras,
    crop_intrinsics,
    intrinsics_from_fov,
    look_at,
    project_points,
    resize_intrinsics,
)
from humansplat.preprocess import (
    ImageError,
    PersonNotFound,
    load_image,
    preprocess,
    square_crop,
)
from humansplat.keypoints import COCO_KEYPOINTS
from humansplat.preprocess.person import MEDIAPIPE_TO_COCO17, framing_of

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "photos"
PEXELS = PHOTOS / "pexels" / "pexels-zdmit-6780091.png"
EXAMPLE = Path(__file__).resolve().parents[1] / "examples"

try:
    import mediapipe  # noqa: F401

    HAVE_MP = True
except ImportError:
    HAVE_MP = False
needs_mp = pytest.mark.skipif(not HAVE_MP, reason="mediapipe (the 'photo' extra) is not installed")


def _photo() -> Path:
    for p in [PEXELS, *sorted(EXAMPLE.glob("*.png"))]:
        if p.exists():
            return p
    pytest.skip("no pexels photo available (../shared/photos or examples/)")


def _gradient(w=120, h=90) -> np.ndarray:
    x, y = np.meshgrid(np.linspace(0, 1, w), np.linspace(0, 1, h))
    return (np.stack([x, y, 1 - x], -1) * 255).round().astype(np.uint8)


def _png16_rgb(a: np.ndarray) -> bytes:
    """A 16-bit RGB PNG written by hand (Pillow cannot write one)."""
    h, w, _ = a.shape
    raw = b"".join(b"\x00" + a[i].astype(">u2").tobytes() for i in range(h))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


# ------------------------------------------------------------------------------------------------ loading


def test_exif_orientation_is_applied(tmp_path):
    a = np.full((90, 120, 3), 255, np.uint8)
    a[:30, :40] = (255, 0, 0)  # red block at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # display = stored rotated 90 degrees clockwise
    Image.fromarray(a).save(tmp_path / "r.jpg", quality=95, exif=exif.tobytes())
    img = load_image(tmp_path / "r.jpg")
    assert img.size == (90, 120) and img.original_size == (90, 120)
    assert img.rgb[10, 80, 0] > 0.9 and img.rgb[10, 80, 1] < 0.2  # now at the top-right
    assert img.rgb[10, 10].min() > 0.9  # top-left is white


def test_rgba_alpha_is_the_matte(tmp_path):
    a = np.zeros((90, 120, 4), np.uint8)
    a[20:70, 40:80] = (10, 200, 30, 255)
    Image.fromarray(a).save(tmp_path / "c.png")
    img = load_image(tmp_path / "c.png")
    assert img.alpha is not None and img.alpha.shape == (90, 120)
    assert img.alpha[45, 60] == 1.0 and img.alpha[5, 5] == 0.0
    assert np.allclose(img.rgb[45, 60], np.array([10, 200, 30]) / 255, atol=1e-6)


def test_nearly_opaque_alpha_is_flattened_on_white(tmp_path):
    a = np.dstack([_gradient(), np.full((90, 120), 255, np.uint8)])
    a[:, 0, 3] = 0  # a one-pixel transparent border is not a matte
    Image.fromarray(a).save(tmp_path / "o.png")
    img = load_image(tmp_path / "o.png")
    assert img.alpha is None
    assert np.allclose(img.rgb[:, 0], 1.0) and np.allclose(img.rgb[5, 60], _gradient()[5, 60] / 255, atol=1e-6)


def test_grayscale_and_palette(tmp_path):
    g = _gradient()[..., 0]
    Image.fromarray(g, "L").save(tmp_path / "g.png")
    img = load_image(tmp_path / "g.png")
    assert img.rgb.shape == (90, 120, 3) and np.allclose(img.rgb[..., 0], g / 255) and np.allclose(img.rgb[..., 2], g / 255)
    idx = np.ones((90, 120), np.uint8)
    idx[:, :40] = 0  # index 0 is transparent
    idx[60:, 60:] = 2
    p = Image.fromarray(idx, "P")
    p.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * 759)
    p.save(tmp_path / "p.png", transparency=0)
    img = load_image(tmp_path / "p.png")
    assert img.alpha is not None and np.all(img.alpha[:, :40] == 0) and np.all(img.alpha[:, 40:] == 1)
    assert np.allclose(img.rgb[10, 50], (1, 0, 0)) and np.allclose(img.rgb[80, 100], (0, 0, 1))


def test_16bit_png_and_tiff(tmp_path):
    rng = np.random.default_rng(0)
    g = rng.integers(0, 65536, (90, 120), dtype=np.uint16)
    Image.fromarray(g).save(tmp_path / "g16.png")
    Image.fromarray(g).save(tmp_path / "g16.tif")
    for name in ("g16.png", "g16.tif"):
        img = load_image(tmp_path / name)
        assert np.allclose(img.rgb[..., 1], g / 65535.0, atol=1e-6), name
    rgb16 = rng.integers(0, 65536, (90, 120, 3), dtype=np.uint16)
    (tmp_path / "c16.png").write_bytes(_png16_rgb(rgb16))
    img = load_image(tmp_path / "c16.png")
    assert np.abs(img.rgb - rgb16 / 65535.0).max() <= 1 / 255 + 1e-6


def test_cmyk_jpeg(tmp_path):
    Image.new("CMYK", (120, 90), (255, 0, 0, 0)).save(tmp_path / "c.jpg", quality=95)  # pure cyan
    img = load_image(tmp_path / "c.jpg")
    assert img.rgb[45, 60, 0] < 0.1 and img.rgb[45, 60, 1:].min() > 0.9


def test_tiny_image_is_refused(tmp_path):
    Image.fromarray(_gradient(100, 40)).save(tmp_path / "t.png")
    with pytest.raises(ImageError, match="too small"):
        load_image(tmp_path / "t.png")


def test_huge_image_is_downscaled_with_its_scale(tmp_path):
    Image.fromarray(np.zeros((2800, 4200, 3), np.uint8) + 128).save(tmp_path / "h.jpg", quality=50)
    img = load_image(tmp_path / "h.jpg")
    assert img.original_size == (4200, 2800) and max(img.size) == 2048
    assert img.scale == pytest.approx(2048 / 4200)
    a = np.zeros((100, 4200, 4), np.uint8)
    a[:, 2000:2200] = 255
    img = load_image(a)
    assert img.size == (2048, 49) or img.size == (2048, 48)  # 100 * 2048/4200 = 48.8
    assert img.alpha is not None and img.alpha[:, 1024].min() > 0.99 and img.alpha[:, 10].max() == 0


@pytest.mark.parametrize("kind", ["corrupt", "truncated", "empty", "text", "missing"])
def test_bad_files_give_one_line_errors(tmp_path, kind):
    buf = io.BytesIO()
    Image.fromarray(_gradient(300, 200)).save(buf, "PNG")
    path = tmp_path / "bad.png"
    if kind == "corrupt":
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8)))
    elif kind == "truncated":
        path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path = tmp_path / "notes.jpg"
        path.write_text("this is not an image\n")
    with pytest.raises(ImageError) as e:
        load_image(path)
    assert isinstance(e.value, ValueError)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg


def test_array_inputs():
    assert load_image(_gradient()).rgb.shape == (90, 120, 3)
    assert np.allclose(load_image(np.full((80, 80), 65535, np.uint16)).rgb, 1.0)
    with pytest.raises(ImageError):
        load_image(np.zeros((80, 80, 2), np.uint8))
    with pytest.raises(ImageError):
        load_image(np.full((80, 80, 3), np.nan, np.float32))


# ------------------------------------------------------------------------------------ crop + intrinsics


@pytest.mark.parametrize("center,side", [((300.0, 200.0), 250.0), ((40.0, 420.0), 333.0)])
def test_crop_intrinsics_follow_the_pixels(center, side):
    """A 3D point drawn as a dot with the original K is found where the crop's K projects it."""
    W, H, S = 640, 480, 128
    K = intrinsics_from_fov(50.0, W, H, axis="x")
    cam = Cameras(K[None], look_at(torch.tensor([[0.0, 0.0, 3.0]]), torch.zeros(1, 3)), W, H)
    u, v, d = center[0] + 0.21 * side, center[1] - 0.13 * side, 2.7  # a point inside the crop, 2.7 m away
    X_cam = torch.tensor([(u - K[0, 2]) / K[0, 0] * d, (v - K[1, 2]) / K[1, 1] * d, d, 1.0])
    X = (cam.c2w[0] @ X_cam)[None, None, :3]
    uv, _ = project_points(X, cam)
    assert torch.allclose(uv[0, 0], torch.tensor([u, v]), atol=1e-3)
    yy, xx = np.mgrid[0:H, 0:W] + 0.5
    blob = np.exp(-((xx - u) ** 2 + (yy - v) ** 2) / (2 * 4.0**2)).astype(np.float32)
    rgb = np.repeat((1.0 - blob)[..., None], 3, -1)
    image, mask, (x0, y0, s) = square_crop(rgb, np.ones((H, W), np.float32), center, side, S)
    K2 = resize_intrinsics(crop_intrinsics(K, x0, y0), S / s)
    uv2, _ = project_points(X, Cameras(K2[None], cam.w2c, S, S))
    dark = (1.0 - image[0]).numpy()
    gy, gx = np.mgrid[0:S, 0:S] + 0.5
    found = np.array([(dark * gx).sum(), (dark * gy).sum()]) / dark.sum()
    assert np.abs(found - uv2[0, 0].numpy()).max() < 0.25
    assert 0 < mask.mean() <= 1 and image.shape == (3, S, S)


def test_square_crop_pads_white_outside_the_image():
    rgb = np.zeros((100, 100, 3), np.float32)
    image, mask, (x0, y0, s) = square_crop(rgb, np.ones((100, 100), np.float32), (0.0, 50.0), 100, 100)
    assert (x0, y0, s) == (-50, 0, 100)
    assert torch.all(image[:, :, :45] == 1.0) and torch.all(mask[:, :, :45] == 0.0)
    assert torch.all(image[:, :, 55:] == 0.0) and torch.all(mask[:, :, 55:] == 1.0)


def _kp(**named) -> tuple[np.ndarray, np.ndarray]:
    """COCO-17 keypoints placed by name (x, y, confidence); the rest unseen at the origin."""
    kp, conf = np.zeros((17, 2), np.float32), np.zeros(17, np.float32)
    for name, (x, y, c) in named.items():
        i = COCO_KEYPOINTS.index(name)
        kp[i], conf[i] = (x, y), c
    return kp, conf


HEAD = dict(nose=(50, 20, 1), left_eye=(54, 17, 1), right_eye=(46, 17, 1), left_ear=(58, 19, 1), right_ear=(42, 19, 1))
UPPER = dict(HEAD, left_shoulder=(62, 40, 1), right_shoulder=(38, 40, 1), left_hip=(58, 80, 1), right_hip=(42, 80, 1))


def test_framing_from_visible_keypoints():
    kp, c = _kp(**HEAD)
    assert framing_of(c) == "head_only"
    kp, c = _kp(**UPPER)
    assert framing_of(c) == "half_body"
    kp, c = _kp(**UPPER, left_ankle=(55, 190, 0.9))
    assert framing_of(c) == "full_body"


def test_framing_heights_follow_the_engine_framing():
    """From true keypoints and the photo's camera: whole bodies read 1.7 m; portraits never do, and mostly
    read as head only; half-body shots read half body unless a knee is still in the frame (as a photo would)."""
    from humansplat.data import EngineConfig, SyntheticEngine
    from humansplat.preprocess.framing import VISIBLE_HEIGHT_M, framing_heights

    def heights(**kw):
        engine = SyntheticEngine(EngineConfig(resolution=64, views=1, **kw), torch.device("cpu"))
        b = engine.sample(8, torch.Generator().manual_seed(0))
        return framing_heights(b["body_keypoints"], b["cameras"][:, 0])

    assert (heights() == VISIBLE_HEIGHT_M["full_body"]).all()
    portraits = heights(head_only=1.0)
    assert (portraits < VISIBLE_HEIGHT_M["full_body"]).all() and (portraits == VISIBLE_HEIGHT_M["head_only"]).sum() >= 5
    half = heights(half_body=1.0)
    assert (half != VISIBLE_HEIGHT_M["head_only"]).all() and (half == VISIBLE_HEIGHT_M["half_body"]).any()


def test_framing_reads_the_matte():
    mask = np.zeros((200, 100), np.float32)
    # a gown: legs unseen (or barely), the matte goes on to 180 px, a photo of 200 px -> full body
    kp, c = _kp(**UPPER, left_ankle=(55, 170, 0.05))
    mask[10:180, 30:70] = 1
    assert framing_of(c) == "half_body" and framing_of(c, kp, mask) == "full_body"
    # the same matte running off the bottom edge: legs cut by the photo -> half body
    cut = mask.copy()
    cut[95:] = 1
    kp, c = _kp(**UPPER)
    assert framing_of(c, kp, cut[:100]) == "half_body"
    # an ankle hinted (low confidence) on the matte inside the photo -> full body; outside it -> not
    kp, c = _kp(**UPPER, right_ankle=(45, 150, 0.2))
    assert framing_of(c, kp, cut) == "full_body"
    kp, c = _kp(**UPPER, right_ankle=(45, 150, 0.2))
    assert framing_of(c, kp, cut[:120]) == "half_body"
    # shoulders seen at the bottom edge of a head shot (the matte ends at the neck) -> head only
    kp, c = _kp(**{k: v for k, v in UPPER.items() if "hip" not in k})
    head = np.zeros((45, 100), np.float32)
    head[5:45, 35:65] = 1
    assert framing_of(c) == "half_body" and framing_of(c, kp, head) == "head_only"
    chest = np.zeros((120, 100), np.float32)
    chest[5:120, 30:70] = 1
    assert framing_of(c, kp, chest) == "half_body"


# ------------------------------------------------------------------------------------ real photos


@needs_mp
def test_coco_mapping_matches_mediapipe_names():
    import mediapipe as mp

    assert [mp.solutions.pose.PoseLandmark(i).name.lower() for i in MEDIAPIPE_TO_COCO17] == list(COCO_KEYPOINTS)


@needs_mp
def test_real_photo(tmp_path):
    path = _photo()
    p = preprocess(path, resolution=256)
    assert p.image.shape == (3, 256, 256) and p.mask.shape == (1, 256, 256)
    assert p.framing == "full_body" and not p.is_partial and p.intrinsics_source == "assumed"
    conf, kp = p.confidence.numpy(), p.keypoints.numpy()
    assert (conf[[0, 5, 6, 11, 12]] > 0.8).all()
    assert kp[0, 1] < kp[5, 1] < kp[11, 1] < kp[15, 1]  # nose above shoulders above hips above ankles
    # the subject faces the camera: their left shoulder is on the image's right
    assert kp[5, 0] > kp[6, 0]
    # the person fills most of the square, centred, on white
    fg = (p.mask[0] > 0.5).nonzero()
    extent = (fg.max(0).values - fg.min(0).values).max().item() / 256
    assert 0.75 < extent < 0.95
    assert p.image[:, :3, :3].min() > 0.98
    # K of the crop = the original K moved by the crop box and scaled to 256
    x0, y0, x1, _ = p.crop_box
    K = resize_intrinsics(crop_intrinsics(p.K_original, x0, y0), 256 / (x1 - x0))
    assert torch.allclose(K, p.K, atol=1e-3)
    assert p.K_original[0, 0].item() == pytest.approx(max(p.original_size) / (2 * np.tan(np.radians(25))), rel=1e-5)


@needs_mp
def test_preprocessed_save_load_round_trip_without_pickle(tmp_path):
    from safetensors.torch import save_file

    from humansplat.preprocess import Preprocessed

    p = preprocess(_photo(), resolution=64)
    back = Preprocessed.load(p.save(tmp_path / "photo.safetensors"))
    for name in ("image", "mask", "keypoints", "confidence", "K", "K_original", "landmarks"):
        assert torch.equal(getattr(back, name), getattr(p, name)), name
    assert back.to_dict() == p.to_dict() and back.crop_box == p.crop_box and back.original_size == p.original_size
    save_file({"image": torch.zeros(3, 4, 4)}, str(tmp_path / "other.safetensors"))  # a safetensors file, not ours
    (tmp_path / "empty.safetensors").write_bytes(b"")
    for bad in ("other", "empty", "missing"):
        with pytest.raises(ImageError, match=f"{tmp_path / bad}.safetensors: not a preprocessed photo"):
            Preprocessed.load(tmp_path / f"{bad}.safetensors")


@needs_mp
def test_no_person_and_missing_person():
    with pytest.raises(PersonNotFound):
        preprocess(np.full((200, 160, 3), 0.8, np.float32), resolution=64)
    with pytest.raises(PersonNotFound, match="person 3"):
        preprocess(_photo(), resolution=64, person=3)


@needs_mp
def test_several_people_largest_first_and_selectable():
    im = Image.open(_photo()).convert("RGBA")
    big = im.resize((im.width * 700 // im.height, 700))
    small = im.resize((im.width * 450 // im.height, 450))
    canvas = Image.new("RGB", (1000, 760), (235, 235, 235))
    canvas.paste(big, (30, 30), big)
    canvas.paste(small, (600, 280), small)
    a = np.asarray(canvas)
    first, second = preprocess(a, resolution=128), preprocess(a, resolution=128, person=1)
    assert first.candidates == second.candidates == 2
    assert (first.crop_box[0] + first.crop_box[2]) / 2 < 500 < (second.crop_box[0] + second.crop_box[2]) / 2
    assert first.crop_box[2] - first.crop_box[0] > second.crop_box[2] - second.crop_box[0]


@needs_mp
@pytest.mark.parametrize("cut, framing", [("neck", "head_only"), ("chest", "half_body")])
def test_framing_of_cropped_photos(cut, framing):
    """The example photo cut below the neck (MediaPipe still reports a shoulder) and at the chest."""
    im = np.asarray(Image.open(EXAMPLE / "pexels-photo-6311555-removebg.png").convert("RGBA"), np.float32) / 255
    rgb = im[..., :3] * im[..., 3:] + (1 - im[..., 3:])
    full = preprocess(rgb, resolution=128)
    assert full.framing == "full_body"
    x0, y0, x1, _ = full.crop_box
    kp = full.keypoints.numpy() * (x1 - x0) / 128 + np.array([x0, y0])
    nose, shoulder, hip = (kp[COCO_KEYPOINTS.index(n), 1] for n in ("nose", "left_shoulder", "left_hip"))
    row = {"neck": nose + 0.8 * (shoulder - nose), "chest": (shoulder + hip) / 2}[cut]
    assert preprocess(rgb[: int(row)], resolution=128).framing == framing


@pytest.mark.parametrize("name, framing", [("human3diffusion/03.png", "full_body"), ("lhm/yl.jpg", "half_body"),
                                           ("lhm/00000_half.png", "half_body")])
@needs_mp
def test_framing_of_shared_photos(name, framing):
    """A ball gown to the floor (MediaPipe: legs at 0.2) is a full body; photos cut at the waist are not."""
    if not (PHOTOS / name).exists():
        pytest.skip("../shared/photos is not available")
    assert preprocess(PHOTOS / name, resolution=128).framing == framing


@needs_mp
def test_half_body_photo_is_flagged_partial():
    path = PHOTOS / "lhm" / "000000_half2.jpg"
    if not path.exists():
        pytest.skip("../shared/photos/lhm is not available")
    p = preprocess(path, resolution=128)
    assert p.framing == "half_body" and p.is_partial
    conf = p.confidence.numpy()
    assert (conf[[5, 6]] > 0.8).all() and (conf[13:] <= 0.05).all()  # shoulders seen, legs out of the photo


def _group(layout: list[tuple[str, int, int, bool]], size=(1000, 720)) -> tuple[np.ndarray, list[np.ndarray]]:
    """A group photo from the examples' cut-outs: (file, height px, x, y, mirrored) pasted back to front on a
    plain background; returns the photo and each person's visible (not occluded) alpha."""
    W, H = size
    rgb = np.ones((H, W, 3), np.float32) * np.array([0.55, 0.6, 0.5], np.float32)
    visible: list[np.ndarray] = []
    for name, height, x, y, mirror in layout:
        im = Image.open(EXAMPLE / name).convert("RGBA")
        im = np.asarray(im.resize((im.width * height // im.height, height), Image.LANCZOS), np.float32) / 255
        im = im[:, ::-1] if mirror else im
        a, c = np.zeros((H, W), np.float32), np.zeros((H, W, 3), np.float32)
        a[y : y + height, x : x + im.shape[1]], c[y : y + height, x : x + im.shape[1]] = im[..., 3], im[..., :3]
        rgb = rgb * (1 - a[..., None]) + c * a[..., None]
        visible = [v * (1 - a) for v in visible] + [a]
    return rgb, visible


MAN, WOMAN = "pexels-photo-6311555-removebg.png", "pexels-zdmit-6780091.png"


@needs_mp
@pytest.mark.parametrize("layout", [
    [(WOMAN, 640, 430, 60, False), (MAN, 600, 120, 100, False)],  # side by side
    [(MAN, 600, 420, 90, True), (WOMAN, 640, 200, 50, True)],  # overlapping: her raised arm over him
])  # fmt: skip
def test_group_photo_matte_holds_the_chosen_person_only(layout):
    """Composed group photos (no alpha: selfie segmentation and Pose's masks): the chosen person's matte
    covers them and almost nothing of the others."""
    rgb, visible = _group(layout)
    from humansplat.preprocess import detect_person

    p = detect_person(rgb)
    m, people = p.mask > 0.5, [v > 0.5 for v in visible]
    me = int(np.argmax([(m & v).sum() for v in people]))
    others = np.any([v for i, v in enumerate(people) if i != me], axis=0)
    assert (m & people[me]).sum() / people[me].sum() > 0.9  # recall of the chosen person's visible pixels
    assert (m & others).sum() / m.sum() < 0.02  # the others' pixels in the matte


@needs_mp
def test_skeleton_connections_match_mediapipe():
    import mediapipe as mp

    from humansplat.preprocess.instances import CONNECTIONS

    assert sorted(CONNECTIONS) == sorted(mp.solutions.pose.POSE_CONNECTIONS)


# ------------------------------------------------------------------------------- attached parts (held objects)

needs_cv2 = pytest.mark.skipif(not HAVE_MP, reason="opencv (with the 'photo' extra) is not installed")


def _hand_scene(busy: bool = False, far: bool = False):
    """A plain backdrop, a 'person' rectangle with a wrist landmark at its lower left corner and a dark
    bag (a disc on a strap) hanging from it, or lying away from the hand."""
    H, W = 240, 200
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (H, W, 3)).astype(np.uint8) if busy else np.full((H, W, 3), (200, 205, 210), np.uint8)
    matte = np.zeros((H, W), np.float32)
    matte[40:200, 90:130] = 1.0
    img[matte > 0] = (60, 60, 120)
    lms = np.zeros((33, 3), np.float32)
    lms[[11, 12, 23, 24]] = [[95, 50, 1], [125, 50, 1], [125, 130, 1], [95, 130, 1]]  # torso 80 px
    lms[15] = (92, 140, 1.0)  # a wrist at the person's edge
    bag = np.zeros((H, W), bool)
    yy, xx = np.mgrid[:H, :W]
    cy, cx = (170, 40) if far else (165, 70)
    bag |= (yy - cy) ** 2 + (xx - cx) ** 2 < 18**2
    if not far:
        bag[140:150, 70:90] = True  # the strap, from the hand
    img[bag & (matte == 0)] = (30, 25, 20)
    return img, matte, lms, bag & (matte == 0)


@needs_cv2
def test_held_object_on_a_plain_backdrop_is_kept():
    import cv2

    from humansplat.preprocess.attached import held_objects

    img, matte, lms, bag = _hand_scene()
    held = held_objects(img, matte, lms, cv2)
    assert (held & bag).sum() > 0.95 * bag.sum() and (held & ~bag).sum() < 0.05 * bag.sum()
    img, matte, lms, bag = _hand_scene(far=True)  # not attached at the hand: not the person's
    assert not held_objects(img, matte, lms, cv2).any()
    img, matte, lms, bag = _hand_scene(busy=True)  # a busy background: nothing is guessed
    assert not held_objects(img, matte, lms, cv2).any()
    img, matte, lms, bag = _hand_scene()
    assert held_objects(img, matte, lms, cv2, foreground=np.zeros(matte.shape, bool)).sum() == 0  # an alpha without it


def _with_bag(rgb: np.ndarray, wrist: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """A dark duffel bag (an ellipse on a strap) hung from ``wrist`` (x, y), ``scale`` px tall."""
    import cv2

    H, W = rgb.shape[:2]
    bag = np.zeros((H, W), np.uint8)
    x, y = int(wrist[0]), int(wrist[1])
    cv2.ellipse(bag, (x, y + int(0.6 * scale)), (int(0.45 * scale), int(0.3 * scale)), 0, 0, 360, 1, -1)
    cv2.line(bag, (x, y), (x, y + int(0.4 * scale)), 1, max(2, int(0.05 * scale)))
    out = rgb.copy()
    out[bag > 0] = np.array([0.12, 0.1, 0.09], np.float32)
    return out, bag > 0


@needs_mp
@pytest.mark.parametrize("alone", [True, False])
def test_held_bag_stays_in_the_matte_and_the_other_person_goes(alone):
    """A bag hung from his hand (person-only segmentation misses it) is kept; next to a second person
    (composed group photo, no alpha) her pixels stay out of his matte."""
    from humansplat.preprocess import detect_person

    layout = [(MAN, 600, 120, 100, False)] if alone else [(WOMAN, 640, 500, 60, False), (MAN, 600, 120, 100, False)]
    rgb, visible = _group(layout)
    p = detect_person(rgb)
    lm = p.landmarks
    wrist = lm[15] if lm[15, 1] > lm[16, 1] else lm[16]
    torso = float(np.linalg.norm(lm[[11, 12], :2].mean(0) - lm[[23, 24], :2].mean(0)))
    rgb, bag = _with_bag(rgb, wrist[:2], torso)
    bag &= visible[-1] < 0.5
    m = detect_person(rgb).mask > 0.5
    assert (m & bag).sum() > 0.9 * bag.sum()
    if not alone:
        her = visible[0] > 0.5
        assert (m & her).sum() / m.sum() < 0.02


@needs_mp
def test_kicked_leg_keeps_its_foot():
    """A mid-air kick (econ-pose): the whole leg, foot included, is in the matte."""
    import cv2

    path = PHOTOS / "econ-pose" / "4ac9ca7a3e34a365c073317f98525add.jpg"
    if not path.exists():
        pytest.skip("../shared/photos/econ-pose is not available")
    from humansplat.preprocess import detect_person

    im = load_image(path).rgb
    im = cv2.resize(im, (im.shape[1] * 400 // im.shape[0], 400), interpolation=cv2.INTER_AREA)
    p = detect_person(im)
    m = p.mask > 0.5
    for i in (25, 26, 27, 28, 29, 30, 31, 32):  # knees, ankles, heels, toes
        x, y, c = p.landmarks[i]
        assert c > 0.5 and m[int(y) - 2 : int(y) + 3, int(x) - 2 : int(x) + 3].any(), i


@needs_mp
def test_preprocess_cached_keeps_a_photo_and_an_array_by_key(tmp_path, monkeypatch):
    """A path is cached under <folder>-<stem>, an array under the key it is given (none: not cached); a second
    call loads the file instead of running MediaPipe again."""
    import humansplat.preprocess.crop as crop
    from humansplat.preprocess import preprocess_cached

    photo = EXAMPLE / "pexels-photo-6311555-removebg.png"
    first = preprocess_cached(photo, tmp_path, 128)
    assert (tmp_path / "examples-pexels-photo-6311555-removebg.safetensors").is_file()
    rgb = first.image.permute(1, 2, 0).numpy()
    preprocess_cached(rgb, tmp_path, 128)
    assert len(list(tmp_path.iterdir())) == 1
    from_array = preprocess_cached(rgb, tmp_path, 128, key="crop")
    monkeypatch.setattr(crop, "preprocess", lambda *a, **k: pytest.fail("ran preprocess again instead of loading the cache"))
    assert torch.equal(preprocess_cached(photo, tmp_path, 128).image, first.image)
    assert torch.equal(preprocess_cached(rgb, tmp_path, 128, key="crop").mask, from_array.mask)
