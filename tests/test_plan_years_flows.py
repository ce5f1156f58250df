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
