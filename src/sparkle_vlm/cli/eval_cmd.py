"""``sparkle eval --model BACKEND:SPEC --suite NAME --out RUN_DIR``: score a model on a suite."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from sparkle_vlm.errors import SparkleError


def parse_options(items: list[str], option: str = "--model-opt") -> dict[str, Any]:
    """``key=value`` pairs; values read as JSON when they parse (``32``, ``true``), else as text.

    >>> parse_options(["concurrency=32", "adapter=/tmp/lora", "trust_remote_code=true"])
    {'concurrency': 32, 'adapter': '/tmp/lora', 'trust_remote_code': True}
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SparkleError(f"{option}: expected key=value, got {item!r}")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _print_summary(summary: dict[str, Any], out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f}"

    table = Table(title=f"{summary['model_spec']} on {summary['suite']} (seed {summary['seed']})")
    for col in ("part", "task", "n", "acc %", "95% CI", "unparsable %"):
        table.add_column(col, justify="right" if col not in ("part", "task") else "left")
    for name, part in summary["parts"].items():
        for task, m in part["tasks"].items():
            ci = m["ci95"]
            table.add_row(
                name,
                task,
                str(m["n"]),
                pct(m["accuracy"]),
                f"{pct(ci[0])}-{pct(ci[1])}" if ci else "-",
                pct(m["unparsable_rate"]),
            )
    console = Console(stderr=False)
    console.print(table)
    c = summary["counts"]
    note = (
        ""
        if summary["complete"]
        else (
            f" INCOMPLETE: {c['backend_errors']} request(s) failed at the backend; re-run the same command to retry"
        )
    )
    typer.echo(f"{out}: {c['scored']}/{c['expected']} scored{note}")


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_(
        model: str = typer.Option(
            ...,
            "--model",
            help="BACKEND:SPEC, e.g. hf:Qwen/Qwen2-VL-2B-Instruct, openai:NAME, oracle:, random:.",
        ),
        suite: str = typer.Option(
            ...,
            "--suite",
            help="paper, basic, composite, text, ood, whatsup, coco-spatial, gqa-spatial, or a dataset folder.",
        ),
        out: Path = typer.Option(
            ..., "--out", help="Run folder (created, or resumed when it holds the same run)."
        ),
        limit: int | None = typer.Option(
            None, "--limit", help="Evaluate only the first N records of each part."
        ),
        batch_size: int = typer.Option(8, "--batch-size", help="Requests per backend call."),
        seed: int = typer.Option(
            0, "--seed", help="Data seed (generated suites, OOD option order) and decoding seed."
        ),
        max_new_tokens: int = typer.Option(256, "--max-new-tokens", help="Generation length limit."),
        temperature: float = typer.Option(0.0, "--temperature", help="Sampling temperature (0 = greedy)."),
        model_opt: list[str] = typer.Option(
            [],
            "--model-opt",
            help="Backend option key=value (repeatable), e.g. adapter=DIR, trust_remote_code=true, concurrency=32, constrained=true.",
        ),
        data_dir: Path | None = typer.Option(
            None, "--data-dir", help="Cache folder for generated datasets (default RUN_DIR/data)."
        ),
        ood_dir: Path | None = typer.Option(
            None,
            "--ood-dir",
            help="Folder with the What'sUp/COCO/GQA-spatial files (default $SPARKLE_OOD_DIR).",
        ),
        n: int | None = typer.Option(
            None, "--n", help="Scenes per generated part (default: the suite's full size, 200)."
        ),
        workers: int | None = typer.Option(
            None, "--workers", help="Processes for dataset generation (default: all cores)."
        ),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or result table."),
    ) -> None:
        """Evaluate a model: results.jsonl (one row per sample), summary.json, run.json in RUN_DIR."""
        from sparkle_vlm.eval.runner import EvalConfig, run_eval

        cfg = EvalConfig(
            model=model,
            suite=suite,
            out=out,
            limit=limit,
            batch_size=batch_size,
            seed=seed,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            model_options=parse_options(model_opt),
            data_dir=data_dir,
            ood_dir=ood_dir,
            n=n,
            workers=workers,
        )
        summary = run_eval(cfg, progress=False if quiet else None)
        if not quiet:
            _print_summary(summary, out)
        if not summary["complete"]:
            # Scores are saved, but a script must not mistake a partial run for a finished one.
            raise typer.Exit(1)
