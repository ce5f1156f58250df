"""The annual schedule of a plan of every year, as the deployed plan-cycle runs it: each firing
starts the instance of its own year (``<plan>/<year>``), once; the operators' flows then act on
the newest running year."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil

import pytest

from planflow.plan_years import this_year
from tests.conftest import REPO

pytestmark = pytest.mark.usefixtures("prefect_harness")
OPERATOR = "so-noi-vu:nguyen-van-a"


@pytest.fixture
def where(tmp_path, monkeypatch):
    """The deployment's environment (one store: the engine's tests run both SQLite and PostgreSQL)."""
    folder = tmp_path / "a" / "b" / "c"
    shutil.copytree(REPO / "tests" / "fixtures" / "every-year", folder)
    shutil.copytree(REPO / "definitions" / "forms", tmp_path / "definitions" / "forms")
    monkeypatch.setenv("PLANFLOW_DEFINITION", str(folder / "plan.yaml"))
    monkeypatch.setenv("PLANFLOW_DATABASE_URL", f"sqlite:///{tmp_path / 'planflow.db'}")
    monkeypatch.setenv("PLANFLOW_OUTBOX_DIR", str(tmp_path / "outbox"))
    return folder / "plan.yaml"


def test_two_firings_in_two_years_start_two_instances_once_each(where):
    from planflow.flows import operations as ops
    from planflow.flows.runtime import engine_for

    # a past year is replayed: the operator sets its clock, then the cycle of that year runs
    asyncio.run(ops.set_replay_clock(day=dt.date(2022, 3, 15), time="08:00", actor=OPERATOR,
                                     reason="Chạy lại năm 2022", year=2022))
    assert asyncio.run(ops.plan_cycle(year=2022)) == "thu-nghiem-moi-nam/2022"
    # the schedule fires this year: the cycle of the year it fires in, on the real clock
    now_year = this_year()
    assert asyncio.run(ops.plan_cycle()) == f"thu-nghiem-moi-nam/{now_year}"
    assert asyncio.run(ops.plan_cycle()) == f"thu-nghiem-moi-nam/{now_year}"  # once
    ref = ops.plan_ref()
    assert ref.root_key == f"thu-nghiem-moi-nam/{now_year}"  # the operators' flows: the newest year
    engine = engine_for(ref)
    assert engine.plan.year == now_year
    older = engine_for(ops.plan_ref(2022))
    assert older.plan.year == 2022 and older.instance_id("thu-nghiem-moi-nam/2022") is not None
    assert engine.instance_id(f"thu-nghiem-moi-nam/{now_year}") != older.instance_id("thu-nghiem-moi-nam/2022")
    # each year's units: 2022 had districts, this year (after 1/7/2025) has none
    assert any(u.kind == "ubnd-cap-huyen" and u.valid_on(dt.date(2022, 3, 15)) for u in older.plan.registry.units)
    assert not any(u.kind == "ubnd-cap-huyen" and u.valid_on(dt.date(now_year, 3, 15)) for u in engine.plan.registry.units)


def test_the_served_schedule_fired_in_two_years_starts_the_instance_of_each(where, tmp_path):
    """The plan-cycle deployment `planflow serve` registers, its runs scheduled on 15/3/2022 and
    15/3/2023 at 08:00 (as its cron fires), each run in a process of its own as the runner runs
    it: each starts the instance of the year it fired in. (Past years: their replay clocks are set
    first, as an operator replaying them would.)"""
    import os
    import subprocess
    import sys

    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL
    from prefect.states import Scheduled

    from planflow import Engine, connect, load_plan
    from planflow.clock import set_replay_clock
    from planflow.flows.serve import pin_environment, register

    url = os.environ["PLANFLOW_DATABASE_URL"]
    pin_environment(str(where.parent), url)
    _, ids = asyncio.run(register(str(where.parent)))
    cycle = ids["thu-nghiem-moi-nam"]["plan-cycle"]
    tz = dt.timezone(dt.timedelta(hours=7))
    for year in (2022, 2023):
        plan = load_plan(where, year)
        set_replay_clock(Engine(plan, connect(url)), f"thu-nghiem-moi-nam/{year}", dt.datetime(year, 3, 15, 8, tzinfo=tz),
                         actor=OPERATOR, reason=f"Chạy lại năm {year}")

        async def fire(at=dt.datetime(year, 3, 15, 8, tzinfo=tz)):
            async with get_client() as client:
                return (await client.create_flow_run_from_deployment(cycle, state=Scheduled(scheduled_time=at))).id

        run_id = asyncio.run(fire())
        done = subprocess.run([sys.executable, "-m", "prefect.engine", str(run_id)],
                              env={**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(),
                                   "PREFECT_LOGGING_LEVEL": "WARNING", "PREFECT__FLOW_RUN_ID": str(run_id)},
                              capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr[-3000:]
    db = connect(url)
    from sqlalchemy import select

    from planflow import store as s

    with db.connect() as conn:
        rows = conn.execute(select(s.instances.c.key, s.instances.c.clock_at)
                            .where(s.instances.c.parent_id.is_(None)).order_by(s.instances.c.key)).all()
    assert [r.key for r in rows] == ["thu-nghiem-moi-nam/2022", "thu-nghiem-moi-nam/2023"]
    with db.connect() as conn:  # each disseminated its plan: the year's letters are queued
        sent = conn.execute(select(s.instances.c.key, s.outbox.c.kind)
                            .join(s.instances, s.instances.c.id == s.outbox.c.instance_id)).all()
    assert {k for k, kind in sent if kind == "dissemination"} == {"thu-nghiem-moi-nam/2022", "thu-nghiem-moi-nam/2023"}
