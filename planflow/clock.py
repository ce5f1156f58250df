"""The clock of a plan instance: what "now" is when something is recorded for it.

A *live* instance runs on the real clock: a report is received when the server receives
it, whatever time the sender writes. A *replay* — a past year run again, as in the
README's 2022 walk-through — runs on its own clock (``instances.clock_at``), which only
an operator moves, with a name and a reason that the audit log keeps; never on a time a
submitter chooses.

The first setting of a replay clock starts the year's instance as a replay at that moment
(a live instance cannot become a replay, nor a replay live); later settings move it
forward, never back. ``simulate`` keeps its own instances' clocks (``Engine.set_clock``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select, update

from planflow import audit, tokens
from planflow import store as s


class ClockError(ValueError):
    """A clock that cannot be set as asked; nothing was changed."""


@dataclass(frozen=True)
class ClockChange:
    key: str
    previous: dt.datetime | None  # None: the replay starts here
    at: dt.datetime
    changed: bool  # False: the clock was already there


def real_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def now_of(engine, key: str) -> dt.datetime:
    """The instance's "now": its replay clock for a replay; the real clock for a live
    instance, and before the instance exists."""
    with engine.db.connect() as conn:
        row = conn.execute(select(s.instances.c.replay, s.instances.c.clock_at)
                           .where(s.instances.c.key == key)).first()
    if row is not None and row.replay:
        if row.clock_at is None:  # pragma: no cover - set_replay_clock always sets both
            raise ClockError(f"instance '{key}' is a replay without a clock: set its replay clock")
        return row.clock_at
    return real_now()


def set_replay_clock(engine, key: str, at: dt.datetime, *, actor: str, reason: str) -> ClockChange:
    """Set the replay clock of instance ``key`` to ``at``, starting the instance as a replay
    when it does not exist yet; the audit records who, why and the real time it was done.

    Raises :class:`ClockError` (nothing changed) for a time without a zone, a missing actor
    or reason, a live instance, or a clock moved back.
    """
    if at.tzinfo is None or at.utcoffset() is None:
        raise ClockError(f"the replay clock {at.isoformat()} needs a time zone (e.g. +07:00)")
    if not (actor or "").strip():
        raise ClockError("name the operator who sets the replay clock (actor): it is kept in the audit log")
    if not (reason or "").strip():
        raise ClockError("give a reason for setting the replay clock: it is kept in the audit log")
    with engine.db.begin() as conn:
        row = conn.execute(select(s.instances.c.id, s.instances.c.replay, s.instances.c.clock_at)
                           .where(s.instances.c.key == key).with_for_update()).first()
        if row is None:
            iid = tokens.create_instances(conn, engine.plan, [key], engine.plan.definition.id, None, None, [None],
                                          at, {})[0]
            previous = None
        elif not row.replay:
            raise ClockError(f"instance '{key}' is live: it runs on the real clock and cannot be replayed")
        elif at < row.clock_at:
            raise ClockError(f"the replay clock of '{key}' is at {row.clock_at.isoformat()}: "
                             f"it moves forward only, not back to {at.isoformat()}")
        elif at == row.clock_at:
            return ClockChange(key, row.clock_at, at, changed=False)
        else:
            iid, previous = row.id, row.clock_at
        conn.execute(update(s.instances).where(s.instances.c.id == iid).values(replay=True, clock_at=at))
        audit.record(conn, at, iid, actor.strip(), "clock.set", detail={
            "from": _utc(previous), "to": _utc(at), "reason": reason.strip(),
            "real_time": real_now().isoformat()})
    return ClockChange(key, previous, at, changed=True)


def _utc(moment: dt.datetime | None) -> str | None:
    return moment.astimezone(dt.timezone.utc).isoformat() if moment else None
