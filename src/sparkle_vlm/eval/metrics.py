"""Aggregate per-sample result rows into the metrics of ``summary.json``.

Every group (suite, part, task, difficulty level) gets the same block: n, correct, accuracy
with its 95% Wilson interval, the unparsable count and rate (kept apart from wrong answers),
outcome-class counts, mean score, and the mean numeric error where the task has one.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from sparkle_vlm.answers.types import OUTCOMES
from sparkle_vlm.eval.stats import wilson_interval

#: Record ``meta`` keys that describe how hard an item is (used when ``meta["difficulty"]`` is absent).
DIFFICULTY_KEYS = (
    "grid",
    "points",
    "obstacles",
    "weighted",
    "variant",
    "prompt",
    "path_length",
    "optimal_length",
    "manhattan",
    "distractors",
    "n_distractors",
    "ways",
    "relation",
    "options",
    "modality",
)


#: Most levels a difficulty axis may have to be broken down.
MAX_LEVELS = 16


def _scalar(v: Any) -> bool:
    return isinstance(v, (str, int, float, bool)) and not (isinstance(v, float) and v != v)


def difficulty_of(record: dict[str, Any]) -> dict[str, Any]:
    """The difficulty axes of a record, from ``meta["difficulty"]`` (a dict) or known ``meta`` keys.

    >>> difficulty_of({"meta": {"difficulty": {"grid": 5, "path_length": 3}, "template": 2}})
    {'grid': 5, 'path_length': 3}
    >>> difficulty_of({"meta": {"relation": "left", "template": 0}})
    {'relation': 'left'}
    """
    meta = record.get("meta") or {}
    out: dict[str, Any] = {}
    diff = meta.get("difficulty")
    if isinstance(diff, dict):
        out.update({str(k): v for k, v in diff.items() if _scalar(v)})
    for key in DIFFICULTY_KEYS:
        if key not in out and _scalar(meta.get(key)):
            out[key] = meta[key]
    return out


def metrics(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The metric block of a group of scored rows.

    >>> m = metrics([{"correct": True, "outcome": "correct", "score": 1.0, "error": None},
    ...              {"correct": False, "outcome": "unparsable", "score": 0.0, "error": None}])
    >>> m["n"], m["accuracy"], m["unparsable_rate"], m["outcomes"]
    (2, 0.5, 0.5, {'correct': 1, 'unparsable': 1})
    """
    rows = list(rows)
    n = len(rows)
    correct = sum(1 for r in rows if r["correct"])
    counts = Counter(r["outcome"] for r in rows)
    order = {o: i for i, o in enumerate(OUTCOMES)}
    outcomes = {k: counts[k] for k in sorted(counts, key=lambda o: (order.get(o, len(order)), o))}
    lo, hi = wilson_interval(correct, n)
    errs = [float(r["error"]) for r in rows if r.get("error") is not None]
    unparsable = counts.get("unparsable", 0)
    return {
        "n": n,
        "correct": correct,
        "accuracy": correct / n if n else None,
        "ci95": [lo, hi] if n else None,
        "unparsable": unparsable,
        "unparsable_rate": unparsable / n if n else None,
        "outcomes": outcomes,
        "mean_score": sum(float(r["score"]) for r in rows) / n if n else None,
        "mean_error": sum(errs) / len(errs) if errs else None,
        "n_error": len(errs),
    }


def level_sort_key(value: str) -> tuple[int, float, str]:
    """Numeric levels in numeric order, then the others alphabetically.

    >>> sorted(["10", "2", "b", "a"], key=level_sort_key)
    ['2', '10', 'a', 'b']
    """
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


def _level(value: Any) -> str | None:
    """The level name of a difficulty value; None for continuous values (lengths, ratios).

    >>> _level(True), _level(4), _level(0.2), _level(5.0), _level(7.123)
    ('true', '4', '0.2', '5', None)
    """
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        # Config-like fractions (obstacle rates) are levels; measured lengths are not.
        return str(value) if round(value, 2) == value else None
    return str(value)


def by_difficulty(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{axis: {level: metrics}}`` over the rows' ``difficulty`` dicts.

    Continuous axes and axes with more than :data:`MAX_LEVELS` levels are left out: a
    breakdown is only worth reading when each level holds a fair share of the items.
    """
    groups: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    labels: dict[str, list[str | None]] = defaultdict(list)
    dropped: set[str] = set()
    for i, r in enumerate(rows):
        for key, value in (r.get("difficulty") or {}).items():
            level = _level(value)
            if level is None:
                dropped.add(key)
            else:
                groups[key][level].append(r)
                labels[key] += [None] * (i - len(labels[key])) + [level]
    out: dict[str, dict[str, dict[str, Any]]] = {}
    seen: set[tuple[str | None, ...]] = set()
    for key, levels in groups.items():
        # Axes that split the rows identically (hops = Manhattan distance on open grids) are shown once.
        sig = tuple(labels[key] + [None] * (len(rows) - len(labels[key])))
        if key in dropped or len(levels) > MAX_LEVELS or sig in seen:
            continue
        seen.add(sig)
        out[key] = {level: metrics(levels[level]) for level in sorted(levels, key=level_sort_key)}
    return out


def by_task(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[r["task"]].append(r)
    return {task: metrics(groups[task]) for task in sorted(groups)}
