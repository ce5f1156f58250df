"""A plan year in simulated time: the clock jumps from one thing that happens to the next.

What happens comes from the scenario (a unit's submission, a review decision) and from the
engine (the next reminder, escalation or timer). At each moment the caller's ``Actions``
record what people did, sweep what fell due and drive the steps that became ready:
``flows/simulate.py`` does it through Prefect flows, ``bench/replay.py`` on the engine
alone. The clock is saved after every moment, so a run started again on the same store
carries on where it stopped.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol
from zoneinfo import ZoneInfo

from cronsim import CronSim
from sqlalchemy import select

from planflow import store as s
from planflow.interpreter import Engine
from planflow.submissions import Submission
from planflow.summary import review_rounds


class SimulationStuck(RuntimeError):
    pass


class Actions(Protocol):
    async def record(self, stage: str, submissions: list[Submission], clock: dt.datetime) -> None: ...

    async def sweep(self, clock: dt.datetime) -> None: ...

    async def drive(self, clock: dt.datetime) -> None: ...


def first_start(plan) -> dt.datetime:
    """When the plan year's cycle starts: the first firing of the start timer in that year."""
    start = plan.definition.main.start
    tz = ZoneInfo((start.timer and start.timer.timezone) or plan.definition.timezone)
    if start.timer is None:
        return dt.datetime(plan.definition.year, 1, 2, 8, tzinfo=tz)
    origin = dt.datetime(plan.definition.year, 1, 1)
    return next(CronSim(start.timer.cron, origin)).replace(tzinfo=tz)


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
        if form.kind == "fields":
            when, payload = scenario.decision_for(plan, rounds, item.opened_at)
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
    """Run the instance to its end; return the clock it ended at."""
    plan = engine.plan
    for _ in range(100_000):
        due_now, _ = planned(engine, scenario, root, clock)
        by_stage: dict[str, list[Submission]] = {}
        for stage, sub in due_now:
            by_stage.setdefault(stage, []).append(sub)
        for stage in plan.definition.stages:
            if stage.id in by_stage:
                await actions.record(stage.id, by_stage[stage.id], clock)
        next_deadline = engine.next_deadline_at(root)
        if next_deadline is not None and next_deadline <= clock:
            await actions.sweep(clock)
        await actions.drive(clock)
        engine.set_clock(root, clock)
        if engine.instance(root).status == "completed":
            return clock
        due_now, next_submission = planned(engine, scenario, root, clock)
        if due_now:
            continue
        candidates = [t for t in (next_submission, engine.next_deadline_at(root)) if t is not None]
        if not candidates:
            raise SimulationStuck(
                f"the plan cannot move on after {clock.isoformat()}: nothing is planned and no timer is due "
                "(a unit never submits to a task with no closing timer?)")
        clock = max(min(candidates), clock)
    raise SimulationStuck("the simulation did not end after 100 000 moments")
