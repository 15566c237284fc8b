"""Paired significance of two runs (baseline A, fine-tuned B), per (part, task) and overall.

Only items scored in both runs are compared (matched on part and record id), so a partial or
limited run is compared on what it shares with the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sparkle_vlm.eval.stats import PairedComparison, paired_compare
from sparkle_vlm.report.runs import Run


@dataclass(frozen=True)
class PairedRow:
    part: str
    task: str
    result: PairedComparison

    def to_dict(self) -> dict[str, Any]:
        return {"part": self.part, "task": self.task, **self.result.to_dict()}


def _pairs(a: Run, b: Run, part: str | None, task: str | None) -> tuple[list[bool], list[bool]]:
    xa: list[bool] = []
    xb: list[bool] = []
    for key in sorted(set(a.rows) & set(b.rows)):
        ra, rb = a.rows[key], b.rows[key]
        if (part is None or ra["part"] == part) and (task is None or ra["task"] == task):
            xa.append(bool(ra["correct"]))
            xb.append(bool(rb["correct"]))
    return xa, xb


def compare_runs(a: Run, b: Run, *, n_boot: int = 10_000, seed: int = 0) -> list[PairedRow]:
    """McNemar exact p-value and bootstrap CI of B - A for every shared (part, task), then all items."""
    groups = [g for g in a.groups() if g in set(b.groups())]
    out: list[PairedRow] = []
    for part, task in groups:
        xa, xb = _pairs(a, b, part, task)
        if xa:
            out.append(PairedRow(part, task, paired_compare(xa, xb, n_boot=n_boot, seed=seed)))
    xa, xb = _pairs(a, b, None, None)
    if xa and len(out) != 1:
        out.append(PairedRow("all", "all", paired_compare(xa, xb, n_boot=n_boot, seed=seed)))
    return out
