"""The deployed deadline-sweep schedule against the ladder, over the whole 2022 calendar.

``planflow serve`` (and ``prefect.yaml``) deploy ``deadline-sweep`` on a cron schedule; the
flow (``daily_deadline_sweep``) skips days off, sweeps, then moves the instance on. Here
the schedule's real firings — the times Prefect's server computes from the deployment's
``CronSchedule`` — are replayed through 2022 on the engine alone, on a store where the
year's tasks are open and nobody reports: every reminder, escalation and closing timer
must be handled at its own moment (08:00 on its day), none a day late, none superseded.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from planflow import Engine, escalation, store
from tests.conftest import PLAN

YEAR = 2022


def deployed_sweep_schedule():
    """(cron, timezone) of the ``deadline-sweep`` deployment ``planflow serve`` registers."""
    from planflow.flows.serve import deployments

    deps = asyncio.run(deployments(str(PLAN), "sqlite:///never-opened.db"))
    schedule = deps["deadline-sweep"].schedules[0].schedule
    return schedule.cron, schedule.timezone


def firings(cron: str, timezone: str, year: int = YEAR) -> list[dt.datetime]:
    """Every time Prefect's scheduler runs the deployment in ``year`` (its own computation)."""
    from prefect.server.schemas.schedules import CronSchedule

    tz = ZoneInfo(timezone)
    dates = asyncio.run(CronSchedule(cron=cron, timezone=timezone).get_dates(
        start=dt.datetime(year, 1, 1, tzinfo=tz), end=dt.datetime(year + 1, 1, 1, tzinfo=tz)))
    return [dt.datetime.fromisoformat(d.isoformat()).astimezone(tz) for d in dates]


def drive(engine: Engine, as_of: dt.datetime) -> None:
    """What the flow does after its sweep: move the instance on, run every ready step."""
    while True:
        engine.advance(as_of)
        steps = engine.ready_steps()
        if not steps:
            return
        for step in steps:
            engine.run_step(step.token_ids, as_of)


def scheduled_sweeps(engine: Engine, times: list[dt.datetime]) -> int:
    """The daily flow at each firing, engine only: nothing on a day off (the flow's own test),
    else the sweep (reminders, escalations, then closing timers) and the steps it made
    ready — again while those opened a task with a rung due at this very moment, as
    ``daily_deadline_sweep`` does. Returns how many firings swept."""
    cal = engine.plan.calendar
    swept = 0
    for when in times:
        if not cal.is_working_day(when.astimezone(cal.tz).date()):
            continue
        swept += 1
        while True:
            engine.sweep(when)
            drive(engine, when)
            upcoming = engine.next_deadline_at()
            if upcoming is None or upcoming > when:
                break
    return swept


def expected_rungs(engine: Engine) -> dict[tuple[int, str, int], dt.datetime]:
    """(work item, kind, level) -> when it falls: every rung of every work item from the one
    it opened at (reminders already past when it opened are skipped) to the last."""
    plan = engine.plan
    out = {}
    with engine.db.connect() as conn:
        items = conn.execute(select(store.work_items, store.instances.c.process_id)
                             .join(store.instances, store.instances.c.id == store.work_items.c.instance_id)).all()
    for item in items:
        element = plan.definition.process(item.process_id).element(item.element_id)
        ladder = escalation.rungs(plan, element, item.due_at)
        first, _ = escalation.start(plan, element, item.due_at, item.opened_at)
        out.update({(item.id, r.kind, r.level): r.at for r in ladder[first:]})
    return out


def lateness(engine: Engine) -> dict[str, list]:
    """What was not handled at its moment: rungs never recorded or recorded after they fell,
    rungs superseded, closing timers fired late or never."""
    with engine.db.connect() as conn:
        chases = {(c.work_item_id, c.kind, c.level): (c.due_at, c.recorded_at)
                  for c in conn.execute(select(store.chases))}
        timers = conn.execute(select(store.timers)).all()
        superseded = conn.execute(select(store.audit).where(store.audit.c.action == "unit.superseded")).all()
    expected = expected_rungs(engine)
    return {
        "never": sorted(set(expected) - set(chases)),
        "late": sorted((key, at, chases[key][1]) for key, at in expected.items()
                       if key in chases and chases[key][1] != at),
        "superseded": [(a.unit_code, a.detail) for a in superseded],
        "timers": [(t.boundary_id, t.fire_at, t.fired_at) for t in timers if t.fired_at != t.fire_at],
    }


@pytest.fixture
def open_year(plan, tmp_path):
    """The year's instance started on 15/3/2022 08:00 with everything ready run: the
    departments' and communes' self-evaluations open, nobody reports (SQLite: the engine's
    timing does not depend on the database, its tests run on both)."""
    url = f"sqlite:///{tmp_path / 'planflow.db'}"
    engine = Engine(plan, store.connect(url))
    issued = dt.datetime(YEAR, 3, 15, 8, tzinfo=plan.calendar.tz)
    engine.start("sweep-schedule", issued)
    drive(engine, issued)
    yield engine
    store.dispose(url)


def test_the_deployed_schedule_handles_every_rung_and_closing_on_its_own_day(open_year, plan):
    cron, timezone = deployed_sweep_schedule()
    times = firings(cron, timezone)
    cal = plan.calendar
    assert timezone == "Asia/Ho_Chi_Minh" and len(times) == 365
    assert {t.timetz().replace(tzinfo=None) for t in times} == {cal.office_open}
    swept = scheduled_sweeps(open_year, times)
    # the flow sweeps on working days: make-up Saturdays in, Tết and holidays out
    assert swept == sum(1 for t in times if cal.is_working_day(t.date()))

    expected = expected_rungs(open_year)
    late = lateness(open_year)
    assert late == {"never": [], "late": [], "superseded": [], "timers": []}
    # the year really was swept: 265 units' ladders, the closings of the three tiers
    assert len(expected) > 265 * 3
    moments = set(expected.values())
    assert all(m.astimezone(cal.tz).timetz().replace(tzinfo=None) == cal.office_open for m in moments)
    assert {m.astimezone(cal.tz).date() for m in moments} <= {t.date() for t in times if cal.is_working_day(t.date())}
    with open_year.db.connect() as conn:
        timers = conn.execute(select(store.timers.c.boundary_id, store.timers.c.fired_at)).all()
        statuses = set(conn.scalars(select(store.work_items.c.status).where(store.work_items.c.element_id.in_(
            ["department_self_evaluation", "commune_self_evaluation", "district_self_evaluation"]))))
    assert {b for b, _ in timers} == {"department_reports_closed", "commune_reports_closed",
                                      "district_reports_closed"}
    assert all(fired is not None for _, fired in timers)
    assert statuses == {"missing"}


def test_a_schedule_an_hour_before_office_opening_is_caught_a_day_late(open_year, plan):
    """The schedule issue 9 found (07:00 on weekdays): the same check sees every rung and
    closing handled a working day late, so the test above means something."""
    times = firings("0 7 * * 1-5", "Asia/Ho_Chi_Minh")
    scheduled_sweeps(open_year, times)
    late = lateness(open_year)
    assert len(late["late"]) == len(expected_rungs(open_year)) and not late["never"]
    for _key, fell, recorded in late["late"]:
        assert plan.calendar.count_working_days(fell, recorded) == 1
    assert late["timers"] and all(plan.calendar.count_working_days(at, fired) == 1
                                  for _b, at, fired in late["timers"])


@pytest.mark.usefixtures("prefect_harness")
def test_the_daily_flow_sweeps_again_what_its_own_closings_opened(plan, tmp_path, monkeypatch):
    """7/12/2022 08:00: the communes' reports close, each district's own self-evaluation opens
    (its -2wd reminder falls at that very moment). The flow must send it that morning, as
    the schedule test's replay does and ``simulate`` does — not supersede it the next day."""
    from planflow.clock import set_replay_clock
    from planflow.flows.operations import daily_deadline_sweep

    url = f"sqlite:///{tmp_path / 'planflow.db'}"
    for name, value in (("PLANFLOW_DEFINITION", str(plan.path)), ("PLANFLOW_DATABASE_URL", url),
                        ("PLANFLOW_OUTBOX_DIR", str(tmp_path / "outbox"))):
        monkeypatch.setenv(name, value)
    engine = Engine(plan, store.connect(url))
    key, tz = f"{plan.id}/{YEAR}", plan.calendar.tz
    closing = dt.datetime(YEAR, 12, 7, 8, tzinfo=tz)
    set_replay_clock(engine, key, dt.datetime(YEAR, 3, 15, 8, tzinfo=tz), actor="test", reason="schedule")
    drive(engine, dt.datetime(YEAR, 3, 15, 8, tzinfo=tz))
    while (due := engine.next_deadline_at()) is not None and due < closing:  # the mornings before, on time
        engine.sweep(due)
    set_replay_clock(engine, key, closing, actor="test", reason="schedule")
    state = asyncio.run(daily_deadline_sweep(return_state=True))
    assert state.is_completed(), state.message
    with engine.db.connect() as conn:
        reminded = conn.execute(select(store.chases.c.unit_code, store.chases.c.recorded_at).where(
            store.chases.c.element_id == "district_self_evaluation", store.chases.c.kind == "reminder")).all()
    store.dispose(url)
    assert len(reminded) == 12 and {at for _u, at in reminded} == {closing}
