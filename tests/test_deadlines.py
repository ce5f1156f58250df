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


LATE = dt.datetime(2022, 12, 16, 9, tzinfo=TZ)  # the first sweep of the year, after every rung fell


def test_a_late_first_sweep_sends_only_the_highest_rung_due_and_audits_the_rest(engine, plan):
    """A sweep that finds all of a unit's rungs past due (the first sweep after an outage, a
    replay started late) sends the highest one only — not three levels of letters to each
    commune at once — and writes the others to the audit as superseded."""
    chased = engine.sweep(LATE)
    assert len(chased) == 18 + 235  # one rung per open self-evaluation, no more
    assert {(c.kind, c.level) for c in chased} == {("escalation", 3)}
    ladders = {"department_self_evaluation": {("reminder", 1), ("reminder", 2), ("reminder", 3),
                                              ("escalation", 1), ("escalation", 2)},
               "commune_self_evaluation": {("reminder", 1), ("reminder", 2), ("escalation", 1),
                                           ("escalation", 2)}}
    assert all(set(c.superseded) == ladders[c.element] for c in chased)
    with engine.db.connect() as conn:
        rows = conn.execute(select(chases.c.unit_code, chases.c.kind, chases.c.level, chases.c.due_at,
                                   chases.c.recorded_at)).all()
        audited = conn.execute(select(store.audit.c.unit_code, store.audit.c.element_id, store.audit.c.detail)
                               .where(store.audit.c.action == "unit.superseded")).all()
        letters = conn.execute(select(outbox.c.kind, outbox.c.recipient, outbox.c.unit_code, outbox.c.context)
                               .where(outbox.c.kind != "dissemination")).all()
    # the record says what fell when and that it was recorded late
    assert len(rows) == len(chased) and all(r.recorded_at == LATE > r.due_at for r in rows)
    per_unit = Counter(a.unit_code for a in audited)
    assert len(audited) == 18 * 5 + 235 * 4 and set(per_unit.values()) == {4, 5}
    sample = next(a.detail for a in audited if a.unit_code == "so-y-te" and a.detail["level"] == 1
                  and a.detail["kind"] == "escalation")
    assert sample == {"kind": "escalation", "level": 1, "due_at": "2022-12-12T08:00:00+07:00",
                      "by": {"kind": "escalation", "level": 3}}
    # only escalation-final letters: to the higher bodies of level 3, listing each unit once
    assert {k for k, _r, _u, _c in letters} == {"escalation-final"}
    listed = Counter((r, u["code"]) for _k, r, _u, c in letters for u in c["units"])
    assert set(listed.values()) == {1}
    assert {code for _r, code in listed} == {c.unit for c in chased}
    # to Sở Nội vụ and the PCT about the sở; the same two about Sở Nội vụ itself, signed by UBND tỉnh;
    # one to each district about its communes; one to Sở Nội vụ from each district
    assert len(letters) == 2 + 2 + 12 + 12
    # said once: a second sweep at the same moment, or the next day, adds nothing
    assert engine.sweep(LATE) == []
    assert _count(engine, store.audit, store.audit.c.action == "unit.superseded") == len(audited)


def test_a_sweep_at_each_rungs_moment_supersedes_nothing(engine):
    """The schedule's case: every rung swept on its own moment is sent, none superseded."""
    moments = []
    while (nxt := engine.next_deadline_at()) is not None and nxt < LATE:
        moments.append(nxt)
        engine.sweep(nxt)
    assert len(moments) > 5
    with engine.db.connect() as conn:
        levels = Counter(conn.execute(select(chases.c.kind, chases.c.level)).all())
    assert _count(engine, store.audit, store.audit.c.action == "unit.superseded") == 0
    assert levels[("escalation", 3)] == 18 + 235 and levels[("escalation", 1)] == 18 + 235


def test_a_reminder_due_with_an_escalation_gives_way_to_it(plan):
    """Rungs of the same moment: the escalation is the higher, so it is the one sent."""
    from types import SimpleNamespace

    from planflow.model import Escalation

    element = SimpleNamespace(id="tie-test", reminders=["+1wd", "-1wd"],
                              escalations=[Escalation(after="+1wd", to=["unit.head"], template="escalation-1")])
    due = dt.datetime(2022, 12, 9, 23, 59, 59, tzinfo=TZ)
    ladder = escalation.rungs(plan, element, due)
    due_now, step = escalation.due_now(ladder, 0, dt.datetime(2022, 12, 12, 8, tzinfo=TZ))
    assert step == len(ladder) == 3
    assert [(r.kind, r.level) for r in due_now] == [("reminder", 1), ("reminder", 2), ("escalation", 1)]
    assert due_now[-1].kind == "escalation" and due_now[-1].at == due_now[-2].at
