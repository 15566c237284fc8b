"""ms-swift: the paper's own ``query``/``response``/``images`` layout, and ``messages`` for GRPO.

``ms-swift`` writes ``<split>.jsonl`` with one ``{"query", "response", "images"}`` object per
line, as upstream's ``train_full.jsonl``. The query starts with one ``<image>`` per image
(ms-swift puts missing tags there itself, so this is the same prompt made explicit).
Test records get their canonical answer as the response (the label of ``swift infer``).

``ms-swift-messages`` writes ``{"messages": [{role, content}], "images", "solution",
"sparkle"}`` with string contents. Test records keep only the user turn: ms-swift GRPO
samples the answer and hands every extra column to the reward functions (ORMs). The
canonical answer is ``solution``; ``sparkle`` holds the record metadata as JSON, which the
bundled ``sparkle_orm.py`` plugin scores with :func:`sparkle_vlm.answers.score`. Metadata is
packed into one column because ms-swift gives columns such as ``query`` and ``answer`` a
meaning of their own.

Image paths are absolute by default: ms-swift opens relative paths against the working
directory, not the dataset file (its docs recommend absolute paths).
"""

from __future__ import annotations

from typing import Any

from sparkle_vlm.errors import SparkleError
from sparkle_vlm.export.base import EXPORTERS, ExportContext, Exporter, check_markers, flatten
from sparkle_vlm.export.columns import PACKED_COLUMN, packed_metadata
from sparkle_vlm.records import response_text

ORM_PLUGIN = "sparkle_orm.py"

_PLUGIN_SOURCE = '''\
"""ms-swift reward functions (ORMs) that score answers exactly as ``sparkle eval`` does.

Written by ``sparkle export --format ms-swift-messages``. Needs ``sparkle-vlm`` installed
next to ms-swift. Use:

    swift rlhf --rlhf_type grpo --external_plugins sparkle_orm.py \\
        --reward_funcs sparkle_accuracy --dataset train.jsonl ...

``sparkle_accuracy`` is the verdict score in [0, 1]; ``sparkle_parsable`` is 1 when the
answer could be read at all (a format reward).
"""

try:  # ms-swift 4.x
    from swift.rewards import ORM, orms
except ImportError:  # ms-swift 3.x
    from swift.plugin import ORM, orms

from sparkle_vlm.answers import score
from sparkle_vlm.export.columns import record_from_row


def _text(completion):
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion:  # a list of chat messages
        return str(completion[-1].get("content", ""))
    return "" if completion is None else str(completion)


class SparkleAccuracy(ORM):
    def __call__(self, completions, sparkle, **kwargs):
        return [score(record_from_row({"sparkle": meta}), _text(c)).score for c, meta in zip(completions, sparkle)]


class SparkleParsable(ORM):
    def __call__(self, completions, sparkle, **kwargs):
        return [
            0.0 if score(record_from_row({"sparkle": meta}), _text(c)).outcome == "unparsable" else 1.0
            for c, meta in zip(completions, sparkle)
        ]


orms["sparkle_accuracy"] = SparkleAccuracy
orms["sparkle_parsable"] = SparkleParsable
'''


def _by_split(ctx: ExportContext) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for rec in ctx.records:
        groups.setdefault(rec["split"], []).append(rec)
    return groups


def query_response_row(ctx: ExportContext, rec: dict[str, Any]) -> dict[str, Any]:
    """One upstream-style ``{"query", "response", "images"}`` line."""
    users = [t for t in rec["messages"] if t["role"] == "user"]
    if len(users) != 1:
        raise SparkleError(
            f"record {rec['id']}: the query/response layout holds one user turn; use ms-swift-messages"
        )
    row: dict[str, Any] = {}
    system = [flatten(t["content"]) for t in rec["messages"] if t["role"] == "system"]
    if system:
        row["system"] = "\n".join(system)
    row["query"] = flatten(users[0]["content"])
    answer = response_text(rec)
    row["response"] = rec["answer"] if answer is None else answer
    row["images"] = [ctx.image_ref(p) for p in rec["images"]]
    check_markers(rec["id"], [row.get("system", ""), row["query"], row["response"]], len(rec["images"]))
    return row


def messages_row(ctx: ExportContext, rec: dict[str, Any]) -> dict[str, Any]:
    """One ms-swift ``messages`` line; test records keep only their prompt turns."""
    messages = [{"role": t["role"], "content": flatten(t["content"])} for t in rec["messages"]]
    check_markers(rec["id"], [m["content"] for m in messages], len(rec["images"]))
    return {
        "messages": messages,
        "images": [ctx.image_ref(p) for p in rec["images"]],
        "solution": rec["answer"],
        PACKED_COLUMN: packed_metadata(rec),
    }


def _readme(ctx: ExportContext, files: list[str], messages: bool) -> str:
    split = ctx.split
    data = " ".join(files)
    if messages:
        how = (
            f"GRPO with the bundled reward plugin (needs `pip install sparkle-vlm` beside ms-swift):\n\n"
            f"    swift rlhf --rlhf_type grpo --model Qwen/Qwen2.5-VL-7B-Instruct \\\n"
            f"        --dataset {data} --external_plugins {ORM_PLUGIN} \\\n"
            f"        --reward_funcs sparkle_accuracy sparkle_parsable\n\n"
            f"Columns: `messages` (string contents with `<image>` tags), `images`, `solution` (canonical answer),\n"
            f"`{PACKED_COLUMN}` (record metadata as JSON; ms-swift passes both to reward functions).\n"
        )
    else:
        how = (
            f"Supervised fine-tuning as in the paper (upstream format `query`/`response`/`images`):\n\n"
            f"    swift sft --model Qwen/Qwen2.5-VL-7B-Instruct --dataset {data}\n\n"
            f"Each query starts with one `<image>` tag per image.\n"
        )
    paths = "absolute" if ctx.absolute_paths else "relative to this folder (run ms-swift from here)"
    return (
        f"# {ctx.name} ({ctx.exporter.name})\n\n"
        f"{len(ctx.records)} {split} records exported by `sparkle export`. Image paths are {paths}.\n\n"
        f"{how}"
    )


def write_query_response(ctx: ExportContext) -> None:
    files = []
    for split, recs in _by_split(ctx).items():
        ctx.write_jsonl(f"{split}.jsonl", (query_response_row(ctx, r) for r in recs))
        files.append(f"{split}.jsonl")
    ctx.write_text("README.md", _readme(ctx, files, messages=False))


def write_messages(ctx: ExportContext) -> None:
    files = []
    for split, recs in _by_split(ctx).items():
        ctx.write_jsonl(f"{split}.jsonl", (messages_row(ctx, r) for r in recs))
        files.append(f"{split}.jsonl")
    ctx.write_text(ORM_PLUGIN, _PLUGIN_SOURCE)
    ctx.write_text("README.md", _readme(ctx, files, messages=True))


EXPORTERS.add(
    "ms-swift",
    Exporter(
        "ms-swift",
        "ms-swift query/response/images JSONL (the paper's SFT layout)",
        write_query_response,
        absolute_paths=True,
    ),
)
EXPORTERS.add(
    "ms-swift-messages",
    Exporter(
        "ms-swift-messages",
        "ms-swift messages JSONL with solution/metadata columns and a GRPO reward plugin",
        write_messages,
        absolute_paths=True,
    ),
)
