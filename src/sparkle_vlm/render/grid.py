"""Pillow renderer of grid-graph scenes (the shortest-path task), in the upstream look.

Node (i, j) is a light-gray disc at ((i + 0.5)/n, (j + 0.5)/n) of the canvas (y up) with radius
0.2/n; edges are light-gray bars 0.03/n wide; the start node is green, the end node red, labels
black. Additions of ours: blocked nodes are dark-gray discs with a white X (their edges are not
drawn) and edge weights are dark-blue integers on a white patch at each edge's midpoint.
"""

from __future__ import annotations

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


def render_grid(scene: dict[str, Any], size: int = 448) -> Image.Image:
    """Draw a grid scene record (``{"grid", "nodes": [{"label","i","j",...}], "start", "end",
    "blocked", "weights"}``) as an RGB image. Pure: same scene and size, same pixels."""
    n = int(scene["grid"])
    img = Image.new("RGB", (size, size), BACKGROUND)
    draw = ImageDraw.Draw(img)
    cell = size / n
    r = NODE_RADIUS * cell
    half_bar = max(1.0, BAR_WIDTH * cell) / 2
    # Labels shrink with the cell so that "N100" still fits inside a 10 x 10 grid's discs.
    font = label_font(max(6, round(min(LABEL_FRACTION * size, 0.42 * 2 * r))))
    wfont = label_font(max(6, round(min(LABEL_FRACTION * size, 0.3 * cell))))
    blocked = set(scene.get("blocked") or ())
    pos = {nd["label"]: (int(nd["i"]), int(nd["j"])) for nd in scene["nodes"]}

    for nd in scene["nodes"]:
        if nd["label"] in blocked:
            continue
        i, j = int(nd["i"]), int(nd["j"])
        cx, cy = _center(i, j, n, size)
        for ni, nj in ((i + 1, j), (i, j + 1)):
            if ni >= n or nj >= n:
                continue
            other = f"N{ni * n + nj + 1}"
            if other in blocked:
                continue
            ox, oy = _center(ni, nj, n, size)
            draw.rectangle(
                (min(cx, ox) - half_bar, min(cy, oy) - half_bar, max(cx, ox) + half_bar, max(cy, oy) + half_bar),
                fill=NODE_GRAY,
            )

    weights = scene.get("weights") or {}
    for key, w in weights.items():
        a, b = key.split("-")
        (ai, aj), (bi, bj) = pos[a], pos[b]
        ax, ay = _center(ai, aj, n, size)
        bx, by = _center(bi, bj, n, size)
        mx, my = (ax + bx) / 2, (ay + by) / 2
        text = str(w)
        left, top, right, bottom = draw.textbbox((mx, my), text, font=wfont, anchor="mm")
        draw.rectangle((left - 2, top - 2, right + 2, bottom + 2), fill=BACKGROUND)
        draw.text((mx, my), text, fill=WEIGHT_TEXT, font=wfont, anchor="mm")

    for nd in scene["nodes"]:
        label = nd["label"]
        cx, cy = _center(int(nd["i"]), int(nd["j"]), n, size)
        box = (cx - r, cy - r, cx + r, cy + r)
        if label in blocked:
            draw.ellipse(box, fill=BLOCKED_GRAY)
            d = r * 0.55
            lw = max(1, round(r * 0.18))
            draw.line((cx - d, cy - d, cx + d, cy + d), fill=BACKGROUND, width=lw)
            draw.line((cx - d, cy + d, cx + d, cy - d), fill=BACKGROUND, width=lw)
            continue
        fill = START_GREEN if label == scene["start"] else END_RED if label == scene["end"] else NODE_GRAY
        draw.ellipse(box, fill=fill)
        draw.text((cx, cy), label, fill=TEXT, font=font, anchor="mm")
    return img
