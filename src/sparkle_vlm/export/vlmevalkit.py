"""VLMEvalKit: a custom dataset TSV, ``<NAME>.tsv``, with base64 images.

Columns: ``index`` (0..n-1), ``image`` (base64 PNG; a row whose image already appeared holds
that row's index instead, which VLMEvalKit resolves; several images are a JSON list, with
``image_path`` naming them), ``question`` (the protocol prompt, verbatim), ``answer`` (the
option letter for multiple choice), ``A``, ``B``, ... (option texts; present when any record
is multiple choice, which makes VLMEvalKit build a ``CustomMCQDataset``), ``category``
(canonical task, for the per-category breakdown), ``l2-category`` (answer type), ``split``
and ``id`` (the record id, to map predictions back).

VLMEvalKit only finds the file as ``$LMUData/<NAME>.tsv`` (default ``~/LMUData``). It drops
rows without an image, so text-only records are refused here. Dataset names containing
MMBench, CCBench, circular or MMCR switch on circular evaluation and are refused too.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
from typing import Any

from sparkle_vlm.errors import SparkleError
from sparkle_vlm.export.base import EXPORTERS, ExportContext, Exporter
from sparkle_vlm.records import prompt_text

#: VLMEvalKit treats an ``image`` cell of at most this many characters as a row reference.
REFERENCE_MAX = 64
#: Name fragments that make VLMEvalKit evaluate circularly (case-insensitive).
CIRCULAR_MARKERS = ("mmbench", "ccbench", "circular", "mmcr")


def letter(i: int) -> str:
    return chr(ord("A") + i)


def check(ctx: ExportContext) -> None:
    """Refuse names that trigger circular evaluation, image-less records and too many options."""
    lowered = ctx.name.lower()
    bad = [m for m in CIRCULAR_MARKERS if m in lowered]
    if bad:
        raise SparkleError(
            f"--name: {ctx.name!r} contains {bad[0]!r}, which makes VLMEvalKit evaluate circularly"
        )
    no_image = [r["id"] for r in ctx.records if not r["images"]]
    if no_image:
        raise SparkleError(
            f"--format vlmevalkit: {len(no_image)} records have no image (e.g. {no_image[0]}); "
            "VLMEvalKit drops image-less rows, export text-only data with another format"
        )
    n_opts = max((len(r["choices"] or []) for r in ctx.records), default=0)
    if n_opts > 26:
        raise SparkleError(f"--format vlmevalkit: at most 26 options per question, got {n_opts}")


def write(ctx: ExportContext) -> None:
    n_opts = max((len(r["choices"] or []) for r in ctx.records), default=0)
    multi = any(len(r["images"]) > 1 for r in ctx.records)
    header = ["index", "image"] + (["image_path"] if multi else []) + ["question", "answer"]
    header += [letter(i) for i in range(n_opts)] + ["category", "l2-category", "split", "id"]

    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="\t", quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
    writer.writerow(header)
    first_row: dict[tuple[str, ...], int] = {}
    for index, rec in enumerate(ctx.records):
        key = tuple(rec["images"])
        if key in first_row:
            image = str(first_row[key])
        else:
            first_row[key] = index
            encoded = [base64.b64encode(ctx.image_bytes(p)).decode("ascii") for p in rec["images"]]
            image = encoded[0] if len(encoded) == 1 else json.dumps(encoded)
            if len(image) <= REFERENCE_MAX:
                raise SparkleError(f"record {rec['id']}: image too small to tell from a row reference")
        row: list[Any] = [index, image]
        if multi:
            names = [os.path.basename(p) for p in rec["images"]]
            row.append(names[0] if len(names) == 1 else json.dumps(names))
        choices = rec["choices"] or []
        row += [prompt_text(rec), rec["answer"]]
        row += [str(choices[i]) if i < len(choices) else "" for i in range(n_opts)]
        row += [rec["task"], rec["answer_type"], rec["split"], rec["id"]]
        writer.writerow(row)
    ctx.write_text(f"{ctx.name}.tsv", buf.getvalue())

    kind = "multiple-choice (CustomMCQDataset)" if n_opts >= 2 else "open-answer (CustomVQADataset)"
    run = (
        f"    python run.py --data {ctx.name} --model Qwen2.5-VL-7B-Instruct --judge exact_matching\n"
        if n_opts >= 2
        else f"    python run.py --data {ctx.name} --model Qwen2.5-VL-7B-Instruct --mode infer\n"
    )
    ctx.write_text(
        "README.md",
        f"# {ctx.name} (VLMEvalKit)\n\n"
        f"{len(ctx.records)} {kind} questions in `{ctx.name}.tsv`.\n\n"
        "VLMEvalKit finds custom data only as `$LMUData/<NAME>.tsv` (default `~/LMUData`):\n\n"
        f"    mkdir -p ~/LMUData && cp {ctx.name}.tsv ~/LMUData/\n"
        f"{run}\n"
        "Notes:\n\n"
        "- `question` is the protocol prompt verbatim, options and `\\boxed{}` instruction included; VLMEvalKit's\n"
        "  default MCQ prompt appends its own option list after it. Open-answer sets have no VLMEvalKit\n"
        "  evaluator (`--mode infer`).\n"
        "- `category` is the canonical task (per-category accuracy); `id` maps predictions back to records, so\n"
        "  the prediction file can be rescored with sparkle_vlm.answers.score for protocol-exact numbers.\n"
        "- VLMEvalKit writes images to disk as JPEG before inference (PNG here); the API-model path also\n"
        "  upsamples images under 100 px.\n",
    )


EXPORTERS.add(
    "vlmevalkit",
    Exporter(
        "vlmevalkit",
        "VLMEvalKit custom dataset TSV with base64 images (copy to $LMUData/<NAME>.tsv)",
        write,
        embeds_images=True,
        check=check,
    ),
)
