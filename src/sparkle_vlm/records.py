"""The canonical record: one JSON line per question (a public contract).

Keys, in this order: ``id``, ``task``, ``version``, ``split``, ``seed``, ``index``, ``images``,
``messages``, ``answer``, ``choices``, ``answer_type``, ``scene``, ``query``, then ``source``
(the generating task id), ``meta`` (template and difficulty details). Exporters and the
evaluation harness only read these keys.
"""

from __future__ import annotations

import json
from typing import Any

IMAGE_PART: dict[str, str] = {"type": "image"}


def user_turn(text: str, n_images: int = 1) -> dict[str, Any]:
    """A user turn: the image placeholders first, then the question text."""
    content: list[dict[str, str]] = [dict(IMAGE_PART) for _ in range(n_images)]
    content.append({"type": "text", "text": text})
    return {"role": "user", "content": content}


def assistant_turn(text: str) -> dict[str, Any]:
    """An assistant turn holding the answer text."""
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def record_id(tag: str, split: str, seed: int, index: int, q: int) -> str:
    """A unique, dot-free id, e.g. ``instruct-train-s0-i000012-q03``."""
    rid = f"{tag}-{split}-s{seed}-i{index:06d}-q{q:02d}"
    if "." in rid:
        raise ValueError(f"record ids must not contain dots: {rid}")
    return rid


def image_path(tag: str, split: str, seed: int, index: int) -> str:
    """Where a scene's image lives, relative to the dataset folder."""
    return f"images/{tag}-{split}-s{seed}-i{index:06d}.png"


def make_record(
    *,
    tag: str,
    task: str,
    version: int,
    split: str,
    seed: int,
    index: int,
    q: int,
    images: list[str],
    prompt: str,
    answer: str,
    choices: list[str] | None,
    answer_type: str,
    scene: dict[str, Any],
    query: dict[str, Any],
    source: str,
    with_answer: bool,
    response: str | None = None,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build one canonical record.

    ``answer`` is the canonical short answer (the letter for MCQ); ``response`` is the assistant
    text of training records when it differs from ``answer`` (e.g. the description).
    """
    messages = [user_turn(prompt, len(images))]
    if with_answer:
        messages.append(assistant_turn(answer if response is None else response))
    return {
        "id": record_id(tag, split, seed, index, q),
        "task": task,
        "version": version,
        "split": split,
        "seed": seed,
        "index": index,
        "images": list(images),
        "messages": messages,
        "answer": answer,
        "choices": choices,
        "answer_type": answer_type,
        "scene": scene,
        "query": query,
        "source": source,
        "meta": meta or {},
    }


def prompt_text(record: dict[str, Any]) -> str:
    """The text of the (last) user turn of a record."""
    for turn in reversed(record["messages"]):
        if turn["role"] == "user":
            return "".join(p.get("text") or "" for p in turn["content"] if p["type"] == "text")
    raise ValueError(f"record {record.get('id')} has no user turn")


def response_text(record: dict[str, Any]) -> str | None:
    """The assistant text of a training record, or None for test records."""
    for turn in reversed(record["messages"]):
        if turn["role"] == "assistant":
            return "".join(p.get("text") or "" for p in turn["content"] if p["type"] == "text")
    return None


def dumps(record: dict[str, Any]) -> str:
    """Serialise a record as one JSON line (stable: same record, same bytes)."""
    return json.dumps(record, ensure_ascii=False, separators=(", ", ": "))


def read_jsonl(path: str) -> list[dict[str, Any]]:
    """Read every record of a JSONL file."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
