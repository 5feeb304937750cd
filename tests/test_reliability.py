"""Issue #16, as a hostile or careless user: every command ends in a result or a one-line error, checks its
output location before any work, never deletes what it did not write, and cleans only its own leftovers."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import humansplat
from humansplat.cli import main
from humansplat.utils import MANIFEST, STALE_AFTER_S, OutputError, atomic_dir, check_writable

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "examples" / "pexels-zdmit-6780091.png"
SRC = Path(humansplat.__file__).resolve().parents[1]


def _cli(capsys, *argv) -> tuple[int, list[str]]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err.strip().splitlines()


@pytest.fixture
def no_work(monkeypatch):
    """Every expensive loader fails the test: a command must refuse a bad output before any of them."""

    def boom(*a, **k):
        raise AssertionError("work started before the output was checked")

    for target in ("humansplat.pipeline.Pipeline.__init__", "humansplat.body.BodyModel.load", "humansplat.data.SyntheticEngine.__init__",
                   "humansplat.models.Reconstructor.from_pretrained", "humansplat.train.trainer.Trainer.__init__"):  # fmt: skip
        monkeypatch.setattr(target, boom)


def _scene(path: Path) -> Path:
    from humansplat.gaussians import Gaussians, save_ply

    g = torch.Generator().manual_seed(0)
    n = 20
    return save_ply(Gaussians.from_activated(torch.randn(n, 3, generator=g) * 0.2, torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=-1),
                                             torch.full((n, 3), 0.05), torch.full((n,), 0.8), colors=torch.rand(n, 3, generator=g)), path)  # fmt: skip


# ---- 1. never delete what we did not write ----


def test_atomic_dir_replaces_only_folders_it_wrote(tmp_path):
    docs = tmp_path / "Documents"
    docs.mkdir()
    (docs / "thesis.docx").write_text("years of work")
    with pytest.raises(OutputError, match="not a humansplat result"):
        with atomic_dir(docs) as tmp:
            (tmp / "gaussians.ply").write_text("new")
    assert (docs / "thesis.docx").read_text() == "years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Documents"]  # no temporaries either

    result = tmp_path / "photo"
    with atomic_dir(result) as tmp:
        (tmp / "frames").mkdir()
        (tmp / "frames" / "0000.png").write_text("f")
        (tmp / "report.json").write_text("{}")
    assert json.loads((result / MANIFEST).read_text())["files"] == ["frames/0000.png", "report.json"]
    with atomic_dir(result) as tmp:  # ours, unchanged: replaced
        (tmp / "report.json").write_text('{"run": 2}')
    assert (result / "report.json").read_text() == '{"run": 2}' and not (result / "frames").exists()

    (result / "my notes.txt").write_text("mine")  # a file the user put into an earlier result
    with pytest.raises(OutputError, match="my notes.txt"):
        with atomic_dir(result) as tmp:
            (tmp / "report.json").write_text('{"run": 3}')
    assert (result / "my notes.txt").read_text() == "mine" and (result / "report.json").read_text() == '{"run": 2}'

    fresh = tmp_path / "fresh"
    with atomic_dir(fresh) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(OutputError, match="late.txt"):  # added while the work ran: found at the swap
        with atomic_dir(fresh) as tmp:
            (fresh / "late.txt").write_text("added meanwhile")
    assert (fresh / "late.txt").exists() and (fresh / "a").exists()


@pytest.mark.parametrize("command", ["reconstruct", "fit"])
def test_photo_commands_refuse_an_unrelated_folder_of_the_same_name(tmp_path, capsys, no_work, command):
    photo = tmp_path / "Documents.png"
    photo.write_bytes(PHOTO.read_bytes())
    docs = tmp_path / "out" / "Documents"
    docs.mkdir(parents=True)
    (docs / "thesis.docx").write_text("years of work")
    code, err = _cli(capsys, command, photo, "-o", tmp_path / "out", "--device", "cpu")
    assert code == 2 and len(err) == 1 and f"{docs} exists and is not a humansplat result" in err[0]
    assert (docs / "thesis.docx").read_text() == "years of work"


def test_render_replaces_its_own_folder_only(tmp_path, capsys):
    scene = _scene(tmp_path / "scene.ply")
    out = tmp_path / "out"
    args = ["render", scene, "-o", out, "--frames", "2", "--size", "16", "--sheet", "1", "--device", "cpu"]
    assert _cli(capsys, *args)[0] == 0 and _cli(capsys, *args)[0] == 0  # a re-run replaces our own result
    (out / "keep.txt").write_text("mine")
    code, err = _cli(capsys, *args)
    assert code == 2 and len(err) == 1 and "keep.txt" in err[0] and (out / "keep.txt").read_text() == "mine"
    videos = tmp_path / "Videos"
    videos.mkdir()
    (videos / "turntable.mp4").write_bytes(b"holiday")
    code, err = _cli(capsys, *args[:2], "-o", videos, *args[4:])
    assert code == 2 and "not a humansplat result" in err[0] and (videos / "turntable.mp4").read_bytes() == b"holiday"


def test_data_refuses_a_folder_that_is_not_a_dataset(tmp_path, capsys, no_work):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "me.jpg").write_bytes(b"x")
    code, err = _cli(capsys, "data", "synth", "-n", "1", "-o", tmp_path / "photos", "--res", "16", "--views", "1", "--device", "cpu")
    assert code == 2 and len(err) == 1 and "holds no humansplat dataset" in err[0]
    assert sorted(p.name for p in (tmp_path / "photos").iterdir()) == ["me.jpg"]


# ---- 6. the output location is checked before any work ----


def _commands(tmp_path: Path, out: Path) -> dict[str, list]:
    """Each command that writes, with ``out`` as its output folder (or the folder of its output file)."""
    weights, ae = tmp_path / "w", tmp_path / "ae"
    for d in (weights, ae):
        d.mkdir(exist_ok=True)
        (d / "model.safetensors").write_bytes(b"")  # only looked for, never read: the check comes first
    return {
        "reconstruct": ["reconstruct", PHOTO, "-o", out],
        "fit": ["fit", PHOTO, "-o", out, "--contact-sheet", tmp_path / "sheet.png"],
        "fit-sheet": ["fit", PHOTO, "-o", tmp_path / "fit", "--contact-sheet", out / "sheet.png"],
        "render": ["render", _scene(tmp_path / "s.ply"), "-o", out / "r"],
        "data-synth": ["data", "synth", "-n", "1", "-o", out],
        "data-preview": ["data", "preview", "-o", out / "sheet.png"],
        "eval": ["eval", "--weights", weights, "--data", tmp_path, "--out", out / "eval.json"],
        "train": ["train", ROOT / "configs" / "tiny.json", "--autoencoder", ae, "--out", out],
    }


@pytest.mark.parametrize("command", ["reconstruct", "fit", "fit-sheet", "render", "data-synth", "data-preview", "eval", "train"])
def test_output_under_a_regular_file_fails_at_once(tmp_path, capsys, no_work, command):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    code, err = _cli(capsys, *_commands(tmp_path, blocker / "sub")[command])
    assert code == 2 and len(err) == 1 and f"{blocker} is not a folder" in err[0], err


@pytest.mark.parametrize("command", ["reconstruct", "fit", "data-synth", "train"])
def test_output_that_is_a_regular_file_fails_at_once(tmp_path, capsys, no_work, command):
    out = tmp_path / "out"
    out.write_text("a file, not a folder")
    code, err = _cli(capsys, *_commands(tmp_path, out)[command])
    assert code == 2 and len(err) == 1 and f"{out}: exists and is not a folder" in err[0], err


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
@pytest.mark.parametrize("command", ["reconstruct", "fit", "render", "data-synth", "eval", "train"])
def test_read_only_output_folder_fails_at_once(tmp_path, capsys, no_work, command):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        code, err = _cli(capsys, *_commands(tmp_path, ro / "out")[command])
    finally:
        ro.chmod(0o755)
    assert code == 2 and len(err) == 1 and "is not writable" in err[0], err


def test_check_writable_follows_os_access(tmp_path, monkeypatch):
    """The read-only branch, also for root (whom permission bits do not stop): it asks os.access."""
    check_writable(tmp_path / "new" / "deeper")  # absent folders are fine: their existing parent is checked
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path)
    with pytest.raises(OutputError, match=f"{tmp_path} is not writable"):
        check_writable(tmp_path / "new")


# ---- 7. leftovers of a killed run ----


def test_leftovers_of_a_killed_run_are_cleaned_next_time(tmp_path):
    out = tmp_path / "out"
    script = (f"import os, signal\nfrom humansplat.utils import atomic_dir\nwith atomic_dir({str(out / 'photo')!r}) as tmp:\n"
              f"    (tmp / 'gaussians.ply').write_bytes(b'complete-looking')\n    os.kill(os.getpid(), signal.SIGKILL)\n")  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    assert subprocess.run([sys.executable, "-c", script], env=env).returncode == -signal.SIGKILL
    (left,) = out.iterdir()
    assert left.name.startswith(".photo.") and (left / "gaussians.ply").exists()
    live = out / f".other.humansplat-{os.getpid()}-abcd1234.tmp"  # a running process's: kept
    live.mkdir()
    aged = out / f".aged.humansplat-{os.getpid()}-abcd1234.tmp"  # alive pid (reused?) but days old: stale
    aged.write_text("x")
    os.utime(aged, (time.time() - 2 * STALE_AFTER_S,) * 2)
    (out / ".notes.tmp").write_text("not ours")
    (out / ".photo.1234.tmp").mkdir()  # not our naming: kept
    with atomic_dir(out / "next") as tmp:
        (tmp / "a").write_text("1")
    assert sorted(p.name for p in out.iterdir()) == sorted([".notes.tmp", ".photo.1234.tmp", live.name, "next"])


# ---- 10. a dangling link in an input folder ----


def test_a_broken_link_in_an_input_folder_is_a_failure(tmp_path, capsys, monkeypatch):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")
    (photos / "notes").symlink_to(tmp_path / "deleted.txt")  # not an image by any name: skipped as before
    monkeypatch.setattr("humansplat.body.BodyModel.load", lambda device=None: None)  # fails in loading, before the body
    code, err = _cli(capsys, "fit", photos, "-o", tmp_path / "out")
    assert code == 1 and len(err) == 2
    assert f"{photos / 'gone.jpg'}: broken symbolic link" in err[0] and "1 of 1 failed" in err[1]


# ---- 4. unusable weights: one line, exit 2, never unpickled ----


class _Payload:
    """Unpickling this writes a file: proof that a loader unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.write_text, (self.marker, "unpickled!")


@pytest.fixture(scope="module")
def good_weights(tmp_path_factory) -> Path:
    from humansplat.models import Reconstructor

    cfg = json.loads((ROOT / "configs" / "tiny.json").read_text())["model"]
    torch.manual_seed(0)
    return Reconstructor(Reconstructor.config_from_dict(cfg, "tiny")).save_pretrained(tmp_path_factory.mktemp("w") / "tiny")


def _broken(good: Path, dest: Path, how: str) -> Path:
    """A copy of ``good`` broken in one way; returns the file the message must name."""
    import shutil

    shutil.copytree(good, dest)
    weights, config = dest / "model.safetensors", dest / "config.json"
    if how == "truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif how == "empty":
        weights.write_bytes(b"")
    elif how == "pickled":
        torch.save({"weight": _Payload(dest / "UNPICKLED")}, weights)
    elif how == "wrong-type":
        config.write_text(json.dumps({**json.loads(config.read_text()), "dim": "wide"}))
    elif how == "not-an-object":
        config.write_text("[1, 2, 3]")
    elif how == "no-config":
        config.unlink()
    return config if how in ("wrong-type", "not-an-object", "no-config") else weights


@pytest.mark.parametrize("how", ["truncated", "empty", "pickled", "wrong-type", "not-an-object", "no-config"])
def test_eval_with_unusable_weights_is_one_line(tmp_path, capsys, good_weights, how):
    bad = _broken(good_weights, tmp_path / "w", how)
    code, err = _cli(capsys, "eval", "--weights", tmp_path / "w", "--data", tmp_path, "--device", "cpu")
    assert code == 2 and len(err) == 1 and str(bad) in err[0], err
    assert not (tmp_path / "w" / "UNPICKLED").exists()


def test_eval_with_an_unknown_device_is_one_line(tmp_path, capsys, good_weights):
    code, err = _cli(capsys, "eval", "--weights", good_weights, "--data", tmp_path, "--device", "gpu")
    assert code == 2 and len(err) == 1 and "gpu" in err[0], err


@pytest.mark.parametrize("how", ["pickled", "truncated", "wrong-type"])
def test_reconstruct_and_pipeline_with_unusable_weights(tmp_path, capsys, good_weights, how):
    from humansplat.models import WeightsError
    from humansplat.pipeline import Pipeline

    bad = _broken(good_weights, tmp_path / "w", how)
    code, err = _cli(capsys, "reconstruct", PHOTO, "-o", tmp_path / "out", "--weights", tmp_path / "w", "--device", "cpu")
    assert code == 2 and len(err) == 1 and str(bad) in err[0], err
    with pytest.raises(WeightsError, match=str(bad)):
        Pipeline(tmp_path / "w", "cpu")
    assert not (tmp_path / "w" / "UNPICKLED").exists() and not (tmp_path / "out").exists()


def test_the_pickle_payload_is_live_but_never_unpickled_by_our_loaders(tmp_path, good_weights):
    from humansplat.models import WeightsError, load_pretrained
    from humansplat.preprocess import ImageError, Preprocessed

    _broken(good_weights, tmp_path / "w", "pickled")
    with pytest.raises(WeightsError):
        load_pretrained(tmp_path / "w")
    with pytest.raises(ImageError, match="not a preprocessed photo"):
        Preprocessed.load(tmp_path / "w" / "model.safetensors")
    assert not (tmp_path / "w" / "UNPICKLED").exists()
    (tmp_path / "model.pt").write_bytes((tmp_path / "w" / "model.safetensors").read_bytes())
    torch.load(tmp_path / "model.pt", weights_only=False)  # what the old benchmark did with a user's .pt
    assert (tmp_path / "w" / "UNPICKLED").read_text() == "unpickled!"


def test_train_init_from_pickled_weights_is_one_line(tmp_path, capsys):
    from humansplat.models import Autoencoder, AutoencoderConfig

    config = ROOT / "configs" / "tiny_autoencoder.json"
    good = Autoencoder(AutoencoderConfig(**json.loads(config.read_text())["model"])).save_pretrained(tmp_path / "good")
    bad = _broken(good, tmp_path / "w", "pickled")
    code, err = _cli(capsys, "train", config, "--init-from", tmp_path / "w", "--out", tmp_path / "run", "--device", "cpu")
    assert code == 2 and len(err) == 1 and str(bad) in err[0], err
    assert not (tmp_path / "w" / "UNPICKLED").exists()


def test_a_result_with_our_own_subfolder_is_replaced_but_not_with_a_users_file_in_it(tmp_path):
    """`humansplat animate RESULT -o RESULT/animation` writes a folder of ours into a result: a re-run of
    reconstruct may replace the result, unless the user put a file into that subfolder."""
    result = tmp_path / "photo"
    with atomic_dir(result) as tmp:
        (tmp / "report.json").write_text("{}")
    with atomic_dir(result / "animation") as tmp:
        (tmp / "canonical.ply").write_text("ply")
    (result / "animation" / "mine.txt").write_text("mine")
    with pytest.raises(OutputError, match="mine.txt"):
        with atomic_dir(result) as tmp:
            (tmp / "report.json").write_text('{"run": 2}')
    (result / "animation" / "mine.txt").unlink()
    with atomic_dir(result) as tmp:
        (tmp / "report.json").write_text('{"run": 2}')
    assert (result / "report.json").read_text() == '{"run": 2}' and not (result / "animation").exists()
