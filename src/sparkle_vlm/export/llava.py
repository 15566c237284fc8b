"""LLaVA conversation JSON (LLaVA / LLaVA-NeXT training code).

``<split>.json`` is one JSON array of ``{"id", "image", "conversations"}``. ``image`` is one
path, or a list for multi-image records, and is omitted for text-only records. Turns alternate
``human``/``gpt``; the first human turn starts with ``<image>`` and a newline per image.
Test records get their canonical answer as the ``gpt`` turn (LLaVA needs whole conversations).

Paths are relative to this export folder: pass it as ``--image_folder`` (with
``--copy-images`` the folder is self-contained; without, paths lead back to the dataset).
"""

from __future__ import annotations

from typing import Any

from sparkle_vlm.errors import SparkleError
from sparkle_vlm.export.base import EXPORTERS, ExportContext, Exporter, check_markers, flatten
from sparkle_vlm.records import response_text

ROLES = {"user": "human", "assistant": "gpt"}


def llava_row(ctx: ExportContext, rec: dict[str, Any]) -> dict[str, Any]:
    """One LLaVA sample."""
    turns = []
    for t in rec["messages"]:
        if t["role"] not in ROLES:
            raise SparkleError(f"record {rec['id']}: LLaVA conversations have no {t['role']!r} turns")
        turns.append({"from": ROLES[t["role"]], "value": flatten(t["content"], "\n")})
    if response_text(rec) is None:
        turns.append({"from": "gpt", "value": rec["answer"]})
    if not turns or turns[0]["from"] != "human":
        raise SparkleError(f"record {rec['id']}: LLaVA conversations start with a human turn")
    check_markers(rec["id"], [t["value"] for t in turns], len(rec["images"]))
    row: dict[str, Any] = {"id": rec["id"]}
    refs = [ctx.image_ref(p) for p in rec["images"]]
    if len(refs) == 1:
        row["image"] = refs[0]
    elif refs:
        row["image"] = refs
    row["conversations"] = turns
    return row


def write(ctx: ExportContext) -> None:
    files = []
    splits = sorted({r["split"] for r in ctx.records})
    for split in splits:
        rows = [llava_row(ctx, r) for r in ctx.records if r["split"] == split]
        ctx.write_json_array(f"{split}.json", rows)
        files.append(f"{split}.json")
    folder = "this folder" if not ctx.absolute_paths else "any folder (paths are absolute)"
    ctx.write_text(
        "README.md",
        f"# {ctx.name} (llava)\n\n"
        f"{len(ctx.records)} records in LLaVA conversation format: {', '.join(files)}.\n\n"
        f"Train with the LLaVA scripts: `--data_path {files[0] if files else 'train.json'} --image_folder <{folder}>`.\n"
        f"Each first human turn starts with `<image>\\n` once per image.\n",
    )


EXPORTERS.add(
    "llava",
    Exporter("llava", "LLaVA conversation JSON array (image paths relative to --image_folder)", write),
)
