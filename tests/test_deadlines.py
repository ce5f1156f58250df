"""Deadlines on the civil-service calendar: reminders, the escalation ladder, the sweep."""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter

import pytest
from sqlalchemy import func, select

from planflow import Engine, Submission, store
from planflow import escalation
from planflow.store import chases, outbox, work_items

TZ = dt.timezone(dt.timedelta(hours=7))
ISSUED = dt.datetime(2022, 3, 15, 8, tzinfo=TZ)


def _open_everything(engine: Engine) -> int:
    root = engine.start("deadlines-test", ISSUED)
    while True:
        engine.advance(ISSUED)
        steps = engine.ready_steps()
        if not steps:
            return root
        for step in steps:
            engine.run_step(step.token_ids, ISSUED)


@pytest.fixture
def engine(plan, db_url):
    eng = Engine(plan, store.connect(db_url))
    _open_everything(eng)
    return eng


def _count(engine, table, *where) -> int:
    with engine.db.connect() as conn:
        return conn.scalar(select(func.count()).select_from(table).where(*where))


def test_reminders_fall_on_working_days_and_skip_tet(plan):
    element = plan.definition.main.element("department_self_evaluation")
    due = dt.datetime(2022, 2, 8, 23, 59, 59, tzinfo=TZ)  # the Tuesday after Tết Nhâm Dần
    rungs = escalation.rungs(plan, element, due)
    reminders = [r.at for r in rungs if r.kind == "reminder"]
    # -5wd, -2wd, -1wd counted over working days: 29/1–6/2 are days off
    assert reminders == [dt.datetime(2022, 1, 25, 8, tzinfo=TZ), dt.datetime(2022, 1, 28, 8, tzinfo=TZ),
                         dt.datetime(2022, 2, 7, 8, tzinfo=TZ)]
    escalations = [(r.level, r.at) for r in rungs if r.kind == "escalation"]
    assert escalations == [(1, dt.datetime(2022, 2, 9, 8, tzinfo=TZ)), (2, dt.datetime(2022, 2, 11, 8, tzinfo=TZ)),
                           (3, dt.datetime(2022, 2, 15, 8, tzinfo=TZ))]
    assert all(plan.calendar.is_working_day(r.at.date()) for r in rungs)


def test_a_sweep_reads_only_what_is_due_and_records_it_once(engine):
    assert engine.next_deadline_at() == dt.datetime(2022, 11, 29, 8, tzinfo=TZ)  # communes' -3wd reminder
    first = engine.sweep(dt.datetime(2022, 11, 29, 8, tzinfo=TZ))
    assert {n.kind for n in first} == {"reminder"} and len(first) == 235
    assert engine.sweep(dt.datetime(2022, 11, 29, 8, tzinfo=TZ)) == []
    assert _count(engine, chases) == 235
    assert _count(engine, outbox, outbox.c.kind == "reminder") == 235


def test_a_late_submission_stops_the_ladder_and_is_marked_late(engine):
    monday = dt.datetime(2022, 12, 12, 8, tzinfo=TZ)
    engine.sweep(dt.datetime(2022, 12, 7, 8, tzinfo=TZ))  # communes close
    engine.advance(dt.datetime(2022, 12, 7, 8, tzinfo=TZ))
    engine.sweep(monday)
    late = dt.datetime(2022, 12, 12, 9, tzinfo=TZ)
    form = engine.plan.forms["self-evaluation"]
    scores = {c: i.max for c, i in form.items.items() if not i.auto_from_workflow}
    engine.submit([Submission("so-tu-phap", late, {"scores": scores})], late)
    engine.sweep(dt.datetime(2022, 12, 16, 8, tzinfo=TZ))
    with engine.db.connect() as conn:
        levels = conn.execute(select(chases.c.unit_code, func.max(chases.c.level))
                              .where(chases.c.kind == "escalation", chases.c.unit_code.in_(["so-tu-phap", "so-y-te"]))
                              .group_by(chases.c.unit_code)).all()
        item = conn.execute(select(work_items).where(work_items.c.unit_code == "so-tu-phap")).one()
    assert dict(levels) == {"so-tu-phap": 1, "so-y-te": 3}
    assert item.status == "submitted" and item.late is True and item.next_notice_at is None


def test_two_sweeps_racing_record_and_announce_each_escalation_once(engine, plan):
    as_of = dt.datetime(2022, 12, 12, 8, tzinfo=TZ)
    engines = [Engine(plan, engine.db), Engine(plan, engine.db)]
    barrier = threading.Barrier(2)
    results, errors = [], []

    def run(e):
        try:
            barrier.wait()
            results.append(e.sweep(as_of))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    recorded = [(n.unit, n.kind, n.level) for batch in results for n in batch]
    assert len(recorded) == len(set(recorded)) == _count(engine, chases)
    # every escalation of a sở at level 1 is in exactly one letter to Sở Nội vụ
    level1 = {u for u, k, lvl in recorded if k == "escalation" and lvl == 1 and not u.startswith("ubnd-")}
    assert "so-y-te" in level1
    with engine.db.connect() as conn:
        letters = conn.execute(select(outbox.c.context).where(
            outbox.c.kind == "escalation-1", outbox.c.recipient == "so-noi-vu",
            outbox.c.element_id == "department_self_evaluation")).scalars().all()
    listed = Counter(u["code"] for letter in letters for u in letter["units"])
    assert set(listed) == level1 and set(listed.values()) == {1}
    assert engine.sweep(as_of) == []
