"""A password in the store's URL is written nowhere: not in Prefect's database (flow-run
parameters, state messages, logs, events, artifacts), not on stdout or in the logs, not in
the files under out/.

PostgreSQL with trust authentication accepts any password, so the store's URL carries a
real one (``postgresql://postgres:<password>@127.0.0.1:5432/<db>``) and everything works;
then every place a run writes to is searched for it. Skipped without PostgreSQL unless
PLANFLOW_REQUIRE_POSTGRES=1.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from pathlib import Path

import pytest

from tests.conftest import PLAN

pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
# the stage flows take a RunRef, and Prefect keeps a flow run's parameters: until RunRef's JSON
# form masks its URL's password (flows/runtime.py, issue 9), the password is in Prefect's database


def _with_password(db_url: str) -> tuple[str, str]:
    password = f"S3cretPw{uuid.uuid4().hex[:10]}"
    assert db_url.startswith("postgresql://postgres@")
    return db_url.replace("postgres@", f"postgres:{password}@", 1), password


def _files_holding(folder: Path, needle: str) -> list[str]:
    """Every file under ``folder`` (SQLite databases and their WAL included) holding ``needle``."""
    raw = needle.encode()
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and raw in p.read_bytes())


def _around(text: str, needle: str) -> list[str]:
    """Where ``needle`` is in ``text``: a little of what comes before each occurrence."""
    spots, start = [], text.find(needle)
    while start >= 0 and len(spots) < 5:
        spots.append(text[max(0, start - 160):start + len(needle)])
        start = text.find(needle, start + 1)
    return spots


def _prefect_database() -> Path | None:
    from prefect.settings import get_current_settings

    url = get_current_settings().server.database.connection_url
    url = url.get_secret_value() if url is not None else ""
    if "sqlite" not in url:
        return None
    return Path(url.split(":///", 1)[1]).parent


async def _everything_the_api_holds() -> str:
    """Flow runs (names, parameters, states), task runs, logs, artifacts, events — as text."""
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        parts = [r.model_dump_json() for r in await client.read_flow_runs(limit=200)]
        parts += [r.model_dump_json() for r in await client.read_task_runs(limit=200)]
        parts += [r.model_dump_json() for r in await client.read_logs(limit=200)]
        parts += [a.model_dump_json() for a in await client.read_artifacts(limit=200)]
        page = (await client.request("POST", "/events/filter", json={"limit": 50})).json()
        for _ in range(100):  # every page of events (50 a page)
            parts.append(str(page["events"]))
            if not page.get("next_page"):
                break
            page = (await client._client.get(page["next_page"])).json()
    return "\n".join(parts)


def test_operator_flows_write_the_store_password_nowhere(prefect_harness, db_url, tmp_path, monkeypatch, capfd,
                                                         caplog):
    from planflow.flows.operations import (ScoreSheet, advance, daily_deadline_sweep, plan_cycle, set_replay_clock,
                                           submit_self_evaluation)
    from prefect.logging.handlers import APILogHandler

    url, password = _with_password(db_url)
    out = tmp_path / "out"
    monkeypatch.setenv("PLANFLOW_DEFINITION", str(PLAN))
    monkeypatch.setenv("PLANFLOW_DATABASE_URL", url)
    monkeypatch.setenv("PLANFLOW_OUTBOX_DIR", str(out / "outbox"))
    operator = {"actor": "so-noi-vu:nguyen-van-a", "reason": "Chạy lại năm 2022"}

    def done(coro, ok=True):
        state = asyncio.run(coro)
        assert state.is_completed() == ok, state.message
        return state

    with caplog.at_level("DEBUG"):
        done(set_replay_clock(day=dt.date(2022, 3, 15), time="08:00", **operator, return_state=True))
        done(plan_cycle(return_state=True))
        done(set_replay_clock(day=dt.date(2022, 12, 12), time="08:00", **operator, return_state=True))
        done(daily_deadline_sweep(return_state=True))
        scores = {name: 1 for name in ScoreSheet.model_fields}
        # a refused submission fails its run: its message is kept by Prefect too
        done(submit_self_evaluation(unit="so-khong-ton-tai", scores=scores, actor="x", return_state=True), ok=False)
        done(advance(return_state=True))
        asyncio.run(APILogHandler.aflush())
    assert list((out / "outbox").glob("*.eml")), "the runs wrote no letter: nothing was checked"

    printed = capfd.readouterr()
    assert password not in printed.out + printed.err
    assert password not in caplog.text
    assert _files_holding(out, password) == []
    held = asyncio.run(_everything_the_api_holds())
    assert password not in held, _around(held, password)
    database = _prefect_database()
    if database is not None:
        assert _files_holding(database, password) == []


# `planflow simulate --db URL` with a password: tests/test_simulate.py
# (test_same_result_on_postgresql_and_the_stores_password_is_written_nowhere: one run for both).
