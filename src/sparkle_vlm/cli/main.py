"""Entry point of the ``sparkle`` command.

Each subcommand lives in its own module with a ``register(app)`` function. Errors the user can
fix (bad options, unknown names, unusable paths) print one line, ``error: ...``, and exit 2.
"""

from __future__ import annotations

import importlib
import sys

import typer

from sparkle_vlm import __version__
from sparkle_vlm.errors import SparkleError

app = typer.Typer(
    name="sparkle",
    help="Sparkle-VLM: generate, evaluate and train 2D spatial reasoning for vision-language models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

#: Subcommand modules, in help order.
COMMANDS = ("tasks", "generate", "export", "eval", "report", "train", "reproduce", "demo")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sparkle-vlm {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version."
    ),
) -> None:
    """Sparkle-VLM command line."""


def _load_commands() -> None:
    for name in COMMANDS:
        modname = f"sparkle_vlm.cli.{name}_cmd"
        try:
            module = importlib.import_module(modname)
        except ModuleNotFoundError as exc:
            if exc.name == modname:  # that command is not part of this build
                continue
            raise
        module.register(app)


_load_commands()


def _usage_error_types() -> tuple[type[BaseException], ...]:
    """Click's UsageError, wherever this typer takes click from (recent typer vendors it)."""
    found: list[type[BaseException]] = [c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError"]
    try:
        import click

        found.append(click.exceptions.UsageError)
    except ImportError:
        pass
    return tuple(found)


def _abort_types() -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = [typer.Abort]
    try:
        import click

        found.append(click.exceptions.Abort)
    except ImportError:
        pass
    return tuple(found)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    args = sys.argv[1:] if argv is None else argv
    try:
        rv = app(args=args, prog_name="sparkle", standalone_mode=False)
    except SparkleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except _usage_error_types() as exc:
        msg = " ".join(str(getattr(exc, "format_message", exc.__str__)()).split())
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except _abort_types():
        print("error: aborted", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return int(rv) if isinstance(rv, int) else 0


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
