"""Load evaluation run folders and lay their numbers out in the paper's tables."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparkle_vlm.errors import SparkleError


@dataclass(frozen=True)
class Column:
    """One table column: the first (part, task) a run has gives the cell."""

    title: str
    sources: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class TableSpec:
    title: str
    columns: tuple[Column, ...]


def _col(title: str, *sources: tuple[str, str]) -> Column:
    return Column(title, tuple(sources))


#: The paper's main table (basic MCQ per capability, then the composite tasks).
PAPER_TABLE = TableSpec(
    "Sparkle benchmark (paper layout)",
    (
        _col("Direction", ("basic", "direction")),
        _col("Distance", ("basic", "distance")),
        _col("Localization", ("basic", "localization")),
        _col("SPP 4x4", ("spp-4x4", "spp")),
        _col("SPP 5x5", ("spp-5x5", "spp")),
        _col("TSP", ("tsp", "tsp")),
    ),
)
TEXT_TABLE = TableSpec(
    "Text twins (scene stated in words, no image)",
    (
        _col("Direction", ("basic-text", "direction")),
        _col("Distance", ("basic-text", "distance")),
        _col("Localization", ("basic-text", "localization")),
        _col("SPP 4x4", ("spp-4x4-text", "spp")),
        _col("SPP 5x5", ("spp-5x5-text", "spp")),
        _col("TSP", ("tsp-text", "tsp")),
    ),
)
OOD_TABLE = TableSpec(
    "Real-image spatial benchmarks (OOD)",
    (
        _col("What'sUp A", ("whatsup-a", "whatsup")),
        _col("What'sUp B", ("whatsup-b", "whatsup")),
        _col("COCO-spatial 1-obj", ("coco-spatial-one", "coco_spatial")),
        _col("COCO-spatial 2-obj", ("coco-spatial-two", "coco_spatial")),
        _col("GQA-spatial 1-obj", ("gqa-spatial-one", "gqa_spatial")),
        _col("GQA-spatial 2-obj", ("gqa-spatial-two", "gqa_spatial")),
    ),
)
TABLES = (PAPER_TABLE, TEXT_TABLE, OOD_TABLE)


@dataclass
class Run:
    """One run folder: its summary and its scored rows (keyed ``part/id``)."""

    path: Path
    label: str
    summary: dict[str, Any]
    rows: dict[str, dict[str, Any]]

    def metric(self, part: str, task: str) -> dict[str, Any] | None:
        """The metric block of (part, task), or None when the run lacks it."""
        p = self.summary.get("parts", {}).get(part)
        if not p:
            return None
        m = p.get("tasks", {}).get(task)
        return m if m and m.get("n") else None

    def cell(self, column: Column) -> dict[str, Any] | None:
        for part, task in column.sources:
            m = self.metric(part, task)
            if m is not None:
                return m
        return None

    def groups(self) -> list[tuple[str, str]]:
        """Every (part, task) with scored rows, in suite order."""
        out = []
        for part, p in self.summary.get("parts", {}).items():
            for task, m in p.get("tasks", {}).items():
                if m.get("n"):
                    out.append((part, task))
        return out


def load_run(path: str | Path, label: str | None = None) -> Run:
    """Read ``summary.json`` and ``results.jsonl`` of a run folder (one-line error when it is not one)."""
    from sparkle_vlm.eval.runner import RESULTS_FILE, SUMMARY_FILE, load_results

    p = Path(path).expanduser().absolute()
    summary_p = p / SUMMARY_FILE
    if not summary_p.is_file():
        hint = (
            " (the run has not finished; re-run its `sparkle eval` command)"
            if (p / RESULTS_FILE).exists()
            else ""
        )
        raise SparkleError(f"RUN_DIR: {p} has no {SUMMARY_FILE}{hint}")
    try:
        summary = json.loads(summary_p.read_text())
    except ValueError as exc:
        raise SparkleError(f"RUN_DIR: {summary_p} is not valid JSON ({exc})") from None
    rows = {k: r for k, r in load_results(p / RESULTS_FILE).items() if r.get("status") == "ok"}
    default = str(summary.get("model_spec") or "").removesuffix(":") or p.name
    return Run(p, label or default, summary, rows)


def load_runs(paths: list[Path], labels: list[str] | None = None) -> list[Run]:
    """Load several runs; duplicate labels get their folder name appended."""
    if not paths:
        raise SparkleError("RUN_DIR: give at least one run folder")
    if labels and len(labels) != len(paths):
        raise SparkleError(f"--label: give one label per run folder ({len(paths)}), got {len(labels)}")
    runs = [load_run(p, labels[i] if labels else None) for i, p in enumerate(paths)]
    seen: dict[str, int] = {}
    for r in runs:
        seen[r.label] = seen.get(r.label, 0) + 1
    for r in runs:
        if seen[r.label] > 1:
            r.label = f"{r.label} ({r.path.name})"
    return runs


def present_tables(runs: list[Run]) -> list[TableSpec]:
    """The tables for which at least one run has at least one cell."""
    return [t for t in TABLES if any(r.cell(c) is not None for r in runs for c in t.columns)]


def pct(x: float | None, digits: int = 1) -> str:
    """A proportion as a percentage string; '-' for missing.

    >>> pct(0.405), pct(None)
    ('40.5', '-')
    """
    return "-" if x is None else f"{100 * x:.{digits}f}"


def signed_pp(x: float | None) -> str:
    """A difference of proportions in percentage points with its sign.

    >>> signed_pp(0.265), signed_pp(-0.03), signed_pp(0.0)
    ('+26.5', '-3.0', '+0.0')
    """
    return "-" if x is None else f"{100 * x:+.1f}"
