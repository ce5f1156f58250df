"""Deadlines of a plan: a user task's ``due`` read by the business calendar.

A due spec is the plan's words (``{before: "2022-12-10"}``, ``{within_working_days: 5}``),
optionally with an ``offset`` (``-5wd``) applied after them, e.g. a commune's deadline
five working days before the province's.
"""

from __future__ import annotations

import datetime as dt

from planflow.calendar import BusinessCalendar


def resolve_due(calendar: BusinessCalendar, due, start: dt.datetime | None = None) -> dt.datetime:
    """The moment a due spec falls on; ``start`` anchors relative specs (the task's opening)."""
    if isinstance(due, dict) and "offset" in due:
        spec = {k: v for k, v in due.items() if k != "offset"}
        return calendar.shift(calendar.resolve_due(spec, start=start), due["offset"])
    return calendar.resolve_due(due, start=start)


def plan_deadline(plan) -> dt.datetime | None:
    """The plan's reporting deadline: the earliest due of the main process's user tasks."""
    dues = [resolve_due(plan.calendar, e.due) for e in plan.definition.main.elements
            if e.type == "userTask" and isinstance(e.due, dict) and "within_working_days" not in e.due]
    return min(dues) if dues else None


def sample_start(year: int, calendar: BusinessCalendar) -> dt.datetime:
    """A moment early in the plan's year, to check that relative due specs resolve."""
    return dt.datetime(year, 1, 2, 8, tzinfo=calendar.tz)
