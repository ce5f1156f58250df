"""Many rows written without SQLAlchemy's per-row work: the big writes of a batch (a task's
work items, the submissions, their audit rows, the claim of its work items).

A statement is compiled once per dialect, table and columns, by SQLAlchemy, from the store's
tables (``store.insert_ignore`` for rows a retry could write twice), so its SQL is what
``conn.execute`` would send; the rows go in one driver-level ``executemany`` (PostgreSQL: rows
no conflict can refuse by ``COPY``). Each value is converted by its column type's own bind
processor (the same stored form: ``UTCDateTime`` keeps one per moment, JSON is the dialect's
serializer), column by column. Rows are written in the order given, as ``conn.execute(stmt,
[dicts])`` writes them: the same ids. ``claim_rows`` moves many rows from one status to another
with their values in one ``UPDATE ... FROM`` per 1000.
"""

from __future__ import annotations

import re
from typing import Iterable, NamedTuple, Sequence

from planflow import store as s

_PLANS: dict[tuple, "_Plan"] = {}
_PARAM = re.compile(r"%\((\w+)\)s")


class _Plan(NamedTuple):
    sql: str  # the statement for one row, sent once with every row (executemany)
    names: tuple[str, ...]  # the values of a row given, in order
    converters: tuple  # each value's bind processor, or None
    position: tuple[int, ...]  # the values in the order the statement takes them
    copy: str | None = None  # PostgreSQL, rows no conflict can refuse: COPY ... FROM STDIN instead


def insert_rows(conn, table, columns: Sequence[str], rows: Iterable[Sequence], *, ignore: bool = False) -> None:
    """Insert ``rows`` (tuples in the order of ``columns``) into ``table``; ``ignore``: a row
    whose unique key is taken is left out (``INSERT ... ON CONFLICT DO NOTHING``)."""
    columns = tuple(columns)
    key = ("insert", conn.dialect.name, table.name, columns, ignore)
    plan = _PLANS.get(key)
    if plan is None:
        stmt = s.insert_ignore(conn, table) if ignore else table.insert()
        plan = _PLANS[key] = _compile(conn, stmt, columns, columns)
        if conn.dialect.name == "postgresql" and not ignore:  # COPY: about twice as fast as executemany
            quote = conn.dialect.identifier_preparer.quote
            plan = _PLANS[key] = plan._replace(copy=f"COPY {quote(table.name)} ({', '.join(map(quote, columns))}) "
                                                    "FROM STDIN", position=tuple(range(len(columns))))
    _send(conn, plan, rows)


def claim_rows(conn, table, key_column: str, status: tuple[str, str], columns: Sequence[str],
               rows: Sequence[Sequence]) -> set:
    """Move each row of ``table`` whose ``key_column`` is a row's key (its first value, each
    key once) from ``status[0]`` to ``status[1]`` and set ``columns`` to the row's other
    values, in one ``UPDATE ... FROM`` per 1000 rows; the keys moved (a row another writer
    moved first is not among them). The values are converted as ``insert_rows`` converts them."""
    plan = _claim_plan(conn, table, key_column, tuple(columns))
    claimed: set = set()
    for i in range(0, len(rows), 1000):
        chunk = list(zip(*rows[i:i + 1000]))
        values = [_convert(f, col) if f is not None else col for f, col in zip(plan.converters, chunk)]
        if conn.dialect.name == "postgresql":  # one array per column: a statement that does not grow
            sql, params = plan.sql, (status[1], *map(list, values), status[0])
        else:
            sql = plan.sql.replace("{rows}", ", ".join([plan.row] * len(chunk[0])))
            params = (status[1], *(v for row in zip(*values) for v in row), status[0])
        claimed.update(k for (k,) in conn.exec_driver_sql(sql, params))
    return claimed


class _ClaimPlan(NamedTuple):
    sql: str
    converters: tuple
    row: str


def _claim_plan(conn, table, key_column: str, columns: tuple[str, ...]) -> _ClaimPlan:
    """``claim_rows``'s statement for the dialect: the rows as ``VALUES`` (SQLite; ``{rows}``
    stands for them) or as ``unnest`` of one array per column (PostgreSQL), built once."""
    dialect = conn.dialect
    key = ("claim", dialect.name, table.name, key_column, columns)
    plan = _PLANS.get(key)
    if plan is None:
        quote = dialect.identifier_preparer.quote
        names = (key_column, *columns)
        converters = tuple(table.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in names)
        name, mark = quote(table.name), "%s" if dialect.paramstyle in ("format", "pyformat") else "?"
        if dialect.name == "postgresql":
            types = [re.sub(r"\(\d+\)", "", table.c[c].type.compile(dialect=dialect)) for c in names]
            source = "unnest(" + ", ".join(f"{mark}::{t}[]" for t in types) + ") AS v(" + ", ".join(
                f"column{i}" for i in range(1, len(names) + 1)) + ")"
        else:
            source = "(VALUES {rows}) AS v"
        sets = ", ".join(f"{quote(c)} = v.column{i}" for i, c in enumerate(columns, 2))
        sql = (f"UPDATE {name} SET status = {mark}, {sets} FROM {source} WHERE {name}.{quote(key_column)} = "
               f"v.column1 AND {name}.status = {mark} RETURNING {name}.{quote(key_column)}")
        plan = _PLANS[key] = _ClaimPlan(sql, converters, "(" + ", ".join([mark] * len(names)) + ")")
    return plan


def _compile(conn, stmt, keys: tuple[str, ...], names: tuple[str, ...]) -> _Plan:
    """The statement for one row, as SQLAlchemy compiles it for an executemany."""
    dialect = conn.dialect
    compiled = stmt.compile(dialect=dialect, column_keys=list(keys), for_executemany=True)
    sql, order = compiled.string, tuple(compiled.positiontup or ())
    if not compiled.positional:  # psycopg's %(name)s: %s in their order, so a row goes as a tuple
        sql, order = _PARAM.sub("%s", compiled.string), tuple(_PARAM.findall(compiled.string))
    if sorted(order) != sorted(names):  # pragma: no cover - a statement with binds of its own
        raise ValueError(f"{stmt}: parameters {order}, rows give {names}")
    converters = tuple(compiled.binds[n].type.dialect_impl(dialect).bind_processor(dialect) for n in names)
    position = tuple(names.index(n) for n in order)
    return _Plan(sql, names, converters, position)


def _send(conn, plan: _Plan, rows: Iterable[Sequence]) -> None:
    rows = list(rows)
    if not rows:
        return
    names = plan.names
    columns = list(zip(*rows))
    if len(columns) != len(names):
        raise ValueError(f"rows of {len(columns)} values for {len(names)} columns ({', '.join(names)})")
    columns = [_convert(f, col) if f is not None else col for f, col in zip(plan.converters, columns)]
    rows = zip(*(columns[i] for i in plan.position))
    if plan.copy is None:
        return conn.exec_driver_sql(plan.sql, list(rows))
    with conn.connection.driver_connection.cursor() as cursor, cursor.copy(plan.copy) as copy:
        for row in rows:
            copy.write_row(row)


def _convert(convert, values: tuple) -> list:
    """A column's values in their stored form; a value that is there several times (the
    same object: a moment, a detail shared by many rows) is converted once."""
    by_id = dict(zip(map(id, values), values))  # None too: a JSON column stores it as 'null'
    if len(by_id) == len(values):
        return list(map(convert, values))
    stored = {key: convert(v) for key, v in by_id.items()}
    return list(map(stored.__getitem__, map(id, values)))
