"""Hugging Face ``datasets`` parquet with embedded image bytes, plus a dataset card.

``data/<split>-00000-of-00001.parquet`` (the Hub's own naming) holds one row per record:
``images`` is ``List(Image())`` with the PNG bytes inside the file, ``messages`` keeps the
structured parts (every part has the keys ``type`` and ``text``), and the metadata columns of
:mod:`sparkle_vlm.export.columns` follow. The schema carries the ``datasets`` feature types,
so ``load_dataset("parquet", data_files=...)`` decodes images to PIL. The file is written with
pyarrow directly: ``Dataset.to_parquet`` would keep file paths instead of bytes.

``README.md`` is a dataset card whose YAML header maps splits to files, ready for
``huggingface-cli upload``.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sparkle_vlm.export.base import EXPORTERS, ExportContext, Exporter, require_data_extra
from sparkle_vlm.export.columns import metadata_columns

#: Records per parquet row group: small enough to stream, large enough to compress well.
ROW_GROUP = 512
PROTOCOL_CREDIT = (
    'Question wording and the 2D world follow the Sparkle protocol (Tang et al., "Sparkle: Mastering Basic '
    'Spatial Capabilities in Vision Language Models Elicits Generalization to Spatial Reasoning", '
    "arXiv 2410.16162; generator released under the MIT licence at github.com/YihongT/Sparkle)."
)


def features() -> Any:
    """The ``datasets.Features`` of an exported row."""
    from datasets import Features, Image, List, Value

    part = {"type": Value("string"), "text": Value("string")}
    return Features(
        {
            "id": Value("string"),
            "task": Value("string"),
            "version": Value("int64"),
            "split": Value("string"),
            "seed": Value("int64"),
            "index": Value("int64"),
            "images": List(Image()),
            "messages": List({"role": Value("string"), "content": List(part)}),
            "answer": Value("string"),
            "choices": List(Value("string")),
            "answer_type": Value("string"),
            "scene": Value("string"),
            "query": Value("string"),
            "source": Value("string"),
            "meta": Value("string"),
        }
    )


def structured_messages(rec: dict[str, Any]) -> list[dict[str, Any]]:
    """Turns with uniform parts: image parts get ``text: None`` (Arrow gives all structs one schema)."""
    out = []
    for turn in rec["messages"]:
        content = turn["content"]
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        parts = [
            {"type": "image", "text": None}
            if p.get("type") == "image"
            else {"type": "text", "text": p.get("text") or ""}
            for p in content
        ]
        out.append({"role": turn["role"], "content": parts})
    return out


def hf_row(ctx: ExportContext, rec: dict[str, Any]) -> dict[str, Any]:
    """One parquet row: embedded images, structured messages, metadata columns."""
    meta = metadata_columns(rec)
    row: dict[str, Any] = {k: meta[k] for k in ("id", "task", "version", "split", "seed", "index")}
    row["images"] = [{"bytes": ctx.image_bytes(p), "path": os.path.basename(p)} for p in rec["images"]]
    row["messages"] = structured_messages(rec)
    for key in ("answer", "choices", "answer_type", "scene", "query", "source", "meta"):
        row[key] = meta[key]
    if row["choices"] is not None:
        row["choices"] = [str(c) for c in row["choices"]]
    row["answer"] = str(row["answer"])
    return row


def _batches(rows: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for lo in range(0, len(rows), size):
        yield rows[lo : lo + size]


def write_parquet(ctx: ExportContext, rel: str, records: list[dict[str, Any]]) -> None:
    """Write ``records`` as one parquet file (atomically) with embedded images."""
    require_data_extra(ctx.exporter.name)
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = features().arrow_schema
    dest = ctx.path(rel)
    tmp = dest.with_name(f".{dest.name}.tmp")
    try:
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for chunk in _batches(records, ROW_GROUP):
                rows = [hf_row(ctx, r) for r in chunk]
                table = pa.Table.from_pylist(rows, schema=schema)
                writer.write_table(table)
            if not records:
                writer.write_table(schema.empty_table())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    ctx.note_file(rel)


def _size_category(n: int) -> str:
    for limit, label in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
    ):
        if n < limit:
            return label
    return "1M<n<10M"


def parquet_name(split: str) -> str:
    return f"data/{split}-00000-of-00001.parquet"


def dataset_card(ctx: ExportContext, files: dict[str, str]) -> str:
    """README.md with the Hub's YAML header (configs, card metadata) and a short description."""
    m = ctx.source.manifest
    by_task = Counter(r["task"] for r in ctx.records)
    lines = [
        "---",
        "license: mit",
        "language:",
        "- en",
        "pretty_name: " + ctx.name,
        "task_categories:",
        "- visual-question-answering",
        "- image-text-to-text",
        "tags:",
        "- spatial-reasoning",
        "- synthetic",
        "- sparkle",
        "size_categories:",
        "- " + _size_category(len(ctx.records)),
        "configs:",
        "- config_name: default",
        "  data_files:",
    ]
    for split, path in files.items():
        lines += [f"  - split: {split}", f"    path: {path}"]
    lines.append("---")
    lines += [
        "",
        f"# {ctx.name}",
        "",
        f"{m.get('description', '')}".strip(),
        "",
        f"Generated by sparkle-vlm (`sparkle generate {m.get('suite') or m.get('task')} --seed {m.get('seed')}`, "
        f"task version {m.get('task_version')}); {len(ctx.records)} questions over "
        f"{len({p for r in ctx.records for p in r['images']})} images.",
        "",
        "| task | questions |",
        "|---|---|",
        *[f"| {t} | {n} |" for t, n in sorted(by_task.items())],
        "",
        "## Columns",
        "",
        "- `images`: the rendered scene(s), PNG bytes (`List(Image())`); empty for text-only questions.",
        "- `messages`: OpenAI-style turns; content parts are `{type: image}` (filled from `images` in order) "
        "or `{type: text, text}`. Training rows include the assistant answer.",
        "- `answer`: canonical short answer (the option letter for multiple choice); `choices`: option texts or null; "
        "`answer_type`: which scorer applies.",
        "- `scene`, `query`, `meta`: JSON strings. The scene is the ground truth (10 x 10 frame, origin bottom-left, "
        "y up); answers are computed from it, never from pixels.",
        "",
        "## Loading and scoring",
        "",
        "```python",
        "from datasets import load_dataset",
        f'ds = load_dataset("parquet", data_files={{{", ".join(repr(s) + ": " + repr(p) for s, p in files.items())}}})',
        "from sparkle_vlm.answers import score",
        "from sparkle_vlm.export.columns import record_from_row",
        "row = next(iter(ds.values()))[0]",
        'print(score(record_from_row(row), row["answer"]).score)',
        "```",
        "",
        "## Credits",
        "",
        PROTOCOL_CREDIT,
        "",
    ]
    return "\n".join(lines)


def write(ctx: ExportContext) -> None:
    files: dict[str, str] = {}
    for split in sorted({r["split"] for r in ctx.records}):
        rel = parquet_name(split)
        write_parquet(ctx, rel, [r for r in ctx.records if r["split"] == split])
        files[split] = rel
    ctx.write_text("README.md", dataset_card(ctx, files))


EXPORTERS.add(
    "hf",
    Exporter(
        "hf",
        "Hugging Face datasets parquet with embedded images and a dataset card",
        write,
        embeds_images=True,
    ),
)
