"""The novel-view generator (tiny, CPU): it overfits one subject, samples deterministically, round-trips
through save/from_pretrained, guides on the photo, runs template-free; the reconstructor takes its views
(stage function and fine-tune task); the with/without evaluation and its sharpness figure."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from humansplat.models import NovelViewGenerator, load_pretrained
from humansplat.models.generator import CONDITION_CHANNELS, ViewConditions
from test_train import tiny_config


def tiny_generator(tmp_path: Path) -> NovelViewGenerator:
    """A tiny generator with random (non-zero) output layers, so its samples depend on its inputs."""
    from humansplat.models import Autoencoder

    cfg = tiny_config(tmp_path, "tiny_novelview.json")
    torch.manual_seed(1)
    model = NovelViewGenerator(NovelViewGenerator.config_from_dict(dict(cfg.model)))
    model.load_autoencoder(Autoencoder.from_pretrained(cfg.autoencoder))
    for p in list(model.final_modulation.parameters()) + list(model.out.parameters()):
        torch.nn.init.normal_(p, std=0.2)
    for block in model.blocks:
        torch.nn.init.normal_(block.modulation.weight, std=0.05)
    return model.eval()


def engine_subject(views: int) -> dict:
    """One seeded 32-px engine subject: view 0 the photo, then ``views - 1`` orbit views."""
    from humansplat.data import EngineConfig, SyntheticEngine

    engine = SyntheticEngine(EngineConfig(resolution=32, views=views), torch.device("cpu"))
    return engine.sample(1, torch.Generator().manual_seed(5))


@pytest.fixture(scope="module")
def subject():
    return engine_subject(4)


def two_view(batch: dict) -> dict:
    """The photo and orbit views 1, 3 (180 deg apart, like the tiny generator's targets)."""
    idx = [0, 1, 3]
    out = {k: batch[k][:, idx] for k in ("images", "masks", "labels", "depths", "normals")}
    return {**out, "cameras": batch["cameras"][:, idx], "body_vertices": batch["body_vertices"]}


@pytest.mark.slow  # about 30 s on two busy CPU cores
def test_tiny_generator_overfits_one_subject(tmp_path, subject):
    from humansplat.train.trainer import Trainer

    trainer = Trainer(tiny_config(tmp_path, "tiny_novelview.json", max_steps=60, lr=1e-2), tmp_path / "run", device="cpu")
    one = two_view(subject)
    trainer.engine.sample = lambda batch_size, generator: one
    trainer.fit()
    first = sum(h["loss/flow"] for h in trainer.history[:2]) / 2
    last = sum(h["loss/flow"] for h in trainer.history[-3:]) / 3
    assert last < 0.5 * first, (first, last)
    exported = load_pretrained(tmp_path / "run" / "export")
    assert isinstance(exported, NovelViewGenerator) and exported.config.autoencoder.scale == trainer.model.config.autoencoder.scale


def test_sampling_is_seeded_with_the_right_shapes(tmp_path, subject, body):
    from humansplat.novelview import generate_views

    g = tiny_generator(tmp_path)
    photo, cam, verts = subject["images"][0, 0], subject["cameras"][0, 0], subject["body_vertices"][0]
    a = generate_views(g, photo, cam, verts, steps=3, guidance=2.0, seed=7, body=body)
    b = generate_views(g, photo, cam, verts, steps=3, guidance=2.0, seed=7, body=body)
    c = generate_views(g, photo, cam, verts, steps=3, guidance=2.0, seed=8, body=body)
    K, C, S = g.config.views, g.config.autoencoder.latent_channels, g.config.image_size
    assert a.images.shape == (K, 3, S, S) and a.latents.shape == (K, C, g.config.latent_size, g.config.latent_size)
    assert a.cameras.batch_shape == (K,) and (a.cameras.width, a.cameras.height) == (S, S) and a.seconds > 0
    assert torch.equal(a.latents, b.latents) and not torch.allclose(a.latents, c.latents)
    assert a.images.min() >= 0 and a.images.max() <= 1
    # the default targets orbit the origin at the configured azimuths from the photo's
    from humansplat.novelview import photo_azimuth

    rel = (photo_azimuth(a.cameras) - photo_azimuth(cam)) % 360
    assert torch.allclose(rel, torch.tensor(g.config.view_azimuths), atol=1e-3)
    free = generate_views(g, photo, cam, None, steps=3, seed=7)  # template-free: no body at all
    assert free.images.shape == a.images.shape and not torch.allclose(free.latents, a.latents)


def test_save_and_from_pretrained_round_trip(tmp_path):
    g = tiny_generator(tmp_path)
    g.save_pretrained(tmp_path / "fp32")
    g.save_pretrained(tmp_path / "fp16", dtype=torch.float16)
    again = NovelViewGenerator.from_pretrained(tmp_path / "fp32")
    half = load_pretrained(tmp_path / "fp16")
    assert again.config == g.config and isinstance(half, NovelViewGenerator)
    cond, x = random_conditions(g)
    t = torch.full((1,), 0.5)
    with torch.no_grad():
        assert torch.equal(again(x, t, cond), g(x, t, cond))
        assert torch.allclose(half(x, t, cond), g(x, t, cond), atol=2e-2)


def random_conditions(g: NovelViewGenerator, B: int = 1) -> tuple[ViewConditions, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    C, h, K = g.config.autoencoder.latent_channels, g.config.latent_size, g.config.views
    r = lambda *s: torch.randn(*s, generator=gen)
    keep = torch.ones(B, dtype=torch.bool)
    return ViewConditions(r(B, C, h, h), r(B, 6, h, h), r(B, K, 6, h, h), r(B, K, CONDITION_CHANNELS, h, h), keep, keep), r(B, K, C, h, h)


def test_guidance_on_the_photo_and_the_template_free_mode(tmp_path):
    g = tiny_generator(tmp_path)
    cond, noise = random_conditions(g)
    t = torch.ones(1)
    with torch.no_grad():
        v_c, v_u = g(noise, t, cond), g(noise, t, cond.with_photo(False))
        # one Euler step from t=1 to 0: x = noise - v, with v = v_u + w (v_c - v_u)
        for w in (1.0, 3.0):
            assert torch.allclose(g.sample(cond, noise, steps=1, guidance=w), noise - (v_u + w * (v_c - v_u)), atol=1e-5)
        assert not torch.allclose(v_c, v_u)
        # a dropped photo / body is ignored entirely
        other = ViewConditions(cond.photo_latent + 1, cond.photo_rays, cond.target_rays, cond.body, cond.photo_keep, cond.body_keep)
        assert torch.equal(g(noise, t, cond.with_photo(False)), g(noise, t, other.with_photo(False)))
        no_body = lambda c: ViewConditions(c.photo_latent, c.photo_rays, c.target_rays, c.body, c.photo_keep, torch.zeros(1, dtype=torch.bool))
        assert torch.equal(g(noise, t, no_body(cond)), g(noise, t, no_body(ViewConditions(*(
            getattr(cond, k) for k in ("photo_latent", "photo_rays", "target_rays")), None, cond.photo_keep, cond.body_keep))))
        assert not torch.allclose(g(noise, t, no_body(cond)), v_c)
    # the training loss drops the photo and the body at the configured rates
    g.config.photo_dropout, g.config.body_dropout = 1.0, 0.0
    _, logs = g.training_loss(noise, cond)
    assert float(logs["train/photo_kept"]) == 0 and float(logs["train/body_kept"]) == 1


def test_reconstructor_takes_generated_views(tmp_path, subject, body):
    from humansplat.novelview import generate_views, reconstruct_with_views
    from humansplat.train.trainer import Trainer

    g = tiny_generator(tmp_path)
    rec = Trainer(tiny_config(tmp_path, "tiny.json", max_steps=1), tmp_path / "rec", device="cpu").model.eval()
    photo, cam, verts = subject["images"][0, 0], subject["cameras"][0, 0], subject["body_vertices"][0]
    views = generate_views(g, photo, cam, verts, steps=2, body=body)
    anchors = rec.body_anchors(verts[None], body.vertex_labels)
    grid, A = rec.config.pixel_grid ** 2, rec.config.num_anchors * rec.config.gaussians_per_anchor
    with torch.no_grad():
        alone = reconstruct_with_views(rec, photo, cam, None, anchors)
        helped = reconstruct_with_views(rec, photo, cam, views, anchors)
        direct = rec(photo[None, None], cam.reshape(1, 1), anchors)
    assert alone.means.shape[1] == grid + A and helped.means.shape[1] == (1 + g.config.views) * grid + A
    assert torch.allclose(alone.means, direct.means) and not torch.allclose(helped.means[:, :grid], alone.means[:, :grid])


@pytest.mark.parametrize("source", ["generated", "degraded"])
def test_finetune_with_extra_views(tmp_path, subject, source):
    from humansplat.train.novelview import extra_view_inputs
    from humansplat.train.trainer import Trainer

    g = tiny_generator(tmp_path)
    g.save_pretrained(tmp_path / "gen")
    cfg = tiny_config(tmp_path, "tiny_novelview_finetune.json", max_steps=2, log_every=1, generator=str(tmp_path / "gen"))
    cfg.extra_views.source = source
    trainer = Trainer(cfg, tmp_path / "run", device="cpu")
    trainer.engine.sample = lambda batch_size, generator: subject
    trainer.fit()
    last = trainer.history[-1]
    assert last["train/input_views"] == 3 and torch.isfinite(torch.tensor(last["loss/total"]))
    from humansplat.train.step import ViewPlan

    plan = ViewPlan([0, 1, 3], [0, 1, 3, 2], False)
    inputs = extra_view_inputs(cfg.extra_views, subject, plan, trainer.body, torch.Generator().manual_seed(0), *trainer.task.extra_view_models())
    assert inputs.shape == (1, 3, 3, 32, 32) and torch.equal(inputs[:, 0], subject["images"][:, 0])
    assert not torch.allclose(inputs[:, 1:], subject["images"][:, [1, 3]], atol=1e-3)


def test_sharpness_ratio_sees_blur():
    from humansplat.metrics import sharpness_ratio

    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    m = torch.ones(2, 1, 32, 32)
    blurred = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    assert torch.allclose(sharpness_ratio(x, x, m), torch.ones(2))
    assert (sharpness_ratio(blurred, x, m) < 0.3).all()


def test_eval_command_with_and_without_the_generator(tmp_path, body):
    """`humansplat eval --novel-views DIR` keeps the usual table and adds the with/without one."""
    import json

    from humansplat.cli import main
    from humansplat.data.benchmark import make_benchmark
    from humansplat.train.trainer import Trainer

    make_benchmark(tmp_path / "bench", device="cpu", subjects=1, protocol={"resolution": 32, "views": 8}, show_progress=False)
    rec = Trainer(tiny_config(tmp_path, "tiny.json", max_steps=1), tmp_path / "rec", device="cpu").model
    rec.save_pretrained(tmp_path / "recw")
    tiny_generator(tmp_path).save_pretrained(tmp_path / "gen")
    args = ["eval", "--weights", str(tmp_path / "recw"), "--data", str(tmp_path / "bench"), "--device", "cpu", "--out", str(tmp_path / "e.json")]
    assert main([*args, "--novel-views", str(tmp_path / "gen"), "--steps", "2"]) == 0
    out = json.loads((tmp_path / "e.json").read_text())
    stage = out["novel_views_stage"]
    for k in ("reconstructor", "with_generator"):
        assert {"psnr", "ssim", "masked_psnr", "part_miou", "sharpness"} <= set(stage[k])
    assert abs(stage["reconstructor"]["psnr"] - out["novel_views"]["psnr"]) < 1e-4  # the same weights, alone
    assert stage["with_generator"]["psnr"] != stage["reconstructor"]["psnr"] and stage["generator"]["sharpness"] > 0


def test_warm_start_into_finer_tokens_starts_from_the_coarse_model(tmp_path, body, capsys):
    """A patch-2 generator warm-starts a patch-1 one (repatch_weights): on inputs constant over 2x2 latent
    cells the fine model gives the coarse model's velocities averaged over each cell."""
    import torch.nn.functional as F

    from humansplat.models import Autoencoder
    from humansplat.train.tasks import GeneratorTask

    cfg = tiny_config(tmp_path, "tiny_novelview.json")
    coarse_cfg = NovelViewGenerator.config_from_dict({**dict(cfg.model), "patch_size": 2})
    torch.manual_seed(2)
    coarse = NovelViewGenerator(coarse_cfg)
    coarse.load_autoencoder(Autoencoder.from_pretrained(cfg.autoencoder))
    for p in list(coarse.final_modulation.parameters()) + list(coarse.out.parameters()):
        torch.nn.init.normal_(p, std=0.2)
    coarse.eval().save_pretrained(tmp_path / "coarse")
    task = GeneratorTask(cfg, body, torch.device("cpu"))
    fine = task.build_model()
    assert fine.config.patch_size == 1
    task.warm_start(fine, str(tmp_path / "coarse"), ())
    assert "tokens 2x2 -> 1x1" in capsys.readouterr().out
    fine.eval()
    blocky = lambda t: F.interpolate(F.avg_pool2d(t.flatten(0, -4), 2), scale_factor=2.0).reshape(t.shape)  # noqa: E731
    cond, x = random_conditions(coarse, B=2)
    cond = replace(cond, photo_latent=blocky(cond.photo_latent), photo_rays=blocky(cond.photo_rays),
                   target_rays=blocky(cond.target_rays), body=blocky(cond.body))  # fmt: skip
    x, t = blocky(x), torch.tensor([0.3, 0.8])
    with torch.no_grad():
        want, got = blocky(coarse(x, t, cond)), fine(x, t, cond)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    assert want.abs().mean() > 0.05


def test_generator_carry_strips_and_restores_the_autoencoder(tmp_path):
    """scripts/generator_carry.py: a stripped generator no longer loads; restored from its autoencoder it loads
    with every tensor as saved; an autoencoder of another config is refused."""
    import json
    import runpy
    import sys

    from humansplat.models.base import WeightsError

    model = tiny_generator(tmp_path)
    model.save_pretrained(tmp_path / "gen")
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    ae_dir = tiny_config(tmp_path, "tiny_novelview.json").autoencoder

    def carry(*args: str) -> None:
        argv, sys.argv = sys.argv, ["generator_carry.py", *args]
        try:
            runpy.run_path(str(Path(__file__).parents[1] / "scripts/generator_carry.py"), run_name="__main__")
        except SystemExit as e:
            if e.code not in (0, None):
                raise
        finally:
            sys.argv = argv

    carry("strip", str(tmp_path / "gen"))
    with pytest.raises(WeightsError, match="missing"):
        NovelViewGenerator.from_pretrained(tmp_path / "gen")
    other = tmp_path / "other_ae"
    other.mkdir()
    for f in Path(ae_dir).iterdir():
        (other / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**cfg, "scale": cfg.get("scale", 1.0) + 0.5}))
    with pytest.raises(SystemExit, match="is not the generator's autoencoder"):
        carry("restore", str(tmp_path / "gen"), "--autoencoder", str(other))
    carry("restore", str(tmp_path / "gen"), "--autoencoder", str(ae_dir))
    restored = NovelViewGenerator.from_pretrained(tmp_path / "gen").state_dict()
    assert restored.keys() == saved.keys()
    assert all(torch.equal(restored[k], saved[k].to(restored[k].dtype)) for k in saved)
