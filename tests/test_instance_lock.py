"""The lock two drivers of one plan instance take in turns (planflow/instance_lock.py)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import create_engine, event, text

from planflow import instance_lock
from planflow import store as s


class Killed(Exception):
    pass


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_lock_whose_release_fails_does_not_hold_the_next_driver_for_ever(db_url):
    db = s.connect(db_url)

    def unlock_fails(conn, cursor, statement, *_args):
        if "pg_advisory_unlock" in statement:
            raise Killed("killed while releasing the lock")

    async def hold_then_fail():
        async with instance_lock.held(db, "nam-2022"):
            event.listen(db, "before_cursor_execute", unlock_fails)

    with pytest.raises(Killed):
        asyncio.run(hold_then_fail())
    event.remove(db, "before_cursor_execute", unlock_fails)

    # another process (here: an engine of its own) gets the lock at once
    other = create_engine(db.url)
    try:
        with other.connect() as conn:
            key = instance_lock._pg_key("nam-2022")
            assert conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}) is True
            conn.scalar(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
    finally:
        other.dispose()
