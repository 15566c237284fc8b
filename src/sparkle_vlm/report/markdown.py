"""The Markdown report: the paper-layout table(s), every result with intervals, difficulty, significance."""

from __future__ import annotations

from typing import Any

from sparkle_vlm import __version__
from sparkle_vlm.eval.metrics import level_sort_key
from sparkle_vlm.report.runs import Run, TableSpec, pct, signed_pp
from sparkle_vlm.report.significance import PairedRow


def p_value(p: float) -> str:
    """A p-value for tables.

    >>> p_value(0.0214843), p_value(3e-7), p_value(1.0)
    ('0.021', '3.0e-07', '1')
    """
    return f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _align(n_left: int, n_right: int) -> str:
    return "|" + "---|" * n_left + "---:|" * n_right


def table_rows(spec: TableSpec, runs: list[Run]) -> list[list[str]]:
    """Rows of a paper-style table: one per run, plus a delta row when there are exactly two runs."""
    rows = []
    for run in runs:
        rows.append([run.label] + [pct(m["accuracy"]) if (m := run.cell(c)) else "-" for c in spec.columns])
    if len(runs) == 2:
        a, b = runs
        deltas = []
        for c in spec.columns:
            ma, mb = a.cell(c), b.cell(c)
            deltas.append(signed_pp(mb["accuracy"] - ma["accuracy"]) if ma and mb else "-")
        rows.append([f"Δ ({b.label} − {a.label})"] + deltas)
    return rows


def run_lines(runs: list[Run]) -> list[str]:
    out = []
    for i, run in enumerate(runs, 1):
        s = run.summary
        c = s.get("counts", {})
        role = ""
        if len(runs) == 2:
            role = " (baseline)" if i == 1 else " (fine-tuned)"
        status = "" if s.get("complete") else " — INCOMPLETE"
        out.append(
            f"{i}. **{run.label}**{role}: model `{s.get('model_spec')}`, suite `{s.get('suite')}`, "
            f"seed {s.get('seed')}, {c.get('scored', 0)}/{c.get('expected', 0)} scored{status} (`{run.path}`)"
        )
    return out


def detail_rows(run: Run) -> list[list[str]]:
    rows = []
    for part, task in run.groups():
        m = run.metric(part, task)
        if m is None:
            continue
        ci = m["ci95"]
        outcomes = ", ".join(f"{k} {v}" for k, v in m["outcomes"].items())
        err = "-" if m.get("mean_error") is None else f"{m['mean_error']:.3g}"
        rows.append(
            [
                part,
                task,
                str(m["n"]),
                pct(m["accuracy"]),
                f"{pct(ci[0])}–{pct(ci[1])}",
                pct(m["unparsable_rate"]),
                outcomes,
                err,
            ]
        )
    return rows


DETAIL_HEADER = ["Part", "Task", "n", "Acc %", "95% CI", "Unparsable %", "Outcomes", "Mean error"]
SIG_HEADER = [
    "Part",
    "Task",
    "n",
    "A %",
    "B %",
    "Δ pp",
    "95% bootstrap CI (pp)",
    "A only",
    "B only",
    "McNemar p",
]


def difficulty_tables(runs: list[Run]) -> list[tuple[str, str, list[str], list[list[str]]]]:
    """(part, axis, header, rows) for every difficulty axis with two or more levels."""
    from sparkle_vlm.report.plots import difficulty_axes

    out = []
    for part, axis in difficulty_axes(runs):
        levels: list[str] = []
        tables = []
        for run in runs:
            t = run.summary.get("parts", {}).get(part, {}).get("difficulty", {}).get(axis) or {}
            tables.append(t)
            levels += [lv for lv in t if lv not in levels]
        levels.sort(key=level_sort_key)
        rows = []
        for lv in levels:
            cells = [lv]
            for t in tables:
                m = t.get(lv)
                cells.append(f"{pct(m['accuracy'])} (n={m['n']})" if m and m["n"] else "-")
            rows.append(cells)
        out.append((part, axis, [axis] + [r.label for r in runs], rows))
    return out


def sig_rows(sig: list[PairedRow]) -> list[list[str]]:
    rows = []
    for s in sig:
        r = s.result
        rows.append(
            [
                s.part,
                s.task,
                str(r.n),
                pct(r.acc_a),
                pct(r.acc_b),
                signed_pp(r.diff),
                f"{signed_pp(r.ci_low)} to {signed_pp(r.ci_high)}",
                str(r.a_only),
                str(r.b_only),
                p_value(r.p_value),
            ]
        )
    return rows


def render_markdown(
    runs: list[Run],
    tables: list[TableSpec],
    sig: list[PairedRow] | None,
    files: dict[str, str],
    options: dict[str, Any],
) -> str:
    """The whole ``report.md``."""
    lines = ["# Sparkle-VLM evaluation report", "", *run_lines(runs), ""]
    for spec in tables:
        lines += [
            f"## {spec.title}",
            "",
            "Accuracy (%)."
            + (" Last row: fine-tuned minus baseline, in percentage points." if len(runs) == 2 else ""),
            "",
        ]
        lines += [_row(["Model"] + [c.title for c in spec.columns]), _align(1, len(spec.columns))]
        lines += [_row(r) for r in table_rows(spec, runs)]
        lines.append("")
    if sig:
        a, b = runs
        lines += [
            f"## Paired significance: {b.label} (B) vs {a.label} (A)",
            "",
            f"On the items both runs scored (matched by part and id). McNemar: exact two-sided test on the "
            f"discordant items. CI: paired percentile bootstrap of B − A ({options['n_boot']} resamples, "
            f"seed {options['seed']}).",
            "",
        ]
        lines += [_row(SIG_HEADER), _align(2, len(SIG_HEADER) - 2)]
        lines += [_row(r) for r in sig_rows(sig)]
        lines.append("")
    lines += ["## All results", ""]
    for run in runs:
        lines += [f"### {run.label}", "", _row(DETAIL_HEADER), _align(2, len(DETAIL_HEADER) - 2)]
        lines += [_row(r) for r in detail_rows(run)]
        lines.append("")
    diff = difficulty_tables(runs)
    if diff:
        lines += ["## Accuracy by difficulty", ""]
        for part, axis, header, rows in diff:
            lines += [f"### {part}: by {axis}", "", _row(header), _align(1, len(header) - 1)]
            lines += [_row(r) for r in rows]
            lines.append("")
    lines += ["## Files", ""]
    lines += [f"- {desc}: [{name}]({name})" for name, desc in files.items()]
    lines += ["", f"Generated by sparkle-vlm {__version__} (`sparkle report`).", ""]
    return "\n".join(lines)
