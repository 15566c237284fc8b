"""Reports from evaluation runs: Markdown and HTML tables, plots, a failure gallery, paired tests.

``build_report(run_dirs, out)`` writes ``report.md``, ``report.html`` (self-contained),
``gallery.html`` and ``report.json`` (the numbers behind them). With two runs the first is the
baseline and the second the fine-tuned model: tables gain a delta row and a paired
significance section. The output depends only on the run folders and options (no timestamps).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sparkle_vlm.errors import SparkleError
from sparkle_vlm.fsutil import atomic_write_json, atomic_write_text, check_writable_dir

__all__ = ["build_report"]


def build_report(
    run_dirs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    labels: list[str] | None = None,
    gallery: int = 6,
    n_boot: int = 10_000,
    seed: int = 0,
) -> dict[str, Path]:
    """Write the report files into ``out``; returns {name: path}."""
    from sparkle_vlm.report.html import render_gallery, render_html
    from sparkle_vlm.report.markdown import render_markdown, table_rows
    from sparkle_vlm.report.runs import load_runs, present_tables
    from sparkle_vlm.report.significance import compare_runs

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise SparkleError(
            "sparkle report draws its plots with matplotlib: pip install 'sparkle-vlm[viz]'"
        ) from None
    if gallery < 0:
        raise SparkleError(f"--gallery: must be non-negative, got {gallery}")
    if n_boot < 1:
        raise SparkleError(f"--bootstrap: must be at least 1, got {n_boot}")
    out_p = check_writable_dir(out)
    runs = load_runs([Path(p) for p in run_dirs], labels)
    tables = present_tables(runs)
    sig = compare_runs(runs[0], runs[1], n_boot=n_boot, seed=seed) if len(runs) == 2 else None
    options = {"n_boot": n_boot, "seed": seed, "gallery": gallery}
    files = {
        "report.html": "Self-contained HTML report with plots",
        "gallery.html": "Failure gallery (images, questions, outputs, reasons)",
        "report.json": "The numbers behind the tables",
    }
    out_p.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {
        "runs": [
            {
                "label": r.label,
                "path": str(r.path),
                "model_spec": r.summary.get("model_spec"),
                "suite": r.summary.get("suite"),
                "seed": r.summary.get("seed"),
            }
            for r in runs
        ],
        "tables": [
            {"title": t.title, "columns": [c.title for c in t.columns], "rows": table_rows(t, runs)}
            for t in tables
        ],
        "significance": [s.to_dict() for s in sig] if sig else None,
        "options": options,
    }
    paths = {name: out_p / name for name in ("report.md", "report.html", "gallery.html", "report.json")}
    atomic_write_text(paths["report.md"], render_markdown(runs, tables, sig, files, options))
    atomic_write_text(paths["report.html"], render_html(runs, tables, sig, options))
    atomic_write_text(paths["gallery.html"], render_gallery(runs, gallery))
    atomic_write_json(paths["report.json"], data)
    return paths
