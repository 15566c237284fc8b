"""Record metadata as flat columns, and back.

Trainers and harnesses keep extra dataset columns and hand them to reward functions
(TRL GRPO, ms-swift ORMs) and metrics (lmms-eval ``process_results``). Every exporter writes
the same columns, so one function, :func:`record_from_row`, rebuilds the canonical record
from any exported row and :func:`sparkle_vlm.answers.score` scores it exactly as
``sparkle eval`` does. Nested values (scene, query, meta) travel as JSON strings: Arrow
gives every struct in a column one shared schema, which the scenes of different tasks do
not have.
"""

from __future__ import annotations

import json
from typing import Any

#: Canonical keys kept beside the prompt, in record order.
META_KEYS = (
    "id",
    "task",
    "version",
    "split",
    "seed",
    "index",
    "answer",
    "choices",
    "answer_type",
    "scene",
    "query",
    "source",
    "meta",
)
#: Keys whose values are nested objects, stored as JSON text.
JSON_KEYS = ("scene", "query", "meta")
#: The column holding every metadata key at once (JSON), for formats whose loaders give
#: column names such as ``query`` or ``answer`` a meaning of their own (ms-swift).
PACKED_COLUMN = "sparkle"


def _dumps(value: Any) -> str:
    # Key order is kept (not sorted) so the JSON round trip gives back the very same dict.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def metadata_columns(record: dict[str, Any]) -> dict[str, Any]:
    """The metadata of a record as flat columns (nested values as JSON strings).

    >>> cols = metadata_columns({"id": "x", "task": "direction", "version": 1, "split": "test",
    ...     "seed": 0, "index": 3, "answer": "A", "choices": ["left", "right"], "answer_type": "mcq",
    ...     "scene": {"frame": 10}, "query": {}, "source": "basic_mcq", "meta": {}})
    >>> cols["scene"], cols["choices"]
    ('{"frame":10}', ['left', 'right'])
    """
    out: dict[str, Any] = {}
    for key in META_KEYS:
        value = record.get(key)
        out[key] = _dumps(value) if key in JSON_KEYS else value
    return out


def packed_metadata(record: dict[str, Any]) -> str:
    """All metadata keys of a record as one JSON string (see :data:`PACKED_COLUMN`)."""
    return _dumps({key: record.get(key) for key in META_KEYS})


def _parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    parts = []
    for part in content or []:
        if part.get("type") == "image":
            parts.append({"type": "image"})
        else:
            parts.append({"type": "text", "text": part.get("text") or ""})
    return parts


def record_from_row(row: dict[str, Any]) -> dict[str, Any]:
    """Rebuild the canonical record (minus image paths) from an exported row.

    Accepts the flat columns of :func:`metadata_columns` or the packed ``sparkle`` column;
    ``messages`` (or TRL's ``prompt`` + ``completion``) are normalised to the canonical part
    schema when present. Image columns are not read: scoring never looks at pixels.

    >>> row = {"sparkle": '{"id":"x","answer":"3","answer_type":"number","scene":{"frame":10}}'}
    >>> record_from_row(row)["scene"]
    {'frame': 10}
    """
    if row.get(PACKED_COLUMN):
        meta = json.loads(row[PACKED_COLUMN])
    else:
        meta = {key: row.get(key) for key in META_KEYS}
    record: dict[str, Any] = {}
    for key in META_KEYS:
        value = meta.get(key)
        if key in JSON_KEYS and isinstance(value, str):
            value = json.loads(value)
        if key == "choices" and value is not None:
            value = list(value)
        record[key] = value
    turns = row.get("messages")
    if turns is None and row.get("prompt") is not None:
        turns = list(row["prompt"]) + list(row.get("completion") or [])
    record["messages"] = [{"role": t["role"], "content": _parts(t["content"])} for t in turns or []]
    record["images"] = []
    return record
