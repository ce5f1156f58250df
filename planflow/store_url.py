"""Opening the store from its URL: which databases planflow uses, how it waits for them,
and how a URL is shown (its password masked, in every message).

SQLite (a file) or PostgreSQL (psycopg, the ``postgres`` extra). A command that only
reads opens an existing store (``create=False``): a missing SQLite file is an error, never
created, and so is a database without planflow's tables. A store made by an older planflow
(a table without a column this one writes) is refused with what is missing, not left to
fail in the middle of a transition.
"""

from __future__ import annotations

import os
import re
import sqlite3
from urllib.parse import quote

from sqlalchemy import MetaData, create_engine, event, inspect
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

MIN_SQLITE = (3, 35)  # UPDATE ... RETURNING
CONNECT_TIMEOUT_S = 10  # a server that accepts and never answers; PLANFLOW_DATABASE_CONNECT_TIMEOUT
SUPPORTED = ("planflow keeps its store in SQLite (sqlite:///path/to/planflow.db) or PostgreSQL "
             "(postgresql://user@host:5432/db, with the postgres extra: pip install 'planflow[postgres]')")


class StoreError(ValueError):
    """The store's URL is wrong, its database cannot be reached, or it is not a planflow store."""


def masked_url(url) -> str:
    """A store's URL as it may be shown: its password masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError, TypeError, AttributeError):
        return re.sub(r"(://[^/@:]*:)[^@/]*@", r"\1***@", str(url))


def _scrubbed(text: str, url: str) -> str:
    """An error's first line, without the driver's class name or the URL's password."""
    line = str(text).strip().splitlines()[0] if str(text).strip() else type(text).__name__
    line = re.sub(r"^\([\w.]+\)\s*", "", line)
    try:
        password = make_url(url).password
    except (ArgumentError, ValueError, TypeError):
        password = None
    if password:
        line = line.replace(str(password), "***")
    return line.replace(url, masked_url(url))


def connect_timeout() -> int:
    raw = os.environ.get("PLANFLOW_DATABASE_CONNECT_TIMEOUT", "")
    try:
        return max(2, int(raw)) if raw.strip() else CONNECT_TIMEOUT_S
    except ValueError:
        raise StoreError(f"PLANFLOW_DATABASE_CONNECT_TIMEOUT={raw!r}: give a whole number of seconds") from None


def open_store(url: str, metadata: MetaData, *, create: bool = True) -> Engine:
    """An engine on the store at ``url``, its schema checked (created first when ``create``)."""
    shown = masked_url(url)
    engine = _engine(url, shown, create)
    try:
        if create:
            _create_tables(engine, metadata)
        _check_schema(engine, metadata, shown, create)
    except SQLAlchemyError as exc:
        engine.dispose()
        said = _scrubbed(exc, url)
        if "timeout" in said.lower() and engine.dialect.name == "postgresql":
            said += f" (no answer within {connect_timeout()} s; PLANFLOW_DATABASE_CONNECT_TIMEOUT sets the wait)"
        raise StoreError(f"cannot open the store '{shown}': {said}") from None
    except StoreError:
        engine.dispose()
        raise
    return engine


def _create_tables(engine: Engine, metadata: MetaData) -> None:
    """The tables that are not there yet, in one transaction. Two processes opening a fresh
    PostgreSQL store at once take turns (a transaction-scoped advisory lock), so neither
    trips over the other's CREATE TABLE."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7071996)")
        metadata.create_all(conn)


def _engine(url: str, shown: str, create: bool) -> Engine:
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise StoreError(f"cannot open the store '{shown}': not a database URL ({_scrubbed(exc, url)}); "
                         f"{SUPPORTED}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        parsed = _sqlite_url(parsed, shown, create)
        args: dict = {}
    elif backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        args = {"connect_args": {"connect_timeout": connect_timeout()}}
    else:
        raise StoreError(f"cannot open the store '{shown}': planflow does not support '{parsed.drivername}' "
                         f"databases; {SUPPORTED}")
    try:
        engine = create_engine(parsed, future=True, **args)
    except (NoSuchModuleError, ImportError) as exc:
        raise StoreError(f"cannot open the store '{shown}': its driver is not installed ({_scrubbed(exc, url)}); "
                         f"{SUPPORTED}") from None
    except (ArgumentError, ValueError, TypeError) as exc:
        raise StoreError(f"cannot open the store '{shown}': {_scrubbed(exc, url)}") from None
    if backend == "sqlite":
        _sqlite_events(engine)
    return engine


def _sqlite_url(parsed: URL, shown: str, create: bool) -> URL:
    """Check the SQLite library and the file; a store that must exist is opened read-write
    without being created (``mode=rw``), even if the file goes away in between."""
    if sqlite3.sqlite_version_info < MIN_SQLITE:
        raise StoreError(f"cannot open the store '{shown}': SQLite {sqlite3.sqlite_version} is too old, "
                         f"the engine needs {'.'.join(map(str, MIN_SQLITE))} or newer (UPDATE ... RETURNING)")
    path = parsed.database or ""
    in_memory = path in ("", ":memory:") or path.startswith("file:")
    if in_memory:
        return parsed
    if os.path.isdir(path):
        raise StoreError(f"cannot open the store '{shown}': {path} is a folder; name the store's file, "
                         "e.g. sqlite:///out/planflow.db")
    if not create:
        if not os.path.isfile(path):
            raise StoreError(f"no store at '{shown}': {path} does not exist (a command that reads never creates "
                             "one; name the store with --db or PLANFLOW_DATABASE_URL)")
        return parsed.set(database=f"file:{quote(os.path.abspath(path))}", query={"mode": "rw", "uri": "true"})
    folder = os.path.dirname(path)
    try:
        if folder:
            os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot open the store '{shown}': cannot create folder {folder}: {exc.strerror}") from None
    return parsed


def _sqlite_events(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # no implicit BEGIN from pysqlite: ours is below
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA busy_timeout=30000")  # first: switching to WAL may wait on another process
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):
        # take the write lock at BEGIN, so two writers queue instead of deadlocking
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _check_schema(engine: Engine, metadata: MetaData, shown: str, create: bool) -> None:
    """Every table and column this planflow writes is there (a store of an older one lacks some)."""
    found = inspect(engine)
    tables = set(found.get_table_names())
    ours = list(metadata.sorted_tables)
    if not create and not tables & {t.name for t in ours}:
        raise StoreError(f"no store at '{shown}': the database has no planflow tables (a command that reads "
                         "never creates them; run simulate or start first, or name another store with --db)")
    lacking = []
    for table in ours:
        if table.name not in tables:
            lacking.append(f"table {table.name}")
            continue
        have = {c["name"] for c in found.get_columns(table.name)}
        missing = [c.name for c in table.columns if c.name not in have]
        if missing:
            lacking.append(", ".join(f"column {table.name}.{c}" for c in missing))
    if lacking:
        raise StoreError(f"the store '{shown}' was made by an older planflow: it has no {', '.join(lacking)}. "
                         "planflow does not change an existing store's tables: keep this one for the older "
                         "planflow, and give this one a new store (--db or PLANFLOW_DATABASE_URL)")
