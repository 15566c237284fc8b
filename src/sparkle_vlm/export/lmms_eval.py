"""lmms-eval: a task folder for ``lmms-eval --include_path DIR``.

Layout (``NAME`` is ``--name``, default ``sparkle_<suite>``):

- ``data/<task>.parquet``: the records of one canonical task, in the ``hf`` layout (image
  bytes embedded, metadata columns).
- ``_default_template_yaml``: what every task shares (``generate_until``, ``doc_to_*`` and
  ``process_results`` from ``utils.py``, the metrics).
- ``NAME_<task>.yaml``: one lmms-eval task per canonical task, ``dataset_path: parquet`` with
  ``data_files`` naming its parquet by absolute path (lmms-eval hands ``data_files`` to
  ``datasets.load_dataset``, which resolves relative paths against the working directory).
- ``NAME.yaml``: the group, averaging the metrics over its tasks weighted by size.
- ``utils.py``: calls :func:`sparkle_vlm.answers.score` on the record rebuilt from the doc, so
  lmms-eval's numbers are ``sparkle eval``'s numbers. ``sparkle-vlm`` must be installed where
  lmms-eval runs (a task whose ``utils.py`` fails to import is silently skipped by lmms-eval).

Metrics: ``sparkle_score`` (mean verdict score), ``sparkle_correct`` (share correct or optimal)
and ``sparkle_unparsable`` (share of answers that could not be read).
"""

from __future__ import annotations

import json
import re
from typing import Any

from sparkle_vlm.export.base import EXPORTERS, ExportContext, Exporter
from sparkle_vlm.export.hf import write_parquet

TEMPLATE = "_default_template_yaml"
METRICS = (("sparkle_score", True), ("sparkle_correct", True), ("sparkle_unparsable", False))
#: Descriptions run to a few hundred tokens; composite tasks may reason before answering.
MAX_NEW_TOKENS = 1024

UTILS_SOURCE = '''\
"""lmms-eval hooks for a Sparkle-VLM export (written by ``sparkle export --format lmms-eval``).

Scoring calls ``sparkle_vlm.answers.score``, the scorer of ``sparkle eval``, on the record
rebuilt from each doc, so both report the same numbers. Needs ``pip install sparkle-vlm``.
"""

from sparkle_vlm.answers import score
from sparkle_vlm.export.columns import record_from_row


def doc_to_visual(doc):
    """The record's images, in order, as RGB PIL images."""
    return [image.convert("RGB") for image in doc["images"] or []]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    """The question text of the user turn (images are placed first by lmms-eval)."""
    kwargs = lmms_eval_specific_kwargs or {}
    text = ""
    for turn in doc["messages"]:
        if turn["role"] == "user":
            text = "".join(part["text"] or "" for part in turn["content"] if part["type"] == "text")
    return f"{kwargs.get('pre_prompt', '')}{text}{kwargs.get('post_prompt', '')}"


def doc_to_target(doc):
    """The canonical answer (the option letter for multiple choice)."""
    return doc["answer"]


def _text(results):
    if not results:
        return ""
    first = results[0]
    return first if isinstance(first, str) else str(getattr(first, "text", first))


def process_results(doc, results):
    """Score the model output exactly as ``sparkle eval`` does."""
    verdict = score(record_from_row(doc), _text(results))
    return {
        "sparkle_score": float(verdict.score),
        "sparkle_correct": 1.0 if verdict.correct else 0.0,
        "sparkle_unparsable": 1.0 if verdict.outcome == "unparsable" else 0.0,
    }
'''


def _q(value: str) -> str:
    # JSON strings are valid double-quoted YAML scalars.
    return json.dumps(value, ensure_ascii=False)


def template_yaml() -> str:
    """The shared task template (YAML with lmms-eval's ``!function`` tags)."""
    lines = [
        "# Shared by every task of this folder; see README.md.",
        "output_type: generate_until",
        "doc_to_visual: !function utils.doc_to_visual",
        "doc_to_text: !function utils.doc_to_text",
        "doc_to_target: !function utils.doc_to_target",
        "process_results: !function utils.process_results",
        "generation_kwargs:",
        f"  max_new_tokens: {MAX_NEW_TOKENS}",
        "  temperature: 0",
        "  do_sample: false",
        "  until: []",
        "metric_list:",
    ]
    for metric, higher in METRICS:
        lines += [
            f"  - metric: {metric}",
            "    aggregation: mean",
            f"    higher_is_better: {str(higher).lower()}",
        ]
    lines += [
        "lmms_eval_specific_kwargs:",
        "  default:",
        '    pre_prompt: ""',
        '    post_prompt: ""',
    ]
    return "\n".join(lines) + "\n"


def task_yaml(task_name: str, parquet: str, version: int) -> str:
    """One task: its parquet file and the template."""
    return (
        "\n".join(
            [
                f"task: {_q(task_name)}",
                "dataset_path: parquet",
                "dataset_kwargs:",
                "  data_files:",
                f"    test: {_q(parquet)}",
                "test_split: test",
                f"include: {TEMPLATE}",
                "metadata:",
                f"  version: {version}",
            ]
        )
        + "\n"
    )


def group_yaml(group: str, tasks: list[str], version: int) -> str:
    """The group of all tasks, with size-weighted means of each metric."""
    lines = [f"group: {_q(group)}", "task:"]
    lines += [f"  - {_q(t)}" for t in tasks]
    lines.append("aggregate_metric_list:")
    for metric, _ in METRICS:
        lines += [f"  - metric: {metric}", "    aggregation: mean", "    weight_by_size: true"]
    lines += ["metadata:", f"  version: {version}"]
    return "\n".join(lines) + "\n"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_").lower()


def write(ctx: ExportContext) -> None:
    by_task: dict[str, list[dict[str, Any]]] = {}
    for rec in ctx.records:
        by_task.setdefault(rec["task"], []).append(rec)
    task_names: list[str] = []
    versions: list[int] = []
    for task in sorted(by_task):
        recs = by_task[task]
        slug = _slug(task)
        name = f"{ctx.name}_{slug}"
        rel = f"data/{slug}.parquet"
        write_parquet(ctx, rel, recs)
        version = max(int(r.get("version") or 0) for r in recs)
        versions.append(version)
        ctx.write_text(f"{name}.yaml", task_yaml(name, str(ctx.out / rel), version))
        task_names.append(name)
    ctx.write_text(TEMPLATE, template_yaml())
    ctx.write_text(f"{ctx.name}.yaml", group_yaml(ctx.name, task_names, max(versions, default=0)))
    ctx.write_text("utils.py", UTILS_SOURCE)
    ctx.write_text(
        "README.md",
        f"# {ctx.name} (lmms-eval)\n\n"
        f"Group `{ctx.name}` with tasks: {', '.join(f'`{t}`' for t in task_names)} ({len(ctx.records)} questions).\n\n"
        "Install sparkle-vlm where lmms-eval runs (utils.py scores with it), then:\n\n"
        f"    lmms-eval --model huggingface --model_args pretrained=Qwen/Qwen2.5-VL-7B-Instruct \\\n"
        f"        --include_path <this folder> --tasks {ctx.name} --batch_size 1 --log_samples --output_path logs/\n\n"
        "Metrics: `sparkle_score` (mean score), `sparkle_correct` (share correct), `sparkle_unparsable`\n"
        "(share of answers that could not be read). Scores equal `sparkle eval`'s: both call\n"
        "`sparkle_vlm.answers.score`. The YAML files name the parquet files by absolute path: move the\n"
        "folder and you need to export again (or edit `data_files`). If a task is missing from\n"
        "`--tasks list`, run with `--verbosity DEBUG`: lmms-eval skips tasks whose utils.py fails to import.\n",
    )


EXPORTERS.add(
    "lmms-eval",
    Exporter(
        "lmms-eval",
        "lmms-eval task folder (YAML + utils.py scoring with sparkle_vlm) over embedded parquet",
        write,
        absolute_paths=True,
        embeds_images=True,
    ),
)
