"""What a plan year recorded, in a form two stores can be compared by: rows by their meaning
(instance keys, element ids, unit codes, moments), not by their ids, so a run through Prefect and
an engine-only run of the same moments compare equal exactly when the same things happened.

A step done twice shows as a second token, work item, letter or audit row; a step lost as a
missing one. Left out: what only delivery and Prefect add (an outbox row's status, attempts and
times of delivery, audit rows of notifications, incidents and their letters), ids, and the real time an operator
set a clock (the ``clock.set`` row's detail) — listed in :data:`LEFT_OUT`.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter

from sqlalchemy import select

LEFT_OUT = ("ids (and the keys of tokens, reports and letters, which hold ids)", "outbox status/attempts/sent_at/claims", "tokens.attempts/last_error",
            "audit: notification.*, incident; letters of kind incident", "clock.set detail")
SKIPPED_ACTIONS = ("notification.", "incident")
ID_KEYS = ("report_id",)  # a letter's context naming a row by its id (outbox.render_context reads the report)


def _t(value) -> str | None:
    return value.isoformat() if value is not None else None


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()[:16]


def _rows(conn, table, ids, *columns):
    return conn.execute(select(*columns).where(table.c.instance_id.in_(ids))).all()


def fingerprint(db, root_key: str) -> dict[str, Counter]:
    """Table -> multiset of its rows' meanings, for the instance ``root_key`` and its sub-instances."""
    from planflow import store as s

    with db.connect() as conn:
        root = conn.execute(select(s.instances.c.id).where(s.instances.c.key == root_key)).scalar_one()
        ids = s.tree_ids(conn, root)
        inst = {r.id: r for r in conn.execute(select(s.instances).where(s.instances.c.id.in_(ids)))}
        key = {i: r.key for i, r in inst.items()}
        out: dict[str, Counter] = {"instances": Counter(
            (r.key, r.process_id, r.scope_unit, r.status, _t(r.started_at), _t(r.ended_at), r.replay)
            for r in inst.values())}
        c = s.tokens.c
        out["tokens"] = Counter((key[r.instance_id], r.element_id, r.status, _t(r.created_at), _t(r.completed_at),
                                 _t(r.due_at)) for r in _rows(conn, s.tokens, ids, c.instance_id, c.element_id,
                                                              c.status, c.created_at, c.completed_at, c.due_at))
        w = s.work_items.c
        items = {r.id: r for r in conn.execute(select(s.work_items).where(w.instance_id.in_(ids)))}
        out["work_items"] = Counter(
            (key[r.instance_id], r.element_id, r.unit_code, r.status, _t(r.opened_at), _t(r.due_at),
             _t(r.submitted_at), r.late, r.ladder_step, _t(r.next_notice_at)) for r in items.values())
        subs = conn.execute(select(s.submissions).where(s.submissions.c.work_item_id.in_(list(items)))).all()
        out["submissions"] = Counter(
            (key[items[r.work_item_id].instance_id], items[r.work_item_id].element_id, r.unit_code,
             _t(r.submitted_at), _t(r.recorded_at), _digest(r.payload), r.total) for r in subs)
        h = s.chases.c
        out["chases"] = Counter((key[r.instance_id], r.element_id, r.unit_code, r.kind, r.level, _t(r.due_at),
                                 _t(r.recorded_at)) for r in _rows(conn, s.chases, ids, h.instance_id, h.element_id,
                                                                   h.unit_code, h.kind, h.level, h.due_at,
                                                                   h.recorded_at))
        tok = {r.id: (key[r.instance_id], r.element_id) for r in _rows(conn, s.tokens, ids, c.id, c.instance_id,
                                                                        c.element_id)}
        timers = conn.execute(select(s.timers).where(s.timers.c.token_id.in_(list(tok)))).all()
        out["timers"] = Counter((*tok[r.token_id], r.boundary_id, _t(r.fire_at), _t(r.fired_at), r.cancelled)
                                for r in timers)
        out["reports"] = Counter((key[r.instance_id], r.element_id, _t(r.created_at), _digest(r.data), _digest(r.markdown))
                                 for r in conn.execute(select(s.reports).where(s.reports.c.instance_id.in_(ids))))
        out["outbox"] = Counter((key.get(r.instance_id), r.element_id, r.unit_code,
                                 r.recipient, r.kind, r.level, _t(r.created_at),
                                 _digest({k: v for k, v in r.context.items() if k not in ID_KEYS}))
                                for r in conn.execute(select(s.outbox).where(s.outbox.c.instance_id.in_(ids)))
                                if r.kind != "incident")
        a = s.audit.c
        out["audit"] = Counter((key[r.instance_id], _t(r.at), r.actor, r.action, r.element_id, r.unit_code)
                               for r in _rows(conn, s.audit, ids, a.instance_id, a.at, a.actor, a.action, a.element_id,
                                              a.unit_code) if not r.action.startswith(SKIPPED_ACTIONS))
    return out


def compare(left: dict[str, Counter], right: dict[str, Counter]) -> dict[str, dict]:
    """Per table, rows in one and not the other (counted), as ``{table: {"only_left": n, "only_right": m,
    "example": …}}``; empty when equal."""
    diff = {}
    for table in sorted(set(left) | set(right)):
        a, b = left.get(table, Counter()), right.get(table, Counter())
        only_a, only_b = a - b, b - a
        if only_a or only_b:
            diff[table] = {"only_left": sum(only_a.values()), "only_right": sum(only_b.values()),
                           "example": [list(x) for x in (list(only_a)[:1] + list(only_b)[:1])]}
    return diff


def delivery(db, root_key: str) -> dict[str, int]:
    """The outbox of the instance by delivery status (every row ``sent`` once the year is over)."""
    from planflow import store as s

    with db.connect() as conn:
        root = conn.execute(select(s.instances.c.id).where(s.instances.c.key == root_key)).scalar_one()
        ids = s.tree_ids(conn, root)
        rows = conn.execute(select(s.outbox.c.status, s.outbox.c.kind).where(s.outbox.c.instance_id.in_(ids))).all()
    return dict(Counter(r.status for r in rows))
