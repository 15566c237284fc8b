"""``sparkle export DIR --format F --out OUT``: write a dataset folder in a trainer's or harness's format."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("export")
    def export(
        source: Path = typer.Argument(..., help="Dataset folder made by `sparkle generate`."),
        fmt: str = typer.Option(
            ...,
            "--format",
            "-f",
            help="ms-swift, ms-swift-messages, llava, llama-factory, hf, trl, lmms-eval or vlmevalkit.",
        ),
        out: Path = typer.Option(
            ..., "--out", help="Export folder (created; an earlier export there is replaced)."
        ),
        absolute_paths: bool | None = typer.Option(
            None,
            "--absolute-paths/--relative-paths",
            help="Image paths style (default: the format's own; relative paths are relative to --out).",
        ),
        copy_images: bool = typer.Option(
            False,
            "--copy-images",
            help="Copy the images into --out/images/ (formats that reference image files).",
        ),
        shuffle: bool | None = typer.Option(
            None, "--shuffle/--no-shuffle", help="Shuffle the records (default: training sets only)."
        ),
        seed: int = typer.Option(0, "--seed", help="Shuffle seed: the order is a pure function of it."),
        name: str | None = typer.Option(
            None, "--name", help="Dataset/task name used in file names (default: sparkle_<suite>)."
        ),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No summary line."),
    ) -> None:
        """Export a dataset folder (records, images, manifest) to a training or evaluation format."""
        from sparkle_vlm.export import ExportOptions, export_dataset

        options = ExportOptions(
            absolute_paths=absolute_paths, copy_images=copy_images, shuffle=shuffle, seed=seed, name=name
        )
        res = export_dataset(source, fmt, out, options)
        if not quiet:
            typer.echo(
                f"{res.out}: {res.format}, {res.records} records, {res.images} images, "
                f"files: {', '.join(res.files)}"
            )
