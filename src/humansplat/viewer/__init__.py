"""A static web page that shows a reconstruction in 3D (vendored gsplat.js: no request leaves the machine)."""

from humansplat.viewer.site import ANIMATION_DIRS, build_site, save_display_splat, serve

__all__ = ["ANIMATION_DIRS", "build_site", "save_display_splat", "serve"]
