"""Pillow renderer of grid-graph scenes (the shortest-path task), in the upstream look.

Node (i, j) is a light-gray disc at ((i + 0.5)/n, (j + 0.5)/n) of the canvas (y up) with radius
0.2/n; edges are light-gray bars 0.03/n wide; the start node is green, the end node red, labels
black. Additions of ours: blocked nodes are dark-gray discs with a white X (their edges are not
drawn) and edge weights are dark-blue integers on a white patch at each edge's midpoint.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from PIL import Image, ImageDraw

from sparkle_vlm.render.raster import label_font

BACKGROUND = (255, 255, 255)
NODE_GRAY = (211, 211, 211)  # matplotlib "lightgray", as upstream
START_GREEN = (0, 128, 0)  # matplotlib "green"
END_RED = (255, 0, 0)  # matplotlib "red"
BLOCKED_GRAY = (64, 64, 64)
TEXT = (0, 0, 0)
WEIGHT_TEXT = (0, 0, 160)

#: Node radius and edge-bar width as fractions of one grid cell (upstream: 0.2/n and 0.03/n).
NODE_RADIUS = 0.2
BAR_WIDTH = 0.03
#: Upstream labels are 15 pt at 200 dpi on a ~1232 px canvas: 0.0338 of the side.
LABEL_FRACTION = 0.0338


def _center(i: int, j: int, n: int, size: int) -> tuple[float, float]:
    return (i + 0.5) / n * size, size - (j + 0.5) / n * size


def _geometry(n: int, size: int) -> tuple[float, float]:
    """Disc radius and half bar width in pixels."""
    cell = size / n
    return NODE_RADIUS * cell, max(1.0, BAR_WIDTH * cell) / 2


def _label_font(n: int, size: int):
    # Labels shrink with the cell so that "N100" still fits inside a 10 x 10 grid's discs.
    r, _ = _geometry(n, size)
    return label_font(max(6, round(min(LABEL_FRACTION * size, 0.42 * 2 * r))))


@lru_cache(maxsize=32)
def _open_grid(n: int, size: int) -> Image.Image:
    """The full grid with every node gray and labelled, drawn once per (n, size)."""
    img = Image.new("RGB", (size, size), BACKGROUND)
    draw = ImageDraw.Draw(img)
    r, half_bar = _geometry(n, size)
    for i in range(n):
        for j in range(n):
            cx, cy = _center(i, j, n, size)
            for ni, nj in ((i + 1, j), (i, j + 1)):
                if ni < n and nj < n:
                    ox, oy = _center(ni, nj, n, size)
                    draw.rectangle(
                        (
                            min(cx, ox) - half_bar,
                            min(cy, oy) - half_bar,
                            max(cx, ox) + half_bar,
                            max(cy, oy) + half_bar,
                        ),
                        fill=NODE_GRAY,
                    )
    font = _label_font(n, size)
    for i in range(n):
        for j in range(n):
            cx, cy = _center(i, j, n, size)
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=NODE_GRAY)
            draw.text((cx, cy), f"N{i * n + j + 1}", fill=TEXT, font=font, anchor="mm")
    return img


def render_grid(scene: dict[str, Any], size: int = 448) -> Image.Image:
    """Draw a grid scene record (``{"grid", "nodes": [{"label","i","j",...}], "start", "end",
    "blocked", "weights"}``) as an RGB image. Pure: same scene and size, same pixels.

    The open grid is drawn once per (n, size) and copied; blocked nodes erase their edges (and
    neighbouring discs are redrawn) and cover their disc, then weights and the start and end
    discs are drawn on top.
    """
    n = int(scene["grid"])
    img = _open_grid(n, size).copy()
    draw = ImageDraw.Draw(img)
    r, half_bar = _geometry(n, size)
    pos = {nd["label"]: (int(nd["i"]), int(nd["j"])) for nd in scene["nodes"]}

    blocked = set(scene.get("blocked") or ())
    font = _label_font(n, size)
    redraw: set[tuple[int, int]] = set()
    w = half_bar + 1
    for label in blocked:
        i, j = pos[label]
        cx, cy = _center(i, j, n, size)
        for ni, nj in ((i + 1, j), (i - 1, j), (i, j + 1), (i, j - 1)):
            if 0 <= ni < n and 0 <= nj < n:
                ox, oy = _center(ni, nj, n, size)
                # Erase the whole bar, centre to centre, then restore the neighbour's disc.
                draw.rectangle(
                    (min(cx, ox) - w, min(cy, oy) - w, max(cx, ox) + w, max(cy, oy) + w), fill=BACKGROUND
                )
                redraw.add((ni, nj))
    for ni, nj in sorted(redraw):
        if f"N{ni * n + nj + 1}" in blocked:
            continue
        ox, oy = _center(ni, nj, n, size)
        draw.ellipse((ox - r, oy - r, ox + r, oy + r), fill=NODE_GRAY)
        draw.text((ox, oy), f"N{ni * n + nj + 1}", fill=TEXT, font=font, anchor="mm")
    for label in sorted(blocked):
        cx, cy = _center(*pos[label], n, size)
        # Tiny cells let a label overhang its disc: wipe it before covering the disc.
        draw.rectangle(draw.textbbox((cx, cy), label, font=font, anchor="mm"), fill=BACKGROUND)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=BLOCKED_GRAY)
        d = r * 0.55
        lw = max(1, round(r * 0.18))
        draw.line((cx - d, cy - d, cx + d, cy + d), fill=BACKGROUND, width=lw)
        draw.line((cx - d, cy + d, cx + d, cy - d), fill=BACKGROUND, width=lw)

    weights = scene.get("weights") or {}
    if weights:
        wfont = label_font(max(6, round(min(LABEL_FRACTION * size, 0.3 * size / n))))
        for key, wt in weights.items():
            a, b = key.split("-")
            ax, ay = _center(*pos[a], n, size)
            bx, by = _center(*pos[b], n, size)
            mx, my = (ax + bx) / 2, (ay + by) / 2
            text = str(wt)
            left, top, right, bottom = draw.textbbox((mx, my), text, font=wfont, anchor="mm")
            draw.rectangle((left - 2, top - 2, right + 2, bottom + 2), fill=BACKGROUND)
            draw.text((mx, my), text, fill=WEIGHT_TEXT, font=wfont, anchor="mm")

    for label, fill in ((scene["start"], START_GREEN), (scene["end"], END_RED)):
        cx, cy = _center(*pos[label], n, size)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
        draw.text((cx, cy), label, fill=TEXT, font=font, anchor="mm")
    return img
