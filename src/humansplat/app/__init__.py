"""The demo web app (Gradio): one loaded pipeline behind a bounded queue; see ``humansplat app --help``."""

from humansplat.app.server import AppConfig, launch

__all__ = ["AppConfig", "launch"]
