"""Boundary timers of a user task: set when the task opens, fired once when they fall due.

A ``boundary`` timer is anchored on the task's due moment or its opening (``anchor``) and
shifted on the business calendar (``after``, ``at``). An *interrupting* timer closes the
task: the units that did not submit are marked ``missing`` (not reported) and the token
moves on (to the timer's ``next``, or the task's). A non-interrupting one starts a token
on its ``next`` and leaves the task open. A timer whose task completed first is cancelled
(``tokens.finish_waiting``). In a replay a timer acts at its ``fire_at``, whenever a sweep
finds it due (a sweep resumed or run late writes the moment the timer belongs to); in a
live instance at the sweep's clock.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select, update

from planflow import audit
from planflow import store as s
from planflow import tokens


def set_for(conn, plan, element, token_id: int, due: dt.datetime, as_of: dt.datetime) -> None:
    """The boundary timers of a user task that opened at ``as_of``, due at ``due``."""
    rows = rows_for(plan, element, token_id, due, as_of)
    if rows:
        conn.execute(s.insert_ignore(conn, s.timers), rows)


def rows_for(plan, element, token_id: int, due: dt.datetime, as_of: dt.datetime) -> list[dict]:
    """The timer rows ``set_for`` writes (tasks opening together write theirs at once)."""
    cal = plan.calendar
    return [dict(token_id=token_id, boundary_id=b.id, cancelled=False,
                 fire_at=cal.shift(due if b.anchor == "due" else as_of, b.after, at=b.at))
            for b in element.boundary]


def next_at(conn, root_id: int | None = None) -> dt.datetime | None:
    """When the next timer fires (of a waiting task; under ``root_id`` when given)."""
    q = (select(func.min(s.timers.c.fire_at))
         .join(s.tokens, s.tokens.c.id == s.timers.c.token_id)
         .where(s.timers.c.fired_at.is_(None), s.timers.c.cancelled.is_(False),
                s.tokens.c.status == "waiting"))
    if root_id is not None:
        q = q.where(s.tokens.c.instance_id.in_(s.tree_ids(conn, root_id)))
    return conn.scalar(q)


def fire_due(db, plan, as_of: dt.datetime, root_id: int | None = None) -> int:
    """Fire every boundary timer due at ``as_of``, each in its own transaction; each fires
    once, whoever calls. Returns how many this call fired."""
    with db.connect() as conn:
        q = (select(s.timers.c.id, s.timers.c.token_id, s.timers.c.boundary_id, s.tokens.c.instance_id,
                    s.timers.c.fire_at)
             .join(s.tokens, s.tokens.c.id == s.timers.c.token_id)
             .where(s.timers.c.fired_at.is_(None), s.timers.c.cancelled.is_(False),
                    s.timers.c.fire_at <= as_of, s.tokens.c.status == "waiting")
             .order_by(s.timers.c.fire_at, s.timers.c.id))
        if root_id is not None:
            q = q.where(s.tokens.c.instance_id.in_(s.tree_ids(conn, root_id)))
        due = conn.execute(q).all()
    fired = 0
    for timer in due:
        with db.begin() as conn:
            if _fire(conn, plan, timer, as_of):
                fired += 1
    return fired


def _fire(conn, plan, timer, as_of: dt.datetime) -> bool:
    """Claim one timer and act on its task; False when another caller fired it first."""
    timer_id, token_id, boundary_id, iid, fire_at = timer
    inst = conn.execute(select(s.instances).where(s.instances.c.id == iid)).one()
    as_of = tokens.local(plan, fire_at) if inst.replay else as_of
    claimed = conn.execute(update(s.timers).where(s.timers.c.id == timer_id, s.timers.c.fired_at.is_(None))
                           .values(fired_at=as_of)).rowcount
    if not claimed:
        return False
    element_id = conn.scalar(select(s.tokens.c.element_id).where(s.tokens.c.id == token_id))
    element = plan.definition.process(inst.process_id).element(element_id)
    boundary = next(b for b in element.boundary if b.id == boundary_id)
    audit.record(conn, as_of, iid, audit.ENGINE, "timer.fired", element.id, detail={"boundary": boundary_id})
    if boundary.interrupting:
        closed = conn.execute(update(s.work_items).where(
            s.work_items.c.token_id == token_id, s.work_items.c.status == "open")
            .values(status="missing")).rowcount
        audit.record(conn, as_of, iid, audit.ENGINE, "task.closed", element.id, detail={"not_reported": closed})
        tokens.finish_waiting(conn, plan, iid, token_id, as_of, targets=[boundary.next] if boundary.next else None)
    else:
        tokens.emit(conn, iid, f"{token_id}:{boundary_id}", [boundary.next], as_of)
    return True
