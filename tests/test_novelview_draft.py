"""The draft-conditioned generator (tiny, CPU): its config round-trips and configs without ``draft`` load as
before; a warm start from a generator without drafts zero-pads the new input channels (the same velocities
for any draft); one training step renders the frozen reconstructor's drafts; ``generate_views`` takes the
Gaussians whose renders are the drafts."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from humansplat.models import NovelViewGenerator, WeightsError, load_pretrained
from humansplat.models.generator import CONDITION_CHANNELS, RAY_CHANNELS, ViewConditions
from test_novelview import engine_subject, random_conditions, tiny_generator
from test_train import ROOT, tiny_config


def tiny_reconstructor(tmp_path: Path, body):
    """Random tiny reconstructor weights (tiny.json) saved under tmp_path/rec; returns (model, directory)."""
    from humansplat.train.tasks import ReconstructorTask

    cfg = tiny_config(tmp_path, "tiny.json")
    torch.manual_seed(2)
    model = ReconstructorTask(cfg, body, torch.device("cpu")).build_model().eval()
    model.save_pretrained(tmp_path / "rec")
    return model, tmp_path / "rec"


def draft_config(tmp_path: Path, body, **kw):
    _, rec = tiny_reconstructor(tmp_path, body)
    return tiny_config(tmp_path, "tiny_novelview_draft.json", reconstructor=str(rec), **kw)


def draft_generator(tmp_path: Path) -> NovelViewGenerator:
    """A tiny draft generator with random (non-zero) output layers and random weights on the draft channels."""
    base = tiny_generator(tmp_path)
    g = NovelViewGenerator(replace(base.config, draft=True))
    state = {**g.state_dict(), **{k: v for k, v in base.state_dict().items() if k != "target_embed.weight"}}
    g.load_state_dict(state)
    torch.nn.init.normal_(g.target_embed.weight, std=0.2)
    return g.eval()


@pytest.fixture(scope="module")
def subject():
    return engine_subject(2)


def test_draft_config_round_trip_and_configs_without_draft(tmp_path):
    from humansplat.train.config import TrainConfig

    g = draft_generator(tmp_path)
    C = g.config.autoencoder.latent_channels
    assert g.config.draft and g.target_embed.weight.shape[1] == 2 * C + RAY_CHANNELS + CONDITION_CHANNELS
    g.save_pretrained(tmp_path / "g")
    again = NovelViewGenerator.from_pretrained(tmp_path / "g")
    assert again.config == g.config and json.loads((tmp_path / "g" / "config.json").read_text())["draft"] is True
    cond, x = random_conditions(g)
    draft = torch.randn_like(x)
    with_draft = replace(cond, draft=draft)
    t = torch.full((1,), 0.5)
    with torch.no_grad():
        v = g(x, t, with_draft)
        assert torch.equal(again(x, t, with_draft), v)
        assert not torch.allclose(g(x, t, replace(with_draft, draft=draft + 1)), v)
        # no draft at all = a dropped draft (zeroed, plus the "no draft" embedding)
        dropped = replace(with_draft, draft_keep=torch.zeros(1, dtype=torch.bool))
        assert torch.allclose(g(x, t, cond), g(x, t, dropped), atol=1e-6) and not torch.allclose(g(x, t, cond), v)
        # guidance pairs keep the draft; cat / with_photo / first carry it
        both = ViewConditions.cat([with_draft, with_draft.with_photo(False)])
        assert both.draft.shape[0] == 2 and both.draft_keep.all() and torch.equal(both.first().draft, draft)
        with pytest.raises(ValueError, match="some items have a draft"):
            ViewConditions.cat([with_draft, cond])
        with pytest.raises(ValueError, match="not trained with drafts"):
            tiny_generator(tmp_path)(x, t, with_draft)
    # the draft dropout of training
    g.config.draft_dropout = 1.0
    _, logs = g.training_loss(x, with_draft)
    assert float(logs["train/draft_kept"]) == 0
    # configs without "draft" (the shipped ones, v2's) load as generators without drafts
    plain = TrainConfig.load(ROOT / "configs" / "novelview.json")
    model_cfg = NovelViewGenerator.config_from_dict(dict(plain.model))
    assert not model_cfg.draft and model_cfg.target_channels == 8 + RAY_CHANNELS + CONDITION_CHANNELS
    shipped = json.loads((ROOT / "src/humansplat/weights/novelview/config.json").read_text())
    shipped.pop("model_type")
    assert not NovelViewGenerator.config_from_dict(shipped).draft
    assert TrainConfig.load(ROOT / "configs" / "novelview_draft.json").model["draft"] is True


def test_warm_start_from_a_generator_without_drafts_is_exact(tmp_path, body, capsys):
    from humansplat.train.tasks import GeneratorTask

    base = tiny_generator(tmp_path)
    base.save_pretrained(tmp_path / "base")
    task = GeneratorTask(draft_config(tmp_path, body), body, torch.device("cpu"))
    model = task.build_model()
    assert model.config.draft and task.reconstructor is not None
    no_draft_before = model.no_draft.detach().clone()
    task.warm_start(model, str(tmp_path / "base"), ())
    printed = capsys.readouterr().out
    assert "zero-padded target_embed.weight" in printed and "fresh no_draft" in printed
    C = model.config.autoencoder.latent_channels
    assert torch.count_nonzero(model.target_embed.weight[:, -C:]) == 0 and torch.equal(model.no_draft, no_draft_before)
    assert torch.equal(model.target_embed.weight[:, :-C], base.target_embed.weight)
    model.eval()
    cond, x = random_conditions(base, B=2)
    t = torch.tensor([0.3, 0.8])
    with torch.no_grad():
        want = base(x, t, cond)
        for scale in (1.0, 100.0):  # any draft: its channels have zero weights
            got = model(x, t, replace(cond, draft=scale * torch.randn_like(x)))
            assert torch.allclose(got, want, atol=1e-6)
    # a draft model from a draft model loads as is; other shape differences stay errors
    model.save_pretrained(tmp_path / "drafted")
    again = GeneratorTask(draft_config(tmp_path, body), body, torch.device("cpu"))
    m2 = again.build_model()
    again.warm_start(m2, str(tmp_path / "drafted"), ())
    assert torch.equal(m2.target_embed.weight, model.target_embed.weight) and torch.equal(m2.no_draft, model.no_draft)
    wider = GeneratorTask(draft_config(tmp_path, body, model={**again.cfg.model, "dim": 64, "heads": 2}), body, torch.device("cpu"))
    with pytest.raises(WeightsError, match="do not match"):
        wider.warm_start(wider.build_model(), str(tmp_path / "base"), ())


def test_one_training_step_of_the_draft_task(tmp_path, body, subject):
    from humansplat.train.tasks import PreviewRows
    from humansplat.train.trainer import Trainer

    tiny_generator(tmp_path).save_pretrained(tmp_path / "base")
    cfg = draft_config(tmp_path, body, max_steps=2, log_every=1, image_every=1, init_from=str(tmp_path / "base"))
    trainer = Trainer(cfg, tmp_path / "run", device="cpu")
    trainer.engine.sample = lambda batch_size, generator: subject
    seen = []
    real = trainer.task.reconstructor.forward
    trainer.task.reconstructor.forward = lambda *a, **k: seen.append(a) or real(*a, **k)
    trainer.fit()
    last = trainer.history[-1]
    assert torch.isfinite(torch.tensor(last["loss/flow"])) and "train/draft_kept" in last
    assert len(seen) == 2 and seen[0][0].shape == (1, 1, 3, 32, 32)  # the photo alone
    assert isinstance(trainer.last_render, PreviewRows) and len(trainer.last_render.rows) == 4
    assert all(r.shape == (2, 3, 32, 32) for r in trainer.last_render.rows)
    from humansplat.train.trainer import preview_grid

    tag, grid = preview_grid(trainer.last_render)
    assert tag == "views/photo_draft_generated_truth" and grid.shape == (3, 4 * 32, 2 * 32)
    assert torch.equal(grid[:, :32, :32], trainer.last_render.rows[0][0].clamp(0, 1))  # the photo, top left
    exported = load_pretrained(tmp_path / "run" / "export")
    assert isinstance(exported, NovelViewGenerator) and exported.config.draft
    assert not any(k.startswith("reconstructor") for k in exported.state_dict())  # the frozen reconstructor is not saved


def test_draft_inputs_follow_the_reconstructor(tmp_path, body, subject):
    from humansplat.train.novelview import generator_inputs, reconstructor_drafts

    rec, _ = tiny_reconstructor(tmp_path, body)
    g = draft_generator(tmp_path)
    draft = reconstructor_drafts(rec, g, body, subject)
    K, C, h = g.config.views, g.config.autoencoder.latent_channels, g.config.latent_size
    assert draft.shape == (1, K, C, h, h)
    x0, cond = generator_inputs(g, body, subject, draft=draft)
    assert torch.equal(cond.draft, draft) and x0.shape == draft.shape
    # another body -> other anchors -> another draft
    moved = {**subject, "body_vertices": subject["body_vertices"] + torch.tensor([0.1, 0.0, 0.0])}
    assert not torch.allclose(reconstructor_drafts(rec, g, body, moved), draft)


def test_generate_views_with_drafts(tmp_path, body, subject):
    from humansplat.novelview import draft_views, generate_views, target_cameras

    rec, _ = tiny_reconstructor(tmp_path, body)
    g = draft_generator(tmp_path)
    photo, cam, verts = subject["images"][0, 0], subject["cameras"][0, 0], subject["body_vertices"][0]
    anchors = rec.body_anchors(verts[None], body.vertex_labels)
    with torch.no_grad():
        gaussians = rec(photo[None, None], cam.reshape(1, 1), anchors)
    with pytest.raises(ValueError, match="draft generator"):
        generate_views(g, photo, cam, verts, steps=2, body=body)
    with pytest.raises(ValueError, match="takes no drafts"):
        generate_views(tiny_generator(tmp_path), photo, cam, verts, steps=2, body=body, draft_gaussians=gaussians)
    a = generate_views(g, photo, cam, verts, steps=2, body=body, draft_gaussians=gaussians)
    b = generate_views(g, photo, cam, verts, steps=2, body=body, draft_gaussians=gaussians[0])  # (N,) works too
    S = g.config.image_size
    assert a.images.shape == (g.config.views, 3, S, S) and torch.equal(a.latents, b.latents)
    shifted = gaussians._map(lambda t: t)
    shifted.means = gaussians.means + torch.tensor([0.2, 0.0, 0.0])
    c = generate_views(g, photo, cam, verts, steps=2, body=body, draft_gaussians=shifted)
    assert not torch.allclose(a.latents, c.latents)
    drafts = draft_views(g, gaussians, target_cameras(g, cam, verts).reshape(1, -1))
    assert drafts.shape == (1, g.config.views, 3, S, S) and drafts.min() >= 0 and drafts.max() <= 1 and drafts.std() > 0


def test_benchmark_script_scores_drafts_and_refinement(tmp_path, body):
    """benchmarks/novelview.py with a draft generator on a 2-subject tiny set: drafts, generated views, and
    the refinement on the photo and on the photo + generated views."""
    import runpy
    import sys

    from humansplat.data.benchmark import make_benchmark

    make_benchmark(tmp_path / "bench", device="cpu", subjects=2, protocol={"resolution": 32, "views": 8}, show_progress=False)
    _, rec = tiny_reconstructor(tmp_path, body)
    draft_generator(tmp_path).save_pretrained(tmp_path / "gen")
    argv = ["novelview.py", "--generator", str(tmp_path / "gen"), "--weights", str(rec), "--data", str(tmp_path / "bench"),
            "--device", "cpu", "--steps", "2", "--refine-steps", "3", "--refine-resolution", "32", "--out", str(tmp_path / "n.json"), "--time", "1"]
    old = sys.argv
    try:
        sys.argv = argv
        with pytest.raises(SystemExit) as done:
            runpy.run_path(str(ROOT / "benchmarks" / "novelview.py"), run_name="__main__")
    finally:
        sys.argv = old
    assert done.value.code == 0
    out = json.loads((tmp_path / "n.json").read_text())
    assert out["subjects"] == 2 and out["draft"] and out["refine"]["steps"] == 3 and out["refine"]["resolution"] == 32
    for k in ("reconstructor", "with_generator", "refined_photo", "refined_photo_generated"):
        assert {"psnr", "ssim", "masked_psnr", "sharpness"} <= set(out[k]), k
    assert out["refined_photo"]["psnr"] != out["refined_photo_generated"]["psnr"]
    for k in ("drafts", "generator"):
        assert {"psnr", "ssim", "masked_psnr", "sharpness"} <= set(out[k]) and out[k]["sharpness"] > 0, k
    assert out["timing"]["generate_s"] > 0


def test_sampling_from_the_noised_draft(tmp_path):
    """draft_start < 1 (SDEdit): the Euler steps start at that flow time from the draft noised to it."""
    g = draft_generator(tmp_path)
    base, noise = random_conditions(g)
    draft = torch.randn(noise.shape, generator=torch.Generator().manual_seed(9))
    cond = replace(base, draft=draft)
    with torch.no_grad():
        g.config.draft_start = 1.0
        from_noise = g.sample(cond, noise, steps=2, guidance=1.0)
        g.config.draft_start = 0.0
        assert torch.equal(g.sample(cond, noise, steps=2, guidance=1.0), draft)  # no time left: the draft itself
        g.config.draft_start = 0.4
        x0 = 0.6 * draft + 0.4 * noise
        t = torch.full((1,), 0.4)
        one_step = x0 - 0.4 * g(x0, t, cond)
        assert torch.allclose(g.sample(cond, noise, steps=1, guidance=1.0), one_step, atol=1e-5)
        assert not torch.allclose(g.sample(cond, noise, steps=2, guidance=1.0), from_noise)
        without = g.sample(base, noise, steps=2, guidance=1.0)  # no draft given: from noise, whatever draft_start says
        g.config.draft_start = 1.0
        assert torch.equal(g.sample(cond, noise, steps=2, guidance=1.0), from_noise)
        assert torch.equal(g.sample(base, noise, steps=2, guidance=1.0), without)


def test_pipeline_with_a_draft_generator(tmp_path, body):
    """A pipeline folder naming a draft generator: the novel views come after the reconstruction (drafts are
    its renders) and become the refinement's extra targets; report and result carry them."""
    from humansplat.pipeline import Pipeline
    from humansplat.preprocess import preprocess

    _, rec = tiny_reconstructor(tmp_path, body)
    draft_generator(tmp_path).save_pretrained(tmp_path / "pipe" / "gen")
    (tmp_path / "pipe" / "pipeline.json").write_text(json.dumps({"reconstructor": str(rec), "novel_views": "gen"}))
    inputs = preprocess(ROOT / "examples" / "pexels-photo-6311555-removebg.png", resolution=128)
    pipe = Pipeline(tmp_path / "pipe", "cpu", refine_steps=2)
    events = []
    result = pipe(inputs, on_stage=events.append)
    assert [e.name for e in events] == ["body_fit", "reconstruct", "crop", "novel_views", "refine"]
    K, S = pipe.generator.config.views, pipe.generator.config.image_size
    assert result.novel_views.shape == (K, 3, S, S) and result.report()["novel_views"].endswith("gen")
    # the generated views are refinement targets: without them the same refinement ends elsewhere
    pipe.skip.add("novel_views")
    alone = pipe(inputs)
    assert alone.novel_views is None and not torch.allclose(alone.gaussians.sh, result.gaussians.sh)
    # "fuse_views": the reconstruction runs again with the generated views as inputs
    (tmp_path / "pipe" / "pipeline.json").write_text(json.dumps({"reconstructor": str(rec), "novel_views": "gen", "fuse_views": True}))
    fused_pipe = Pipeline(tmp_path / "pipe", "cpu", refine_steps=0)
    events = []
    fused = fused_pipe(inputs, on_stage=events.append)
    assert [e.name for e in events] == ["body_fit", "reconstruct", "crop", "novel_views", "fuse"]
    plain = Pipeline(tmp_path / "pipe", "cpu", refine_steps=0, novel_views="off")(inputs)
    assert fused.gaussians.means.shape[0] > plain.gaussians.means.shape[0]  # the views' own per-pixel Gaussians


def test_training_times_of_drafted_samples_stop_at_draft_time_max(tmp_path):
    """draft_time_max: samples with a draft train at flow times up to it (where the sampler starts them);
    samples whose draft is dropped keep the whole range."""
    g = draft_generator(tmp_path).train()
    g.config.draft_dropout, g.config.draft_time_max = 0.0, 0.3
    base, noise = random_conditions(g, B=256)
    keep = torch.arange(256) % 2 == 0
    cond = replace(base, draft=torch.randn(noise.shape), draft_keep=keep)
    seen = []
    forward = g.forward
    g.forward = lambda x, t, c: seen.append(t) or forward(x, t, c)
    torch.manual_seed(0)
    loss, logs = g.training_loss(noise, cond)
    t = seen[0]
    assert torch.isfinite(loss) and float(t[keep].max()) <= 0.3 and float(t[~keep].max()) > 0.6
    assert float(logs["train/draft_kept"]) == 0.5
    with pytest.raises(ValueError, match="draft_time_max"):
        replace(g.config, draft_time_max=0.0)


def test_finetune_on_a_draft_generators_views(tmp_path, body, subject):
    """extra_views from a draft generator: the frozen ``reconstructor`` drafts them (template-free when the
    plan is); without it the config is refused."""
    import humansplat.train.novelview as nv
    from humansplat.train.step import ViewPlan
    from humansplat.train.trainer import Trainer

    draft_generator(tmp_path).save_pretrained(tmp_path / "dgen")
    _, rec = tiny_reconstructor(tmp_path, body)
    cfg = tiny_config(tmp_path, "tiny_novelview_finetune.json", generator=str(tmp_path / "dgen"), reconstructor=str(rec))
    trainer = Trainer(cfg, tmp_path / "run", device="cpu")
    calls = []
    real = nv.reconstructor_drafts
    nv.reconstructor_drafts = lambda *a, **k: calls.append("body_vertices" in a[3]) or real(*a, **k)
    try:
        for template_free in (False, True):
            plan = ViewPlan([0, 1, 2], [0, 1, 2], template_free)
            inputs = nv.extra_view_inputs(cfg.extra_views, subject, plan, trainer.body, torch.Generator().manual_seed(0),
                                          *trainer.task.extra_view_models())
            assert inputs.shape == (1, 3, 3, 32, 32) and torch.equal(inputs[:, 0], subject["images"][:, 0])
    finally:
        nv.reconstructor_drafts = real
    assert calls == [True, False]  # drafted on the body, then template-free
    bare = tiny_config(tmp_path, "tiny_novelview_finetune.json", generator=str(tmp_path / "dgen"))
    with pytest.raises(ValueError, match="reconstructor"):
        Trainer(bare, tmp_path / "run2", device="cpu").task.extra_view_models()
