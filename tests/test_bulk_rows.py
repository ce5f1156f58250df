"""bulk_rows writes what SQLAlchemy's own executemany writes: the same stored values (moments,
JSON, booleans, JSON null), the same ids in the same order; a claim moves only the rows still
in the status it claims from. SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, text

from planflow import bulk_rows
from planflow import store as s

UTC = dt.timezone.utc
ICT = dt.timezone(dt.timedelta(hours=7))
AT = dt.datetime(2022, 12, 6, 8, 30, tzinfo=ICT)
COLUMNS = ("at", "instance_id", "actor", "action", "element_id", "unit_code", "detail")


def _raw(conn, table) -> list[tuple]:
    """Every row as stored (no type processing), in id order."""
    return [tuple(r) for r in conn.execute(text(f"SELECT * FROM {table.name} ORDER BY id"))]


def _entries() -> list[dict]:
    shared = {"late": False, "submitted_at": AT.isoformat()}
    return [dict(at=AT + dt.timedelta(seconds=i % 3), instance_id=i % 2 or None, actor="unit", action="task.submitted",
                 element_id="self_eval", unit_code=f"u{i}", detail=None if i % 4 == 0 else shared if i % 2 else {"i": i})
            for i in range(12)]


def test_insert_rows_stores_what_sqlalchemy_stores(db_url):
    db = s.connect(db_url)
    with db.begin() as conn:
        conn.execute(s.audit.insert(), _entries())
        conn.execute(s.audit.delete())
        bulk_rows.insert_rows(conn, s.audit, COLUMNS, [tuple(e[c] for c in COLUMNS) for e in _entries()])
        rows = _raw(conn, s.audit)
    with db.begin() as conn:
        conn.execute(s.audit.delete())
        conn.execute(s.audit.insert(), _entries())
        expected = _raw(conn, s.audit)
    assert [r[1:] for r in rows] == [r[1:] for r in expected]
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)  # written in the order given
    s.dispose(db_url)


def _items(conn, n: int) -> list[int]:
    conn.execute(s.instances.insert().values(id=1, key="k", definition_id="d", definition_digest="x" * 32,
                                             process_id="p", status="running", started_at=AT, variables={}))
    conn.execute(s.tokens.insert().values(id=1, key="t", instance_id=1, element_id="e", status="waiting",
                                          created_at=AT))
    bulk_rows.insert_rows(conn, s.work_items, ("token_id", "instance_id", "element_id", "unit_code", "status",
                                                "opened_at", "due_at", "ladder_step", "next_notice_at"),
                          [(1, 1, "e", f"u{i}", "open", AT, AT + dt.timedelta(days=9), 0, AT) for i in range(n)],
                          ignore=True)
    return list(conn.scalars(select(s.work_items.c.id).order_by(s.work_items.c.id)))


def test_claim_rows_moves_only_open_rows_and_sets_their_values(db_url):
    db = s.connect(db_url)
    with db.begin() as conn:
        ids = _items(conn, 5)
        conn.execute(s.work_items.update().where(s.work_items.c.id == ids[1]).values(status="missing"))
        moved = bulk_rows.claim_rows(conn, s.work_items, "id", ("open", "submitted"),
                                     ("submitted_at", "late", "next_notice_at"),
                                     [(i, AT + dt.timedelta(hours=k), k % 2 == 1, None) for k, i in enumerate(ids)])
        again = bulk_rows.claim_rows(conn, s.work_items, "id", ("open", "submitted"),
                                     ("submitted_at", "late", "next_notice_at"), [(ids[0], AT, True, None)])
        rows = conn.execute(select(s.work_items.c.id, s.work_items.c.status, s.work_items.c.submitted_at,
                                   s.work_items.c.late, s.work_items.c.next_notice_at)
                            .order_by(s.work_items.c.id)).all()
    assert moved == {ids[0], ids[2], ids[3], ids[4]} and again == set()
    assert [tuple(r) for r in rows] == [
        (ids[0], "submitted", AT.astimezone(UTC), False, None),
        (ids[1], "missing", None, None, AT.astimezone(UTC)),
        (ids[2], "submitted", (AT + dt.timedelta(hours=2)).astimezone(UTC), False, None),
        (ids[3], "submitted", (AT + dt.timedelta(hours=3)).astimezone(UTC), True, None),
        (ids[4], "submitted", (AT + dt.timedelta(hours=4)).astimezone(UTC), False, None)]
    s.dispose(db_url)


def test_insert_ignore_leaves_a_row_written_before(db_url):
    db = s.connect(db_url)
    with db.begin() as conn:
        ids = _items(conn, 3)
        assert _items_again(conn) == ids
    s.dispose(db_url)


def _items_again(conn) -> list[int]:
    bulk_rows.insert_rows(conn, s.work_items, ("token_id", "instance_id", "element_id", "unit_code", "status",
                                                "opened_at", "due_at", "ladder_step"),
                          [(1, 1, "e", f"u{i}", "open", AT, AT, 0) for i in range(3)], ignore=True)
    return list(conn.scalars(select(s.work_items.c.id).order_by(s.work_items.c.id)))
