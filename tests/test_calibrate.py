"""The part-logit recalibration: the shift it fits, the model applying it, the script writing it."""

import json
import runpy
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from humansplat.data.engine import EngineConfig, SyntheticEngine
from humansplat.models import Reconstructor
from humansplat.train.calibrate import calibrate_semantics, fit_semantic_shift, semantic_logits
from test_model import tiny_config
from test_novelview_draft import tiny_reconstructor

SCRIPT = Path(__file__).parents[1] / "scripts/calibrate_semantics.py"


def test_fit_semantic_shift_undoes_a_prior_shift_and_keeps_the_silhouette():
    """Labels drawn from softmax(z), class 0 the background; the model reports z - delta (a loss that favoured
    some parts): the fit finds delta again among the parts (up to a constant), lowers their cross-entropy, leaves
    the background's logit alone and keeps the foreground/background odds on average."""
    g = torch.Generator().manual_seed(0)
    z = 2 * torch.randn(40_000, 5, generator=g)
    labels = torch.multinomial(z.softmax(-1), 1, generator=g)[:, 0]
    delta = torch.tensor([0.0, 1.5, -1.0, 0.5, -1.0])
    shift = fit_semantic_shift(z - delta, labels)
    assert shift[0] == 0
    assert torch.allclose(shift[1:] - shift[1:].mean(), (delta - delta[1:].mean())[1:], atol=0.08), shift
    fg = labels > 0
    parts = lambda s: F.cross_entropy((z - delta + s)[fg][:, 1:], labels[fg] - 1)  # noqa: E731
    assert parts(shift) < parts(torch.zeros(5)) - 0.05
    odds = lambda s: ((z - delta + s)[fg][:, 1:].logsumexp(-1) - (z - delta + s)[fg][:, 0]).mean()  # noqa: E731
    assert abs(odds(shift) - odds(torch.zeros(5))) < 1e-3


def test_decode_semantics_adds_the_configured_shift_and_it_round_trips(tmp_path):
    shift = tuple(float(i % 5) - 2 for i in range(28))
    torch.manual_seed(0)
    model = Reconstructor(tiny_config(semantic_shift=shift)).eval()
    feats = torch.randn(3, 7, model.config.feature_dim)
    raw = model.decode_semantics(feats, calibrated=False)
    assert torch.allclose(model.decode_semantics(feats), raw + torch.tensor(shift))
    model.save_pretrained(tmp_path / "m")
    again = Reconstructor.from_pretrained(tmp_path / "m")
    assert again.config.semantic_shift == shift and torch.allclose(again.decode_semantics(feats), model.decode_semantics(feats))
    plain = Reconstructor(tiny_config())
    assert torch.equal(plain.decode_semantics(feats, calibrated=False), plain.decode_semantics(feats))  # no shift: none added
    with pytest.raises(ValueError, match="semantic_shift has 3 values"):
        tiny_config(semantic_shift=(0.0, 1.0, 2.0))


def test_calibrate_semantics_on_engine_subjects_lowers_the_parts_cross_entropy(tmp_path, body):
    model, _ = tiny_reconstructor(tmp_path, body)
    engine = SyntheticEngine(EngineConfig(resolution=32, views=2), torch.device("cpu"), body=body)
    shift = calibrate_semantics(model, engine, 3, torch.Generator().manual_seed(1), batch_size=2)
    assert len(shift) == model.config.num_classes and shift[0] == 0
    batch = engine.sample(2, torch.Generator().manual_seed(1))  # the first batch the calibration drew
    logits, labels = semantic_logits(model, engine, batch)
    assert labels.numel() > 100 and logits.shape == (labels.numel(), model.config.num_classes)
    fg = labels > 0
    parts = lambda s: F.cross_entropy((logits + s)[fg][:, 1:], labels[fg] - 1)  # noqa: E731
    assert parts(torch.tensor(shift)) < parts(torch.zeros(len(shift)))


def test_script_writes_only_the_config(tmp_path, body, monkeypatch, capsys):
    model, weights = tiny_reconstructor(tmp_path, body)
    (tmp_path / "train.json").write_text(json.dumps({"name": "t", "data": {"resolution": 32, "views": 1, "crop_size": 16}}))
    before = (weights / "model.safetensors").read_bytes()
    argv = [str(SCRIPT), str(weights), "--train-config", str(tmp_path / "train.json"), "--subjects", "1", "--device", "cpu"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(SCRIPT), run_name="__main__")
    assert done.value.code == 0
    assert (weights / "model.safetensors").read_bytes() == before
    shift = Reconstructor.from_pretrained(weights).config.semantic_shift
    assert len(shift) == 28 and replace(model.config, semantic_shift=shift) == Reconstructor.from_pretrained(weights).config
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), str(tmp_path / "missing"), "--train-config", str(tmp_path / "train.json")])
    with pytest.raises(SystemExit) as failed:
        runpy.run_path(str(SCRIPT), run_name="__main__")
    assert failed.value.code == 2 and "calibrate_semantics:" in capsys.readouterr().err


def test_a_training_run_calibrates_its_last_export_only(tmp_path):
    from test_train import tiny_config as tiny_train_config

    from humansplat.train.trainer import Trainer, complete_checkpoints

    cfg = tiny_train_config(tmp_path, max_steps=2, calibrate_subjects=2, checkpoint_minutes=0.0)
    Trainer(cfg, tmp_path / "run", device="cpu").fit()
    shift = Reconstructor.from_pretrained(tmp_path / "run" / "export").config.semantic_shift
    assert len(shift) == 28 and any(v != 0 for v in shift)
    earlier = [c for c in complete_checkpoints(tmp_path / "run") if c.name != "step-00000002"]
    assert earlier and all(Reconstructor.from_pretrained(c / "export").config.semantic_shift == () for c in earlier)
