"""Report figures as PNG bytes (matplotlib's Agg canvas; no display, no pyplot global state).

PNG metadata is pinned so the same numbers give the same bytes on the same software stack.
"""

from __future__ import annotations

import io
from typing import Any

from sparkle_vlm.answers.types import OUTCOMES
from sparkle_vlm.eval.metrics import level_sort_key
from sparkle_vlm.report.runs import Run

#: Fixed colours per outcome class so the stacked bars read the same in every report.
OUTCOME_COLORS = {
    "correct": "#2e7d32",
    "optimal": "#2e7d32",
    "suboptimal": "#f9a825",
    "wrong": "#c62828",
    "infeasible": "#c62828",
    "unparsable": "#757575",
}
RUN_COLORS = ("#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#17becf", "#e377c2", "#7f7f7f", "#bcbd22")


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None}, bbox_inches="tight")
    return buf.getvalue()


def _group_label(part: str, task: str) -> str:
    return part if part == task else f"{part}\n{task}"


def accuracy_plot(runs: list[Run], groups: list[tuple[str, str]]) -> bytes:
    """Grouped bars: accuracy per (part, task) and run, with 95% Wilson intervals."""
    fig = _figure(max(6.0, 1.1 * len(groups) * max(1, len(runs)) ** 0.5 + 2), 4.0)
    ax = fig.add_subplot(1, 1, 1)
    k = len(runs)
    width = 0.8 / k
    for j, run in enumerate(runs):
        xs, ys, lo, hi = [], [], [], []
        for i, (part, task) in enumerate(groups):
            m = run.metric(part, task)
            if m is None:
                continue
            acc = 100 * m["accuracy"]
            xs.append(i - 0.4 + width * (j + 0.5))
            ys.append(acc)
            lo.append(acc - 100 * m["ci95"][0])
            hi.append(100 * m["ci95"][1] - acc)
        ax.bar(
            xs,
            ys,
            width=width,
            color=RUN_COLORS[j % len(RUN_COLORS)],
            label=run.label,
            yerr=[lo, hi],
            capsize=3,
            error_kw={"elinewidth": 1},
        )
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([_group_label(p, t) for p, t in groups], fontsize=8)
    ax.set_ylim(0, 119)
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Accuracy per task (95% Wilson intervals)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", ncol=min(k, 4), frameon=False)
    return _png(fig)


def difficulty_axes(runs: list[Run]) -> list[tuple[str, str]]:
    """(part, axis) pairs with at least two levels in some run, in suite order."""
    out: list[tuple[str, str]] = []
    for run in runs:
        for part, p in run.summary.get("parts", {}).items():
            for axis, levels in (p.get("difficulty") or {}).items():
                if len(levels) >= 2 and (part, axis) not in out:
                    out.append((part, axis))
    return out


def difficulty_plot(runs: list[Run], part: str, axis: str) -> bytes:
    """Accuracy against one difficulty axis of one part, a line per run, with intervals."""
    levels: list[str] = []
    for run in runs:
        for level in run.summary["parts"].get(part, {}).get("difficulty", {}).get(axis) or {}:
            if level not in levels:
                levels.append(level)
    levels.sort(key=level_sort_key)
    fig = _figure(max(4.5, 0.6 * len(levels) + 2.5), 3.2)
    ax = fig.add_subplot(1, 1, 1)
    for j, run in enumerate(runs):
        table = run.summary["parts"].get(part, {}).get("difficulty", {}).get(axis) or {}
        xs, ys, lo, hi = [], [], [], []
        for i, level in enumerate(levels):
            m = table.get(level)
            if not m or not m["n"]:
                continue
            acc = 100 * m["accuracy"]
            xs.append(i)
            ys.append(acc)
            lo.append(acc - 100 * m["ci95"][0])
            hi.append(100 * m["ci95"][1] - acc)
        ax.errorbar(
            xs,
            ys,
            yerr=[lo, hi],
            marker="o",
            capsize=3,
            label=run.label,
            color=RUN_COLORS[j % len(RUN_COLORS)],
        )
    ax.set_xticks(range(len(levels)))
    ax.set_xticklabels(levels, fontsize=8)
    ax.set_xlabel(axis)
    ax.set_ylim(-3, 103)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{part}: accuracy by {axis}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def outcome_plot(runs: list[Run], groups: list[tuple[str, str]]) -> bytes:
    """Stacked horizontal bars of outcome-class shares per (run, part, task)."""
    bars: list[tuple[str, dict[str, int]]] = []
    for part, task in groups:
        for run in runs:
            m = run.metric(part, task)
            if m is not None:
                label = f"{part}/{task}" if part != task else part
                bars.append((f"{label} | {run.label}" if len(runs) > 1 else label, m["outcomes"]))
    present = [o for o in OUTCOMES if any(counts.get(o) for _, counts in bars)]
    fig = _figure(8.0, max(2.0, 0.32 * len(bars) + 1.2))
    ax = fig.add_subplot(1, 1, 1)
    ys = list(range(len(bars)))[::-1]
    left = [0.0] * len(bars)
    for outcome in present:
        widths = []
        for _, counts in bars:
            total = sum(counts.values()) or 1
            widths.append(100 * counts.get(outcome, 0) / total)
        hatch = "//" if outcome in ("optimal", "infeasible") else None
        ax.barh(
            ys,
            widths,
            left=left,
            color=OUTCOME_COLORS.get(outcome, "#999999"),
            label=outcome,
            hatch=hatch,
            edgecolor="white",
            linewidth=0.5,
        )
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.set_yticks(ys)
    ax.set_yticklabels([b[0] for b in bars], fontsize=7)
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of answers (%)")
    ax.set_title("Outcome classes")
    ax.legend(fontsize=7, ncol=min(6, max(1, len(present))), loc="upper center", bbox_to_anchor=(0.5, -0.18))
    return _png(fig)
