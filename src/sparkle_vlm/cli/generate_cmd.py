"""``sparkle generate SUITE --out DIR``: write a dataset folder."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer

from sparkle_vlm.cli.eval_cmd import parse_options
from sparkle_vlm.errors import SparkleError


def register(app: typer.Typer) -> None:
    @app.command("generate")
    def generate(
        suite: str = typer.Argument(..., help="Suite name (see `sparkle tasks`)."),
        out: Path = typer.Option(..., "--out", help="Dataset folder to create (or resume)."),
        n: int | None = typer.Option(None, "--n", help="Number of images/instances (default: the suite's)."),
        seed: int = typer.Option(0, "--seed", help="Dataset seed."),
        workers: int | None = typer.Option(None, "--workers", help="Worker processes (default: all cores)."),
        size: int | None = typer.Option(None, "--size", help="Image side in pixels (default 448)."),
        grid: int | None = typer.Option(None, "--grid", help="SPP grid side n (n x n)."),
        points: int | None = typer.Option(None, "--points", help="TSP number of points."),
        variant: str | None = typer.Option(None, "--variant", help="TSP variant: fixstart, free, closed."),
        obstacles: float | None = typer.Option(None, "--obstacles", help="SPP fraction of blocked nodes."),
        weighted: bool | None = typer.Option(None, "--weighted/--unweighted", help="SPP weighted edges."),
        prompt: str | None = typer.Option(None, "--prompt", help="SPP prompt: moves, labels, steps."),
        modality: str | None = typer.Option(None, "--modality", help="image or text (text twins)."),
        set_: list[str] = typer.Option([], "--set", help="Any task option as key=value (repeatable)."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
    ) -> None:
        """Generate a dataset: records in data.jsonl, images in images/, manifest.json."""
        from sparkle_vlm.generate import generate_dataset
        from sparkle_vlm.suites import SUITES
        from sparkle_vlm.tasks import get_task

        s = SUITES.get(suite)
        task = get_task(s.task)
        flags = {
            "n": n,
            "size": size,
            "grid": grid,
            "points": points,
            "variant": variant,
            "obstacles": obstacles,
            "weighted": weighted,
            "prompt": prompt,
            "modality": modality,
        }
        overrides: dict[str, Any] = dict(s.overrides)
        for key, value in flags.items():
            if value is not None:
                overrides[key] = value
        overrides.update(parse_options(set_, "--set"))
        try:
            config = task.make_config(**overrides)
        except SparkleError as exc:
            key = getattr(exc, "field", "")
            if key in flags:
                raise SparkleError(f"--{key}: {str(exc).split(': ', 1)[1]}") from None
            raise
        t0 = time.perf_counter()
        res = generate_dataset(
            task, config, seed, out, workers=workers, suite=suite, progress=None if not quiet else False
        )
        dt = time.perf_counter() - t0
        if quiet:
            return
        if res.already_complete:
            typer.echo(f"{res.out}: already complete ({res.images} images, {res.records} records)")
            return
        rate = (config.n - res.resumed_from) / dt if dt > 0 else 0.0
        resumed = f", resumed at scene {res.resumed_from}" if res.resumed_from else ""
        typer.echo(
            f"{res.out}: {res.images} images, {res.records} records ({suite}, {task.id} v{task.version}, "
            f"seed {seed}{resumed}) in {dt:.1f}s ({rate:.0f} scenes/s)"
        )
