"""The audit log: who did what, when, written in the transaction of the change it records.

The engine's own transitions are recorded as ``ENGINE``; people and automations under
their own names (a unit, an operator, ``deadline-sweep``, ``delivery``). ``read`` gives
the entries back, for the operator actions' table (``planflow.operator_log``).
"""

from __future__ import annotations

from operator import itemgetter

from sqlalchemy import select
from sqlalchemy.engine import Connection

from planflow import bulk_rows
from planflow import store as s

ENGINE = "engine"  # the actor of the engine's own transitions

_INSERT = s.audit.insert()  # built once: the hot paths write thousands of rows
_COLUMNS = ("at", "instance_id", "actor", "action", "element_id", "unit_code", "detail")
_VALUES = itemgetter(*_COLUMNS)


def entry(at, instance_id, actor, action, element_id=None, unit_code=None, detail=None) -> dict:
    """One audit row, to write with ``record_all``."""
    return dict(at=at, instance_id=instance_id, actor=actor, action=action, element_id=element_id,
                unit_code=unit_code, detail=detail)


def record(conn: Connection, at, instance_id, actor, action, element_id=None, unit_code=None,
           detail=None) -> None:
    conn.execute(_INSERT, entry(at, instance_id, actor, action, element_id, unit_code, detail))


def record_all(conn: Connection, entries: list[dict]) -> None:
    """Write ``entry`` rows, in order, in one executemany (``bulk_rows``): rows that share a
    detail (the same dict) have it encoded once."""
    bulk_rows.insert_rows(conn, s.audit, _COLUMNS, map(_VALUES, entries))


def read(conn: Connection, instance_ids: list[int], actions: tuple[str, ...]) -> list:
    """The entries of these instances with one of these actions, in the order written."""
    return conn.execute(select(s.audit).where(s.audit.c.instance_id.in_(instance_ids),
                                              s.audit.c.action.in_(actions)).order_by(s.audit.c.id)).all()
