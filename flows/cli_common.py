"""What every ``planflow`` command shares: the Typer app, its consoles, how errors end."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="planflow: annual plans of Vietnamese provinces as processes, run on Prefect.")
# no emoji codes: "plan.bpmn:100:11" would print ":100:" as an emoji
out = Console(emoji=False)
err = Console(stderr=True, emoji=False)


def user_errors():
    from planflow import CalendarError, DefinitionError, StoreError, SubmissionError

    return (DefinitionError, SubmissionError, CalendarError, StoreError, FileNotFoundError)


MAX_PROBLEMS_SHOWN = 50  # a definition broken everywhere shows its first problems, then how many more
MAX_LINE = 2000  # characters of one message shown


def fail(exc: Exception) -> None:
    """Print what is wrong (each problem on its line, the first ``MAX_PROBLEMS_SHOWN``), exit 1."""
    from rich.markup import escape

    problems = getattr(exc, "problems", None)
    lines = [str(p) for p in problems[:MAX_PROBLEMS_SHOWN]] if problems else [str(exc) or type(exc).__name__]
    if problems and len(problems) > MAX_PROBLEMS_SHOWN:
        lines.append(f"... and {len(problems) - MAX_PROBLEMS_SHOWN:,} more problem(s): fix these first")
    for line in lines:
        line = re.sub(r"[\x00-\x1f\x7f]", lambda m: f"\\x{ord(m.group()):02x}", line)  # one line, no escapes
        if len(line) > MAX_LINE:
            line = f"{line[:MAX_LINE]}… ({len(line) - MAX_LINE:,} more characters)"
        err.print(f"[red]error[/red] {escape(line)}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def db_url(db: Optional[str], out_dir: Path | None = None) -> str:
    if db:
        return db
    if os.environ.get("PLANFLOW_DATABASE_URL"):
        return os.environ["PLANFLOW_DATABASE_URL"]
    return f"sqlite:///{(out_dir or Path('out')) / 'planflow.db'}"


def outbox_dir_for(given: Path | None, url: str) -> str:
    """Where the file channel writes: ``--outbox``, else ``PLANFLOW_OUTBOX_DIR``, else the
    'outbox' folder beside a SQLite store, else out/outbox."""
    if given is not None:
        return str(given)
    if os.environ.get("PLANFLOW_OUTBOX_DIR"):
        return os.environ["PLANFLOW_OUTBOX_DIR"]
    if url.startswith("sqlite:///"):
        return str(Path(url[len("sqlite:///"):]).parent / "outbox")
    return "out/outbox"
