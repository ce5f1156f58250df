"""A plan year in simulated time: the clock jumps from one thing that happens to the next.

What happens comes from the scenario (a unit's submission, a review decision) and from the
engine (the next reminder, escalation or timer). At each moment the caller's ``Actions``
record what people did, sweep what fell due and drive the steps that became ready:
``flows/simulate.py`` does it through Prefect flows, ``bench/replay.py`` on the engine
alone. The instance is started as a replay (``Engine.start(..., replay=True)``): every
transition carries the moment it belongs to. The clock is saved before each moment is
acted, under the instance's lock, so a run started again on the same store (after a kill,
or a second run at the same time) carries on at the moment where it stopped and writes
what an uninterrupted run writes.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol

from sqlalchemy import select

from planflow import instance_lock
from planflow import store as s
from planflow.deadlines import cycle_start
from planflow.interpreter import Engine
from planflow.submissions import Submission
from planflow.summary import review_rounds


class SimulationStuck(RuntimeError):
    pass


class Actions(Protocol):
    async def record(self, stage: str, submissions: list[Submission], clock: dt.datetime) -> None: ...

    async def sweep(self, clock: dt.datetime) -> None: ...

    async def drive(self, clock: dt.datetime) -> None: ...


class EngineActions:
    """The moments of a simulated year acted on the engine alone, as the stage flows act them
    through Prefect: record the submissions, sweep what fell due, run every ready step."""

    def __init__(self, engine: Engine, root: int):
        self.engine, self.root = engine, root

    async def record(self, stage: str, submissions: list[Submission], clock: dt.datetime) -> None:
        self.engine.submit(submissions, clock, root_id=self.root)

    async def sweep(self, clock: dt.datetime) -> None:
        self.engine.sweep(clock, root_id=self.root)

    async def drive(self, clock: dt.datetime) -> None:
        self.drain(clock)

    def drain(self, clock: dt.datetime) -> None:
        """Move the instance on and run its ready steps until none is left."""
        while True:
            self.engine.advance(clock, root_id=self.root)
            steps = self.engine.ready_steps(root_id=self.root)
            if not steps:
                return
            for step in steps:
                self.engine.run_step(step.token_ids, clock)


def first_start(plan) -> dt.datetime:
    """When the plan year's cycle starts: the first firing of the start timer in that year."""
    return cycle_start(plan.definition)


def planned(engine: Engine, scenario, root: int, clock: dt.datetime):
    """([(stage, submission) due at or before ``clock``], the next planned moment after it)."""
    plan = engine.plan
    due_now: list[tuple[str, Submission]] = []
    upcoming: list[dt.datetime] = []
    with engine.db.connect() as conn:
        tree = s.tree_ids(conn, root)
        rounds = review_rounds(conn, plan, tree)
        processes = dict(conn.execute(select(s.work_items.c.id, s.instances.c.process_id)
                                      .join(s.instances, s.instances.c.id == s.work_items.c.instance_id)
                                      .where(s.work_items.c.instance_id.in_(tree),
                                             s.work_items.c.status == "open")).all())
    for item in engine.open_work(root):
        element = plan.definition.process(processes[item.id]).element(item.element_id)
        form = plan.forms[element.form]
        if form.decides:
            when, payload = scenario.decision_for(plan, rounds, item.opened_at)
        elif form.kind == "fields":
            when, payload = scenario.answer_for(plan, form, item.opened_at)
        else:
            when = scenario.submission_time(plan, item.unit_code, item.opened_at, item.due_at)
            payload = {"scores": scenario.scores_for(form, item.unit_code)}
        if when is None:
            continue
        if when <= clock:
            due_now.append((element.stage, Submission(item.unit_code, when, payload, item.element_id)))
        else:
            upcoming.append(when)
    return due_now, min(upcoming, default=None)


async def run_year(engine: Engine, scenario, root: int, clock: dt.datetime, actions: Actions) -> dt.datetime:
    """Run the instance to its end; return the clock it ended at.

    Each moment is acted under the instance's lock (``instance_lock``), from the clock the
    store holds: the moment is saved before it is acted, so a run killed in the middle of
    it and started again acts it again (each action is idempotent) instead of finishing
    its steps at the moment before; two runs at once take turns on one timeline.
    """
    key = engine.instance(root).key
    for _ in range(100_000):
        async with instance_lock.held(engine.db, key):
            inst = engine.instance(root)
            if inst.clock_at is not None and inst.clock_at > clock:
                clock = inst.clock_at.astimezone(clock.tzinfo)
            if inst.status == "completed":
                return clock
            if inst.clock_at != clock:
                engine.set_clock(root, clock)
            await _act(engine, scenario, root, clock, actions)
            if engine.instance(root).status == "completed":
                return clock
            clock = _next_moment(engine, scenario, root, clock)
            engine.set_clock(root, clock)
    raise SimulationStuck("the simulation did not end after 100 000 moments")


async def _act(engine: Engine, scenario, root: int, clock: dt.datetime, actions: Actions) -> None:
    """One moment: record what people did then (stage by stage, in plan order), sweep
    what fell due, drive the steps that became ready."""
    due_now, _ = planned(engine, scenario, root, clock)
    by_stage: dict[str, list[Submission]] = {}
    for stage, sub in due_now:
        by_stage.setdefault(stage, []).append(sub)
    for stage in engine.plan.definition.stages:
        if stage.id in by_stage:
            await actions.record(stage.id, by_stage[stage.id], clock)
    next_deadline = engine.next_deadline_at(root)
    if next_deadline is not None and next_deadline <= clock:
        await actions.sweep(clock)
    await actions.drive(clock)


def _next_moment(engine: Engine, scenario, root: int, clock: dt.datetime) -> dt.datetime:
    """The next moment something happens: ``clock`` again while people still act now,
    else the next planned submission or deadline."""
    due_now, next_submission = planned(engine, scenario, root, clock)
    if due_now:
        return clock
    candidates = [t for t in (next_submission, engine.next_deadline_at(root)) if t is not None]
    if not candidates:
        raise SimulationStuck(
            f"the plan cannot move on after {clock.isoformat()}: nothing is planned and no timer is due "
            "(a unit never submits to a task with no closing timer?)")
    return max(min(candidates), clock).astimezone(clock.tzinfo)  # the caller's time zone throughout
