"""One driver of a plan instance's clock at a time: a lock two processes take in turns.

A simulated year is acted moment by moment (``simulation.run_year``): what people do at a
moment (a submission, a review decision) must be recorded after everything the plan did
before that moment and before what it does after. Two ``simulate`` processes on one store
therefore take turns, a moment each, under this lock; whoever holds it reads the
instance's clock from the store, acts that moment and saves the next one, so they follow
one timeline and each moment is acted once. The transitions themselves need no lock: each
claims its rows and carries the moment it belongs to.

PostgreSQL: a session advisory lock (``pg_try_advisory_lock``) on a connection of its own.
SQLite: an exclusive ``flock`` on a file beside the database (``<file>.lock``). Either is
released when its holder dies, ``kill -9`` included (the server closes the session, the
kernel the file), so a killed run never blocks the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from typing import AsyncIterator

from sqlalchemy import text
from sqlalchemy.engine import Engine as SqlEngine

POLL_S = 0.05


def _pg_key(key: str) -> int:
    """A signed 64-bit advisory lock key for an instance key."""
    return int.from_bytes(hashlib.blake2b(f"planflow:{key}".encode(), digest_size=8).digest(), "big", signed=True)


@contextlib.asynccontextmanager
async def held(db: SqlEngine, key: str) -> AsyncIterator[None]:
    """Hold the lock of instance ``key`` (waiting for it without blocking the event loop)."""
    if db.dialect.name == "postgresql":
        async with _pg_held(db, _pg_key(key)):
            yield
    elif db.dialect.name == "sqlite" and db.url.database not in (None, "", ":memory:"):
        async with _file_held(f"{db.url.database}.lock"):
            yield
    else:  # an in-memory database: one process only
        yield


@contextlib.asynccontextmanager
async def _pg_held(db: SqlEngine, lock_key: int) -> AsyncIterator[None]:
    with db.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        while not conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": lock_key}):
            await asyncio.sleep(POLL_S)
        try:
            yield
        finally:
            try:
                conn.scalar(text("SELECT pg_advisory_unlock(:k)"), {"k": lock_key})
            except BaseException:
                # the session would go back to the pool still holding the lock, and every
                # later driver would wait for it for ever: end the session, and the lock with it
                conn.invalidate()
                raise


@contextlib.asynccontextmanager
async def _file_held(path: str) -> AsyncIterator[None]:
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(POLL_S)
        yield
    finally:
        os.close(fd)  # releases the lock
