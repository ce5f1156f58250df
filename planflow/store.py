"""The engine's SQL store: the source of truth for every instance, token and work item.

SQLite file by default, any SQLAlchemy URL otherwise (tested on PostgreSQL). Times are
stored as naive UTC and handed out tz-aware. Every row that a retry could write twice has
a unique key, and inserts of such rows ignore conflicts.

The engine writes ``INSERT``/``UPDATE ... RETURNING`` (one statement claims a whole batch),
so SQLite must be 3.35 (2021) or newer (``MIN_SQLITE``, checked on ``sqlite3.sqlite_version``:
``connect`` refuses an older library with a clear error). PostgreSQL has had both for long.
How a URL is opened, checked and shown (password masked): ``planflow.store_url``.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3  # noqa: F401 - kept as store.sqlite3: tests patch the library's version through it
import threading

from sqlalchemy import (
    bindparam, literal_column, select,
    JSON, Boolean, Column, Date, DateTime, Float, ForeignKey, Index, Integer, MetaData, String,
    Table, Text, TypeDecorator, UniqueConstraint,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from planflow.store_url import MIN_SQLITE, StoreError, masked_url, open_store  # noqa: F401 - re-exported

DEFAULT_URL = "sqlite:///out/planflow.db"


class UTCDateTime(TypeDecorator):
    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the engine only takes tz-aware times")
        return value.astimezone(dt.timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        return None if value is None else value.replace(tzinfo=dt.timezone.utc)

    def bind_processor(self, dialect):
        """``process_bind_param`` and the dialect's own conversion (SQLite: to text), kept per
        moment: a batch of 10 000 rows binds a handful of distinct moments 40 000 times.
        Equal aware datetimes are the same instant, so they share their stored form."""
        convert = super().bind_processor(dialect)
        seen: dict[dt.datetime, object] = {}

        def process(value):
            if value is None:
                return None
            stored = seen.get(value)
            if stored is None:
                stored = convert(value)  # a naive datetime never equals an aware key: it raises here
                if len(seen) >= 4096:
                    seen.clear()
                seen[value] = stored
            return stored
        return process

    def result_processor(self, dialect, coltype):
        """The dialect's conversion (SQLite: from text) and ``process_result_value``, kept per
        stored value: 10 000 work items read back hold a handful of distinct moments."""
        convert = super().result_processor(dialect, coltype)
        seen: dict[object, dt.datetime] = {}

        def process(value):
            if value is None:
                return None
            moment = seen.get(value)
            if moment is None:
                moment = convert(value) if convert is not None else self.process_result_value(value, dialect)
                if len(seen) >= 4096:
                    seen.clear()
                seen[value] = moment
            return moment
        return process


metadata = MetaData()

instances = Table(
    "instances", metadata,
    Column("id", Integer, primary_key=True),
    Column("key", String(300), nullable=False, unique=True),
    Column("definition_id", String(200), nullable=False),
    Column("definition_digest", String(32), nullable=False),
    Column("process_id", String(200), nullable=False),
    Column("parent_id", Integer, ForeignKey("instances.id")),
    Column("parent_token_id", Integer),
    Column("scope_unit", String(200)),
    Column("status", String(20), nullable=False, default="running"),
    Column("started_at", UTCDateTime, nullable=False),
    Column("ended_at", UTCDateTime),
    Column("clock_at", UTCDateTime),
    # a replay (simulate, or a past year replayed by an operator) runs on its own clock,
    # clock_at; a live instance on the real one
    Column("replay", Boolean, nullable=False, default=False),
    Column("variables", JSON, nullable=False, default=dict),
)
Index("ix_instances_parent", instances.c.parent_id)
Index("ix_instances_parent_token", instances.c.parent_token_id, instances.c.status)

tokens = Table(
    "tokens", metadata,
    Column("id", Integer, primary_key=True),
    Column("key", String(400), nullable=False, unique=True),
    Column("instance_id", Integer, ForeignKey("instances.id"), nullable=False),
    Column("element_id", String(200), nullable=False),
    # active: to be interpreted; waiting: on units, children or a join; ready: a service
    # step for a flow to run; completed; cancelled
    Column("status", String(20), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("completed_at", UTCDateTime),
    Column("due_at", UTCDateTime),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
)
Index("ix_tokens_status", tokens.c.status, tokens.c.element_id)
Index("ix_tokens_instance", tokens.c.instance_id, tokens.c.element_id)

work_items = Table(
    "work_items", metadata,
    Column("id", Integer, primary_key=True),
    Column("token_id", Integer, ForeignKey("tokens.id"), nullable=False),
    Column("instance_id", Integer, nullable=False),
    Column("element_id", String(200), nullable=False),
    Column("unit_code", String(200), nullable=False),
    Column("status", String(20), nullable=False),  # open, submitted, missing
    Column("opened_at", UTCDateTime, nullable=False),
    Column("due_at", UTCDateTime, nullable=False),
    Column("submitted_at", UTCDateTime),
    Column("late", Boolean),
    Column("ladder_step", Integer, nullable=False, default=0),  # rungs of the ladder passed
    Column("next_notice_at", UTCDateTime),  # when the next reminder or escalation falls due
    UniqueConstraint("token_id", "unit_code", name="uq_work_item"),
)
Index("ix_work_items_notice", work_items.c.status, work_items.c.next_notice_at)
Index("ix_work_items_open", work_items.c.status, work_items.c.due_at)
Index("ix_work_items_unit", work_items.c.unit_code, work_items.c.status)

submissions = Table(
    "submissions", metadata,
    Column("id", Integer, primary_key=True),
    Column("work_item_id", Integer, ForeignKey("work_items.id"), nullable=False, unique=True),
    Column("unit_code", String(200), nullable=False),
    Column("submitted_at", UTCDateTime, nullable=False),
    Column("recorded_at", UTCDateTime, nullable=False),
    Column("payload", JSON, nullable=False),
    Column("total", Float),
    # a paper report entered by an operator: its document's number and date, who entered it, why
    Column("document_number", String(100)),
    Column("document_date", Date),
    Column("entered_by", String(200)),
    Column("entry_reason", Text),
)

chases = Table(
    "chases", metadata,  # reminders and escalations (đôn đốc) recorded, once per work item, kind and level
    Column("id", Integer, primary_key=True),
    Column("work_item_id", Integer, ForeignKey("work_items.id"), nullable=False),
    Column("instance_id", Integer, nullable=False),
    Column("element_id", String(200), nullable=False),
    Column("unit_code", String(200), nullable=False),
    Column("kind", String(20), nullable=False),  # reminder | escalation
    Column("level", Integer, nullable=False),
    Column("due_at", UTCDateTime, nullable=False),  # when the rung fell due
    Column("recorded_at", UTCDateTime, nullable=False),
    UniqueConstraint("work_item_id", "kind", "level", name="uq_notice"),
)
Index("ix_chases_instance", chases.c.instance_id, chases.c.unit_code)

timers = Table(
    "timers", metadata,
    Column("id", Integer, primary_key=True),
    Column("token_id", Integer, ForeignKey("tokens.id"), nullable=False),
    Column("boundary_id", String(200), nullable=False),
    Column("fire_at", UTCDateTime, nullable=False),
    Column("fired_at", UTCDateTime),
    Column("cancelled", Boolean, nullable=False, default=False),
    UniqueConstraint("token_id", "boundary_id", name="uq_timer"),
)
Index("ix_timers_due", timers.c.fired_at, timers.c.fire_at)

reports = Table(
    "reports", metadata,
    Column("id", Integer, primary_key=True),
    Column("key", String(300), nullable=False, unique=True),
    Column("instance_id", Integer, nullable=False),
    Column("element_id", String(200), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("data", JSON, nullable=False),
    Column("markdown", Text, nullable=False),
)
# an instance's reports (its next round, its latest): without it each lookup reads every report
Index("ix_reports_instance", reports.c.instance_id)

outbox = Table(
    "outbox", metadata,
    Column("id", Integer, primary_key=True),
    Column("key", String(400), nullable=False, unique=True),
    Column("instance_id", Integer, nullable=False),
    Column("element_id", String(200), nullable=False),
    Column("unit_code", String(200)),
    Column("recipient", String(200), nullable=False),
    Column("kind", String(100), nullable=False),
    Column("level", Integer, nullable=False, default=0),
    Column("context", JSON, nullable=False),
    # pending -> sending (claimed by one deliverer) -> sent | pending (retry) | failed (incident)
    Column("status", String(20), nullable=False, default="pending"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
    Column("claimed_at", UTCDateTime),  # wall clock of the last claim (the lease starts here)
    Column("claimed_by", String(200)),  # host:pid:nonce of the last deliverer that claimed it
)
Index("ix_outbox_status", outbox.c.status)

# the generation of a unit's personal links in force in a plan instance (planflow.unit_links):
# reissuing a unit's link moves it on and every older link is refused
unit_links = Table(
    "unit_links", metadata,
    Column("instance_id", Integer, ForeignKey("instances.id"), primary_key=True),
    Column("unit_code", String(200), primary_key=True),
    Column("generation", Integer, nullable=False),
)

# the files a plan instance started with (a running year keeps its definition: planflow.plan_versions)
plan_versions = Table(
    "plan_versions", metadata,
    Column("digest", String(32), primary_key=True),
    Column("definition_id", String(200), nullable=False),
    Column("files", JSON, nullable=False),  # [[path relative to the definition's folder, text], ...], definition first
    Column("kept_at", UTCDateTime, nullable=False),
)

audit = Table(
    "audit", metadata,
    Column("id", Integer, primary_key=True),
    Column("at", UTCDateTime, nullable=False),
    Column("instance_id", Integer),
    Column("actor", String(200), nullable=False),
    Column("action", String(100), nullable=False),
    Column("element_id", String(200)),
    Column("unit_code", String(200)),
    Column("detail", JSON),
)
Index("ix_audit_instance", audit.c.instance_id)


def _tree_cte():
    """An instance's tree: a recursive CTE (SQLite and PostgreSQL alike), the root a parameter."""
    top = (select(instances.c.id, instances.c.parent_id, literal_column("0", Integer).label("depth"))
           .where(instances.c.id == bindparam("root_id")).cte("tree", recursive=True))
    below = (select(instances.c.id, instances.c.parent_id, top.c.depth + literal_column("1", Integer))
             .where(instances.c.parent_id == top.c.id))
    return top.union_all(below)


def _tree_query():
    """An instance's tree, root first, then level by level, each level by parent and id: built
    once, the root a parameter."""
    tree = _tree_cte()
    return select(tree.c.id).order_by(tree.c.depth, tree.c.parent_id, tree.c.id)


_TREE = _tree_query()
# the ids of the tree as a subquery, for a statement that selects within a tree in one query
# (``.in_(IN_TREE)``, the root given as ``root_id``)
IN_TREE = select(_tree_cte().c.id)


def tree_ids(conn, root_id: int) -> list[int]:
    """The ids of an instance and of every sub-process instance below it, in one query."""
    return list(conn.scalars(_TREE, {"root_id": root_id})) or [root_id]


def root_of(conn, instance_id: int) -> int:
    """The id of the root instance above ``instance_id`` (itself when it has no parent)."""
    iid, parent = instance_id, conn.scalar(select(instances.c.parent_id).where(instances.c.id == instance_id))
    while parent is not None:
        iid, parent = parent, conn.scalar(select(instances.c.parent_id).where(instances.c.id == parent))
    return iid


def database_url(url: str | None = None) -> str:
    return url or os.environ.get("PLANFLOW_DATABASE_URL") or DEFAULT_URL


_ENGINES: dict[str, Engine] = {}


_OPENING = threading.Lock()


def connect(url: str | None = None, *, create: bool = True) -> Engine:
    """The SQLAlchemy engine for ``url`` (one per process and URL), its schema checked.

    ``create=False`` opens an existing store only (what a command that reads does): a
    missing file or a database without planflow's tables is a ``StoreError``, and nothing
    is created. Every error shows the URL with its password masked.
    """
    url = database_url(url)
    engine = _ENGINES.get(url)
    if engine is None:
        with _OPENING:  # two threads opening one store at once would both create it (SQLite: "locked")
            engine = _ENGINES.get(url)
            if engine is None:
                engine = _ENGINES[url] = open_store(url, metadata, create=create)
    return engine


def dispose(url: str) -> None:
    """Close the pooled connections to ``url`` (before dropping a test database)."""
    engine = _ENGINES.pop(url, None)
    if engine is not None:
        engine.dispose()


_INSERT_IGNORE: dict[tuple[str, Table], object] = {}


def insert_ignore(conn, table: Table):
    """``INSERT ... ON CONFLICT DO NOTHING`` for the connection's dialect (built once per
    dialect and table: statements are immutable, ``.values()`` and the like copy them)."""
    key = (conn.dialect.name, table)
    stmt = _INSERT_IGNORE.get(key)
    if stmt is None:
        stmt = _INSERT_IGNORE[key] = _insert_ignore(conn, table)
    return stmt


def _insert_ignore(conn, table: Table):
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    raise NotImplementedError(conn.dialect.name)  # pragma: no cover - other dialects are not supported yet
