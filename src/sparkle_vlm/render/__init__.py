"""Rendering scenes to images: a fast Pillow raster renderer and a matplotlib reference."""

from sparkle_vlm.render.raster import encode_png, render_points

__all__ = ["encode_png", "render_points"]
