"""``planflow validate`` and ``planflow simulate``: a plan checked, a plan year simulated."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from planflow.flows.cli_common import app, db_url, err, fail, out, user_errors


YEAR_HELP = "the year of a plan written for every year (default: this year); a plan of a fixed year is that year's"


@app.command()
def validate(definition: Path = typer.Argument(..., help="process definition (YAML)"),
             strict: bool = typer.Option(False, "--strict", help="fail when a year the plan runs in has no "
                                         "official days-off notice in the calendar data"),
             year: Optional[int] = typer.Option(None, "--year", help=YEAR_HELP),
             db: Optional[str] = typer.Option(None, help="the store whose running instances a change may not "
                                              "reach (default: PLANFLOW_DATABASE_URL, else out/planflow.db if there)")) -> None:
    """Check a definition, its registry, forms, calendar and templates; warn about a year
    whose days off the calendar does not know from an official notice; name the running
    instances that keep an earlier version of the definition."""
    from planflow import load_plan
    from planflow.calendar_report import calendar_gaps

    try:
        plan = load_plan(definition, year)
    except user_errors() as exc:
        fail(exc)
    d = plan.definition
    # the plan's year (a cycle running on into January is not checked: said in the closing note)
    gaps = calendar_gaps(plan.calendar, [d.year])
    for gap in gaps:
        err.print(f"[yellow]{'ERROR' if strict else 'WARNING'}[/yellow] {gap}", highlight=False)
    if strict and gaps:
        raise typer.Exit(1)
    n = len(d.elements) + sum(len(p.elements) for p in d.subprocesses)
    every = " (a plan of every year)" if plan.every_year else ""
    out.print(f"[green]OK[/green] {definition}: '{d.id}', year {d.year}{every}, {n} elements, "
              f"{len(d.subprocesses)} sub-process(es), {len(plan.registry.units)} units, "
              f"forms {', '.join(plan.forms)}", highlight=False)
    _say_behind(plan, db)


def _say_behind(plan, db: Optional[str]) -> None:
    """The running instances of this plan that keep the version they started with."""
    from planflow import StoreError, connect
    from planflow.plan_versions import behind

    url = db_url(db)
    if not db and url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return
    try:
        kept = behind(connect(url, create=False), plan)
    except StoreError as exc:
        err.print(f"[yellow]WARNING[/yellow] running instances not checked: {exc}", highlight=False)
        return
    for b in kept:
        err.print(f"[yellow]NOTE[/yellow] instance {b.key} (started {b.started_at:%Y-%m-%d}) runs version "
                  f"{b.digest} of the definition, this file is {plan.digest}: this change does not reach it "
                  "(it reaches the next year's instance; to move it, `planflow migrate`)", highlight=False)


@app.command()
def simulate(
    definition: Path = typer.Argument(..., help="process definition (YAML)"),
    scenario: Optional[Path] = typer.Option(None, help="unit behaviour (default: definitions/scenarios/<registry>.yaml)"),
    out_dir: Path = typer.Option(Path("out"), "--out", help="where summary.json, report.md and the outbox go"),
    db: Optional[str] = typer.Option(None, help="SQLAlchemy URL of the engine's store (default: sqlite in --out)"),
    year: Optional[int] = typer.Option(None, "--year", help=YEAR_HELP),
) -> None:
    """Run a whole plan year in simulated time through Prefect (its own API server, unless
    PREFECT_API_URL names one)."""
    from planflow import load_scenario
    from planflow.flows.runtime import ServerError, own_api_server, prefect_defaults, private_prefect_home
    from planflow.plan_cache import cached_plan
    from planflow.scenario import default_scenario
    from planflow.simulation import SimulationStuck

    try:  # refuse a broken plan or scenario before anything is written
        plan = cached_plan(definition, year)  # the plan the simulation then runs on, loaded once
        load_scenario(scenario or default_scenario(plan), plan)
    except user_errors() as exc:
        fail(exc)
    make_out_dir(out_dir)
    own_server = not os.environ.get("PREFECT_API_URL")
    if own_server:
        private_prefect_home(out_dir / "prefect-home")
    prefect_defaults()
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

    started = time.monotonic()
    try:
        with own_api_server() if own_server else contextlib.nullcontext():
            from planflow.flows.simulate import run_simulation  # imports Prefect: after its API is set

            result = asyncio.run(run_simulation(definition, scenario, out_dir, db_url(db, out_dir), plan.year))
    except (*user_errors(), SimulationStuck, ServerError) as exc:
        fail(exc)
    _print_summary(result.summary)
    out.print(f"\nWrote {out_dir / 'summary.json'}, {out_dir / 'report.md'} and {out_dir / 'outbox'}/ "
              f"in {time.monotonic() - started:.1f} s.", highlight=False)


def make_out_dir(out_dir: Path) -> None:
    """Make ``--out`` (and the folders above it), or end with a clear error naming it,
    leaving nothing behind, when the results cannot be written there."""
    missing = []
    path = out_dir
    while not path.exists() and path.parent != path:
        missing.append(path)
        path = path.parent
    if path.exists() and not path.is_dir():
        fail(ValueError(f"--out {out_dir}: cannot write the results there: {path} is a file, not a folder"))
    if not os.access(path, os.W_OK | os.X_OK):
        fail(ValueError(f"--out {out_dir}: cannot write the results there: {path} is not writable"))
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in ("summary.json", "report.md"):  # files a run replaces must be replaceable files
            if (out_dir / name).is_dir() or ((out_dir / name).exists() and not os.access(out_dir / name, os.W_OK)):
                raise PermissionError(f"{out_dir / name} cannot be replaced")
        tempfile.TemporaryFile(dir=out_dir).close()
    except OSError as exc:
        for made in missing:  # the folders this made, deepest first
            with contextlib.suppress(OSError):
                made.rmdir()
        where = f" ({exc.filename})" if exc.filename else ""
        fail(ValueError(f"--out {out_dir}: cannot write the results there: {exc.strerror or exc}{where}"))


def _print_summary(summary: dict) -> None:
    from planflow.aggregation import GROUP_NAMES
    from planflow.status_words import REPORT

    units = summary["units"].values()
    statuses = ("on_time", "late", "missing")
    classes = summary.get("classes") or ("Tốt", "Khá", "Trung bình", "Yếu")
    table = Table(title=f"{summary['definition']} — {summary['status']}")
    table.add_column("Cấp")
    for col in (*(REPORT[s] for s in statuses), *classes, "Không xếp loại"):
        table.add_column(col, justify="right")
    for group, name in (summary.get("tiers") or GROUP_NAMES).items():  # the tiers the plan asked
        rows = [u for u in units if u["group"] == group]
        count = lambda key, val: sum(1 for u in rows if u[key] == val)  # noqa: E731
        table.add_row(name, *(str(count("status", s)) for s in statuses),
                      *(str(count("classification", c)) for c in classes),
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
