"""The Gradio page: photo (upload or example) and options -> stage table, the 3D result, turntable,
part view, body fit, downloads. One pipeline behind Gradio's queue (bounded, ``concurrency`` at once)."""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from humansplat.app import offline
from humansplat.app.service import DOWNLOADS, RequestError, Service

REPO_EXAMPLES = Path(__file__).resolve().parents[3] / "examples"  # present in a source checkout
EXAMPLE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
CPU_CONCURRENCY, GPU_CONCURRENCY = 1, 2
VIEW_3D = {"camera_position": (90, 90, 3.5), "clear_color": (1.0, 1.0, 1.0, 1.0), "height": 480}
STAGE_LABELS = {"preprocess": "preprocess (matte, crop, keypoints)", "body_fit": "body fit", "novel_views": "novel views",
                "reconstruct": "reconstruct", "crop": "crop to view", "refine": "refine colours", "outputs": "turntable, views, files"}


@dataclass
class AppConfig:
    weights: Path | None = None
    device: str | None = None
    examples: Path | None = None
    queue_size: int = 32
    concurrency: int | None = None
    max_upload_mb: float = 20.0
    refine_steps: int = 30
    frames: int = 48
    size: int = 512
    fit_iters: int | None = None  # body-fit iterations (None: the fit's default)


def stage_table(events, message: str) -> str:
    rows = "".join(f"| {STAGE_LABELS.get(e.name, e.name)} | {e.seconds:.2f} |\n" for e in events)
    return f"{message}\n\n| stage | seconds |\n|---|---|\n{rows}" if rows else message


def page_outputs(u) -> tuple:
    """An update as the values of (status, 3D view, turntable, views, parts, body fit, downloads)."""
    shown = [str(u.files[k]) if k in u.files else None for k in ("turntable.mp4", "views.png", "parts.png", "body.png")]
    downloads = [str(u.files[k]) for k in DOWNLOADS if k in u.files] or None
    return (stage_table(u.stages, u.message), str(u.splat), *shown, downloads)


def example_photos(folder: Path | None) -> list[str]:
    folder = folder or REPO_EXAMPLES
    return sorted(str(p) for p in folder.glob("*") if p.suffix.lower() in EXAMPLE_SUFFIXES) if folder.is_dir() else []


def build(service: Service, examples: list[str], concurrency: int):
    import gradio as gr

    def run(photo, person, seed, refine, novel_views, progress=gr.Progress()):
        def on_stage(event):
            progress((event.index + 1, event.total), desc=f"{STAGE_LABELS.get(event.name, event.name)}: {event.seconds:.1f} s")

        try:
            novel = novel_views if service.novel_views_supported else None
            for u in service.reconstruct(photo, int(person), int(seed), bool(refine), novel, on_stage):
                yield page_outputs(u)
        except RequestError as e:
            raise gr.Error(str(e), print_exception=False) from None

    with gr.Blocks(title="humansplat", analytics_enabled=False, delete_cache=(600, 3600)) as demo:
        gr.Markdown("## humansplat: one photo of a person in, a 3D Gaussian-splat human out\n"
                    "Upload a photo (or pick an example), press **Reconstruct**, and turn the 3D result with the mouse.")
        with gr.Row():
            with gr.Column(scale=1):
                photo = gr.File(label="Photo", file_types=["image"], type="filepath", elem_id="photo")
                if examples:
                    gr.Examples(examples, inputs=photo, label="Examples", examples_per_page=8)
                with gr.Accordion("Options", open=False):
                    person = gr.Number(0, label="Person (0 = the largest; for group photos)", precision=0, minimum=0, maximum=99)
                    seed = gr.Number(0, label="Seed", precision=0, minimum=0)
                    refine = gr.Checkbox(True, label="Refine colours against the photo")
                    novel = gr.Checkbox(True, label="Generate novel views", visible=service.novel_views_supported)
                button = gr.Button("Reconstruct", variant="primary", elem_id="run")
                status = gr.Markdown("", elem_id="status")
            with gr.Column(scale=2):
                model = gr.Model3D(label="3D result (drag to turn, scroll to zoom)", elem_id="result3d", **VIEW_3D)
                with gr.Row():
                    turntable = gr.Video(label="Turntable", autoplay=True, loop=True)
                    body = gr.Image(label="Body fit", type="filepath")
                views = gr.Image(label="Input and novel views", type="filepath")
                parts = gr.Image(label="Body parts", type="filepath")
                downloads = gr.File(label="Downloads", file_count="multiple", elem_id="downloads")
        button.click(run, [photo, person, seed, refine, novel], [status, model, turntable, views, parts, body, downloads],
                     concurrency_limit=concurrency, api_name="reconstruct")
    return demo


def launch(config: AppConfig, host: str = "127.0.0.1", port: int = 7860, block: bool = True):
    """Load the pipeline once and serve the page; the app's files are removed when it stops.
    With ``block=False`` returns ``(demo, url, close)`` (tests, benchmarks)."""
    root = Path(tempfile.mkdtemp(prefix="humansplat-app-"))
    offline.configure(root)
    import gradio as gr  # after configure: Gradio reads its settings at import
    from humansplat.pipeline import Pipeline

    service = None
    try:
        pipe = Pipeline(config.weights, config.device, fit_iters=config.fit_iters, refine_steps=config.refine_steps)
        service = Service(pipe, root, int(config.max_upload_mb * 1e6), config.refine_steps, config.frames, config.size)
        concurrency = config.concurrency or (GPU_CONCURRENCY if pipe.device.type == "cuda" else CPU_CONCURRENCY)
        demo = build(service, example_photos(config.examples), concurrency)
        demo.queue(max_size=config.queue_size, default_concurrency_limit=concurrency)
        _, url, _ = demo.launch(server_name=host, server_port=port or None, max_file_size=int(config.max_upload_mb * 1e6),
                                theme=offline.theme(), ssr_mode=False, quiet=True, show_error=True, prevent_thread_lock=True,
                                allowed_paths=[str(root)], footer_links=["api"])
    except BaseException:
        if service is not None:
            service.close()
        else:
            shutil.rmtree(root, ignore_errors=True)
        raise

    def close() -> None:
        demo.close()
        service.close()

    print(f"humansplat app: {url} ({pipe.device}, {concurrency} at a time, queue of {config.queue_size})", flush=True)
    if not block:
        return demo, url, close
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))  # stop like Ctrl-C: the files go too
    try:
        demo.block_thread()
    finally:
        close()
    return None
