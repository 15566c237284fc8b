"""LLaMA-Factory: multimodal sharegpt JSON with OpenAI-style ``messages`` and ``dataset_info.json``.

``<name>_<split>.json`` is a JSON array of ``{"messages": [{role, content}], "images": [...]}``;
``images`` is always a list (a string breaks LLaMA-Factory's count check) and every user turn
holds one ``<image>`` per image. ``dataset_info.json`` registers each file with
``formatting: sharegpt``, the column map and the role/content/user/assistant/system tags.
Test records get their canonical answer as the assistant turn: sharegpt rows need whole
user/assistant pairs (LLaMA-Factory drops odd-length conversations).

Relative image paths resolve against ``media_dir``, which defaults to ``dataset_dir``: set
``dataset_dir`` to this export folder and paths work as written.
"""

from __future__ import annotations

from typing import Any

from sparkle_vlm.errors import SparkleError
from sparkle_vlm.export.base import EXPORTERS, ExportContext, Exporter, check_markers, flatten
from sparkle_vlm.records import response_text

TAGS = {
    "role_tag": "role",
    "content_tag": "content",
    "user_tag": "user",
    "assistant_tag": "assistant",
    "system_tag": "system",
}


def sharegpt_row(ctx: ExportContext, rec: dict[str, Any]) -> dict[str, Any]:
    """One sharegpt sample with OpenAI-style roles."""
    messages = [{"role": t["role"], "content": flatten(t["content"])} for t in rec["messages"]]
    if response_text(rec) is None:
        messages.append({"role": "assistant", "content": rec["answer"]})
    body = messages[1:] if messages and messages[0]["role"] == "system" else messages
    roles = [m["role"] for m in body]
    if len(roles) % 2 or any(r != ("user" if i % 2 == 0 else "assistant") for i, r in enumerate(roles)):
        raise SparkleError(
            f"record {rec['id']}: LLaMA-Factory needs alternating user/assistant turns, got {roles}"
        )
    check_markers(rec["id"], [m["content"] for m in messages], len(rec["images"]))
    return {"messages": messages, "images": [ctx.image_ref(p) for p in rec["images"]]}


def dataset_info_entry(file_name: str) -> dict[str, Any]:
    """The ``dataset_info.json`` entry of one exported file."""
    return {
        "file_name": file_name,
        "formatting": "sharegpt",
        "columns": {"messages": "messages", "images": "images"},
        "tags": dict(TAGS),
    }


def write(ctx: ExportContext) -> None:
    info: dict[str, Any] = {}
    for split in sorted({r["split"] for r in ctx.records}):
        rows = [sharegpt_row(ctx, r) for r in ctx.records if r["split"] == split]
        key = f"{ctx.name}_{split}"
        ctx.write_json_array(f"{key}.json", rows)
        info[key] = dataset_info_entry(f"{key}.json")
    ctx.write_json("dataset_info.json", info)
    names = ",".join(info)
    ctx.write_text(
        "README.md",
        f"# {ctx.name} (LLaMA-Factory)\n\n"
        f"{len(ctx.records)} records, registered in `dataset_info.json` as: {names}.\n\n"
        f"In your training YAML:\n\n"
        f"    dataset_dir: <this folder>\n"
        f"    dataset: {names}\n"
        f"    template: qwen2_vl\n\n"
        f"Relative image paths resolve against `dataset_dir` (LLaMA-Factory's default `media_dir`).\n",
    )


EXPORTERS.add(
    "llama-factory",
    Exporter(
        "llama-factory", "LLaMA-Factory sharegpt JSON (OpenAI-style messages) + dataset_info.json", write
    ),
)
