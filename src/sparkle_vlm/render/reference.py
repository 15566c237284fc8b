"""Matplotlib reference renderer of point scenes (the upstream tool's drawing library).

Slow; used by the benchmark as the baseline and as a visual cross-check of the raster
renderer (same geometry, same colours, labels of the same size).
"""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

from sparkle_vlm.render.raster import FONT_FRACTION
from sparkle_vlm.scene import DISC_RADIUS, FRAME


def render_points_mpl(scene: dict[str, Any], size: int = 448) -> Image.Image:
    """Draw a point scene with matplotlib; returns an 8-bit grayscale image of ``size`` px."""
    return Image.open(io.BytesIO(render_points_mpl_png(scene, size))).convert("L")


def render_points_mpl_png(scene: dict[str, Any], size: int = 448) -> bytes:
    """Draw a point scene with matplotlib straight to PNG bytes (what upstream writes per image)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle

    frame = scene.get("frame", FRAME)
    dpi = 100
    fig = plt.figure(figsize=(size / dpi, size / dpi), dpi=dpi, facecolor="white")
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(0, frame)
    ax.set_ylim(0, frame)
    ax.set_aspect("equal")
    ax.axis("off")
    # Font size in points: FONT_FRACTION of a frame unit, in pixels, converted at this dpi.
    fontsize = FONT_FRACTION * size / frame * 72 / dpi
    for node in scene["nodes"]:
        ax.add_patch(Circle((node["x"], node["y"]), DISC_RADIUS, color="lightgray"))
        ax.text(
            node["x"], node["y"], node["label"], fontsize=fontsize, color="black", ha="center", va="center"
        )
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    plt.close(fig)
    return buf.getvalue()
