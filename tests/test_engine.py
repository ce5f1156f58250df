"""The interpreter over the SQL store (planflow/interpreter.py), engine only, no Prefect.

Every test runs on SQLite and on PostgreSQL (the ``db_url`` fixture). Time is always the
``as_of`` passed in; nothing sleeps.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading

import pytest
from sqlalchemy import event, func, select

from planflow import Engine, Submission, SubmissionError
from planflow import store as s
from planflow.summary import build_summary

KEY = "hai-duong-dan-van-2022/2022"
TABLES = ("instances", "tokens", "work_items", "submissions", "timers", "reports", "outbox", "audit")


# --- helpers ---------------------------------------------------------------------------


def at(plan, *args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=plan.calendar.tz)


def local(plan, value: dt.datetime) -> str:
    return value.astimezone(plan.calendar.tz).isoformat()


@pytest.fixture
def engine(plan, db_url):
    return Engine(plan, s.connect(db_url))


def full_scores(plan) -> dict:
    form = plan.forms["self-evaluation"]
    return {code: item.max for code, item in form.items.items() if not item.auto_from_workflow}


def codes(plan, group: str) -> list[str]:
    return [u.code for u in plan.registry.group(group)]


def count(engine, table: str, *where) -> int:
    t = getattr(s, table)
    with engine.db.connect() as conn:
        return conn.scalar(select(func.count()).select_from(t).where(*where))


def snapshot(engine, tables=TABLES) -> dict:
    """What the store holds, row counts and token/work item states."""
    with engine.db.connect() as conn:
        snap = {t: conn.scalar(select(func.count()).select_from(getattr(s, t))) for t in tables}
        snap["token_states"] = sorted(conn.execute(
            select(s.tokens.c.element_id, s.tokens.c.status, func.count())
            .group_by(s.tokens.c.element_id, s.tokens.c.status)).all())
        snap["work_states"] = sorted(conn.execute(
            select(s.work_items.c.element_id, s.work_items.c.status, func.count())
            .group_by(s.work_items.c.element_id, s.work_items.c.status)).all())
    return snap


def drain(engine, as_of) -> None:
    """Advance and run every ready step until none is left, as the flows would."""
    engine.advance(as_of)
    while steps := engine.ready_steps():
        for step in steps:
            engine.run_step(step.token_ids, as_of)
        engine.advance(as_of)


def opened(engine, plan) -> int:
    """Start the plan on 15/3/2022 08:00 and run it until every unit has its task."""
    as_of = at(plan, 2022, 3, 15, 8)
    iid = engine.start(KEY, as_of)
    drain(engine, as_of)
    return iid


def work_item(engine, unit: str, element: str | None = None):
    q = select(s.work_items).where(s.work_items.c.unit_code == unit)
    if element:
        q = q.where(s.work_items.c.element_id == element)
    with engine.db.connect() as conn:
        return conn.execute(q.order_by(s.work_items.c.id.desc())).first()


# --- starting and opening the tasks ----------------------------------------------------


def test_start_disseminates_and_opens_every_units_task(engine, plan):
    as_of = at(plan, 2022, 3, 15, 8)
    iid = engine.start(KEY, as_of)
    engine.advance(as_of)

    steps = engine.ready_steps()
    assert [(st.element_id, st.stage, len(st.token_ids)) for st in steps] == [("disseminate", "dissemination", 1)]
    assert engine.run_step(steps[0].token_ids, as_of) == 1

    with engine.db.connect() as conn:
        rows = conn.execute(select(s.outbox.c.recipient, s.outbox.c.kind, s.outbox.c.status)
                            .where(s.outbox.c.element_id == "disseminate")).all()
    assert len(rows) == 40
    assert {r.recipient for r in rows} == set(codes(plan, "recipients"))
    assert {(r.kind, r.status) for r in rows} == {("dissemination", "pending")}

    drain(engine, as_of)

    # 18 sở, ban, ngành have their self-evaluation, due at the end of Friday 9/12
    dept = [w for w in engine.open_work(iid) if w.element_id == "department_self_evaluation"]
    assert sorted(w.unit_code for w in dept) == sorted(codes(plan, "departments"))
    assert {local(plan, w.due_at) for w in dept} == {"2022-12-09T23:59:59+07:00"}
    assert {local(plan, w.opened_at) for w in dept} == {"2022-03-15T08:00:00+07:00"}

    # 12 district sub-processes, one per UBND cấp huyện
    with engine.db.connect() as conn:
        subs = conn.execute(select(s.instances.c.scope_unit, s.instances.c.status)
                            .where(s.instances.c.parent_id == iid)).all()
    assert sorted(r.scope_unit for r in subs) == sorted(codes(plan, "districts"))
    assert {r.status for r in subs} == {"running"}

    # 235 communes report to their district 5 working days earlier: Friday 2/12
    communes = [w for w in engine.open_work(iid) if w.element_id == "commune_self_evaluation"]
    assert len(communes) == 235
    assert sorted(w.unit_code for w in communes) == sorted(codes(plan, "communes"))
    assert {local(plan, w.due_at) for w in communes} == {"2022-12-02T23:59:59+07:00"}
    # ... each district directed its own communes: 235 more dissemination messages
    assert count(engine, "outbox", s.outbox.c.element_id == "direct_communes") == 235
    assert engine.ready_steps() == []


def test_start_again_with_the_same_key_returns_the_same_instance(engine, plan):
    as_of = at(plan, 2022, 3, 15, 8)
    iid = opened(engine, plan)
    before = snapshot(engine, tuple(t for t in TABLES if t != "audit"))
    assert engine.start(KEY, as_of) == iid
    assert engine.start(KEY, at(plan, 2022, 3, 16, 8)) == iid
    engine.advance(as_of)
    assert snapshot(engine, tuple(t for t in TABLES if t != "audit")) == before
    assert engine.instance_id(KEY) == iid


def test_start_again_writes_no_second_audit_row(engine, plan):
    as_of = at(plan, 2022, 3, 15, 8)
    engine.start(KEY, as_of)
    engine.start(KEY, as_of)
    assert count(engine, "audit", s.audit.c.action == "instance.started") == 1


def test_advance_twice_changes_nothing(engine, plan):
    opened(engine, plan)
    before = snapshot(engine)
    assert engine.advance(at(plan, 2022, 3, 15, 8)) == 0
    assert engine.advance(at(plan, 2022, 3, 20, 8)) == 0
    assert snapshot(engine) == before


def test_run_step_on_completed_tokens_does_nothing(engine, plan):
    as_of = at(plan, 2022, 3, 15, 8)
    engine.start(KEY, as_of)
    engine.advance(as_of)
    step = engine.ready_steps()[0]
    assert engine.run_step(step.token_ids, as_of) == 1
    before = snapshot(engine)
    assert engine.run_step(step.token_ids, as_of) == 0
    assert engine.run_step(step.token_ids, at(plan, 2022, 3, 16, 8)) == 0
    assert snapshot(engine) == before
    assert count(engine, "outbox") == 40


def test_every_instance_of_a_tree_finds_its_root(engine, plan):
    iid = opened(engine, plan)
    with engine.db.connect() as conn:
        tree = s.tree_ids(conn, iid)
        assert len(tree) == 1 + 12
        assert {s.root_of(conn, i) for i in tree} == {iid}


def test_an_sqlite_without_update_returning_is_refused_with_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(s.sqlite3, "sqlite_version_info", (3, 34, 1))
    monkeypatch.setattr(s.sqlite3, "sqlite_version", "3.34.1")
    with pytest.raises(s.StoreError, match=r"SQLite 3\.34\.1 is too old.*3\.35 or newer"):
        s.connect(f"sqlite:///{tmp_path / 'old.db'}")


# --- submissions -----------------------------------------------------------------------


def test_the_same_batch_twice_is_recorded_once(engine, plan):
    opened(engine, plan)
    when = at(plan, 2022, 12, 5, 10)
    batch = [Submission(code, when, {"scores": full_scores(plan)}) for code in codes(plan, "departments")[:3]]
    assert engine.submit(batch, when) == 3
    before = snapshot(engine)
    assert engine.submit(batch, at(plan, 2022, 12, 5, 11)) == 0
    assert snapshot(engine) == before
    assert count(engine, "submissions") == 3
    assert count(engine, "audit", s.audit.c.action == "task.submitted") == 3


def test_the_first_submission_of_a_unit_in_a_batch_wins(engine, plan):
    opened(engine, plan)
    when = at(plan, 2022, 12, 5, 10)
    second = {**full_scores(plan), "g1.1": 0}
    batch = [Submission("so-noi-vu", when, {"scores": full_scores(plan)}),
             Submission("so-noi-vu", at(plan, 2022, 12, 5, 11), {"scores": second})]
    assert engine.submit(batch, when) == 1
    with engine.db.connect() as conn:
        rows = conn.execute(select(s.submissions.c.unit_code, s.submissions.c.payload)).all()
    assert rows == [("so-noi-vu", {"scores": full_scores(plan)})]
    assert local(plan, work_item(engine, "so-noi-vu").submitted_at) == "2022-12-05T10:00:00+07:00"
    assert count(engine, "audit", s.audit.c.action == "task.submitted") == 1


def test_a_refused_batch_names_every_unit_at_fault_and_writes_nothing(engine, plan):
    opened(engine, plan)
    when = at(plan, 2022, 12, 5, 10)
    bad_scores = {**full_scores(plan), "g1.1": 6}  # g1.1 is out of 5
    batch = [
        Submission("so-noi-vu", when, {"scores": full_scores(plan)}),  # fine on its own
        Submission("so-khong-ton-tai", when, {"scores": full_scores(plan)}),
        Submission("so-tu-phap", when, {"scores": bad_scores}),
    ]
    before = snapshot(engine)
    with pytest.raises(SubmissionError) as info:
        engine.submit(batch, when)
    text = str(info.value)
    assert "so-khong-ton-tai" in text
    assert "so-tu-phap" in text and "g1.1" in text
    assert "so-noi-vu" not in text
    assert len(info.value.problems) == 2
    assert snapshot(engine) == before
    assert count(engine, "submissions") == 0
    assert work_item(engine, "so-noi-vu").status == "open"


def test_a_submission_after_the_close_timer_fired_is_refused(engine, plan):
    iid = opened(engine, plan)
    # the department task closes 5 working days after its due, at 08:00: Friday 16/12
    just_before = at(plan, 2022, 12, 16, 7, 59, 59)
    boundary = at(plan, 2022, 12, 16, 8, 0)
    engine.fire_timers(just_before)  # the communes' close timers (7/12) fire, not this one
    assert work_item(engine, "so-xay-dung").status == "open"
    assert engine.submit([Submission("so-xay-dung", just_before, {"scores": full_scores(plan)})], just_before) == 1

    assert engine.fire_timers(boundary) == 1
    assert engine.fire_timers(boundary) == 0  # fires once
    item = work_item(engine, "so-tu-phap", "department_self_evaluation")
    assert item.status == "missing"
    before = snapshot(engine)
    with pytest.raises(SubmissionError) as info:
        engine.submit([Submission("so-tu-phap", at(plan, 2022, 12, 16, 9), {"scores": full_scores(plan)})],
                      at(plan, 2022, 12, 16, 9))
    assert "so-tu-phap" in str(info.value) and "after close" in str(info.value)
    assert snapshot(engine) == before

    summary = build_summary(engine, iid)
    assert summary["units"]["so-tu-phap"]["status"] == "missing"
    assert summary["units"]["so-tu-phap"]["classification"] == plan.forms["self-evaluation"].not_classifiable
    assert summary["units"]["so-xay-dung"]["status"] == "late"


def test_the_last_second_is_on_time_and_the_next_is_late(engine, plan):
    iid = opened(engine, plan)
    last_second = dt.datetime.fromisoformat("2022-12-09T23:59:59+07:00")
    with_fraction = dt.datetime.fromisoformat("2022-12-09T23:59:59.900000+07:00")
    one_past = dt.datetime.fromisoformat("2022-12-10T00:00:01+07:00")
    scores = full_scores(plan)
    engine.submit([Submission("so-khoa-hoc-va-cong-nghe", last_second, {"scores": scores}),
                   Submission("so-tu-phap", with_fraction, {"scores": scores}),
                   Submission("ban-quan-ly-cac-kcn", one_past, {"scores": scores})],
                  at(plan, 2022, 12, 10, 8))

    assert work_item(engine, "so-khoa-hoc-va-cong-nghe").late is False
    assert work_item(engine, "so-tu-phap").late is False  # receipt time counts to the second
    assert work_item(engine, "ban-quan-ly-cac-kcn").late is True

    units = build_summary(engine, iid)["units"]
    assert units["so-khoa-hoc-va-cong-nghe"]["status"] == "on_time"
    assert units["so-khoa-hoc-va-cong-nghe"]["submitted_at"] == "2022-12-09T23:59:59+07:00"
    assert units["ban-quan-ly-cac-kcn"]["status"] == "late"
    # the on-time criterion (g7.1, 5 points) is the workflow's: a late report loses it
    assert units["so-khoa-hoc-va-cong-nghe"]["score"] == 100
    assert units["ban-quan-ly-cac-kcn"]["score"] == 95
    assert units["so-noi-vu"]["status"] == "open"


# --- a whole cycle ---------------------------------------------------------------------


def test_a_full_cycle_with_one_returned_review(engine, plan):
    iid = opened(engine, plan)
    scores = {"scores": full_scores(plan)}

    communes_at = at(plan, 2022, 11, 30, 10)
    assert engine.submit([Submission(c, communes_at, scores) for c in codes(plan, "communes")], communes_at) == 235
    drain(engine, communes_at)
    # each district aggregated its communes, and now has its own task
    district_items = [w for w in engine.open_work(iid) if w.element_id == "district_self_evaluation"]
    assert sorted(w.unit_code for w in district_items) == sorted(codes(plan, "districts"))

    units_at = at(plan, 2022, 12, 5, 10)
    batch = [Submission(c, units_at, scores) for c in codes(plan, "departments") + codes(plan, "districts")]
    assert engine.submit(batch, units_at) == 30
    drain(engine, units_at)
    assert [(w.unit_code, w.element_id) for w in engine.open_work(iid)] == [("ban-dan-van-tinh-uy", "review")]

    returned = at(plan, 2022, 12, 20, 9)
    engine.submit([Submission("ban-dan-van-tinh-uy", returned,
                              {"decision": "return", "comment": "Bổ sung số liệu cấp xã"})], returned)
    drain(engine, returned)
    assert engine.instance(iid).status == "running"
    # the returned report waits for Sở Nội vụ's staff, who complete it days later
    assert [(w.unit_code, w.element_id) for w in engine.open_work(iid)] == [("so-noi-vu", "revise")]
    revised = at(plan, 2022, 12, 22, 15)
    engine.submit([Submission("so-noi-vu", revised, {"note": "Đã bổ sung số liệu cấp xã"})], revised)
    drain(engine, revised)
    assert [(w.unit_code, w.element_id) for w in engine.open_work(iid)] == [("ban-dan-van-tinh-uy", "review")]

    approved = at(plan, 2022, 12, 27, 9)
    engine.submit([Submission("ban-dan-van-tinh-uy", approved, {"decision": "approve", "comment": None})], approved)
    drain(engine, approved)

    assert engine.ready_steps() == []
    assert engine.open_work(iid) == []
    summary = build_summary(engine, iid)
    assert summary["status"] == "completed"
    assert summary["ended_at"] == "2022-12-27T09:00:00+07:00"
    assert summary["review_rounds"] == 2
    assert len(summary["units"]) == 18 + 12 + 235
    assert {u["status"] for u in summary["units"].values()} == {"on_time"}
    assert all(at_ is not None for at_ in summary["stages"].values()), summary["stages"]
    with engine.db.connect() as conn:
        statuses = set(conn.scalars(select(s.instances.c.status)))
        reports = conn.execute(select(s.reports.c.element_id, s.reports.c.data, s.reports.c.markdown)
                               .where(s.reports.c.instance_id == iid).order_by(s.reports.c.id)).all()
    assert statuses == {"completed"}
    assert [(r.element_id, r.data["round"]) for r in reports] == [("aggregate", 1), ("reaggregate", 2)]
    with engine.db.connect() as conn:
        made = conn.scalars(select(s.reports.c.created_at).where(s.reports.c.instance_id == iid)
                            .order_by(s.reports.c.id)).all()
    assert made[1] == revised  # "Báo cáo lần 2" is dated when the revision was done, not at the return
    assert reports[1].data["total"]["counts"]["on_time"] == 265
    assert "Bổ sung số liệu cấp xã" in reports[1].markdown  # the reviewer's comment is answered
    # the results were published to every recipient
    assert count(engine, "outbox", s.outbox.c.element_id == "publish") == 40


# --- two workers at once ---------------------------------------------------------------


def _both_at_once(fn) -> list:
    """Call fn in two threads released together; return both results."""
    gate = threading.Barrier(2, timeout=30)
    results, errors = [], []

    def worker():
        gate.wait()
        try:
            results.append(fn())
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a worker hung"
    assert not errors, errors
    return results


@contextlib.contextmanager
def _held_after_reading(engine, *fragments):
    """Hold each of two workers right after a SELECT containing ``fragments`` until both ran it.

    On SQLite the second worker waits at BEGIN IMMEDIATE instead, and the hold times out.
    """
    both_read = threading.Barrier(2, timeout=3)

    def after_execute(conn, cursor, statement, params, context, executemany):
        if statement.lstrip().startswith("SELECT") and all(f in statement for f in fragments):
            try:
                both_read.wait()
            except threading.BrokenBarrierError:
                pass

    event.listen(engine.db, "after_cursor_execute", after_execute)
    try:
        yield
    finally:
        event.remove(engine.db, "after_cursor_execute", after_execute)


def test_two_workers_at_once_write_what_one_would(engine, plan, tmp_path):
    as_of = at(plan, 2022, 3, 15, 8)
    # the reference: one worker, on a store of its own
    reference = Engine(plan, s.connect(f"sqlite:///{tmp_path / 'reference.db'}"))
    opened(reference, plan)

    ids = _both_at_once(lambda: engine.start(KEY, as_of))
    assert ids[0] == ids[1]
    _both_at_once(lambda: engine.advance(as_of))
    while steps := engine.ready_steps():
        for step in steps:
            done = _both_at_once(lambda: engine.run_step(step.token_ids, as_of))
            assert sum(done) == len(step.token_ids)  # each token completed by exactly one worker
        _both_at_once(lambda: engine.advance(as_of))

    tables = tuple(t for t in TABLES if t != "audit")
    assert snapshot(engine, tables) == snapshot(reference, tables)
    assert count(engine, "outbox") == 40 + 235
    assert count(engine, "instances") == 1 + 12

    # the same batch submitted by two workers at once is recorded once
    when = at(plan, 2022, 12, 5, 10)
    batch = [Submission(c, when, {"scores": full_scores(plan)}) for c in codes(plan, "departments")]
    _both_at_once(lambda: engine.submit(batch, when))
    assert count(engine, "submissions") == 18
    assert count(engine, "work_items", s.work_items.c.status == "submitted") == 18


# PostgreSQL only: SQLite serialises writers with BEGIN IMMEDIATE, the interleaving cannot happen
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_workers_in_the_same_step_run_its_handler_once(engine, plan, db_url):
    as_of = at(plan, 2022, 3, 15, 8)
    engine.start(KEY, as_of)
    engine.advance(as_of)
    engine.run_step(engine.ready_steps()[0].token_ids, as_of)
    engine.advance(as_of)
    step = next(st for st in engine.ready_steps() if st.element_id == "guide_and_monitor")

    # Hold each worker right after it read the token, until both have read it: the
    # interleaving two Prefect workers (or a retry racing a re-run) can produce.
    with _held_after_reading(engine, "FROM tokens", "WHERE tokens.id ="):
        done = _both_at_once(lambda: engine.run_step(step.token_ids, as_of))
    assert sorted(done) == [0, 1]
    assert count(engine, "audit", s.audit.c.action == "step.recorded",
                 s.audit.c.element_id == "guide_and_monitor") == 1


# PostgreSQL only: SQLite serialises writers with BEGIN IMMEDIATE, the interleaving cannot happen
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_the_same_review_decision_from_two_workers_counts_once(engine, plan, db_url):
    iid = opened(engine, plan)
    scores = {"scores": full_scores(plan)}
    when = at(plan, 2022, 11, 30, 10)
    engine.submit([Submission(c, when, scores) for c in codes(plan, "communes")], when)
    drain(engine, when)
    when = at(plan, 2022, 12, 5, 10)
    engine.submit([Submission(c, when, scores) for c in codes(plan, "departments") + codes(plan, "districts")], when)
    drain(engine, when)
    decided = at(plan, 2022, 12, 20, 9)
    decision = [Submission("ban-dan-van-tinh-uy", decided, {"decision": "return", "comment": "Bổ sung"})]

    with _held_after_reading(engine, "FROM work_items", "unit_code IN"):
        done = _both_at_once(lambda: engine.submit(decision, decided))

    assert count(engine, "submissions", s.submissions.c.unit_code == "ban-dan-van-tinh-uy") == 1
    assert engine.instance(iid).variables["review"]["round"] == 1
    assert sorted(done) == [0, 1]
