"""``sparkle report RUN_DIR [RUN_DIR ...] --out REPORT_DIR``: tables, plots, gallery, significance."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report(
        run_dirs: list[Path] = typer.Argument(
            ..., help="Run folders of `sparkle eval`; with two, the first is the baseline."
        ),
        out: Path = typer.Option(
            ..., "--out", help="Report folder (report.md, report.html, gallery.html, report.json)."
        ),
        label: list[str] = typer.Option([], "--label", help="Display name per run, in order (repeatable)."),
        gallery: int = typer.Option(6, "--gallery", help="Failures shown per part and task."),
        bootstrap: int = typer.Option(10_000, "--bootstrap", help="Paired bootstrap resamples (two runs)."),
        seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing."),
    ) -> None:
        """Write a report of one run, or of a baseline and a fine-tuned run with paired tests."""
        from sparkle_vlm.report import build_report

        paths = build_report(
            run_dirs, out, labels=label or None, gallery=gallery, n_boot=bootstrap, seed=seed
        )
        if not quiet:
            typer.echo(f"{paths['report.md'].parent}: " + ", ".join(p.name for p in paths.values()))
