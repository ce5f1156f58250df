"""Simulation, the main job: a whole plan year in simulated time, through Prefect.

The clock jumps from one thing that happens to the next — a unit's submission from the
scenario, a review decision, a timer the engine knows is due — instead of ticking through
days. At each moment the stage flows record what people did and run the steps the engine
made ready. The clock is saved after every moment, so a killed run started again with the
same database carries on where it stopped; every step is idempotent, so nothing is
recorded twice.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from cronsim import CronSim
from sqlalchemy import select

from engine import Engine, load_plan, load_scenario
from engine import store as s
from engine.summary import build_summary, review_rounds
from flows.runtime import RunRef, engine_for
from flows.stages import deadline_sweep, drive, stage_flow

DEFAULT_SCENARIOS = Path(__file__).resolve().parents[1] / "definitions" / "scenarios"


class SimulationStuck(RuntimeError):
    pass


def first_start(plan) -> dt.datetime:
    """When the plan year's cycle starts: the first firing of the start timer in that year."""
    start = plan.definition.main.start
    tz = ZoneInfo((start.timer and start.timer.timezone) or plan.definition.timezone)
    origin = dt.datetime(plan.definition.year, 1, 1, tzinfo=tz).replace(tzinfo=None)
    if start.timer is None:
        return dt.datetime(plan.definition.year, 1, 2, 8, tzinfo=tz)
    return next(CronSim(start.timer.cron, origin)).replace(tzinfo=tz)


def default_scenario(plan_path: Path) -> Path:
    plan = load_plan(plan_path)
    candidate = DEFAULT_SCENARIOS / f"{plan.definition.registry.split('/')[-1].removesuffix('.yaml')}.yaml"
    if not candidate.exists():
        raise FileNotFoundError(f"no --scenario given and no {candidate} to fall back on")
    return candidate


@dataclass
class Result:
    summary: dict
    report: str | None
    out_dir: Path


def _planned(engine: Engine, scenario, root: int, clock: dt.datetime):
    """(moments of submissions due at or before ``clock``, the next moment after it)."""
    plan = engine.plan
    due_now: list[dict] = []
    upcoming: list[dt.datetime] = []
    with engine.db.connect() as conn:
        tree = engine._tree(conn, root)
        rounds = review_rounds(conn, plan, tree)
        scopes = dict(conn.execute(select(s.work_items.c.id, s.instances.c.process_id)
                                   .join(s.instances, s.instances.c.id == s.work_items.c.instance_id)
                                   .where(s.work_items.c.instance_id.in_(tree),
                                          s.work_items.c.status == "open")).all())
    for item in engine.open_work(root):
        element = plan.definition.process(scopes[item.id]).element(item.element_id)
        form = plan.forms[element.form]
        if form.kind == "fields":
            when, payload = scenario.decision_for(plan, rounds, item.opened_at)
        else:
            when = scenario.submission_time(plan, item.unit_code, item.opened_at, item.due_at)
            payload = {"scores": scenario.scores_for(form, item.unit_code)}
        if when is None:
            continue
        if when <= clock:
            due_now.append({"unit": item.unit_code, "element": item.element_id, "stage": element.stage,
                            "submitted_at": when.isoformat(), "payload": payload})
        else:
            upcoming.append(when)
    return due_now, min(upcoming, default=None)


async def run_simulation(definition: Path, scenario_path: Path | None, out_dir: Path, db_url: str) -> Result:
    plan = load_plan(definition)
    scenario = load_scenario(scenario_path or default_scenario(definition), plan)
    key = f"{plan.id}/{plan.definition.year}/simulation-{scenario.digest}"
    ref = RunRef(definition=str(plan.path), db_url=db_url, root_key=key, outbox_dir=str(out_dir / "outbox"))
    engine = engine_for(ref)
    root = engine.instance_id(key)
    if root is None:
        clock = first_start(plan)
        root = engine.start(key, clock, variables={})
    else:
        inst = engine.instance(root)
        clock = inst.clock_at or inst.started_at

    for _ in range(10_000):
        due_now, next_submission = _planned(engine, scenario, root, clock)
        by_stage: dict[str, list[dict]] = {}
        for sub in due_now:
            by_stage.setdefault(sub.pop("stage"), []).append(sub)
        for stage in plan.definition.stages:
            if stage.id in by_stage:
                await stage_flow(stage)(ref, clock, submissions=by_stage[stage.id])
        next_deadline = engine.next_deadline_at(root)
        if next_deadline is not None and next_deadline <= clock:
            await deadline_sweep(ref, clock)
        await drive(ref, clock)
        engine.set_clock(root, clock)
        if engine.instance(root).status == "completed":
            break
        due_now, next_submission = _planned(engine, scenario, root, clock)
        if due_now:
            continue
        candidates = [t for t in (next_submission, engine.next_deadline_at(root)) if t is not None]
        if not candidates:
            raise SimulationStuck(
                f"the plan cannot move on after {clock.isoformat()}: nothing is planned and no timer is due "
                "(a unit never submits to a task with no closing timer?)")
        clock = max(min(candidates), clock)
    summary = build_summary(engine, root)
    with engine.db.connect() as conn:
        report = conn.scalar(select(s.reports.c.markdown).where(s.reports.c.instance_id == root)
                             .order_by(s.reports.c.id.desc()).limit(1))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")
    if report:
        (out_dir / "report.md").write_text(report, encoding="utf-8")
    return Result(summary=summary, report=report, out_dir=out_dir)
