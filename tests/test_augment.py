"""Training augmentations: the body prior perturbed as a fit would get it, the photo degraded as a camera would."""

from __future__ import annotations

import pytest
import torch

from humansplat.train.augment import BodyNoiseConfig, PhotoNoiseConfig, degrade_photo, perturb_body


@pytest.fixture(scope="module")
def subjects():
    from humansplat.data import EngineConfig, SyntheticEngine

    engine = SyntheticEngine(EngineConfig(resolution=32, views=1), torch.device("cpu"))
    return engine, engine.sample(2, torch.Generator().manual_seed(5))


def test_zero_noise_reproduces_the_engine_body_in_its_frame(subjects):
    engine, batch = subjects
    cfg = BodyNoiseConfig(prob=1.0, pose_std=0.0, phenotype_std=0.0, shift_std=0.0)
    out = perturb_body(engine.body, batch["body_params"], batch["body_vertices"], cfg, torch.Generator().manual_seed(0))
    assert (out - batch["body_vertices"]).abs().max() < 1e-4  # body(params) is the engine's body, same frame


def test_body_noise_moves_the_body_by_centimetres_and_repeats(subjects):
    engine, batch = subjects
    v = batch["body_vertices"]
    cfg = BodyNoiseConfig(prob=1.0)
    a = perturb_body(engine.body, batch["body_params"], v, cfg, torch.Generator().manual_seed(1))
    b = perturb_body(engine.body, batch["body_params"], v, cfg, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    moved = (a - v).norm(dim=-1).mean(1)  # per sample, metres
    assert (moved > 0.003).all() and (moved < 0.15).all(), moved
    centre = lambda x: (x.amin(1) + x.amax(1)) / 2  # noqa: E731
    assert (centre(a) - centre(v)).norm(dim=-1).max() < 0.15  # still the same person in the same place


def test_no_noise_draws_nothing(subjects):
    engine, batch = subjects
    g = torch.Generator().manual_seed(2)
    state = g.get_state()
    v = batch["body_vertices"]
    assert perturb_body(engine.body, batch["body_params"], v, BodyNoiseConfig(prob=0.0), g) is v
    img = batch["images"][:, 0]
    assert degrade_photo(img, batch["masks"][:, 0], PhotoNoiseConfig(prob=0.0), g) is img
    assert torch.equal(g.get_state(), state)  # runs without augmentation keep their random streams


def _square(size: int = 24, side: int = 12):
    img = torch.ones(1, 3, size, size)
    mask = torch.zeros(1, 1, size, size)
    lo = (size - side) // 2
    img[..., lo : lo + side, lo : lo + side] = 0.2
    mask[..., lo : lo + side, lo : lo + side] = 1
    return img, mask, lo, side


def test_matte_erosion_and_dilation_touch_only_a_band_at_the_edge():
    img, mask, lo, side = _square()
    cfg = PhotoNoiseConfig(prob=1.0, noise_std=0.0, blur_sigma=0.0, matte_px=2)
    seen = set()
    for seed in range(12):
        out = degrade_photo(img, mask, cfg, torch.Generator().manual_seed(seed))
        changed = (out != img).any(1)[0]
        if not changed.any():
            seen.add("none")
            continue
        inside = mask[0, 0] > 0
        if changed[inside].any():  # eroded: white eaten into the person, in a band of <= 2 px
            assert not changed[~inside].any()
            assert torch.allclose(out[0, :, changed], torch.ones(1))
            assert not changed[lo + 2 : lo + side - 2, lo + 2 : lo + side - 2].any()
            seen.add("eroded")
        else:  # dilated: one background colour in a band of <= 2 px outside
            band = out[0, :, changed]
            assert torch.allclose(band, band[:, :1].expand_as(band))
            assert not changed[: lo - 2].any() and not changed[lo + side + 2 :].any()
            seen.add("dilated")
    assert {"eroded", "dilated"} <= seen


def test_noise_and_blur_degrade_within_range():
    img, mask, lo, side = _square()
    g = torch.Generator().manual_seed(0)
    noisy = degrade_photo(img, mask, PhotoNoiseConfig(prob=1.0, noise_std=0.05, blur_sigma=0.0, matte_px=0), g)
    assert noisy.min() >= 0 and noisy.max() <= 1 and 0 < (noisy - img).abs().mean() < 0.05
    blurred = degrade_photo(img, mask, PhotoNoiseConfig(prob=1.0, noise_std=0.0, blur_sigma=2.0, matte_px=0), torch.Generator().manual_seed(3))
    centre = (lo + side // 2, lo + side // 2)
    assert abs(float(blurred[0, 0, centre[0], centre[1]]) - 0.2) < 0.02  # the flat middle stays
    edge = blurred[0, 0, lo, lo + side // 2]
    assert 0.2 < float(edge) < 1.0  # the edge softens
    assert abs(float(blurred.mean()) - float(img.mean())) < 0.01


def test_reconstructor_task_feeds_the_model_a_perturbed_body_and_a_degraded_photo(tmp_path, subjects):
    from contextlib import nullcontext

    from humansplat.train.trainer import Trainer
    from tests.test_train import tiny_config

    _, batch = subjects
    cfg = tiny_config(tmp_path, max_steps=1, body_noise=BodyNoiseConfig(prob=1.0), photo_noise=PhotoNoiseConfig(prob=1.0))
    trainer = Trainer(cfg, tmp_path / "run", device="cpu")
    seen = {}

    def step(b, plan, amp, inputs=None, prior=None):
        seen.update(batch=b, plan=plan, inputs=inputs, prior=prior)
        return trainer.wrapped(b, plan, amp, inputs, prior)

    loss, _, _ = trainer.task.loss(step, batch, nullcontext(), torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)
    assert not torch.equal(seen["batch"]["body_vertices"], batch["body_vertices"])  # the anchors' body moved
    clean = batch["images"][:, seen["plan"].inputs]
    assert not torch.equal(seen["inputs"][:, 0], clean[:, 0])  # the photo was degraded ...
    assert torch.equal(seen["batch"]["images"], batch["images"])  # ... and supervision is the clean render
    assert seen["prior"] is None  # the colour prior reads the degraded photo too

    trainer.task.cfg.photo_noise.clean_prior = True  # now the colour prior reads the clean photo
    trainer.task.loss(step, batch, nullcontext(), torch.Generator().manual_seed(0))
    assert not torch.equal(seen["inputs"][:, 0], clean[:, 0]) and torch.equal(seen["prior"], clean)


def test_v4_recipe_configs_load():
    from pathlib import Path

    from humansplat.data import EngineConfig
    from humansplat.train.config import TrainConfig

    root = Path(__file__).resolve().parents[1]
    robust = TrainConfig.load(root / "configs" / "robust.json")
    assert robust.body_noise.prob == 0.5 and robust.photo_noise.prob == 0.5 and robust.loss.streaks > 0
    assert Path(robust.init_from) == root / "src" / "humansplat" / "weights" / "humansplat-main"
    palette = TrainConfig.load(root / "configs" / "palette.json")
    assert palette.body_noise.prob == 0.5 and EngineConfig(**palette.data).free_colors == 0.35


def test_jpeg_blocks_the_photo_more_at_lower_quality_and_keeps_the_random_stream():
    """JPEG (Pillow's codec): error grows as the quality falls and concentrates on 8-px block edges; quality 0
    leaves an image as it is; a config without JPEG degrades exactly as before (the JPEG draw comes last)."""
    from humansplat.train.augment import jpeg_roundtrip

    g = torch.Generator().manual_seed(0)
    ys, xs = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    smooth = torch.stack([xs, ys, (xs + ys) / 2])[None]
    images = (smooth + 0.1 * torch.rand(1, 3, 64, 64, generator=g)).clamp(0, 1).repeat(3, 1, 1, 1)
    out = jpeg_roundtrip(images, torch.tensor([0, 90, 20]))
    err = (out - images).abs()
    assert torch.equal(out[0], images[0])
    assert 0 < float(err[1].mean()) < float(err[2].mean())
    # the blocks: at quality 20, neighbours across an 8-px block edge differ more than neighbours inside a block
    step = (out[2, :, :, 1:] - out[2, :, :, :-1]).abs().mean((0, 1))  # (63,) column steps
    edges = torch.arange(63) % 8 == 7
    assert float(step[edges].mean()) > float(step[~edges].mean())
    masks = torch.ones(3, 1, 64, 64)
    g = torch.Generator().manual_seed(1)
    plain = degrade_photo(images, masks, PhotoNoiseConfig(prob=1.0), g)
    quality = torch.randint(30, 96, (3,), generator=g)  # what the JPEG draw takes next from the same stream
    with_jpeg = degrade_photo(images, masks, PhotoNoiseConfig(prob=1.0, jpeg_min_quality=30), torch.Generator().manual_seed(1))
    assert torch.equal(with_jpeg, jpeg_roundtrip(plain, quality)) and not torch.equal(plain, with_jpeg)
    with pytest.raises(ValueError, match="JPEG"):
        PhotoNoiseConfig(jpeg_min_quality=90, jpeg_max_quality=50)
