"""Evaluation suites: named lists of parts, each turned into canonical records on demand.

A part is one dataset: a generation suite with config overrides (generated into a cache
folder, so results are reproducible from the suite name and seed), a real-image OOD subset
read from ``--ood-dir``, or an existing dataset folder. ``sparkle eval --suite`` takes a suite
name below or the path of a dataset folder written by ``sparkle generate``.

=========== =====================================================================
suite       parts
=========== =====================================================================
paper       basic MCQ (direction, distance, localization), SPP 4x4, SPP 5x5, TSP 5
basic       basic MCQ
composite   SPP 4x4, SPP 5x5, TSP 5 points fixstart
text        text twins of basic + composite (no images: reasoning without perception)
ood         What'sUp A/B, COCO-spatial 1/2-object, GQA-spatial 1/2-object
=========== =====================================================================
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparkle_vlm.errors import SparkleError
from sparkle_vlm.registry import Registry


@dataclass(frozen=True)
class Part:
    """One dataset of a suite.

    ``kind`` is ``generate`` (``source`` = generation suite, plus ``overrides``), ``ood``
    (``source`` = OOD subset name) or ``folder`` (``source`` = dataset folder path).
    """

    name: str
    kind: str
    source: str
    label: str
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EvalSuite:
    name: str
    description: str
    parts: tuple[Part, ...]


@dataclass
class PreparedPart:
    """A part's records (after ``--limit``) and where their images live."""

    part: Part
    root: Path
    records: list[dict[str, Any]]
    total: int
    data: dict[str, Any]


EVAL_SUITES: Registry[EvalSuite] = Registry("evaluation suite")

BASIC = Part("basic", "generate", "basic-test", "Basic MCQ")
SPP4 = Part("spp-4x4", "generate", "spp", "SPP 4x4", {"grid": 4})
SPP5 = Part("spp-5x5", "generate", "spp", "SPP 5x5", {"grid": 5})
TSP5 = Part("tsp", "generate", "tsp", "TSP", {"points": 5, "variant": "fixstart"})


def _text(p: Part) -> Part:
    return Part(f"{p.name}-text", p.kind, p.source, f"{p.label} (text)", {**p.overrides, "modality": "text"})


def _ood(name: str, label: str) -> Part:
    return Part(name, "ood", name, label)


WHATSUP = (_ood("whatsup-a", "What'sUp A"), _ood("whatsup-b", "What'sUp B"))
COCO = (_ood("coco-spatial-one", "COCO-spatial 1-obj"), _ood("coco-spatial-two", "COCO-spatial 2-obj"))
GQA = (_ood("gqa-spatial-one", "GQA-spatial 1-obj"), _ood("gqa-spatial-two", "GQA-spatial 2-obj"))


def _add(name: str, description: str, *parts: Part) -> None:
    EVAL_SUITES.add(name, EvalSuite(name, description, tuple(parts)))


_add(
    "paper",
    "The paper's table: basic MCQ (direction/distance/localization), SPP 4x4 and 5x5, TSP 5 points",
    BASIC,
    SPP4,
    SPP5,
    TSP5,
)
_add("basic", "Basic MCQ test set (direction, distance, localization)", BASIC)
_add("composite", "Composite tasks: SPP 4x4, SPP 5x5, TSP 5 points (fixed start)", SPP4, SPP5, TSP5)
_add(
    "text",
    "Text twins of basic + composite: the same questions with the scene stated in words",
    _text(BASIC),
    _text(SPP4),
    _text(SPP5),
    _text(TSP5),
)
_add("ood", "Real-image OOD: What'sUp A/B, COCO-spatial and GQA-spatial 1-/2-object", *WHATSUP, *COCO, *GQA)
_add("whatsup", "What'sUp controlled subsets A and B (4 options)", *WHATSUP)
_add("coco-spatial", "COCO-spatial one- and two-object (2 options)", *COCO)
_add("gqa-spatial", "GQA-spatial one- and two-object (2 options)", *GQA)


def is_folder_suite(name: str) -> bool:
    """Whether ``--suite`` names a dataset folder rather than a registered suite."""
    return name not in EVAL_SUITES and (os.sep in name or "/" in name or Path(name).is_dir())


def resolve_suite(name: str) -> EvalSuite:
    """A registered suite, or a one-part suite for a dataset folder path."""
    if not is_folder_suite(name):
        return EVAL_SUITES.get(name)
    path = Path(name).expanduser().absolute()
    if not (path / "data.jsonl").is_file():
        raise SparkleError(
            f"--suite: {name} is neither an evaluation suite ({', '.join(EVAL_SUITES.names())}) "
            "nor a dataset folder (no data.jsonl there)"
        )
    part_name = path.name.replace(".", "-") or "data"
    return EvalSuite(str(path), f"dataset folder {path}", (Part(part_name, "folder", str(path), part_name),))


def _slug(value: Any) -> str:
    text = str(value).lower().replace(".", "p")
    return "".join(c if c.isalnum() else "-" for c in text)


def cache_name(gen_suite: str, overrides: dict[str, Any], version: int, seed: int) -> str:
    """Cache folder of a generated part: readable, and distinct for distinct data.

    >>> cache_name("spp", {"grid": 4}, 1, 0)
    'spp-grid4-v1-s0'
    """
    bits = [gen_suite] + [f"{_slug(k)}{_slug(v)}" for k, v in sorted(overrides.items())]
    return "-".join(bits) + f"-v{version}-s{seed}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_records(path: Path) -> list[dict[str, Any]]:
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except ValueError as exc:
                raise SparkleError(f"{path}:{lineno}: not a JSON record ({exc})") from None
    return out


def _prepare_generated(
    part: Part, seed: int, data_dir: Path, n: int | None, workers: int | None, progress: bool | None
) -> tuple[Path, list[dict[str, Any]], dict[str, Any]]:
    from sparkle_vlm.generate import MANIFEST, generate_dataset
    from sparkle_vlm.suites import SUITES
    from sparkle_vlm.tasks import get_task

    gen = SUITES.get(part.source)
    task = get_task(gen.task)
    overrides = {**gen.overrides, **part.overrides}
    if n is not None:
        overrides["n"] = n
    try:
        config = task.make_config(**overrides)
    except SparkleError as exc:
        raise SparkleError(f"suite part {part.name!r}: {exc}") from None
    folder = data_dir / cache_name(gen.name, overrides, task.version, seed)
    generate_dataset(task, config, seed, folder, workers=workers, suite=gen.name, progress=progress)
    manifest = json.loads((folder / MANIFEST).read_text())
    records = _read_records(folder / "data.jsonl")
    info = {
        "kind": "generate",
        "generation_suite": gen.name,
        "task": task.id,
        "task_version": task.version,
        "seed": seed,
        "config": config.to_dict(),
        "data_sha256": manifest.get("data_sha256"),
        "folder": folder.name,
    }
    return folder, records, info


def _prepare_folder(part: Part) -> tuple[Path, list[dict[str, Any]], dict[str, Any]]:
    from sparkle_vlm.generate import MANIFEST, PARTIAL

    folder = Path(part.source)
    if (folder / PARTIAL).exists():
        raise SparkleError(
            f"--suite: {folder} is an unfinished dataset; finish it with `sparkle generate` first"
        )
    info: dict[str, Any] = {"kind": "folder", "folder": str(folder)}
    if (folder / MANIFEST).is_file():
        m = json.loads((folder / MANIFEST).read_text())
        for key in ("suite", "task", "task_version", "seed", "config", "data_sha256"):
            info[key] = m.get(key)
    else:
        info["data_sha256"] = _sha256(folder / "data.jsonl")
    return folder, _read_records(folder / "data.jsonl"), info


def prepare_suite(
    suite: EvalSuite,
    *,
    seed: int,
    data_dir: Path,
    ood_dir: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    n: int | None = None,
    workers: int | None = None,
    progress: bool | None = None,
) -> list[PreparedPart]:
    """Generate (or reuse) and read every part; ``limit`` keeps the first records of each part."""
    if limit is not None and limit < 0:
        raise SparkleError(f"--limit: must be non-negative, got {limit}")
    if n is not None and n < 1:
        raise SparkleError(f"--n: must be at least 1, got {n}")
    prepared: list[PreparedPart] = []
    for part in suite.parts:
        if part.kind == "generate":
            root, records, info = _prepare_generated(part, seed, data_dir, n, workers, progress)
        elif part.kind == "ood":
            from sparkle_vlm.eval.ood import load_subset, resolve_ood_dir

            root = resolve_ood_dir(ood_dir)
            records, info = load_subset(part.source, root, seed)
        elif part.kind == "folder":
            root, records, info = _prepare_folder(part)
        else:  # pragma: no cover - parts are built in this module
            raise ValueError(f"unknown part kind {part.kind!r}")
        seen: set[str] = set()
        for rec in records:
            if rec["id"] in seen:
                raise SparkleError(f"part {part.name!r}: duplicate record id {rec['id']!r}")
            seen.add(rec["id"])
        info["records"] = len(records)
        info["task_versions"] = dict(sorted({str(r["task"]): r.get("version") for r in records}.items()))
        kept = records if limit is None else records[:limit]
        prepared.append(PreparedPart(part, root, kept, len(records), info))
    return prepared
