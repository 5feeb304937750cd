"""Keep the Gradio app on this machine: no analytics, update checks, hub calls or web fonts.

``configure(root)`` must run before Gradio is imported: Gradio reads these variables at import time.
Gradio's own page is served from the installed package; the only outside assets its default theme would
fetch are Google fonts, so the theme here uses the system's fonts instead.
"""

from __future__ import annotations

import os
from pathlib import Path

OFFLINE_ENV = {
    "GRADIO_ANALYTICS_ENABLED": "False",  # no telemetry, no version check against the internet
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "GRADIO_SSR_MODE": "False",  # no Node server: the page is the package's prebuilt one
}
SYSTEM_FONTS = ("system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif")
MONO_FONTS = ("ui-monospace", "SFMono-Regular", "Menlo", "monospace")


def configure(root: Path) -> None:
    """Offline settings, and Gradio's uploads and cached outputs under ``root`` (removed when the app stops)."""
    os.environ.update(OFFLINE_ENV)
    os.environ["GRADIO_TEMP_DIR"] = str(root)


def theme():
    """Gradio's default look with local fonts (the default theme would load Inter from Google Fonts)."""
    import gradio as gr

    return gr.themes.Default(font=[gr.themes.Font(f) for f in SYSTEM_FONTS], font_mono=[gr.themes.Font(f) for f in MONO_FONTS])
