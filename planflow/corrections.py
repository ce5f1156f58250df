"""A unit's corrected answer to a task it has answered, where the definition allows it
(``corrections: before_due`` on the user task): accepted while the task still waits on other
units and the unit's due moment has not passed; the report the unit sent before is kept in
the audit row of the correction (``task.corrected``: its time, answers and total), the
submission then holds the corrected one. A correction is claimed like a first answer: the
work item is updated only if it still holds the answer the correction replaces, so two
corrections sent at once record one.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import bindparam, select, update

from planflow import audit
from planflow import store as s


def waiting_tokens(conn, token_ids: list[int]) -> set[int]:
    """Which of these tokens still wait on units (their task has not completed)."""
    found: set[int] = set()
    for i in range(0, len(token_ids), 1000):
        found.update(conn.scalars(select(s.tokens.c.id).where(s.tokens.c.id.in_(token_ids[i:i + 1000]),
                                                              s.tokens.c.status == "waiting")))
    return found


def allowed(element, item, submitted_at: dt.datetime, waiting: set[int]) -> str | None:
    """None when the correction may be recorded; else why not (English, for the engine's refusal)."""
    if element.corrections != "before_due":
        return f"'{element.id}' takes no corrections (the definition's rule)"
    if submitted_at.replace(microsecond=0) > item.due_at:
        return f"'{element.id}' takes corrections only before its due moment {item.due_at.isoformat()}"
    if item.token_id not in waiting:
        return f"'{element.id}' has completed: its answers were used"
    return None


def claim(conn, accepted: list) -> list:
    """The corrections whose work item still holds the answer each replaces (claimed now)."""
    won = []
    for a in accepted:
        changed = conn.scalar(
            update(s.work_items).where(s.work_items.c.id == a.item.id, s.work_items.c.status == "submitted",
                                       s.work_items.c.submitted_at == a.item.submitted_at)
            .values(submitted_at=a.submission.submitted_at, late=False).returning(s.work_items.c.id))
        if changed is not None:
            won.append(a)
    return won


def record(conn, won: list, earlier: dict, as_of: dt.datetime) -> None:
    """The corrected answers in place of the earlier ones, which the audit rows keep."""
    if not won:
        return
    conn.execute(update(s.submissions).where(s.submissions.c.work_item_id == bindparam("_wid"))
                 .values(submitted_at=bindparam("_at"), recorded_at=bindparam("_recorded"),
                         payload=bindparam("_payload"), total=bindparam("_total")),
                 [{"_wid": a.item.id, "_at": a.submission.submitted_at, "_recorded": as_of,
                   "_payload": a.row["payload"], "_total": a.row["total"]} for a in won])
    audit.record_all(conn, [audit.entry(
        as_of, a.item.instance_id, a.submission.actor, "task.corrected", a.item.element_id, a.submission.unit,
        detail={"submitted_at": a.submission.submitted_at.isoformat(),
                "previous": {"submitted_at": earlier[a.item.id].submitted_at.isoformat(),
                             "total": earlier[a.item.id].total, "payload": earlier[a.item.id].payload}})
        for a in won])
