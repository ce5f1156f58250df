"""The ``planflow`` command: validate, simulate, status."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="planflow: annual plans of Vietnamese provinces as processes, run on Prefect.")
out = Console()
err = Console(stderr=True)


def _user_errors():
    from engine import CalendarError, DefinitionError, SubmissionError

    return (DefinitionError, SubmissionError, CalendarError, FileNotFoundError)


def _fail(exc: Exception) -> None:
    problems = getattr(exc, "problems", None)
    if problems:
        for p in problems:
            err.print(f"[red]error[/red] {p}", highlight=False, soft_wrap=True)
    else:
        err.print(f"[red]error[/red] {exc}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def _db_url(db: Optional[str], out_dir: Path | None = None) -> str:
    if db:
        return db
    if os.environ.get("PLANFLOW_DATABASE_URL"):
        return os.environ["PLANFLOW_DATABASE_URL"]
    return f"sqlite:///{(out_dir or Path('out')) / 'planflow.db'}"


@app.command()
def validate(definition: Path = typer.Argument(..., help="process definition (YAML)")) -> None:
    """Check a definition, its registry, forms, calendar and templates."""
    from engine import load_plan

    try:
        plan = load_plan(definition)
    except _user_errors() as exc:
        _fail(exc)
    d = plan.definition
    n = len(d.elements) + sum(len(p.elements) for p in d.subprocesses)
    out.print(f"[green]OK[/green] {definition}: '{d.id}', {n} elements, "
              f"{len(d.subprocesses)} sub-process(es), {len(plan.registry.units)} units, "
              f"forms {', '.join(plan.forms)}", highlight=False)


@app.command()
def simulate(
    definition: Path = typer.Argument(..., help="process definition (YAML)"),
    scenario: Optional[Path] = typer.Option(None, help="unit behaviour (default: definitions/scenarios/<registry>.yaml)"),
    out_dir: Path = typer.Option(Path("out"), "--out", help="where summary.json, report.md and the outbox go"),
    db: Optional[str] = typer.Option(None, help="SQLAlchemy URL of the engine's store (default: sqlite in --out)"),
) -> None:
    """Run a whole plan year in simulated time through Prefect (ephemeral API)."""
    from flows.runtime import prefect_defaults

    prefect_defaults()
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from flows.simulate import SimulationStuck, run_simulation

    started = time.monotonic()
    try:
        result = asyncio.run(run_simulation(definition, scenario, out_dir, _db_url(db, out_dir)))
    except (*_user_errors(), SimulationStuck) as exc:
        _fail(exc)
    _print_summary(result.summary)
    out.print(f"\nWrote {out_dir / 'summary.json'}, {out_dir / 'report.md'} and {out_dir / 'outbox'}/ "
              f"in {time.monotonic() - started:.1f} s.", highlight=False)


def _print_summary(summary: dict) -> None:
    units = summary["units"].values()
    table = Table(title=f"{summary['definition']} — {summary['status']}")
    table.add_column("Cấp")
    for col in ("Đúng hạn", "Quá hạn", "Không báo cáo", "Tốt", "Khá", "Trung bình", "Yếu", "Không xếp loại"):
        table.add_column(col, justify="right")
    names = {"department": "Sở, ban, ngành", "district": "UBND cấp huyện", "commune": "UBND cấp xã"}
    for group, name in names.items():
        rows = [u for u in units if u["group"] == group]
        count = lambda key, val: sum(1 for u in rows if u[key] == val)  # noqa: E731
        table.add_row(name, *(str(count("status", s)) for s in ("on_time", "late", "missing")),
                      *(str(count("classification", c)) for c in ("Tốt", "Khá", "Trung bình", "Yếu")),
                      str(count("status", "missing")))
    out.print(table)
    stages = Table(title="Giai đoạn")
    stages.add_column("Stage")
    stages.add_column("Hoàn thành")
    for stage, at in summary["stages"].items():
        stages.add_row(stage, at or "—")
    out.print(stages)
    out.print(f"Review rounds: {summary['review_rounds']}; notifications: {summary['notifications']}",
              highlight=False)


@app.command()
def status(db: Optional[str] = typer.Option(None, help="SQLAlchemy URL of the engine's store")) -> None:
    """Plan instances in a store: progress, open steps, failed steps and notifications."""
    from engine.status import instances_status

    url = _db_url(db)
    try:
        rows = instances_status(url)
    except _user_errors() as exc:
        _fail(exc)
    if not rows:
        out.print(f"No plan instance in {url}.", highlight=False)
        return
    for r in rows:
        out.print(f"[bold]{r['key']}[/bold] — {r['status']}, clock {r['clock_at'] or '—'}", highlight=False)
        out.print(f"  reported {r['reported']}/{r['expected']} units; open steps: "
                  f"{', '.join(r['open_steps']) or 'none'}", highlight=False)
        for stalled in r["stalled"]:
            out.print(f"  [red]stalled[/red] {stalled}", highlight=False)
        for incident in r["incidents"]:
            out.print(f"  [red]notification failed[/red] {incident}", highlight=False)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
