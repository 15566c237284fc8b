"""TRL: conversational prompt/completion JSONL for ``SFTTrainer`` and ``GRPOTrainer``.

``<split>.jsonl`` rows hold ``prompt`` (the turns up to the question), ``completion`` (the
assistant answer; training records only), ``images`` (paths) and the metadata columns of
:mod:`sparkle_vlm.export.columns`. Content stays structured (``{type: image}`` /
``{type: text, text}`` parts, one image part per image), so TRL needs no placeholder
insertion, and prompt/completion data gives completion-only loss by default (the messages
format would also train on the prompt and its image tokens). GRPO passes every column but
``prompt`` to reward functions, so ``record_from_row(row)`` rebuilds the record to score.

TRL wants PIL images: :func:`load_trl_dataset` loads a split, resolves the paths and casts
``images`` to ``List(Image())``. Paths are absolute by default, because ``datasets`` resolves
relative paths against the working directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sparkle_vlm.errors import SparkleError
from sparkle_vlm.export.base import EXPORTERS, ExportContext, Exporter, require_data_extra
from sparkle_vlm.export.columns import metadata_columns
from sparkle_vlm.export.hf import structured_messages


def trl_row(ctx: ExportContext, rec: dict[str, Any]) -> dict[str, Any]:
    """One prompt/completion row."""
    turns = structured_messages(rec)
    last_user = max((i for i, t in enumerate(turns) if t["role"] == "user"), default=-1)
    if last_user < 0:
        raise SparkleError(f"record {rec['id']}: no user turn")
    row: dict[str, Any] = {"prompt": turns[: last_user + 1]}
    completion = turns[last_user + 1 :]
    if completion:
        row["completion"] = completion
    row["images"] = [ctx.image_ref(p) for p in rec["images"]]
    row.update(metadata_columns(rec))
    return row


def write(ctx: ExportContext) -> None:
    files = []
    for split in sorted({r["split"] for r in ctx.records}):
        ctx.write_jsonl(f"{split}.jsonl", (trl_row(ctx, r) for r in ctx.records if r["split"] == split))
        files.append(f"{split}.jsonl")
    ctx.write_text(
        "README.md",
        f"# {ctx.name} (TRL)\n\n"
        f"{len(ctx.records)} records in TRL conversational prompt/completion format: {', '.join(files)}.\n\n"
        "```python\n"
        "from sparkle_vlm.export.trl import load_trl_dataset\n"
        f'ds = load_trl_dataset("<this folder>", "{files[0].removesuffix(".jsonl") if files else "train"}")'
        "  # images decoded to PIL\n"
        "# SFTTrainer(model=..., train_dataset=ds, ...)  -> completion-only loss\n"
        "# GRPOTrainer(..., reward_funcs=[...]): reward kwargs include answer, answer_type, scene, query, ...;\n"
        "# sparkle_vlm.export.columns.record_from_row(row) rebuilds the record for sparkle_vlm.answers.score.\n"
        "```\n",
    )


def load_trl_dataset(folder: str | os.PathLike[str], split: str = "train") -> Any:
    """Load an exported split as a ``datasets.Dataset`` whose ``images`` decode to PIL."""
    require_data_extra("trl")
    from datasets import Image, List, load_dataset

    base = Path(folder).expanduser().absolute()
    path = base / f"{split}.jsonl"
    if not path.exists():
        raise SparkleError(
            f"{path}: no such split file (exported splits: "
            f"{', '.join(sorted(p.stem for p in base.glob('*.jsonl'))) or 'none'})"
        )
    ds = load_dataset("json", data_files={split: str(path)}, split=split)

    def resolve(row: dict[str, Any]) -> dict[str, Any]:
        return {"images": [p if os.path.isabs(p) else str(base / p) for p in row["images"] or []]}

    ds = ds.map(resolve)
    return ds.cast_column("images", List(Image()))


EXPORTERS.add(
    "trl",
    Exporter(
        "trl",
        "TRL conversational prompt/completion JSONL (structured parts, image paths)",
        write,
        absolute_paths=True,
    ),
)
