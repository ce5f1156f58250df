"""``planflow calendar YEAR [--plan PLAN]``: a year's days off and make-up working days, where
they come from, and whether the year's official notice is in the calendar's data.

Importing this module registers the command on the ``planflow`` app (as ``cli_plan`` does);
``register(app)`` adds it to another Typer app.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from planflow.flows.cli_common import app as planflow_app
from planflow.flows.cli_common import fail, out, user_errors

DEFAULT_CALENDAR = "vn-civil-service"


def calendar(
    year: int = typer.Argument(..., help="the year, e.g. 2026"),
    plan: Optional[Path] = typer.Option(None, "--plan", help="a process definition: use its calendar "
                                        "(a plan-local calendars/NAME.yaml first); default: vn-civil-service"),
) -> None:
    """Print a year's days off and make-up working days (in Vietnamese), their source, and
    whether the year's official days-off notice is complete in the calendar's data."""
    from planflow import BusinessCalendar, load_plan
    from planflow.calendar_report import year_calendar, year_lines

    try:
        cal = load_plan(plan).calendar if plan is not None else BusinessCalendar.load(DEFAULT_CALENDAR)
        lines = year_lines(year_calendar(cal, year))
    except user_errors() as exc:
        fail(exc)
    for line in lines:
        out.print(line, highlight=False, markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add ``calendar`` to ``app``."""
    app.command("calendar")(calendar)


register(planflow_app)
