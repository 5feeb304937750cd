"""The demo app: the request logic on a tiny untrained reconstructor (stages, files, bad and oversized
uploads, expiry, cleanup) and, in headless Chromium, the page end to end with no outside request."""

import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from browser import CHROMIUM, Browser, drawn_fraction
from humansplat.app import stages
from humansplat.app.service import PREVIEW, RequestError, Service
from test_reconstruct import PHOTO, weights  # noqa: F401 - the tiny untrained reconstructor fixture

pytest.importorskip("gradio")
SCREENSHOTS = os.environ.get("HUMANSPLAT_SCREENSHOTS")
FAST = {"fit_iters": 5}  # a rough body fit is enough to exercise the app


@pytest.fixture(scope="module")
def pipe(weights):  # noqa: F811
    from humansplat.pipeline import Pipeline

    return Pipeline(weights, "cpu", refine_steps=2, **FAST)


def test_service_stages_files_errors_and_cleanup(pipe, tmp_path):
    service = Service(pipe, tmp_path / "app", max_upload_bytes=2_000_000, refine_steps=2, frames=2, size=64)
    seen = []
    first, last = list(service.reconstruct(str(PHOTO), seed=3, refine=True, on_stage=seen.append))
    assert first.splat.name == PREVIEW and first.splat.stat().st_size > 0 and not first.done
    assert last.done and {"gaussians.ply", "gaussians.splat", "report.json", "turntable.mp4", "views.png"} <= set(last.files)
    names = [e.name for e in seen]
    assert names[0] == "preprocess" and "reconstruct" in names and set(names) <= {st.name for st in pipe.stages}
    assert [e.name for e in last.stages][-1] == "outputs" and all(e.seconds >= 0 for e in last.stages)
    assert pipe.seed == 0 and pipe.refine.steps == 2  # the request's options went to a copy
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    with pytest.raises(RequestError, match=r"^bad.png: not an image"):
        list(service.reconstruct(str(bad)))
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * 2_000_001)
    with pytest.raises(RequestError, match="limit is 2 MB"):
        list(service.reconstruct(str(big)))
    with pytest.raises(RequestError, match="Upload a photo"):
        list(service.reconstruct(None))
    assert len(list(service.results.iterdir())) == 1  # failed requests leave nothing
    service.expire(ttl=-1)
    assert list(service.results.iterdir()) == []
    service.close()
    assert not (tmp_path / "app").exists()


def test_request_options_go_to_a_copy_of_the_pipeline(pipe):
    """A request's seed, refinement and novel-view choice never change the shared pipeline or another request."""
    a = stages.variant(pipe, seed=5, refine_steps=0, novel_views=False)
    b = stages.variant(pipe, seed=6, refine_steps=3)
    assert (a.seed, b.seed, pipe.seed) == (5, 6, 0)
    assert "refine" in a.skip and "refine" not in b.skip and "refine" not in pipe.skip
    assert "novel_views" in a.skip and a.model is pipe.model  # the models are shared, not copied
    assert not stages.has_novel_views(pipe)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_app_in_browser(tmp_path, monkeypatch):
    from humansplat.app import AppConfig, launch
    from humansplat.app.offline import OFFLINE_ENV

    for key in (*OFFLINE_ENV, "GRADIO_TEMP_DIR"):
        monkeypatch.setenv(key, os.environ.get(key, ""))  # restored after the test
    # the shipped weights (an untrained model's Gaussians are nearly transparent): the subject's colours show
    config = AppConfig(device="cpu", refine_steps=2, frames=2, size=64, max_upload_mb=1, **FAST)
    _, url, close = launch(config, port=free_port(), block=False)
    root = Path(os.environ["GRADIO_TEMP_DIR"])
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    try:
        with Browser(1280, 1100) as b:
            b.open(url)
            b.wait_for("!!document.querySelector('#photo input[type=file]')", 120)
            b.set_file("#photo input[type=file]", str(bad))
            b.wait_for("document.querySelector('#photo').innerText.includes('notes.png')", 30)
            b.eval("document.querySelector('#run').click()")
            b.wait_for("document.body.innerText.includes('not an image file')", 120)  # a message, not a traceback
            b.eval("document.querySelector('#photo button[aria-label=Clear]')?.click(); true")
            b.set_file("#photo input[type=file]", str(PHOTO))
            b.wait_for(f"document.querySelector('#photo').innerText.includes('{PHOTO.name[:12]}')", 30)
            b.eval("document.querySelector('#run').click()")
            b.wait_for("document.querySelectorAll('#downloads a').length >= 3", 300)
            box = b.eval("(r => [r.left, r.top, r.right, r.bottom])(document.querySelector('#result3d canvas').getBoundingClientRect())")
            l, t, r, btm = (int(v) for v in box)
            cx, cy = (l + r) // 2, (t + btm) // 2
            middle = (cx - 40, cy - 80, cx + 40, cy + 80)
            end = time.monotonic() + 90  # the splat viewer loads and sorts (SwiftShader on a busy CPU is slow)
            while drawn_fraction(shot := b.screenshot(), middle, background=(0, 0, 0)) < 0.1 and time.monotonic() < end:
                time.sleep(1)
            if SCREENSHOTS:
                shot.save(Path(SCREENSHOTS) / "app-test.png")
            assert drawn_fraction(shot, middle, background=(0, 0, 0)) > 0.1  # the subject (Gradio's splat view is black)
            assert "stage" in b.eval("document.querySelector('#status').innerText")
            assert b.outside_requests() == [], b.outside_requests()
    finally:
        close()
    assert not root.exists()  # uploads and results are gone with the app
