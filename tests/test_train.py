"""Losses, the training loop (a tiny config overfits one subject on CPU), checkpoints and resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from humansplat.body.parts import CLASS_ID
from humansplat.train.losses import (
    LPIPS,
    LossConfig,
    ReconstructionLoss,
    class_weight_table,
    pixel_depth_error,
    ssim,
)

ROOT = Path(__file__).resolve().parents[1]


def test_ssim_identity_and_degradation():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=g)
    assert torch.allclose(ssim(x, x), torch.ones(2), atol=1e-5)
    noisy = (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    worse = (x + 0.4 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    s1, s2 = ssim(x, noisy), ssim(x, worse)
    assert (s1 < 0.95).all() and (s2 < s1).all()


def test_lpips_loads_local_weights_only(tmp_path):
    torch.manual_seed(0)
    ref = LPIPS()
    for name, p in ref.named_parameters():
        p.data.normal_(0, 0.05)
        if name.startswith("lin"):  # LPIPS channel weights are non-negative
            p.data.abs_()
    path = tmp_path / "lpips_vgg.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    lp = LPIPS.from_file(path)
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(lp(x, x), torch.zeros(2), atol=1e-6)
    assert (lp(x, 1 - x) > 0).all()
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        LPIPS.from_file(tmp_path / "missing.safetensors")
    save_file({"lin0": torch.zeros(1, 64, 1, 1)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match="do not match"):
        LPIPS.from_file(tmp_path / "bad.safetensors")


def test_hierarchical_weights_emphasise_face_and_hands():
    table = class_weight_table(LossConfig().class_weights)
    assert table[CLASS_ID["Face_Neck"]] > table[CLASS_ID["Torso"]] and table[CLASS_ID["Left_Hand"]] > 1
    assert table[CLASS_ID["Lower_Lip"]] > table[CLASS_ID["Face_Neck"]]
    with pytest.raises(ValueError, match="unknown"):
        class_weight_table({"Nose": 2.0})
    # the same error costs more on a face pixel than on a torso pixel
    loss = ReconstructionLoss(LossConfig(rgb_l1=0, mask=0, ssim=0, semantic=0))
    target = torch.zeros(1, 3, 4, 4)
    labels = torch.full((1, 4, 4), CLASS_ID["Torso"])
    labels[0, 0, 0] = CLASS_ID["Face_Neck"]
    err_face, err_torso = target.clone(), target.clone()
    err_face[..., 0, 0], err_torso[..., 3, 3] = 1.0, 1.0
    m = torch.ones(1, 1, 4, 4)
    l_face, _ = loss(err_face, m, None, target, m, labels)
    l_torso, _ = loss(err_torso, m, None, target, m, labels)
    assert l_face > l_torso


# ---- the training loop on the synthetic engine (CPU, tiny) ----


def tiny_config(tmp_path: Path, name: str = "tiny.json", **kw):
    """A tiny config from configs/ with a fresh random tiny autoencoder; ``kw`` overrides fields."""
    from humansplat.models import Autoencoder, AutoencoderConfig
    from humansplat.train.config import TrainConfig

    cfg = TrainConfig.load(ROOT / "configs" / name)
    torch.manual_seed(0)
    ae = Autoencoder(AutoencoderConfig(**cfg.model["autoencoder"]))
    ae.save_pretrained(tmp_path / "ae")
    cfg.autoencoder = str(tmp_path / "ae")
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


@pytest.fixture(scope="module")
def one_subject():
    from humansplat.data import EngineConfig, SyntheticEngine

    engine = SyntheticEngine(EngineConfig(resolution=64, views=2), torch.device("cpu"))
    return engine.sample(1, torch.Generator().manual_seed(3))


@pytest.mark.slow  # about a minute on two busy CPU cores
def test_tiny_model_overfits_one_subject(tmp_path, one_subject):
    from humansplat.train.trainer import Trainer

    trainer = Trainer(tiny_config(tmp_path), tmp_path / "run", device="cpu")
    trainer.engine.sample = lambda batch_size, generator: one_subject  # the same subject every step
    trainer.fit()
    first, last = trainer.history[0], trainer.history[-1]
    assert first["loss/mse"] / last["loss/mse"] >= 10, (first, last)
    assert last["loss/total"] < first["loss/total"] / 3
    assert (tmp_path / "run" / "export" / "model.safetensors").is_file()
    assert _newest_state(tmp_path / "run")["step"] == trainer.cfg.max_steps


def test_resume_continues_from_the_checkpoint(tmp_path, one_subject):
    from humansplat.models import Reconstructor
    from humansplat.train.trainer import Trainer

    cfg = tiny_config(tmp_path, max_steps=4)
    t1 = Trainer(cfg, tmp_path / "run", device="cpu")
    t1.engine.sample = lambda batch_size, generator: one_subject
    t1.fit()
    saved = Reconstructor.from_pretrained(tmp_path / "run" / "checkpoints" / "step-00000004" / "model")
    t2 = Trainer(tiny_config(tmp_path, max_steps=6), tmp_path / "run", resume=True, device="cpu")
    assert t2.step == 4 and len(t2.optimizer.state) > 0
    assert all(torch.equal(a, b) for a, b in zip(saved.state_dict().values(), t2.model.state_dict().values()))
    t2.engine.sample = lambda batch_size, generator: one_subject
    t2.fit()
    assert _newest_state(tmp_path / "run")["step"] == 6


def _newest_state(run: Path) -> dict:
    from humansplat.train.trainer import complete_checkpoints

    return json.loads((complete_checkpoints(run)[0] / "state.json").read_text())


def test_resume_skips_a_torn_checkpoint_and_cleans_leftovers(tmp_path, one_subject, capsys):
    """A checkpoint whose files do not match its checksums (a kill mid-write, a bad disk) is passed over for
    the last complete one; temporary folders of a killed run are removed; only keep_checkpoints are kept."""
    from humansplat.train.trainer import Trainer, complete_checkpoints

    run = tmp_path / "run"
    for steps in (2, 4, 6):
        t = Trainer(tiny_config(tmp_path, max_steps=steps, keep_checkpoints=2), run, resume=steps > 2, device="cpu")
        t.engine.sample = lambda batch_size, generator: one_subject
        t.fit()
    assert [p.name for p in complete_checkpoints(run)] == ["step-00000006", "step-00000004"]
    with open(run / "checkpoints" / "step-00000006" / "model" / "model.safetensors", "r+b") as f:
        f.seek(200)
        f.write(b"torn")
    leftover = run / "checkpoints" / f".step-00000008.humansplat-{2**22 + 12345}-abc.tmp"  # no such process
    leftover.mkdir()
    (leftover / "model.safetensors").write_bytes(b"partial")
    t = Trainer(tiny_config(tmp_path, max_steps=8), run, resume=True, device="cpu")
    assert t.step == 4 and "skipped incomplete or corrupt: step-00000006" in capsys.readouterr().out
    assert not leftover.exists()


def test_sigterm_saves_a_checkpoint_and_exits_non_zero(tmp_path, one_subject, monkeypatch):
    import os
    import signal

    from humansplat.cli import main
    from humansplat.train import trainer as trainer_module

    real_step = trainer_module.Trainer.train_step

    def step_then_term(self):
        logs = real_step(self)
        if self.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return logs

    from humansplat.data import SyntheticEngine

    monkeypatch.setattr(trainer_module.Trainer, "train_step", step_then_term)
    monkeypatch.setattr(SyntheticEngine, "sample", lambda self, batch_size, generator: one_subject)
    cfg = tiny_config(tmp_path)
    config_file = tmp_path / "tiny.json"
    config_file.write_text(json.dumps(cfg.to_dict()))
    code = main(["train", str(config_file), "--out", str(tmp_path / "run"), "--device", "cpu"])
    assert code == 128 + signal.SIGTERM
    assert _newest_state(tmp_path / "run")["step"] == 3


def test_pixel_view_term_trains_only_the_pixel_gaussians(tmp_path, one_subject):
    from contextlib import nullcontext

    from humansplat.train.step import ReconstructionStep, ViewPlan
    from humansplat.train.trainer import Trainer

    trainer = Trainer(tiny_config(tmp_path, max_steps=1), tmp_path / "run", device="cpu")
    model, plan = trainer.model, ViewPlan(inputs=[0], supervised=[0, 1, 2], template_free=False)
    losses = {}
    for weight in (0.0, 1.0):
        loss_fn = ReconstructionLoss(LossConfig(pixel_views=weight))
        step = ReconstructionStep(model, loss_fn, "torch", trainer.body.vertex_labels)
        torch.manual_seed(0)
        losses[weight] = step(one_subject, plan, nullcontext())
    (with_term, logs, _), (without, _, _) = losses[1.0], losses[0.0]
    assert "loss/pixel_views" in logs and float(logs["loss/pixel_views"]) > 0
    assert torch.allclose(with_term - without, logs["loss/pixel_views"], atol=1e-5)
    model.zero_grad()
    (with_term - without).backward()
    assert model.pixel_head.out.weight.grad.abs().sum() > 0
    assert model.anchor_head.out.weight.grad is None or model.anchor_head.out.weight.grad.abs().sum() == 0


def test_template_free_steps_size_anchors_for_the_framing(tmp_path):
    """A template-free step on a portrait places its anchors for a head (0.3 m), not a whole person: nearer
    the camera by the height ratio than the same photo's anchors without keypoints (scans: 1.7 m)."""
    from humansplat.cameras import project_points
    from humansplat.data import EngineConfig, SyntheticEngine
    from humansplat.preprocess.framing import VISIBLE_HEIGHT_M, framing_heights
    from humansplat.train.step import ReconstructionStep, ViewPlan
    from humansplat.train.trainer import Trainer

    trainer = Trainer(tiny_config(tmp_path, max_steps=1), tmp_path / "run", device="cpu")
    step = ReconstructionStep(trainer.model, ReconstructionLoss(LossConfig()), "torch", trainer.body.vertex_labels)
    engine = SyntheticEngine(EngineConfig(resolution=64, views=1, head_only=1.0), torch.device("cpu"))
    for seed in range(10):  # the first portrait that reads head only (some read as half body, as photos would)
        batch = engine.sample(1, torch.Generator().manual_seed(seed))
        camera = batch["cameras"][:, 0]
        if float(framing_heights(batch["body_keypoints"], camera)[0]) == VISIBLE_HEIGHT_M["head_only"]:
            break
    plan = ViewPlan(inputs=[0], supervised=[0], template_free=True)

    def depth(b: dict) -> float:
        return float(project_points(step.anchors(b, plan).xyz, camera)[1].median())

    ratio = depth(batch) / depth({**batch, "body_keypoints": None})
    assert ratio == pytest.approx(VISIBLE_HEIGHT_M["head_only"] / VISIBLE_HEIGHT_M["full_body"], rel=0.02)


def test_pixel_depth_error_on_two_planes():
    """Blocks on one surface count, blocks across an edge or off the subject do not; opacities weigh."""
    from humansplat.cameras import Cameras, pixel_rays

    H = W = 8
    depths = torch.zeros(1, 1, 1, H, W)
    depths[..., :6, :4], depths[..., :6, 4:] = 2.0, 3.0  # two planes; rows 6-7 off the subject
    K = torch.tensor([[[8.0, 0, 4], [0, 8.0, 4], [0, 0, 1]]])
    cams = Cameras(K, torch.eye(4)[None], W, H)
    _, d = pixel_rays(cams, 4, 4)  # 2x2 blocks
    block = torch.nn.functional.avg_pool2d(depths[0], 2)[0, 0]  # true depth per block
    means = (d[0] * (block / d[0, ..., 2])[..., None]).reshape(1, 16, 3)
    w2c = cams.w2c[None]
    assert float(pixel_depth_error(means, w2c, depths, 4)) < 1e-6
    shifted = means.reshape(4, 4, 3).clone()
    shifted[..., 2] += 0.1
    assert abs(float(pixel_depth_error(shifted.reshape(1, 16, 3), w2c, depths, 4)) - 0.1) < 1e-5
    wrong_off = means.reshape(4, 4, 3).clone()
    wrong_off[3, :, 2] += 5.0  # the off-subject row of blocks does not count
    assert float(pixel_depth_error(wrong_off.reshape(1, 16, 3), w2c, depths, 4)) < 1e-6
    weights = torch.ones(1, 16)
    weights.reshape(4, 4)[0, 0] = 0.0
    bad = means.reshape(4, 4, 3).clone()
    bad[0, 0, 2] += 1.0  # a transparent Gaussian off the surface costs nothing when weighted
    assert float(pixel_depth_error(bad.reshape(1, 16, 3), w2c, depths, 4, weights)) < 1e-6
    assert float(pixel_depth_error(bad.reshape(1, 16, 3), w2c, depths, 4)) > 0.05


def step_losses(tmp_path: Path, batch: dict, **terms):
    """One tiny model's training step on ``batch`` (input view 0, supervised 0 and 1) with the LossConfig
    ``terms`` and without them: (loss with, its logs, loss without, the step with them)."""
    from contextlib import nullcontext

    from humansplat.train.step import ReconstructionStep, ViewPlan
    from humansplat.train.trainer import Trainer

    trainer = Trainer(tiny_config(tmp_path, max_steps=1), tmp_path / "run", device="cpu")
    plan = ViewPlan(inputs=[0], supervised=[0, 1], template_free=False)
    runs = {}
    for on in (False, True):
        step = ReconstructionStep(trainer.model, ReconstructionLoss(LossConfig(**(terms if on else {}))), "torch", trainer.body.vertex_labels)
        torch.manual_seed(0)
        runs[on] = (step, step(batch, plan, nullcontext()))
    (step, (with_terms, logs, _)), (_, (without, _, _)) = runs[True], runs[False]
    return with_terms, logs, without, step


def test_pixel_depth_term(tmp_path, one_subject):
    with_term, logs, without, _ = step_losses(tmp_path, one_subject, pixel_depth=2.0)
    assert float(logs["metric/pixel_depth_cm"]) > 0
    assert torch.allclose(with_term - without, 2.0 * logs["metric/pixel_depth_cm"] / 100, atol=1e-5)


def test_warm_start_loads_weights_except_the_skipped_prefixes(tmp_path, one_subject):
    from humansplat.models import Reconstructor
    from humansplat.train.trainer import Trainer

    t1 = Trainer(tiny_config(tmp_path, max_steps=3), tmp_path / "first", device="cpu")
    t1.engine.sample = lambda batch_size, generator: one_subject
    t1.fit()
    source = Reconstructor.from_pretrained(tmp_path / "first" / "checkpoints" / "step-00000003" / "model").state_dict()
    cfg = tiny_config(tmp_path, init_from=str(tmp_path / "first" / "checkpoints" / "step-00000003" / "model"), init_skip=("pixel_head.out",), seed=5)
    t2 = Trainer(cfg, tmp_path / "second", device="cpu")
    own = t2.model.state_dict()
    assert t2.step == 0 and len(t2.optimizer.state) == 0  # a new run, not a resume
    assert torch.equal(own["anchor_head.out.weight"], source["anchor_head.out.weight"])
    assert not torch.equal(own["pixel_head.out.weight"], source["pixel_head.out.weight"])
    with pytest.raises(ValueError, match="names no parameter"):
        Trainer(tiny_config(tmp_path, init_from=cfg.init_from, init_skip=("no_such_layer",)), tmp_path / "third", device="cpu")


def test_warm_start_into_photo_colors_starts_every_gaussian_at_the_prior(tmp_path):
    """Weights trained without the photo colour prior, warm-started into a model with it: the RGB outputs
    are zeroed (their absolute colours would otherwise be added to the prior's logit); the rest loads."""
    from humansplat.train.trainer import Trainer

    t1 = Trainer(tiny_config(tmp_path, max_steps=1), tmp_path / "first", device="cpu")
    t1.model.save_pretrained(tmp_path / "plain")
    cfg = tiny_config(tmp_path, init_from=str(tmp_path / "plain"))
    cfg.model = {**cfg.model, "photo_colors": True}
    model = Trainer(cfg, tmp_path / "second", device="cpu").model
    source, own = t1.model.state_dict(), model.state_dict()
    assert all(torch.equal(own[k], source[k]) for k in ("pos_embed", "blocks.0.image_self.attn.q.weight", "semantic_decoder.weight"))
    pixel_rgb = slice(1 + 11, 1 + 14)  # depth, offset 3, quaternion 4, scale 3, opacity 1, then RGB
    assert own["pixel_head.out.weight"][pixel_rgb].abs().sum() == 0 and own["pixel_head.out.bias"][pixel_rgb].abs().sum() == 0
    assert torch.equal(own["pixel_head.out.weight"][:pixel_rgb.start], source["pixel_head.out.weight"][:pixel_rgb.start])
    group = 14 + model.config.feature_dim
    for k in range(model.config.gaussians_per_anchor):
        assert own["anchor_head.out.bias"][k * group + 11 : k * group + 14].abs().sum() == 0
        assert torch.equal(own["anchor_head.out.bias"][k * group : k * group + 11], source["anchor_head.out.bias"][k * group : k * group + 11])
    # weights with the prior into a model without it: their RGB outputs would be misread as absolute colours
    model.save_pretrained(tmp_path / "with_prior")
    with pytest.raises(ValueError, match="photo_colors"):
        Trainer(tiny_config(tmp_path, init_from=str(tmp_path / "with_prior")), tmp_path / "third", device="cpu")


def test_warm_start_keeps_the_latent_scale_of_the_encoder_it_loads(tmp_path):
    """The source's encoder comes with its latent scale; only a warm start that skips the encoder takes the
    configured autoencoder's (a frozen v1 encoder once ran with v2's scale this way)."""
    from humansplat.models import Autoencoder
    from humansplat.train.trainer import Trainer

    t1 = Trainer(tiny_config(tmp_path, max_steps=1), tmp_path / "first", device="cpu")
    t1.model.config.autoencoder.scale = 1.7
    t1.model.save_pretrained(tmp_path / "source")
    configured = Autoencoder.from_pretrained(tmp_path / "ae").config.scale
    assert configured != 1.7
    loaded = Trainer(tiny_config(tmp_path, init_from=str(tmp_path / "source")), tmp_path / "second", device="cpu").model
    assert loaded.config.autoencoder.scale == 1.7
    skipped = Trainer(tiny_config(tmp_path, init_from=str(tmp_path / "source"), init_skip=("encoder.",)), tmp_path / "third", device="cpu")
    assert skipped.model.config.autoencoder.scale == configured


def test_semantic_balance_weighs_rare_parts_up():
    from humansplat.train.losses import LossConfig, ReconstructionLoss, balance_weights

    labels = torch.zeros(1, 10, 10, dtype=torch.long)
    labels[0, :2] = 5  # 20 % of the pixels
    labels[0, 9, 9] = 7  # 1 %
    w = balance_weights(labels, 28, 0.5)
    assert torch.isclose(w.mean(), torch.tensor(1.0))
    assert torch.isclose(w[0, 9, 9] / w[0, 5, 5], torch.tensor((0.79 / 0.01) ** 0.5), rtol=1e-4)
    assert torch.equal(balance_weights(labels, 28, 0.0), torch.ones_like(w))
    # the loss: a wrong guess on the rare part costs more with the balance than without
    logits = torch.zeros(1, 28, 10, 10)
    logits[:, 0] = 5.0
    logits[0, 5, :2] = 10.0  # background and the 20 % part right, the 1 % part wrong
    rgb, alpha = torch.ones(1, 3, 10, 10), torch.ones(1, 1, 10, 10)
    plain = ReconstructionLoss(LossConfig(class_weights={}))(rgb, alpha, logits, rgb, alpha, labels)[1]["loss/semantic"]
    balanced = ReconstructionLoss(LossConfig(class_weights={}, semantic_balance=0.5))(rgb, alpha, logits, rgb, alpha, labels)[1]["loss/semantic"]
    assert balanced > 2 * plain


def test_train_command_refuses_to_overwrite_a_run(tmp_path):
    from humansplat.cli import main

    (tmp_path / "run" / "checkpoints" / "step-00000001").mkdir(parents=True)
    assert main(["train", str(ROOT / "configs" / "tiny.json"), "--out", str(tmp_path / "run")]) == 2
    assert main(["train", str(tmp_path / "missing.json")]) == 2


def test_evaluate_scores_a_subject_and_its_pixel_depth(tmp_path, one_subject):
    """`humansplat eval`'s scorer on one engine subject: PSNR per view, and the pixel Gaussians' depth error,
    which moving every Gaussian 10 cm along the input camera's axis raises."""
    from humansplat.evaluate import evaluate, format_table
    from humansplat.train.trainer import Trainer

    trainer = Trainer(tiny_config(tmp_path, max_steps=1), tmp_path / "run", device="cpu")
    model = trainer.model.eval()
    subject = {k: one_subject[k][0] for k in ("images", "masks", "depths")}
    subject.update(cameras=one_subject["cameras"][0], body_vertices=one_subject["body_vertices"][0],
                   vertex_labels=trainer.body.vertex_labels, name="s")  # fmt: skip
    summary = evaluate(model, [subject], "body", torch.device("cpu"))
    assert summary["views_per_subject"] == subject["images"].shape[0] and summary["pixel_depth_cm"] > 0
    assert "depth error" in format_table(summary)
    forward = subject["cameras"].w2c[0, 2, :3]
    original = model.forward

    def pushed(*args, **kw):
        g = original(*args, **kw)
        g.means = g.means + 0.1 * forward
        return g

    model.forward = pushed
    far = evaluate(model, [subject], "body", torch.device("cpu"))
    assert far["pixel_depth_cm"] > summary["pixel_depth_cm"] + 2


def test_side_views_are_the_orbit_views_at_90_and_270_degrees():
    from humansplat.cameras import orbit_cameras
    from humansplat.evaluate import side_views

    cams = orbit_cameras(torch.arange(36) * 10.0, 0.0, 3.0, size=32)
    assert torch.nonzero(side_views(cams)).squeeze(1).tolist() == [8, 9, 10, 26, 27, 28]
    shifted = orbit_cameras(torch.arange(36) * 10.0 + 40.0, 0.0, 3.0, size=32)  # relative to view 0
    assert torch.equal(side_views(shifted), side_views(cams))


def test_evaluate_fitted_body_refined_with_regions_and_part_ious(tmp_path, one_subject):
    """The user's protocol (body fitted to simulated keypoints, refinement on) reports the fit, the refinement
    time, face/hand PSNR and a per-class IoU for every part that occurs."""
    from humansplat.evaluate import evaluate, format_table
    from humansplat.refine import RefineConfig
    from humansplat.train.trainer import Trainer

    trainer = Trainer(tiny_config(tmp_path, max_steps=1), tmp_path / "run", device="cpu")
    model = trainer.model.eval()
    subject = {k: one_subject[k][0] for k in ("images", "masks", "labels")}
    subject.update(cameras=one_subject["cameras"][0], body_vertices=one_subject["body_vertices"][0],
                   body_keypoints=one_subject["body_keypoints"][0], vertex_labels=trainer.body.vertex_labels, name="s")  # fmt: skip
    summary = evaluate(model, [subject], "body", torch.device("cpu"), body="fitted", refine_config=RefineConfig(steps=2, mode="full"))
    assert summary["body"] == "fitted" and summary["body_fit"]["fit_s_mean"] > 0
    assert summary["per_subject"][0]["prior"] in ("body", "template_free")
    assert summary["refine"] == {"mode": "full", "steps": 2} and summary["timing_s"]["refine_mean"] > 0
    assert summary["all_views"]["face_psnr"] is not None and "hands_psnr" in summary["all_views"]
    present = set(int(c) for c in subject["labels"].unique() if c > 0)
    assert len(summary["all_views"]["part_iou"]) == len(present)
    table = format_table(summary)
    assert "worst part IoU" in table and "fitted body" in table and "face PSNR" in table


def test_streak_penalty_hits_needles_along_the_ray_only(tmp_path, one_subject):
    import math

    from humansplat.train.losses import streak_penalty

    w2c = torch.eye(4)[None, None]  # camera at the origin looking down +z
    means = torch.tensor([[[0.0, 0.0, 2.0], [0.0, 0.0, 2.0], [0.0, 0.0, 2.0]]])
    ident = torch.tensor([1.0, 0.0, 0.0, 0.0]).expand(1, 3, 4)
    log_s = torch.log(torch.tensor([[[0.01, 0.01, 0.001], [0.05, 0.005, 0.005], [0.005, 0.005, 0.05]]]))  # disc, across, along
    one = lambda i: streak_penalty(means[:, i : i + 1], ident[:, i : i + 1], log_s[:, i : i + 1], torch.ones(1, 1), w2c)  # noqa: E731
    assert float(one(0)) == 0 and float(one(1)) == 0
    assert math.isclose(float(one(2)), math.log(10 / 1.5), rel_tol=1e-4)
    # turned 90 degrees about y, the along-ray needle lies across the ray
    turned = torch.tensor([[[math.cos(math.pi / 4), 0.0, math.sin(math.pi / 4), 0.0]]])
    assert float(streak_penalty(means[:, 2:], turned, log_s[:, 2:], torch.ones(1, 1), w2c)) < 1e-5
    # in the training step: off by default, logged and differentiable when on
    from contextlib import nullcontext

    from humansplat.train.step import ReconstructionStep, ViewPlan
    from humansplat.train.trainer import Trainer

    trainer = Trainer(tiny_config(tmp_path, max_steps=1), tmp_path / "run", device="cpu")
    plan = ViewPlan(inputs=[0], supervised=[0, 1], template_free=False)
    assert LossConfig().streaks == 0
    step = ReconstructionStep(trainer.model, ReconstructionLoss(LossConfig(streaks=1.0, streak_max_ratio=0.5)), "torch",
                              trainer.body.vertex_labels)  # fmt: skip
    loss, logs, _ = step(one_subject, plan, nullcontext())
    assert float(logs["loss/streaks"]) > 0
    loss.backward()
    assert trainer.model.pixel_head.out.weight.grad.abs().sum() > 0


def test_streaks_config_warm_starts_from_the_shipped_weights():
    from humansplat.train.config import TrainConfig

    cfg = TrainConfig.load(ROOT / "configs" / "streaks.json")
    assert cfg.loss.streaks > 0 and cfg.loss.pixel_views == 0.5 and cfg.loss.pixel_depth == 1.0
    assert Path(cfg.init_from).resolve() == (ROOT / "src" / "humansplat" / "weights" / "humansplat-main").resolve()


def test_warm_start_onto_a_finer_pixel_grid_starts_as_the_coarse_one(tmp_path):
    """gaussian_stride 2 weights into a stride-1 model: the pixel head's hidden map starts as the coarse map,
    nearest-upsampled, and the skip CNN's first conv as the strided one, run densely; the rest loads as is."""
    import torch.nn.functional as F

    from humansplat.train.trainer import Trainer

    coarse_cfg = tiny_config(tmp_path, max_steps=1)
    coarse_cfg.model = {**coarse_cfg.model, "gaussian_stride": 2}
    coarse = Trainer(coarse_cfg, tmp_path / "first", device="cpu").model
    coarse.save_pretrained(tmp_path / "coarse")
    fine = Trainer(tiny_config(tmp_path, init_from=str(tmp_path / "coarse")), tmp_path / "second", device="cpu").model
    assert fine.config.gaussian_stride == 1 and fine.pixel_head.upsample == 2 * coarse.pixel_head.upsample
    tokens = torch.randn(2, 4, 4, fine.config.dim)
    with torch.no_grad():
        want = F.interpolate(coarse.pixel_head.unpatched(tokens), scale_factor=2, mode="nearest")
        assert torch.allclose(fine.pixel_head.unpatched(tokens), want, atol=1e-6)
        image = torch.rand(1, 3, 32, 32)
        assert torch.allclose(fine.pixel_skip.net[0](image)[..., ::2, ::2], coarse.pixel_skip.net[0](image), atol=1e-6)
    own, source = fine.state_dict(), coarse.state_dict()
    assert all(torch.equal(own[k], source[k]) for k in source if not k.startswith("pixel_head.unpatch"))
    # the other way (a finer grid's weights into a coarser model) has no exact counterpart: an error
    fine.save_pretrained(tmp_path / "fine")
    back = tiny_config(tmp_path, init_from=str(tmp_path / "fine"))
    back.model = {**back.model, "gaussian_stride": 2}
    with pytest.raises(ValueError, match="gaussian_stride"):
        Trainer(back, tmp_path / "third", device="cpu")


def test_warm_start_onto_a_finer_pixel_path_loads_every_tensor_and_trains(tmp_path, one_subject):
    """A model whose per-pixel path sees the photo at twice the transformer's size (``pixel_size``) warm-starts
    from one without it tensor for tensor, and trains on the engine's photos at that size."""
    from humansplat.train.trainer import Trainer

    first = Trainer(tiny_config(tmp_path, max_steps=1), tmp_path / "first", device="cpu").model
    first.save_pretrained(tmp_path / "coarse")
    cfg = tiny_config(tmp_path, init_from=str(tmp_path / "coarse"), max_steps=2, log_every=1)
    cfg.model = {**cfg.model, "pixel_size": 64}
    cfg.data = {**cfg.data, "resolution": 64}
    cfg.loss.pixel_views = 0.5
    trainer = Trainer(cfg, tmp_path / "second", device="cpu")
    own, source = trainer.model.state_dict(), first.state_dict()
    assert own.keys() == source.keys() and all(torch.equal(own[k], source[k]) for k in source)
    assert trainer.model.config.pixel_grid == 64
    trainer.engine.sample = lambda batch_size, generator: one_subject  # rendered at 64 px
    trainer.fit()
    assert all(math.isfinite(h["loss/total"]) for h in trainer.history)
    assert "loss/pixel_views" in trainer.history[-1]


def test_framed_pixels_keep_what_a_portrait_frames_and_drop_the_body_below():
    """A portrait's orbit views show the whole person; framed_pixels keeps the head and the background and
    drops the feet. The input view is framed everywhere; a whole-body photo's orbit views almost everywhere."""
    from humansplat.body.parts import CLASS_ID
    from humansplat.data import EngineConfig, SyntheticEngine
    from humansplat.train.step import framed_pixels

    def framed(head_only: float, seed: int):
        engine = SyntheticEngine(EngineConfig(resolution=64, views=3, head_only=head_only, input_elevation=(0.0, 0.0)), torch.device("cpu"))
        batch = engine.sample(1, torch.Generator().manual_seed(seed))
        return batch, framed_pixels(batch["depths"], batch["cameras"], batch["cameras"][:, 0])[:, :, 0]

    batch, keep = framed(1.0, 0)
    labels, subject = batch["labels"], batch["depths"][:, :, 0] > 0
    assert bool(keep[:, 0].all()) and bool(keep[~subject].all())
    orbit, orbit_labels = keep[:, 1:], labels[:, 1:]
    feet = torch.isin(orbit_labels, torch.tensor([CLASS_ID[c] for c in ("Left_Shoe", "Right_Shoe", "Left_Foot", "Right_Foot",
                                                                         "Left_Lower_Leg", "Right_Lower_Leg")]))
    face = orbit_labels == CLASS_ID["Face_Neck"]
    assert feet.any() and float(orbit[feet].mean()) == 0.0
    assert face.any() and float(orbit[face].mean()) > 0.8
    whole, keep_whole = framed(0.0, 1)
    on_subject = whole["depths"][:, 1:, 0] > 0
    assert float(keep_whole[:, 1:][on_subject].mean()) > 0.97


def test_a_loss_with_valid_pixels_pulls_nowhere_else():
    """Outside ``valid`` the RGB, mask and semantic terms give no gradient; an all-ones ``valid`` changes nothing."""
    torch.manual_seed(0)
    loss = ReconstructionLoss(LossConfig(ssim=0.0))
    rgb, alpha = torch.rand(2, 3, 16, 16, requires_grad=True), torch.rand(2, 1, 16, 16, requires_grad=True)
    logits = torch.randn(2, 28, 16, 16, requires_grad=True)
    target, mask, labels = torch.rand(2, 3, 16, 16), (torch.rand(2, 1, 16, 16) > 0.5).float(), torch.randint(0, 28, (2, 16, 16))
    valid = torch.ones(2, 1, 16, 16)
    valid[..., 8:, :] = 0
    total, _ = loss(rgb, alpha, logits, target, mask, labels, valid)
    total.backward()
    for g in (rgb.grad, alpha.grad, logits.grad):
        assert g[..., 8:, :].abs().max() == 0 and g[..., :8, :].abs().max() > 0
    plain = loss(rgb, alpha, logits, target, mask, labels)[0]
    assert torch.allclose(plain, loss(rgb, alpha, logits, target, mask, labels, torch.ones_like(valid))[0])


def test_a_framed_template_free_step_on_a_portrait_supervises_only_its_frame(tmp_path):
    """With ``template_free_framed``, a template-free step on a portrait logs the framed share of its pixels (< 1)
    and scores only the crops of regions the photo shows (an orbit view's hand crop goes when the photo has no hand)."""
    from contextlib import nullcontext

    from humansplat.data import EngineConfig, SyntheticEngine
    from humansplat.train.step import ReconstructionStep, ViewPlan
    from humansplat.train.trainer import Trainer

    trainer = Trainer(tiny_config(tmp_path, max_steps=1), tmp_path / "run", device="cpu")
    engine = SyntheticEngine(EngineConfig(resolution=64, views=2, head_only=1.0, crop_size=16), torch.device("cpu"))
    batch = engine.sample(1, torch.Generator().manual_seed(0))
    plan = ViewPlan(inputs=[0], supervised=[0, 1, 2], template_free=True)
    cfg = LossConfig(region_crops=0.5, template_free_framed=True)
    step = ReconstructionStep(trainer.model, ReconstructionLoss(cfg), "torch", trainer.body.vertex_labels)
    _, logs, _ = step(batch, plan, nullcontext())
    assert 0.3 < float(logs["train/framed_share"]) < 1.0
    plain = ReconstructionStep(trainer.model, ReconstructionLoss(LossConfig(region_crops=0.5)), "torch", trainer.body.vertex_labels)
    assert "train/framed_share" not in plain(batch, plan, nullcontext())[1]
    g = trainer.model(batch["images"][:, :1], batch["cameras"][:, :1], step.anchors(batch, plan))
    regions = batch["crop_valid"].shape[1] // 2
    only_orbit = {**batch, "crop_valid": torch.cat([torch.zeros(1, regions, dtype=torch.bool), torch.ones(1, regions, dtype=torch.bool)], 1)}
    assert step.region_crop_loss(g, only_orbit, framed_only=True)[0] is None
    assert step.region_crop_loss(g, only_orbit, framed_only=False)[0] is not None


def test_anchor_view_term_trains_only_the_anchor_gaussians(tmp_path, one_subject):
    """``anchor_views``: the novel views rendered from the anchor Gaussians alone, scored; its gradient reaches
    the anchor head and not the pixel head, and a step without novel views has no such term."""
    from contextlib import nullcontext

    from humansplat.train.step import ReconstructionStep, ViewPlan
    from humansplat.train.trainer import Trainer

    trainer = Trainer(tiny_config(tmp_path, max_steps=1), tmp_path / "run", device="cpu")
    model, plan = trainer.model, ViewPlan(inputs=[0], supervised=[0, 1, 2], template_free=False)
    results = {}
    for weight in (0.0, 1.0):
        step = ReconstructionStep(model, ReconstructionLoss(LossConfig(anchor_views=weight)), "torch", trainer.body.vertex_labels)
        results[weight] = step(one_subject, plan, nullcontext())
    (with_term, logs, _), (without, _, _) = results[1.0], results[0.0]
    assert float(logs["loss/anchor_views"]) > 0
    assert torch.allclose(with_term - without, logs["loss/anchor_views"], atol=1e-5)
    model.zero_grad()
    (with_term - without).backward()
    assert model.anchor_head.out.weight.grad.abs().sum() > 0
    assert model.pixel_head.out.weight.grad is None or model.pixel_head.out.weight.grad.abs().sum() == 0
    inputs_only = ViewPlan(inputs=[0], supervised=[0], template_free=False)
    assert "loss/anchor_views" not in step(one_subject, inputs_only, nullcontext())[1]
