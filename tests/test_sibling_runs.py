"""Sibling tokens interpreted together (planflow/sibling_arrivals.py): a run of tokens on one
element — the twelve districts' sub-processes starting, opening their communes' tasks,
ending — is one transaction, and writes what one transaction per token writes.

Every test runs on SQLite and on PostgreSQL; the reference runs token by token on SQLite.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from planflow import Engine, Submission, sibling_arrivals, units
from planflow import store as s

from test_engine import KEY, TABLES, at, codes, drain, full_scores, opened


@pytest.fixture
def engine(plan, db_url):
    return Engine(plan, s.connect(db_url))


def rows(engine) -> dict[str, list[tuple]]:
    """Every row of every table, in the order written (ids included)."""
    with engine.db.connect() as conn:
        return {t: [tuple(r) for r in conn.execute(select(getattr(s, t)).order_by(getattr(s, t).c.id))]
                for t in TABLES}


def without_communes(monkeypatch, district: str) -> None:
    """``district`` has no commune valid on the day: its communes' task passes through."""
    real = units.in_collection

    def in_collection(plan, collection, scope_unit, as_of):
        return [] if scope_unit == district and "communes" in collection else real(plan, collection, scope_unit, as_of)

    monkeypatch.setattr(units, "in_collection", in_collection)


def a_year(engine, plan, skipped: str) -> None:
    """The year up to the review: every commune (but those of ``skipped``), then every
    department and district, reports."""
    scores = {"scores": full_scores(plan)}
    opened(engine, plan)
    when = at(plan, 2022, 11, 30, 10)
    communes = [u.code for u in plan.registry.group("communes") if u.parent != skipped]
    engine.submit([Submission(c, when, scores) for c in communes], when)
    drain(engine, when)
    when = at(plan, 2022, 12, 5, 10)
    engine.submit([Submission(c, when, scores) for c in codes(plan, "departments") + codes(plan, "districts")],
                  when)
    drain(engine, when)


def test_siblings_together_write_what_one_token_at_a_time_writes(engine, plan, tmp_path, monkeypatch):
    # one district among the twelve has no commune on the day: its task passes through
    # while its eleven siblings open theirs, in the same run
    skipped = codes(plan, "districts")[3]
    without_communes(monkeypatch, skipped)
    reference = Engine(plan, s.connect(f"sqlite:///{tmp_path / 'one-by-one.db'}"))
    monkeypatch.setattr(sibling_arrivals, "RUN_LIMIT", 1)
    a_year(reference, plan, skipped)
    monkeypatch.setattr(sibling_arrivals, "RUN_LIMIT", 500)
    a_year(engine, plan, skipped)

    assert rows(engine) == rows(reference)
    with engine.db.connect() as conn:
        ended = conn.scalars(select(s.instances.c.status).where(s.instances.c.parent_id.is_not(None))).all()
    assert ended == ["completed"] * 12
    assert [w.element_id for w in engine.open_work(engine.instance_id(KEY))] == ["review"]


def test_a_run_that_fails_keeps_the_siblings_before_it_and_says_why(engine, plan, tmp_path, monkeypatch):
    districts = codes(plan, "districts")
    real = units.in_collection

    def in_collection(plan_, collection, scope_unit, as_of):
        if scope_unit == districts[4] and "communes" in collection:
            raise RuntimeError(f"danh sách xã của {districts[4]} không đọc được")
        return real(plan_, collection, scope_unit, as_of)

    as_of = at(plan, 2022, 3, 15, 8)
    engine.start(KEY, as_of)
    engine.advance(as_of)
    while steps := engine.ready_steps():  # up to the districts' letters to their communes
        for step in steps:
            engine.run_step(step.token_ids, as_of)
        if any(step.element_id == "direct_communes" for step in steps):
            break
        engine.advance(as_of)
    monkeypatch.setattr(units, "in_collection", in_collection)
    with pytest.raises(RuntimeError, match=districts[4]):
        engine.advance(as_of)
    # one transaction per token once the run failed: the four districts before the broken
    # one opened their communes' task, it and those after it did not
    with engine.db.connect() as conn:
        opened_for = conn.scalars(select(s.instances.c.scope_unit).join(
            s.tokens, s.tokens.c.instance_id == s.instances.c.id).where(
            s.tokens.c.element_id == "commune_self_evaluation", s.tokens.c.status == "waiting")
            .order_by(s.tokens.c.id)).all()
    assert opened_for == districts[:4]

    # mended, the same advance opens the rest, and the store holds what it holds when nothing failed
    monkeypatch.setattr(units, "in_collection", real)
    drain(engine, as_of)
    reference = Engine(plan, s.connect(f"sqlite:///{tmp_path / 'reference.db'}"))
    opened(reference, plan)
    assert facts(engine) == facts(reference)


def facts(engine) -> dict[str, list[tuple]]:
    """What the store says, without the ids a rolled-back transaction can use up (PostgreSQL)."""
    w, a, i = s.work_items, s.audit, s.instances
    with engine.db.connect() as conn:
        return {
            "work_items": conn.execute(select(i.c.scope_unit, w.c.element_id, w.c.unit_code, w.c.status,
                                              w.c.opened_at, w.c.due_at, w.c.ladder_step, w.c.next_notice_at)
                                       .join(i, i.c.id == w.c.instance_id).order_by(w.c.id)).all(),
            "audit": conn.execute(select(a.c.at, a.c.instance_id, a.c.actor, a.c.action, a.c.element_id,
                                         a.c.unit_code, a.c.detail).order_by(a.c.id)).all(),
            "timers": conn.execute(select(s.timers.c.boundary_id, s.timers.c.fire_at, s.timers.c.cancelled)
                                   .order_by(s.timers.c.id)).all(),
            "outbox": conn.execute(select(s.outbox.c.recipient, s.outbox.c.kind, s.outbox.c.element_id)
                                   .order_by(s.outbox.c.id)).all(),
        }


def test_a_step_that_fails_for_one_district_keeps_the_others_and_records_the_error(engine, plan, monkeypatch):
    from planflow import services

    districts = codes(plan, "districts")
    real = services.HANDLERS["record"]

    def record(ctx):
        if ctx.instance.scope_unit == districts[6]:
            raise RuntimeError("máy chủ văn bản không trả lời")
        real(ctx)

    monkeypatch.setitem(services.HANDLERS, "record", record)
    as_of = at(plan, 2022, 3, 15, 8)
    engine.start(KEY, as_of)
    engine.advance(as_of)
    while not (plans := [st for st in engine.ready_steps() if st.element_id == "district_plan"]):
        for step in engine.ready_steps():
            engine.run_step(step.token_ids, as_of)
        engine.advance(as_of)
    with pytest.raises(RuntimeError, match="không trả lời"):
        engine.run_step(plans[0].token_ids, as_of)

    with engine.db.connect() as conn:
        states = conn.execute(select(s.instances.c.scope_unit, s.tokens.c.status, s.tokens.c.attempts,
                                     s.tokens.c.last_error)
                              .join(s.instances, s.instances.c.id == s.tokens.c.instance_id)
                              .where(s.tokens.c.element_id == "district_plan").order_by(s.tokens.c.id)).all()
    assert [(u, st, n) for u, st, n, _ in states] == (
        [(d, "completed", 0) for d in districts[:6]] + [(districts[6], "ready", 1)]
        + [(d, "ready", 0) for d in districts[7:]])
    assert states[6].last_error == "RuntimeError: máy chủ văn bản không trả lời"
    assert engine.stalled(engine.instance_id(KEY))[0]["unit"] == districts[6]

    # mended, the same step runs the rest; each district's plan is recorded once
    monkeypatch.setitem(services.HANDLERS, "record", real)
    assert engine.run_step(plans[0].token_ids, as_of) == 6
    with engine.db.connect() as conn:
        recorded = conn.scalars(select(s.audit.c.unit_code).where(s.audit.c.action == "step.recorded",
                                                                  s.audit.c.element_id == "district_plan")).all()
    assert sorted(recorded) == sorted(districts)
