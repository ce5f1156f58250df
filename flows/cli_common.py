"""What every ``planflow`` command shares: the Typer app, its consoles, how errors end."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="planflow: annual plans of Vietnamese provinces as processes, run on Prefect.")
out = Console()
err = Console(stderr=True)


def user_errors():
    from planflow import CalendarError, DefinitionError, StoreError, SubmissionError

    return (DefinitionError, SubmissionError, CalendarError, StoreError, FileNotFoundError)


def fail(exc: Exception) -> None:
    problems = getattr(exc, "problems", None)
    if problems:
        for p in problems:
            err.print(f"[red]error[/red] {p}", highlight=False, soft_wrap=True)
    else:
        err.print(f"[red]error[/red] {exc}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def db_url(db: Optional[str], out_dir: Path | None = None) -> str:
    if db:
        return db
    if os.environ.get("PLANFLOW_DATABASE_URL"):
        return os.environ["PLANFLOW_DATABASE_URL"]
    return f"sqlite:///{(out_dir or Path('out')) / 'planflow.db'}"
