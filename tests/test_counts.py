"""One definition of "units asked", the same count everywhere: ``planflow status``, the
progress artifact, the summary and Sở Nội vụ's report (issue 9: status said 263/267 where the
report said 261/265 — it counted Ban Dân vận's review as units — and 0/253 at the start
where the progress artifact said 0/265)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from planflow import Engine, load_scenario, store
from planflow.progress import instance_progress, unit_counts
from planflow.report import latest_report
from planflow.simulation import EngineActions, first_start, run_year
from planflow.status import instances_status, masked_url
from tests.conftest import SCENARIO

KEY = "hai-duong-dan-van-2022/2022/counts"


def _status(url: str) -> tuple[int, int]:
    row = next(r for r in instances_status(url) if r["key"] == KEY)
    return row["reported"], row["expected"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_status_progress_summary_and_report_count_the_same_units(db_url, plan):
    engine = Engine(plan, store.connect(db_url))
    clock = first_start(plan)
    root = engine.start(KEY, clock)
    actions = EngineActions(engine, root)
    asyncio.run(actions.drive(clock))
    # at the start: the districts' own tasks have not opened, they are asked all the same
    with engine.db.connect() as conn:
        opened = conn.scalar(select(func.count()).select_from(store.work_items))
    assert opened == 18 + 235
    view = instance_progress(engine, root, clock)
    assert (view.reported, view.expected) == (0, 265) == _status(db_url) == unit_counts(engine, root)

    asyncio.run(run_year(engine, load_scenario(SCENARIO, plan), root, clock, actions))
    with engine.db.connect() as conn:
        items = conn.scalar(select(func.count()).select_from(store.work_items))
        report = latest_report(conn, root).data["total"]["counts"]
    assert items == 265 + 2 + 1  # and two rounds of Ban Dân vận's review and one revision, which are not units
    end = engine.instance(root).ended_at
    view = instance_progress(engine, root, end)
    units = view.summary["units"].values()
    assert report["expected"] == 265 and report["on_time"] + report["late"] == 261
    assert (view.reported, view.expected) == (261, 265) == _status(db_url) == unit_counts(engine, root)
    assert (sum(u["status"] in ("on_time", "late") for u in units), len(units)) == (261, 265)
    assert len(view.units) == 265


def test_status_masks_the_password_of_a_store_url():
    assert masked_url("postgresql://planflow:s3cr3t@db.example:5432/plans") == \
        "postgresql://planflow:***@db.example:5432/plans"
    assert masked_url("sqlite:///out/planflow.db") == "sqlite:///out/planflow.db"
