"""Every fact carries the moment it belongs to, whichever process writes it and whenever.

Engine only (no Prefect), on SQLite and PostgreSQL. A replayed year (``run_year``) is
crashed at random statements, mid-transaction, and started again; two drivers run the same
year at once; a late driver or sweep acts on tokens and timers of earlier moments. Each
writes the moments an uninterrupted run writes, and nothing is completed before it was
created.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import threading

import pytest
from sqlalchemy import event, func, select

from planflow import Engine, Submission, load_scenario
from planflow import store as s
from planflow.simulation import EngineActions, first_start, run_year
from planflow.summary import build_summary
from tests.conftest import SCENARIO

KEY = "hai-duong-dan-van-2022/2022/moments"


class Crash(RuntimeError):
    """A process dying in the middle of a statement (its transaction rolls back)."""


class DrainingActions(EngineActions):
    """The engine-only actions, moving the instance on right after each batch of submissions."""

    async def record(self, stage, batch, clock) -> None:
        await super().record(stage, batch, clock)
        self.drain(clock)


def year(plan, url: str) -> dict:
    """Run (or carry on) the replayed year on ``url``; return its summary."""
    engine = Engine(plan, s.connect(url))
    clock = first_start(plan)
    root = engine.start(KEY, clock, replay=True)
    asyncio.run(run_year(engine, load_scenario(SCENARIO, plan), root, clock, DrainingActions(engine, root)))
    return build_summary(engine, root)


def record(db) -> dict:
    """What the store says happened and when, without row ids (a crashed transaction may
    have used some): per table, the sorted list of rows named by instance key."""
    with db.connect() as conn:
        key_of = dict(conn.execute(select(s.instances.c.id, s.instances.c.key)).all())
        element_of = dict(conn.execute(select(s.tokens.c.id, s.tokens.c.element_id)).all())
        out = {
            "instances": [(r.key, r.status, r.started_at, r.ended_at) for r in conn.execute(select(s.instances))],
            "tokens": [(key_of[r.instance_id], r.element_id, r.status, r.created_at, r.completed_at, r.due_at)
                       for r in conn.execute(select(s.tokens))],
            "work_items": [(key_of[r.instance_id], r.element_id, r.unit_code, r.status, r.opened_at, r.due_at,
                            r.submitted_at, r.late, r.ladder_step, r.next_notice_at)
                           for r in conn.execute(select(s.work_items))],
            "submissions": [(r.unit_code, r.submitted_at, r.recorded_at, r.total)
                            for r in conn.execute(select(s.submissions))],
            "chases": [(key_of[r.instance_id], r.element_id, r.unit_code, r.kind, r.level, r.due_at, r.recorded_at)
                       for r in conn.execute(select(s.chases))],
            "timers": [(element_of[r.token_id], r.boundary_id, r.fire_at, r.fired_at, r.cancelled)
                       for r in conn.execute(select(s.timers))],
            "reports": [(key_of[r.instance_id], r.element_id, r.created_at) for r in conn.execute(select(s.reports))],
            "outbox": [(key_of[r.instance_id], r.element_id, r.recipient, r.kind, r.level, r.created_at)
                       for r in conn.execute(select(s.outbox))],
            "audit": [(key_of.get(r.instance_id), r.at, r.actor, r.action, r.element_id, r.unit_code)
                      for r in conn.execute(select(s.audit))],
        }
    return {table: sorted(rows, key=repr) for table, rows in out.items()}


def completed_before_created(db) -> list:
    """Tokens completed, work items answered, timers fired, instances ended before they began."""
    t, w, sub, tm, i = s.tokens, s.work_items, s.submissions, s.timers, s.instances
    with db.connect() as conn:
        return [
            *conn.execute(select(t.c.id, t.c.element_id, t.c.created_at, t.c.completed_at)
                          .where(t.c.completed_at < t.c.created_at)).all(),
            *conn.execute(select(w.c.id, w.c.unit_code, w.c.opened_at, sub.c.recorded_at)
                          .join(sub, sub.c.work_item_id == w.c.id).where(sub.c.recorded_at < w.c.opened_at)).all(),
            *conn.execute(select(tm.c.id, tm.c.boundary_id, t.c.created_at, tm.c.fired_at)
                          .join(t, t.c.id == tm.c.token_id).where(tm.c.fired_at < t.c.created_at)).all(),
            *conn.execute(select(i.c.id, i.c.key, i.c.started_at, i.c.ended_at)
                          .where(i.c.ended_at < i.c.started_at)).all(),
        ]


def crashing_at(db, nth: int):
    """Make the ``nth`` statement from now on fail, as a process killed there would."""
    seen = [0]

    def maybe_crash(*_args):
        seen[0] += 1
        if seen[0] == nth:
            raise Crash(f"killed at statement {nth}")

    event.listen(db, "before_cursor_execute", maybe_crash)
    return lambda: event.remove(db, "before_cursor_execute", maybe_crash)


@pytest.fixture(scope="module")
def uninterrupted(plan, tmp_path_factory):
    """The year run once, without a stop, on a SQLite store of its own; with its statement count."""
    url = f"sqlite:///{tmp_path_factory.mktemp('uninterrupted') / 'year.db'}"
    db = s.connect(url)
    n = [0]

    def counted(*_args):
        n[0] += 1

    event.listen(db, "before_cursor_execute", counted)
    try:
        summary = year(plan, url)
    finally:
        event.remove(db, "before_cursor_execute", counted)
    yield summary, record(db), n[0]
    s.dispose(url)


def test_a_year_crashed_at_random_statements_resumes_to_the_same_record(plan, db_url, uninterrupted):
    summary, facts, total = uninterrupted
    db = s.connect(db_url)
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    # three crashes at random statements of the year (counted on SQLite; on PostgreSQL a
    # year runs about as many), each run carried on by the next
    points = sorted(rng.sample(range(20, total * 4 // 5), 3))
    crashed = 0
    for nth in points:
        stop = crashing_at(db, nth - crashed)
        try:
            year(plan, db_url)
        except Crash:
            crashed = nth
        else:
            break  # the resumed run did less than it was given to do: it ended first
        finally:
            stop()
        assert completed_before_created(db) == [], f"seed {seed}, crash at statement {nth}"
    assert crashed, f"seed {seed}: no run was crashed"
    assert year(plan, db_url) == summary, f"seed {seed}, crashes at {points}"
    assert record(db) == facts, f"seed {seed}, crashes at {points}"
    assert completed_before_created(db) == []


def test_two_drivers_of_one_year_at_once_write_what_one_writes(plan, db_url, uninterrupted):
    summary, facts, _ = uninterrupted
    results, errors = [], []
    barrier = threading.Barrier(2)

    def driver():
        try:
            barrier.wait()
            results.append(year(plan, db_url))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=driver) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert results == [summary, summary]
    assert record(s.connect(db_url)) == facts
    assert completed_before_created(s.connect(db_url)) == []


# --- each transition stamped with its own moment ---------------------------------------


@pytest.fixture
def engine(plan, db_url):
    return Engine(plan, s.connect(db_url))


def at(plan, *args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=plan.calendar.tz)


def drain(engine, root, as_of) -> None:
    EngineActions(engine, root).drain(as_of)


def full_scores(plan) -> dict:
    form = plan.forms["self-evaluation"]
    return {code: item.max for code, item in form.items.items() if not item.auto_from_workflow}


def district_tokens(engine, district: str) -> dict:
    """element -> (created_at, completed_at) of a district's sub-process tokens."""
    with engine.db.connect() as conn:
        iid = conn.scalar(select(s.instances.c.id).where(s.instances.c.scope_unit == district))
        rows = conn.execute(select(s.tokens.c.element_id, s.tokens.c.created_at, s.tokens.c.completed_at)
                            .where(s.tokens.c.instance_id == iid)).all()
    return {r.element_id: (r.created_at, r.completed_at) for r in rows}


def test_a_driver_behind_the_clock_stamps_the_moment_of_the_submission(engine, plan):
    """A resumed run drove with the clock of the moment before: the steps a submission made
    ready complete at the submission's moment, and the next task opens then."""
    issued = at(plan, 2022, 3, 15, 8)
    root = engine.start(KEY, issued, replay=True)
    drain(engine, root, issued)
    district = "ubnd-huyen-thanh-ha"
    communes = [u.code for u in plan.registry.group("communes") if u.parent == district]
    when = at(plan, 2022, 11, 30, 10)
    engine.submit([Submission(c, when, {"scores": full_scores(plan)}) for c in communes], when)
    drain(engine, root, issued)  # the stale clock: 15/3

    tokens = district_tokens(engine, district)
    assert tokens["commune_self_evaluation"][1] == when
    assert tokens["aggregate_communes"] == (when, when)
    assert tokens["district_self_evaluation"] == (when, None)
    item = next(w for w in engine.open_work(root) if w.unit_code == district)
    assert item.opened_at == when


def test_a_late_sweep_closes_a_replayed_task_at_its_timer(engine, plan):
    issued = at(plan, 2022, 3, 15, 8)
    root = engine.start(KEY, issued, replay=True)
    drain(engine, root, issued)
    late = at(plan, 2022, 12, 20, 15)  # days after the communes' close (Wed 7/12 08:00)
    engine.fire_timers(late, root_id=root)
    drain(engine, root, late)

    closed = at(plan, 2022, 12, 7, 8)
    tokens = district_tokens(engine, "ubnd-huyen-thanh-ha")
    assert tokens["commune_self_evaluation"][1] == closed
    assert tokens["aggregate_communes"] == (closed, closed)
    with engine.db.connect() as conn:
        fired = set(conn.scalars(select(s.timers.c.fired_at).where(s.timers.c.fired_at.is_not(None))))
        closings = set(conn.scalars(select(s.audit.c.at).where(s.audit.c.action == "task.closed")))
    # the communes' tasks closed on 7/12, the departments' on 16/12: each at its own moment
    assert fired == closings == {closed, at(plan, 2022, 12, 16, 8)}


def test_a_live_instance_completes_its_steps_on_the_callers_clock(engine, plan):
    issued = at(plan, 2022, 3, 15, 8)
    engine.start(KEY, issued)  # live: not a replay
    engine.advance(issued)
    later = at(plan, 2022, 3, 15, 8, 5)
    step = engine.ready_steps()[0]
    assert engine.run_step(step.token_ids, later) == 1
    with engine.db.connect() as conn:
        done = conn.execute(select(s.tokens.c.created_at, s.tokens.c.completed_at)
                            .where(s.tokens.c.id == step.token_ids[0])).one()
        queued = set(conn.scalars(select(s.outbox.c.created_at).where(s.outbox.c.element_id == step.element_id)))
    assert (done.created_at, done.completed_at) == (issued, later)
    assert queued == {later}


def test_a_join_completes_when_its_last_token_arrived(engine, plan):
    """Driven late, the plan's join is done when its last branch (the districts, closed by
    their timers on 16/12) arrived, not at the driver's clock."""
    issued = at(plan, 2022, 3, 15, 8)
    root = engine.start(KEY, issued, replay=True)
    drain(engine, root, issued)
    # departments answer on 5/12; districts' tasks close by timer on 16/12
    when = at(plan, 2022, 12, 5, 10)
    departments = [u.code for u in plan.registry.group("departments")]
    engine.submit([Submission(c, when, {"scores": full_scores(plan)}) for c in departments], when, root_id=root)
    late = at(plan, 2022, 12, 30, 8)
    engine.fire_timers(late, root_id=root)
    drain(engine, root, late)
    engine.fire_timers(late, root_id=root)
    drain(engine, root, late)
    with engine.db.connect() as conn:
        join = conn.execute(select(func.max(s.tokens.c.completed_at), func.min(s.tokens.c.completed_at))
                            .where(s.tokens.c.instance_id == root, s.tokens.c.element_id == "join")).one()
        aggregate = conn.scalar(select(s.tokens.c.created_at).where(s.tokens.c.instance_id == root,
                                                                      s.tokens.c.element_id == "aggregate"))
    assert join[0] == join[1] == aggregate == at(plan, 2022, 12, 16, 8)  # the districts' close
    assert completed_before_created(engine.db) == []
