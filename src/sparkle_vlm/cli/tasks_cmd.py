"""``sparkle tasks``: list tasks, versions and defaults, and the generation suites."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import typer


def register(app: typer.Typer) -> None:
    @app.command("tasks")
    def tasks(as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON.")) -> None:
        """List tasks (with versions and default options) and generation suites."""
        from sparkle_vlm.suites import SUITES
        from sparkle_vlm.tasks import TASKS

        rows: list[dict[str, Any]] = []
        for name, task in TASKS.items():
            defaults = {f.name: f.default for f in dataclasses.fields(task.config_cls)}
            rows.append(
                {
                    "task": name,
                    "version": task.version,
                    "split": task.split,
                    "description": task.description,
                    "defaults": defaults,
                }
            )
        suites: list[dict[str, Any]] = [
            {"suite": s.name, "task": s.task, "overrides": s.overrides, "description": s.description}
            for _, s in SUITES.items()
        ]
        if as_json:
            typer.echo(json.dumps({"tasks": rows, "suites": suites}, indent=2))
            return
        from rich.console import Console
        from rich.table import Table

        console = Console()
        t = Table(title="Tasks")
        for col in ("task", "version", "split", "defaults", "description"):
            t.add_column(col)
        for r in rows:
            d = ", ".join(f"{k}={v}" for k, v in r["defaults"].items())
            t.add_row(str(r["task"]), f"v{r['version']}", str(r["split"]), d, str(r["description"]))
        console.print(t)
        st = Table(title="Generation suites (sparkle generate SUITE)")
        for col in ("suite", "task", "options", "description"):
            st.add_column(col)
        for r in suites:
            st.add_row(
                r["suite"],
                r["task"],
                ", ".join(f"{k}={v}" for k, v in r["overrides"].items()),
                r["description"],
            )
        console.print(st)
