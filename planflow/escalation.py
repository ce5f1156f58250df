"""Reminders and the escalation ladder (đôn đốc) of a user task, per unit.

A user task's ``reminders`` (``-5wd``: 08:00 on the 5th working day before the due date)
and ``escalations`` (``+1wd`` …: 08:00 on the N-th working day after it) make, for each
unit, an ordered list of rungs. Each open work item remembers how many rungs it has
passed (``ladder_step``) and when the next falls due (``next_notice_at``, indexed), so a
sweep reads only what is due — its cost grows with that, not with all open work.

A sweep records each rung once (unique per work item, kind and level) and queues the
letters in the same transaction: reminders to the unit; at each escalation level an
overdue notice to the unit (``unit.head``) and one letter per higher body listing every
unit that reached that level. A submission (late included) stops the ladder; nobody is
chased on a day off, since rungs fall on working days at office opening.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from sqlalchemy import bindparam, select, update

from planflow import outbox
from planflow import store as s
from planflow.letters import sender_unit, unit_context

@dataclass(frozen=True)
class Rung:
    at: dt.datetime
    kind: str  # reminder | escalation
    level: int
    to: tuple[str, ...]
    template: str


@dataclass(frozen=True)
class Chase:
    unit: str
    element: str
    kind: str
    level: int
    at: dt.datetime
    due: dt.datetime


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
    from sqlalchemy import func

    with engine.db.connect() as conn:
        q = select(func.min(s.work_items.c.next_notice_at)).where(
            s.work_items.c.status == "open", s.work_items.c.next_notice_at.is_not(None))
        if root_id is not None:
            q = q.where(s.work_items.c.instance_id.in_(s.tree_ids(conn, root_id)))
        return conn.scalar(q)


def sweep(engine, as_of: dt.datetime, root_id: int | None = None) -> list[Chase]:
    """Record every reminder and escalation due at ``as_of``, exactly once; queue their letters.

    One transaction. Two sweeps at once (threads, processes, workers) record and queue
    nothing twice: rows are unique per (work item, kind, level) and only the sweep whose
    insert created a row queues its letters; on PostgreSQL the due rows are also taken
    with ``FOR UPDATE SKIP LOCKED`` so concurrent sweeps split the work.
    """
    plan = engine.plan
    with engine.db.begin() as conn:
        q = (select(s.work_items.c.id, s.work_items.c.instance_id, s.work_items.c.element_id,
                    s.work_items.c.unit_code, s.work_items.c.due_at, s.work_items.c.ladder_step,
                    s.instances.c.process_id, s.instances.c.scope_unit)
             .join(s.instances, s.instances.c.id == s.work_items.c.instance_id)
             .where(s.work_items.c.status == "open", s.work_items.c.next_notice_at <= as_of,
                    s.instances.c.definition_id == plan.id))
        if root_id is not None:
            q = q.where(s.work_items.c.instance_id.in_(s.tree_ids(conn, root_id)))
        if conn.dialect.name == "postgresql":
            q = q.with_for_update(of=s.work_items, skip_locked=True)
        due_items = conn.execute(q).all()
        if not due_items:
            return []
        new_rows, moves, meta = [], [], {}
        for item in due_items:
            element = plan.definition.process(item.process_id).element(item.element_id)
            ladder = rungs(plan, element, item.due_at)
            step = item.ladder_step
            while step < len(ladder) and ladder[step].at <= as_of:
                rung = ladder[step]
                new_rows.append(dict(work_item_id=item.id, instance_id=item.instance_id, element_id=element.id,
                                     unit_code=item.unit_code, kind=rung.kind, level=rung.level,
                                     due_at=rung.at, recorded_at=as_of))
                meta[(item.id, rung.kind, rung.level)] = (item, element, rung)
                step += 1
            moves.append({"wid": item.id, "step": step,
                          "next": ladder[step].at if step < len(ladder) else None})
        inserted = conn.execute(
            s.insert_ignore(conn, s.chases).returning(s.chases.c.work_item_id, s.chases.c.kind,
                                                      s.chases.c.level),
            new_rows).all() if new_rows else []
        conn.execute(update(s.work_items).where(s.work_items.c.id == bindparam("wid"))
                     .values(ladder_step=bindparam("step"), next_notice_at=bindparam("next")), moves)
        notices = []
        for work_item_id, kind, level in inserted:
            item, element, rung = meta[(work_item_id, kind, level)]
            notices.append((item, element, rung))
        rows = _letters(engine, conn, notices, as_of)
        outbox.queue(conn, rows, as_of)
        if notices:
            conn.execute(s.audit.insert(), [dict(
                at=as_of, instance_id=item.instance_id, actor="deadline-sweep", action=f"unit.{rung.kind}",
                element_id=element.id, unit_code=item.unit_code, detail={"level": rung.level})
                for item, element, rung in notices])
    return [Chase(unit=item.unit_code, element=element.id, kind=rung.kind, level=rung.level, at=rung.at,
                   due=item.due_at) for item, element, rung in notices]


def _letters(engine, conn, notices, as_of) -> list[dict]:
    """Outbox rows for newly recorded rungs: one per unit notice, one per grouped letter."""
    plan = engine.plan
    cal = plan.calendar
    reg = plan.registry
    base = {"sent_at": as_of}
    rows: list[dict] = []
    grouped: dict[tuple, list] = {}
    for item, element, rung in notices:
        unit = reg.get(item.unit_code)
        sender = sender_unit(plan, element, item.scope_unit) if element.lane not in (None, "unit") else None
        sender = sender or (reg.group("coordinators") or [unit])[0]
        task = {"name": element.name or element.id}
        days_over = cal.count_working_days(item.due_at, as_of)
        common = {**base, "sender": {"name": sender.name}, "task": task, "due": item.due_at}
        if rung.kind == "reminder":
            rows.append({
                "key": f"{item.id}:reminder:{rung.level}", "instance_id": item.instance_id,
                "element_id": element.id, "unit_code": unit.code, "recipient": unit.code, "kind": "reminder",
                "level": 0, "context": {**common, "recipient": unit_context(unit), "unit": unit_context(unit),
                                        "working_days_left": max(cal.count_working_days(as_of, item.due_at), 0)}})
            continue
        for target in rung.to:
            if target in ("unit", "unit.head"):
                rows.append({
                    "key": f"{item.id}:overdue:{rung.level}", "instance_id": item.instance_id,
                    "element_id": element.id, "unit_code": unit.code, "recipient": unit.code, "kind": "overdue",
                    "level": rung.level,
                    "context": {**common, "recipient": unit_context(unit), "unit": unit_context(unit),
                                "working_days_overdue": days_over, "level": rung.level}})
                continue
            recipient = reg.get(unit.parent) if target == "unit.parent" else reg.get(target)
            if recipient is None:
                continue
            group_key = (item.instance_id if target == "unit.parent" else None, element.id, rung.level,
                         recipient.code, rung.template)
            grouped.setdefault(group_key, []).append((item, unit, common, days_over))
    for (iid, element_id, level, recipient_code, template), members in grouped.items():
        recipient = reg.get(recipient_code)
        item, _, common, _ = members[0]
        units = [{"name": u.name, "code": u.code, "due": it.due_at, "working_days_overdue": d}
                 for it, u, _, d in members]
        # the key names the units the letter lists: sweeps racing at the same moment that
        # split the due units between them each send their own letter, none is dropped
        listed = hashlib.sha1(",".join(sorted(u["code"] for u in units)).encode()).hexdigest()[:12]
        rows.append({
            "key": f"{plan.id}:{element_id}:escalation:{level}:{recipient_code}:{iid or 0}:"
                   f"{as_of.isoformat()}:{listed}",
            "instance_id": item.instance_id, "element_id": element_id, "unit_code": None,
            "recipient": recipient_code, "kind": template, "level": level,
            "context": {**common, "recipient": unit_context(recipient), "level": level, "units": units}})
    return rows
