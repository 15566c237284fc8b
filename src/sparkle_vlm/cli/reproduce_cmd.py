"""``sparkle reproduce --model ID --out DIR``: baseline eval, Sparkle SFT, eval, report (resumable)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from sparkle_vlm.cli.eval_cmd import parse_options
from sparkle_vlm.errors import SparkleError


def _pairs(items: list[str], option: str) -> dict[str, Any]:
    try:
        return parse_options(items, "--set")
    except SparkleError as exc:
        raise SparkleError(str(exc).replace("--set", option, 1)) from None


def register(app: typer.Typer) -> None:
    @app.command("reproduce")
    def reproduce(
        model: str = typer.Option(..., "--model", help="Base model: Hugging Face id or local folder."),
        out: Path = typer.Option(..., "--out", help="Reproduction folder (re-run the command to resume)."),
        size: str = typer.Option(
            "paper", "--size", help="paper (2,000 images, full test sets) or toy (smoke run)."
        ),
        ablations: bool = typer.Option(
            False, "--ablations", help="Also train/evaluate the four ablation sets."
        ),
        composite_baseline: bool = typer.Option(
            False, "--composite-baseline", help="Also SFT on SPP+TSP data of the same size (leak-checked)."
        ),
        config: str | None = typer.Option(None, "--config", help="SFT config: shipped name or YAML path."),
        train_set: list[str] = typer.Option([], "--train-set", help="SFT field as key=value (repeatable)."),
        model_opt: list[str] = typer.Option(
            [], "--model-opt", help="hf backend option for evaluation, key=value."
        ),
        trust_remote_code: bool = typer.Option(
            False, "--trust-remote-code", help="Run code shipped with the model."
        ),
        seed: int = typer.Option(0, "--seed", help="Seed of the training sets."),
        eval_seed: int = typer.Option(0, "--eval-seed", help="Seed of the test sets."),
        eval_batch_size: int = typer.Option(8, "--eval-batch-size", help="Requests generated together."),
        max_new_tokens: int | None = typer.Option(
            None, "--max-new-tokens", help="Answer budget (default 256; toy 16)."
        ),
        workers: int | None = typer.Option(None, "--workers", help="Processes for data generation."),
    ) -> None:
        """Reproduce the paper: base model vs Sparkle-Instruct SFT on the paper suite, with a report."""
        from sparkle_vlm.train.reproduce import ReproduceConfig
        from sparkle_vlm.train.reproduce import reproduce as run

        rc = ReproduceConfig(
            model=model,
            out=out,
            size=size,
            ablations=ablations,
            composite_baseline=composite_baseline,
            config=config,
            train_overrides=_pairs(train_set, "--train-set"),
            model_options=_pairs(model_opt, "--model-opt"),
            trust_remote_code=trust_remote_code,
            seed=seed,
            eval_seed=eval_seed,
            eval_batch_size=eval_batch_size,
            max_new_tokens=max_new_tokens,
            workers=workers,
        )
        res = run(rc)
        typer.echo(f"{res['out']}: {', '.join(res['arms'])} done; table in {res['report']}")
