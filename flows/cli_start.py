"""``planflow start``: the year's instance of a plan started from the shell, as the
``plan-cycle`` deployment starts it — the same flows run, the same audit is written.

Without ``--as-of`` the instance is live, on the real clock (``plan-cycle`` refuses a past
year then). With ``--as-of`` a past year is replayed: the operator sets the instance's
replay clock to that moment (``set-replay-clock``: who and why go to the audit log), then
``plan-cycle`` runs what is ready at it — the dissemination of the plan.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import getpass
import os
from pathlib import Path
from typing import Optional

import typer

from planflow.flows.cli_common import app, db_url, fail, out, user_errors


def _moment(as_of: str | None) -> dt.datetime | None:
    if as_of is None:
        return None
    try:
        when = dt.datetime.fromisoformat(as_of)
    except ValueError:
        fail(ValueError(f"--as-of '{as_of}' is not an ISO 8601 datetime, e.g. 2022-03-15T08:00:00+07:00"))
    if when.tzinfo is None or when.utcoffset() is None:
        fail(ValueError(f"--as-of '{as_of}' needs a UTC offset, e.g. 2022-03-15T08:00:00+07:00"))
    return when


def _run(flow, **parameters):
    """Run one of the deployments' flows here; a refusal ends the command with its message
    (the run's log, traceback included, is in Prefect, not on the operator's screen)."""
    state = asyncio.run(flow(**parameters, return_state=True))
    if not state.is_completed():
        exc = state.result(raise_on_failure=False)
        fail(RuntimeError(f"{flow.name}: {exc if isinstance(exc, Exception) else state.message}"))
    return state.result()


def _live_year_or_fail(plan) -> None:
    """Without --as-of the instance runs on the real clock: a past year's plan cannot start."""
    from planflow.simulation import first_start

    today = dt.datetime.now(dt.timezone.utc).astimezone(plan.calendar.tz)
    if today.year > plan.definition.year:
        fail(ValueError(f"the plan of {plan.definition.year} cannot start live on today's clock "
                        f"({today:%d/%m/%Y}): to replay that year, give the moment it starts, "
                        f"--as-of {first_start(plan).isoformat()}"))


def _print_instance(url: str, plan, key: str) -> None:
    from planflow.status import instances_status, masked_url

    row = next(r for r in instances_status(url, [plan.path]) if r["key"] == key)
    out.print(f"[bold]{key}[/bold] — {row['status']}, clock {row['clock_at'] or 'real'} "
              f"(store {masked_url(url)})", highlight=False, soft_wrap=True)
    out.print(f"  reported {row['reported']}/{row['expected']} units asked; open steps: "
              f"{', '.join(row['open_steps']) or 'none'}", highlight=False, soft_wrap=True)
    for line in [*row["stalled"], *row["incidents"]]:
        out.print(f"  [red]attention[/red] {line}", highlight=False, soft_wrap=True)


@app.command()
def start(
    definition: Path = typer.Argument(..., help="the plan's definition (YAML)"),
    as_of: Optional[str] = typer.Option(
        None, "--as-of", help="replay a past year from this moment (ISO 8601 with offset, e.g. "
        "2022-03-15T08:00:00+07:00): sets the instance's replay clock; without it the instance runs live"),
    db: Optional[str] = typer.Option(None, help="SQLAlchemy URL of the engine's store"),
    outbox_dir: Optional[Path] = typer.Option(
        None, "--outbox", help="where the file channel writes letters (default: $PLANFLOW_OUTBOX_DIR, else out/outbox)"),
    actor: Optional[str] = typer.Option(None, help="who starts the replay, for the audit (default: $USER)"),
    reason: Optional[str] = typer.Option(None, help="why the year is replayed, for the audit"),
    year: Optional[int] = typer.Option(None, "--year", help="the year of a plan written for every year (default: "
                                       "the year of --as-of, else this year)"),
) -> None:
    """Start the plan's instance of its year (once) and run what is ready, as the plan-cycle
    deployment does: the plan goes to its recipients, each district's directive to its communes."""
    from planflow import connect
    from planflow.plan_cache import cached_plan

    when = _moment(as_of)
    url = db_url(db)
    try:  # a broken plan or store is refused before anything runs (the plan kept: the flow runs on it)
        plan = cached_plan(definition, year or (when.year if when is not None else None))
        if when is None:
            _live_year_or_fail(plan)
        connect(url)
    except user_errors() as exc:
        fail(exc)
    os.environ["PLANFLOW_DEFINITION"] = str(plan.path)
    os.environ["PLANFLOW_DATABASE_URL"] = url
    if outbox_dir is not None:
        os.environ["PLANFLOW_OUTBOX_DIR"] = str(outbox_dir.resolve())
    from planflow.flows.runtime import prefect_defaults

    prefect_defaults()
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    # the runs' logs go to Prefect; this command prints what became of them
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    from planflow.flows import operations

    if when is not None:
        who = actor or os.environ.get("USER") or getpass.getuser()
        why = reason or f"Chạy lại kế hoạch năm {plan.definition.year} từ dòng lệnh (planflow start --as-of)"
        local = when.astimezone(plan.calendar.tz)  # the flow's form: a date and a time in Vietnam's time
        _run(operations.set_replay_clock, day=local.date(), time=f"{local:%H:%M}", actor=who, reason=why,
             year=plan.year)
    key = _run(operations.plan_cycle, year=plan.year)
    _print_instance(url, plan, key)


@app.command()
def migrate(
    key: str = typer.Argument(..., help="the running instance, <plan id>/<year>"),
    definition: Path = typer.Argument(..., help="the definition's file, as edited (the version to move to)"),
    actor: str = typer.Option(..., help="who moves it (name, post), for the audit"),
    reason: str = typer.Option(..., help="why, for the audit"),
    db: Optional[str] = typer.Option(None, help="SQLAlchemy URL of the engine's store"),
) -> None:
    """Move a running instance onto the edited version of its definition (a running year keeps
    the version it started with until an operator does this): refused when a step it waits at
    is gone; written to the audit log with the actor and the reason."""
    from planflow import connect, load_plan
    from planflow.clock import real_now
    from planflow.plan_versions import MigrationError
    from planflow.plan_versions import migrate as move
    from planflow.plan_years import year_of_key

    try:
        plan = load_plan(definition, year_of_key(key))
        previous = move(connect(db_url(db), create=False), key, plan, actor=actor, reason=reason, as_of=real_now())
    except (*user_errors(), MigrationError) as exc:
        fail(exc)
    out.print(f"[green]OK[/green] {key}: version {previous} → {plan.digest} ({actor}: {reason})", highlight=False)
