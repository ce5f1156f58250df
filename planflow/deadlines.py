"""Deadlines of a plan: when its cycle starts, and a user task's ``due`` read by the business calendar.

A due spec is the plan's words (``{before: "2022-12-10"}``, ``{within_working_days: 5}``),
optionally with an ``offset`` (``-5wd``) applied after them, e.g. a commune's deadline
five working days before the province's.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from planflow.calendar import BusinessCalendar
from planflow.due_phrases import split_offset
from planflow.problems import CalendarError

CRON_HELP = "five fields: minute hour day-of-month month day-of-week, e.g. '0 8 15 3 *' (08:00 on 15/3)"


def resolve_due(calendar: BusinessCalendar, due, start: dt.datetime | None = None) -> dt.datetime:
    """The moment a due spec falls on; ``start`` anchors relative specs (the task's opening)."""
    spec, offset = split_offset(due)
    moment = calendar.resolve_due(spec, start=start)
    return moment if offset is None else calendar.shift(moment, offset)


def plan_deadline(plan) -> dt.datetime | None:
    """The plan's reporting deadline: the earliest due of the main process's user tasks."""
    dues = [resolve_due(plan.calendar, e.due) for e in plan.definition.main.elements
            if e.type == "userTask" and isinstance(e.due, dict) and "within_working_days" not in e.due]
    return min(dues) if dues else None


def sample_start(year: int, calendar: BusinessCalendar) -> dt.datetime:
    """A moment early in the plan's year, to check that relative due specs resolve."""
    return dt.datetime(year, 1, 2, 8, tzinfo=calendar.tz)


def time_zone(name) -> ZoneInfo:
    """The IANA time zone of that name; ``CalendarError`` when there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        raise CalendarError(f"unknown time zone '{name}': use an IANA name such as Asia/Ho_Chi_Minh") from None


def first_firing(cron: str, year: int, tz: ZoneInfo) -> dt.datetime:
    """The first moment of ``year`` a start timer's cron fires, in ``tz``; ``CalendarError``
    for a cron that is not five valid fields or does not fire in that year."""
    fields = cron.split() if isinstance(cron, str) else []
    if len(fields) != 5:
        raise CalendarError(f"cron '{cron}' has {len(fields)} field(s): write {CRON_HELP}")
    try:
        first = next(CronSim(cron, dt.datetime(year, 1, 1)))
    except (CronSimError, StopIteration, ValueError) as exc:
        raise CalendarError(f"cron '{cron}': {str(exc) or 'never fires'}: write {CRON_HELP}") from None
    if first.year != year:
        raise CalendarError(f"cron '{cron}' does not fire in the plan's year {year} (next on "
                            f"{first:%d/%m/%Y}): write {CRON_HELP}")
    return first.replace(tzinfo=tz)


def cycle_start(definition) -> dt.datetime:
    """When the plan year's cycle starts: the first firing in the plan's year of the main
    process's start timer, or 08:00 on 2 January when it has none."""
    start = next((e for e in definition.main.elements if e.type == "startEvent"), None)
    tz = time_zone((start and start.timer and start.timer.timezone) or definition.timezone)
    if start is None or start.timer is None:
        return dt.datetime(definition.year, 1, 2, 8, tzinfo=tz)
    return first_firing(start.timer.cron, definition.year, tz)
