"""The audit log: who did what, when, written in the transaction of the change it records.

The engine's own transitions are recorded as ``ENGINE``; people and automations under
their own names (a unit, an operator, ``deadline-sweep``, ``delivery``).
"""

from __future__ import annotations

from sqlalchemy.engine import Connection

from planflow import store as s

ENGINE = "engine"  # the actor of the engine's own transitions

_INSERT = s.audit.insert()  # built once: the hot paths write thousands of rows


def entry(at, instance_id, actor, action, element_id=None, unit_code=None, detail=None) -> dict:
    """One audit row, to write with ``record_all``."""
    return dict(at=at, instance_id=instance_id, actor=actor, action=action, element_id=element_id,
                unit_code=unit_code, detail=detail)


def record(conn: Connection, at, instance_id, actor, action, element_id=None, unit_code=None,
           detail=None) -> None:
    conn.execute(_INSERT, entry(at, instance_id, actor, action, element_id, unit_code, detail))


def record_all(conn: Connection, entries: list[dict]) -> None:
    conn.execute(_INSERT, entries)
