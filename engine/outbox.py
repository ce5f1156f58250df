"""The outbox: every notification is a row first, keyed so it is queued and sent once.

The engine queues rows inside the transaction of the step that decides them; a flow
delivers pending rows later, with retries. A process that dies in between loses nothing.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update

from engine import store as s


def encode(value):
    """JSON-safe form of a template context (dates and datetimes tagged)."""
    if isinstance(value, dt.datetime):
        return {"__datetime__": value.isoformat()}
    if isinstance(value, dt.date):
        return {"__date__": value.isoformat()}
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    return value


def decode(value):
    if isinstance(value, dict):
        if set(value) == {"__datetime__"}:
            return dt.datetime.fromisoformat(value["__datetime__"])
        if set(value) == {"__date__"}:
            return dt.date.fromisoformat(value["__date__"])
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


def queue(conn, rows: list[dict], as_of: dt.datetime) -> None:
    """Queue notifications; a row whose key exists already is left as it is."""
    if rows:
        conn.execute(s.insert_ignore(conn, s.outbox), [
            {**r, "context": encode(r["context"]), "status": "pending", "attempts": 0,
             "created_at": as_of} for r in rows])


def pending(db, limit: int = 1000, instance_ids: list[int] | None = None) -> list:
    with db.connect() as conn:
        q = select(s.outbox).where(s.outbox.c.status == "pending")
        if instance_ids is not None:
            q = q.where(s.outbox.c.instance_id.in_(instance_ids))
        return conn.execute(q.order_by(s.outbox.c.id).limit(limit)).all()


def mark_sent(db, row_id: int, as_of: dt.datetime) -> bool:
    with db.begin() as conn:
        return conn.execute(update(s.outbox).where(s.outbox.c.id == row_id, s.outbox.c.status == "pending")
                            .values(status="sent", sent_at=as_of, attempts=s.outbox.c.attempts + 1)).rowcount == 1


def mark_failed(db, row_id: int, error: str, *, permanent: bool) -> None:
    with db.begin() as conn:
        values = {"attempts": s.outbox.c.attempts + 1, "last_error": error[:2000]}
        if permanent:
            values["status"] = "failed"
        conn.execute(update(s.outbox).where(s.outbox.c.id == row_id).values(**values))
