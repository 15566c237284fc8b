"""``sparkle demo``: data, embedded model, evaluation, training, report, on a CPU."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        out: Path = typer.Option(Path("demo-out"), "--out", help="Demo folder (re-running resumes)."),
        quick: bool = typer.Option(False, "--quick", help="Toy sizes: seconds, for tests and smoke checks."),
        size: str | None = typer.Option(
            None, "--size", help="Embedded model size: tiny, small (default), base."
        ),
        steps: int | None = typer.Option(
            None,
            "--steps",
            help="SFT steps on Sparkle-Instruct + practice, after the practice part (default 800).",
        ),
        seed: int = typer.Option(0, "--seed", help="Data and model seed."),
        workers: int | None = typer.Option(None, "--workers", help="Processes for data generation."),
        threads: int = typer.Option(
            1, "--threads", help="torch CPU threads (1 is fastest for the small model)."
        ),
        serial: bool = typer.Option(
            False,
            "--serial",
            help="Run every stage in this process, one after another (the same results; on 2+ cores the "
            "default runs the evaluations and the from-scratch transfer arm in a second process).",
        ),
    ) -> None:
        """Run the whole Sparkle loop with the embedded model and write a report."""
        from sparkle_vlm.demo import plan_for, run_demo

        page = run_demo(
            out,
            plan=plan_for(quick, size, steps),
            seed=seed,
            workers=workers,
            threads=threads,
            overlap=False if serial else None,
        )
        typer.echo(page.read_text())
        typer.echo(f"Demo summary: {page}")
        typer.echo(f"Full report:  {page.parent / 'report' / 'report.html'}")
