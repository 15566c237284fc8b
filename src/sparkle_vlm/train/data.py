"""Canonical records -> TRL training datasets.

SFT rows are *prompt/completion* conversations: ``prompt`` holds the turns up to the last user
turn, ``completion`` the assistant answer, so TRL computes the loss on answer tokens only (prompt
text and image tokens are masked to -100). GRPO rows hold the prompt, the images and the whole
canonical record as a JSON string (``record``), which TRL passes to the reward functions.

Images stay on disk: the ``images`` column is a ``datasets`` ``List(Image())`` built from absolute
paths, decoded to PIL only when a batch is collated.

Image tokens are never truncated (a cut image makes "image features and image tokens do not
match"): training runs with ``max_length=None`` and over-long samples are dropped beforehand by
:func:`drop_long`, which counts them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparkle_vlm.errors import SparkleError
from sparkle_vlm.records import read_jsonl

DATA_FILE = "data.jsonl"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Source:
    """One dataset folder: where it is, how many records, and the hash of its records file."""

    path: str
    records: int
    sha256: str
    name: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "records": self.records, "sha256": self.sha256, "name": self.name}


def load_records(dirs: Iterable[str | os.PathLike[str]]) -> tuple[list[dict[str, Any]], list[Source]]:
    """Read every record of the dataset folders, with image paths made absolute.

    Each returned record gets ``images`` resolved against its folder (the input files are not
    changed). Raises :class:`SparkleError` naming the folder when one is not a dataset or an
    image file is missing.
    """
    records: list[dict[str, Any]] = []
    sources: list[Source] = []
    for d in dirs:
        base = Path(d).expanduser().absolute()
        data_p = base / DATA_FILE
        if not data_p.is_file():
            raise SparkleError(f"--data: {base} is not a sparkle dataset folder (no {DATA_FILE})")
        manifest_p = base / MANIFEST
        name = None
        if manifest_p.is_file():
            manifest = json.loads(manifest_p.read_text())
            name = manifest.get("suite") or manifest.get("task")
        else:
            raise SparkleError(
                f"--data: {base} has no {MANIFEST}; the dataset is incomplete (re-run sparkle generate)"
            )
        raw = data_p.read_bytes()
        try:
            recs = read_jsonl(str(data_p))
        except ValueError as exc:
            raise SparkleError(f"--data: {data_p} is not valid JSONL: {exc}") from None
        for rec in recs:
            rec["images"] = [str(base / p) for p in rec.get("images") or []]
            for img in rec["images"]:
                if not os.path.isfile(img):
                    raise SparkleError(f"--data: record {rec.get('id')} names a missing image {img}")
        records.extend(recs)
        sources.append(Source(str(base), len(recs), hashlib.sha256(raw).hexdigest(), name))
    if not records:
        raise SparkleError("--data: the dataset folders hold no records")
    return records, sources


def data_hash(sources: list[Source]) -> str:
    """One hash over the records of every source, in order (the data half of a run's identity)."""
    h = hashlib.sha256()
    for s in sources:
        h.update(s.sha256.encode())
    return h.hexdigest()


def split_turns(record: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(prompt turns, completion turns): everything up to the last user turn, then the rest.

    >>> rec = {"messages": [{"role": "user", "content": [{"type": "text", "text": "Q"}]},
    ...                     {"role": "assistant", "content": [{"type": "text", "text": "A"}]}]}
    >>> [t["role"] for t in split_turns(rec)[0]], [t["role"] for t in split_turns(rec)[1]]
    (['user'], ['assistant'])
    """
    messages = record["messages"]
    last_user = max((i for i, t in enumerate(messages) if t["role"] == "user"), default=-1)
    if last_user < 0:
        raise SparkleError(f"record {record.get('id')} has no user turn")
    return [_clean_turn(t) for t in messages[: last_user + 1]], [
        _clean_turn(t) for t in messages[last_user + 1 :]
    ]


def _clean_turn(turn: dict[str, Any]) -> dict[str, Any]:
    # Arrow gives every struct in a list the same fields, so parts keep exactly {type, text}.
    content = turn["content"]
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    parts = [{"type": p["type"], "text": p.get("text") if p["type"] == "text" else None} for p in content]
    return {"role": turn["role"], "content": parts}


def sft_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Prompt/completion rows for SFT. Every record must carry its assistant answer."""
    rows = []
    for rec in records:
        prompt, completion = split_turns(rec)
        if not completion:
            raise SparkleError(
                f"--data: record {rec.get('id')} ({rec.get('split')} split) has no assistant answer; "
                "SFT needs training records"
            )
        rows.append(
            {"id": rec["id"], "prompt": prompt, "completion": completion, "images": list(rec["images"])}
        )
    return rows


def grpo_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Prompt-only rows for GRPO; the canonical record travels as a JSON string for the rewards."""
    rows = []
    for rec in records:
        prompt, _ = split_turns(rec)
        rows.append(
            {
                "id": rec["id"],
                "prompt": prompt,
                "images": list(rec["images"]),
                "record": json.dumps(rec, ensure_ascii=False, sort_keys=True),
            }
        )
    return rows


def shuffled(rows: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """A seeded permutation (the same on every machine)."""
    import numpy as np

    from sparkle_vlm.seeding import sample_rng

    order = sample_rng("train/shuffle", "train", seed, 0).permutation(len(rows))
    return [rows[int(i)] for i in np.asarray(order)]


def difficulty_key(record: dict[str, Any]) -> tuple[float, ...]:
    """Sort key for curricula: ``meta["difficulty"]`` as a tuple of numbers (missing: easiest).

    Numbers sort as themselves; a mapping by its numeric values in the order the task wrote them
    (most significant first, e.g. SPP: grid, obstacles, blocked, ...; booleans count as 0/1); a
    list by its numbers; the words easy/medium/hard by rank.

    >>> difficulty_key({"meta": {"difficulty": {"grid": 5, "weighted": True, "length": 3}}})
    (5.0, 1.0, 3.0)
    >>> difficulty_key({"meta": {}})
    (0.0,)
    """
    d = (record.get("meta") or {}).get("difficulty")
    words = {"easy": 0.0, "medium": 1.0, "hard": 2.0}
    if isinstance(d, bool) or d is None:
        return (0.0,)
    if isinstance(d, (int, float)):
        return (float(d),)
    if isinstance(d, str):
        return (words.get(d.lower(), 0.0),)
    if isinstance(d, dict):
        d = list(d.values())
    if isinstance(d, (list, tuple)):
        out = tuple(float(v) for v in d if isinstance(v, (int, float)))
        return out or (0.0,)
    return (0.0,)


def curriculum(records: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """Easy -> hard by :func:`difficulty_key`; ties keep a seeded shuffle (no grouping by template)."""
    mixed = shuffled(records, seed)
    return sorted(mixed, key=difficulty_key)


def _image_sizes(paths: list[str]) -> tuple[tuple[int, int], ...]:
    from PIL import Image

    sizes = []
    for p in paths:
        with Image.open(p) as im:  # reads the header only
            sizes.append(im.size)
    return tuple(sizes)


def measure_lengths(processor: Any, rows: list[dict[str, Any]], batch: int = 256) -> list[int]:
    """Token length of each row as the model sees it: chat-templated text plus expanded image tokens.

    Text is tokenised for every row; the image expansion is measured once per distinct tuple of
    image sizes by running the processor on one row (Sparkle images of a dataset share one size).
    """
    tokenizer = getattr(processor, "tokenizer", processor)
    texts = []
    for row in rows:
        turns = row["prompt"] + row.get("completion", [])
        texts.append(
            processor.apply_chat_template(
                turns, tokenize=False, add_generation_prompt=not row.get("completion")
            )
        )
    lengths: list[int] = []
    for i in range(0, len(texts), batch):
        enc = tokenizer(texts[i : i + batch], add_special_tokens=False)
        lengths.extend(len(ids) for ids in enc["input_ids"])
    extra: dict[tuple[tuple[int, int], ...], int] = {}
    for k, row in enumerate(rows):
        if not row["images"]:
            continue
        sig = _image_sizes(row["images"])
        if sig not in extra:
            extra[sig] = _image_extra_tokens(processor, texts[k], row["images"], lengths[k])
        lengths[k] += extra[sig]
    return lengths


def _image_extra_tokens(processor: Any, text: str, image_paths: list[str], text_len: int) -> int:
    from PIL import Image

    images = []
    for p in image_paths:
        with Image.open(p) as im:
            images.append(im.convert("RGB"))
    try:
        enc = processor(text=[text], images=[images], add_special_tokens=False)
    except Exception as exc:
        raise SparkleError(
            f"the processor cannot encode the training images ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else exc!r})"
        ) from None
    return max(0, len(enc["input_ids"][0]) - text_len)


def drop_long(
    rows: list[dict[str, Any]], lengths: list[int], max_tokens: int | None, reserve: int = 0
) -> tuple[list[dict[str, Any]], list[str]]:
    """Keep rows whose length plus ``reserve`` fits ``max_tokens``; return (kept, dropped ids)."""
    if max_tokens is None:
        return rows, []
    kept: list[dict[str, Any]] = []
    dropped: list[dict[str, Any]] = []
    for row, n in zip(rows, lengths, strict=True):
        (kept if n + reserve <= max_tokens else dropped).append(row)
    return kept, [r["id"] for r in dropped]


def length_stats(lengths: list[int]) -> dict[str, float]:
    if not lengths:
        return {"min": 0, "max": 0, "mean": 0.0}
    return {"min": min(lengths), "max": max(lengths), "mean": round(math.fsum(lengths) / len(lengths), 1)}


def to_dataset(rows: list[dict[str, Any]]) -> Any:
    """A ``datasets.Dataset`` whose ``images`` decode lazily to PIL (``List(Image())``)."""
    from datasets import Dataset, Image, List

    ds = Dataset.from_list(rows)
    return ds.cast_column("images", List(Image()))
