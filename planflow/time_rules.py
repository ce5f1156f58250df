"""The rules of time in a definition: its time zones, the start timer, deadlines after the start.

Like ``planflow.definition_rules``: each rule looks at one thing and yields located
``Problem``s; the tables of ``planflow.loader`` say where they apply. A plan that breaks
one of these would pass a naive check and fail only when it runs (a cron Prefect cannot
schedule, a zone that does not exist, a deadline nobody can meet).
"""

from __future__ import annotations

from planflow.deadlines import cycle_start, first_firing, resolve_due, time_zone
from planflow.definition_rules import Problems, RuleContext
from planflow.model import Element
from planflow.problems import CalendarError


def timezone_exists(ctx: RuleContext) -> Problems:
    """The definition's ``timezone`` is an IANA time zone."""
    try:
        time_zone(ctx.definition.timezone)
    except CalendarError as exc:
        yield ctx.problem(None, f"timezone: {exc}", ctx.lines.get("timezone"))


def start_timer_is_valid(e: Element, ctx: RuleContext) -> Problems:
    """A start timer's zone exists and its cron (five fields) fires in the plan's year."""
    timer = e.timer
    if timer is None:
        return
    try:
        tz = time_zone(timer.timezone or ctx.definition.timezone)
    except CalendarError as exc:
        yield ctx.problem(e, f"timer: {exc}", timer.line)
        return
    try:
        first_firing(timer.cron, ctx.definition.year, tz)
    except CalendarError as exc:
        yield ctx.problem(e, f"timer: {exc}", timer.line)


def due_is_after_the_start(e: Element, ctx: RuleContext) -> Problems:
    """A fixed deadline (``before``/``by``, with its offset) falls after the plan's cycle starts."""
    try:
        start = ctx.memo("cycle_start", lambda: cycle_start(ctx.definition))
        due = resolve_due(ctx.calendar, e.due)  # a relative due (within N working days) raises: it follows the start
    except (CalendarError, ValueError, TypeError, KeyError):
        return  # what is wrong there is said by the rules of the timer and of the due
    if due <= start:
        yield ctx.problem(e, f"due {due:%d/%m/%Y %H:%M} is before the plan's cycle starts "
                             f"({start:%d/%m/%Y %H:%M}, the start timer): no unit could report on time; "
                             "move the deadline or the start")
