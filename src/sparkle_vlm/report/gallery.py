"""A gallery of failures: the image, the question, the raw output, what was read and why it failed.

Failures are picked deterministically: the first ``per_group`` wrong answers of each
(part, task) in the run's data order. Images are shrunk and embedded as data URIs, so the page
is one self-contained file.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

from sparkle_vlm.report.runs import Run

THUMB = 320


def failures(run: Run, per_group: int) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Up to ``per_group`` failed rows per (part, task), in data order."""
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in run.rows.values():
        if row.get("correct"):
            continue
        bucket = out.setdefault((row["part"], row["task"]), [])
        if len(bucket) < per_group:
            bucket.append(row)
    return {g: out[g] for g in run.groups() if g in out}


def _choice(row: dict[str, Any], letter: Any) -> str:
    choices = row.get("choices") or []
    if isinstance(letter, str) and len(letter) == 1 and letter.isalpha():
        i = ord(letter.upper()) - ord("A")
        if 0 <= i < len(choices):
            return f"{letter} ({choices[i]})"
    return str(letter)


#: Scorer details that repeat what the card already shows.
_QUIET_DETAILS = frozenset({"reason", "expected", "format", "reward"})


def explain(row: dict[str, Any]) -> str:
    """One line on why an answer failed, from its outcome, parsed answer and scorer details.

    >>> explain({"outcome": "wrong", "answer_type": "mcq", "parsed": "B", "expected": "A",
    ...          "choices": ["left", "right"], "details": {}})
    'wrong: answered B (right), expected A (left)'
    >>> explain({"outcome": "infeasible", "parsed": ["up"], "expected": "['up', 'up']",
    ...          "details": {"reason": "ends at N2, not at the end node N3", "length": 1.0}})
    'infeasible: ends at N2, not at the end node N3; answered ["up"] [length: 1]'
    >>> explain({"outcome": "unparsable", "parsed": None, "expected": "A", "details": {}})
    'unparsable: no answer could be read from the output'
    """
    outcome = row.get("outcome", "?")
    details = {k: v for k, v in (row.get("details") or {}).items() if v is not None}
    if outcome == "unparsable":
        reason = "no answer could be read from the output"
    elif row.get("choices"):
        reason = f"answered {_choice(row, row.get('parsed'))}, expected {_choice(row, row.get('expected'))}"
    else:
        reason = f"answered {json.dumps(row.get('parsed'), ensure_ascii=False)}"
        if row.get("error") is not None:
            reason += f" (error {float(row['error']):.3g})"
    if details.get("reason"):
        reason = f"{details['reason']}; {reason}"
    extra = "; ".join(f"{k}: {_short(v)}" for k, v in sorted(details.items()) if k not in _QUIET_DETAILS)
    return f"{outcome}: {reason}" + (f" [{extra}]" if extra else "")


def _short(v: Any, limit: int = 120) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    text = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def thumbnail_uri(path: str | Path, side: int = THUMB) -> str | None:
    """A small data URI of an image file (JPEG for photos, PNG otherwise); None if it cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            photo = im.format == "JPEG"
            img = im.convert("RGB") if photo else im.copy()
    except (OSError, ValueError):
        return None
    img.thumbnail((side, side))
    buf = io.BytesIO()
    if photo:
        img.save(buf, format="JPEG", quality=85)
        mime = "image/jpeg"
    else:
        if img.mode not in ("L", "RGB", "RGBA", "P"):
            img = img.convert("RGB")
        img.save(buf, format="PNG", optimize=False)
        mime = "image/png"
    return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def _expected_label(row: dict[str, Any]) -> str:
    if row.get("task") == "spp":
        return "expected path (one shortest)"
    if row.get("task") == "tsp":
        return "expected order (optimal)"
    return "expected"


def _card(row: dict[str, Any]) -> str:
    e = html.escape
    imgs = []
    for p in row.get("images") or []:
        uri = thumbnail_uri(p)
        imgs.append(
            f'<img src="{uri}" alt="{e(Path(p).name)}">'
            if uri
            else f"<p class=missing>image not found: {e(p)}</p>"
        )
    visual = "".join(imgs) or "<p class=textonly>text-only question</p>"
    choices = row.get("choices")
    choice_html = ""
    if choices:
        items = "".join(f"<li>{e(chr(65 + i))}. {e(str(c))}</li>" for i, c in enumerate(choices))
        choice_html = f"<ol class=choices>{items}</ol>"
    parsed = json.dumps(row.get("parsed"), ensure_ascii=False)
    expected = row.get("expected")
    expected_s = expected if isinstance(expected, str) else json.dumps(expected, ensure_ascii=False)
    return (
        f'<div class="card {e(str(row.get("outcome")))}">'
        f"<div class=visual>{visual}</div><div class=text>"
        f"<p class=id>{e(row['part'])} / {e(row['id'])}</p>"
        f"<p class=why>{e(explain(row))}</p>"
        f"<h4>question</h4><pre>{e(row.get('prompt', ''))}</pre>{choice_html}"
        f"<h4>raw output</h4><pre>{e(str(row.get('output', '')))}</pre>"
        f"<h4>parsed answer</h4><pre>{e(parsed)}</pre>"
        f"<h4>{e(_expected_label(row))}</h4><pre>{e(str(expected_s))}</pre>"
        "</div></div>"
    )


def gallery_html(runs: list[Run], per_group: int) -> str:
    """The body of the gallery page (sections per run and (part, task))."""
    e = html.escape
    parts = []
    for run in runs:
        parts.append(f"<h2>{e(run.label)}</h2>")
        fails = failures(run, per_group)
        if not fails:
            parts.append("<p>No failures.</p>")
        for (part, task), rows in fails.items():
            m = run.metric(part, task) or {}
            wrong = m.get("n", 0) - m.get("correct", 0)
            parts.append(f"<h3>{e(part)} / {e(task)}: {len(rows)} of {wrong} failures shown</h3>")
            parts.extend(_card(r) for r in rows)
    return "\n".join(parts)


GALLERY_CSS = """
.card{display:flex;gap:16px;border:1px solid #ddd;border-radius:6px;padding:10px;margin:10px 0}
.card.unparsable{border-left:6px solid #757575}.card.wrong,.card.infeasible{border-left:6px solid #c62828}
.card.suboptimal{border-left:6px solid #f9a825}
.visual img{max-width:320px;border:1px solid #eee}.text{flex:1;min-width:0}
pre{white-space:pre-wrap;background:#f6f6f6;padding:6px;margin:2px 0 8px;font-size:12px}
h4{margin:6px 0 2px;font-size:12px;color:#555}.why{font-weight:bold}.id{color:#777;font-size:12px}
.choices{font-size:12px;margin:0 0 8px}
"""
