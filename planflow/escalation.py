"""Escalation on overdue units: reminders and the escalation ladder (đôn đốc) of a user task.

A user task's ``reminders`` (``-5wd``: 08:00 on the 5th working day before the due date)
and ``escalations`` (``+1wd`` …: 08:00 on the N-th working day after it) make, for each
unit, an ordered ladder of rungs (``Rung``). Each open work item remembers how many rungs
it has passed (``ladder_step``) and when the next falls due (``next_notice_at``, indexed),
so a sweep reads only what is due — its cost grows with that, not with all open work.

A sweep (``sweep``) records the rung that fell due for a unit once — a ``Chase``, a row of
the ``chases`` table, unique per work item, kind and level — and queues its letters in the
same transaction (``letters.rows_for_chases`` builds them): reminders to the unit; at each
escalation level an overdue notice to the unit (``unit.head``) and one letter per higher
body listing every unit that reached that level. A submission (late included) stops the
ladder; nobody is chased on a day off, since rungs fall on working days at office opening.

A sweep run at each rung's moment (the daily schedule at office opening, ``simulate``)
finds one rung due per unit. A late sweep (the first one after an outage, a replay started
in December) can find several: only the highest is recorded and sent — a unit is not sent
three levels of letters at once — and the rungs it passed over are written to the audit
log as ``unit.superseded`` (and counted in ``Chase.superseded``), never sent later.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import bindparam, func, select, update

from planflow import audit, letters, outbox
from planflow import store as s


@dataclass(frozen=True)
class Rung:
    """One rung of a task's ladder for a due moment: a reminder (levels 1, 2, … in time
    order) or an escalation level, when it falls and to whom its letters go."""

    at: dt.datetime
    kind: str  # reminder | escalation
    level: int
    to: tuple[str, ...]
    template: str


@dataclass(frozen=True)
class Chase:
    """A rung recorded for a unit by a sweep (a row of ``chases``): what ``sweep`` returns."""

    unit: str
    element: str
    kind: str
    level: int
    at: dt.datetime
    due: dt.datetime
    # the lower rungs, fallen due too, that this one stood in for: (kind, level), not sent
    superseded: tuple[tuple[str, int], ...] = ()


def rungs(plan, element, due_at: dt.datetime) -> list[Rung]:
    """The ladder of one user task for a due moment, in time order."""
    key = ("rungs", element.id, due_at)
    cached = plan.memo.get(key)
    if cached is not None:
        return cached
    cal = plan.calendar
    out = [Rung(cal.shift(due_at, r, at=cal.office_open), "reminder", 0, ("unit",), "reminder")
           for r in element.reminders]
    out.sort(key=lambda r: r.at)
    out = [Rung(r.at, r.kind, i + 1, r.to, r.template) for i, r in enumerate(out)]
    out += [Rung(cal.shift(due_at, e.after, at=cal.office_open), "escalation", i + 1, tuple(e.to), e.template)
            for i, e in enumerate(element.escalations)]
    out.sort(key=lambda r: (r.at, r.kind != "reminder", r.level))
    plan.memo[key] = out
    return out


def start(plan, element, due_at: dt.datetime, opened_at: dt.datetime) -> tuple[int, dt.datetime | None]:
    """(ladder_step, next_notice_at) for a work item opened at ``opened_at``.

    Reminders that fell before the task opened are skipped; escalations never are.
    """
    ladder = rungs(plan, element, due_at)
    step = 0
    while step < len(ladder) and ladder[step].kind == "reminder" and ladder[step].at < opened_at:
        step += 1
    return step, (ladder[step].at if step < len(ladder) else None)


def next_notice_at(engine, root_id: int | None = None) -> dt.datetime | None:
    """When the next reminder or escalation of an open work item falls due."""
    with engine.db.connect() as conn:
        q = select(func.min(s.work_items.c.next_notice_at)).where(
            s.work_items.c.status == "open", s.work_items.c.next_notice_at.is_not(None))
        if root_id is not None:
            q = q.where(s.work_items.c.instance_id.in_(s.tree_ids(conn, root_id)))
        return conn.scalar(q)


def due_now(ladder: list[Rung], step: int, as_of: dt.datetime) -> tuple[list[Rung], int]:
    """The rungs of ``ladder`` from ``step`` that fell due at or before ``as_of``, and the
    step after them. The last of them is the highest (the ladder is in time order, a
    reminder before an escalation of the same moment)."""
    end = step
    while end < len(ladder) and ladder[end].at <= as_of:
        end += 1
    return ladder[step:end], end


def _due_items(conn, plan, as_of: dt.datetime, root_id: int | None):
    """The open work items of the plan with a rung due at ``as_of`` (locked on PostgreSQL)."""
    q = (select(s.work_items.c.id, s.work_items.c.instance_id, s.work_items.c.element_id,
                s.work_items.c.unit_code, s.work_items.c.due_at, s.work_items.c.ladder_step,
                s.instances.c.process_id, s.instances.c.scope_unit)
         .join(s.instances, s.instances.c.id == s.work_items.c.instance_id)
         .where(s.work_items.c.status == "open", s.work_items.c.next_notice_at <= as_of,
                s.instances.c.definition_id == plan.id)
         # a fixed order (SQLite's own, by its index): a grouped letter is named after its first
         # item, which on PostgreSQL otherwise depended on where updates had left the rows
         .order_by(s.work_items.c.next_notice_at, s.work_items.c.id))
    if root_id is not None:
        q = q.where(s.work_items.c.instance_id.in_(s.tree_ids(conn, root_id)))
    if conn.dialect.name == "postgresql":
        q = q.with_for_update(of=s.work_items, skip_locked=True)
    return conn.execute(q).all()


def _superseded_entries(as_of, recorded: list[tuple], passed: dict) -> list[dict]:
    """Audit rows for the rungs a recorded one stood in for (only the sweep that recorded
    the highest rung writes them, so a racing sweep adds none)."""
    return [audit.entry(as_of, item.instance_id, "deadline-sweep", "unit.superseded", element.id, item.unit_code,
                        detail={"kind": low.kind, "level": low.level, "due_at": low.at.isoformat(),
                                "by": {"kind": rung.kind, "level": rung.level}})
            for item, element, rung in recorded for low in passed[item.id]]


def sweep(engine, as_of: dt.datetime, root_id: int | None = None) -> list[Chase]:
    """Record the highest reminder or escalation due at ``as_of`` for each work item, exactly
    once; queue its letters; audit the lower rungs it supersedes.

    One transaction. Two sweeps at once (threads, processes, workers) record and queue
    nothing twice: rows are unique per (work item, kind, level) and only the sweep whose
    insert created a row queues its letters; on PostgreSQL the due rows are also taken
    with ``FOR UPDATE SKIP LOCKED`` so concurrent sweeps split the work.
    """
    plan = engine.plan
    with engine.db.begin() as conn:
        due_items = _due_items(conn, plan, as_of, root_id)
        if not due_items:
            return []
        new_rows, moves, meta, passed = [], [], {}, {}
        for item in due_items:
            element = plan.definition.process(item.process_id).element(item.element_id)
            ladder = rungs(plan, element, item.due_at)
            due, step = due_now(ladder, item.ladder_step, as_of)
            if due:
                rung, passed[item.id] = due[-1], due[:-1]
                new_rows.append(dict(work_item_id=item.id, instance_id=item.instance_id, element_id=element.id,
                                     unit_code=item.unit_code, kind=rung.kind, level=rung.level,
                                     due_at=rung.at, recorded_at=as_of))
                meta[(item.id, rung.kind, rung.level)] = (item, element, rung)
            moves.append({"wid": item.id, "step": step,
                          "next": ladder[step].at if step < len(ladder) else None})
        inserted = conn.execute(
            s.insert_ignore(conn, s.chases).returning(s.chases.c.work_item_id, s.chases.c.kind,
                                                      s.chases.c.level),
            new_rows).all() if new_rows else []
        conn.execute(update(s.work_items).where(s.work_items.c.id == bindparam("wid"))
                     .values(ladder_step=bindparam("step"), next_notice_at=bindparam("next")), moves)
        recorded = [meta[(work_item_id, kind, level)] for work_item_id, kind, level in inserted]
        outbox.queue(conn, letters.rows_for_chases(plan, recorded, as_of), as_of)
        if recorded:
            audit.record_all(conn, [audit.entry(
                as_of, item.instance_id, "deadline-sweep", f"unit.{rung.kind}", element.id, item.unit_code,
                detail={"level": rung.level}) for item, element, rung in recorded]
                + _superseded_entries(as_of, recorded, passed))
    return [Chase(unit=item.unit_code, element=element.id, kind=rung.kind, level=rung.level, at=rung.at,
                  due=item.due_at, superseded=tuple((low.kind, low.level) for low in passed[item.id]))
            for item, element, rung in recorded]
