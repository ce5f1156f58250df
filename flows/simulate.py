"""Simulation, the main job: a whole plan year in simulated time, through Prefect.

The clock jumps from one thing that happens to the next — a unit's submission from the
scenario, a review decision, a timer the engine knows is due — instead of ticking through
days. At each moment the stage flows record what people did and run the steps the engine
made ready. The instance is a replay: every transition carries the moment it belongs to.
The clock is saved before each moment is acted, so a killed run started again with the
same database carries on at the moment where it stopped, and two runs at once take turns;
every step is idempotent, so nothing is recorded twice.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from planflow import load_scenario, outbox
from planflow.documents import documents_dir, export, write_latest
from planflow.plan_cache import cached_plan
from planflow.report import latest_markdown
from planflow.scenario import default_scenario
from planflow.simulation import first_start, run_year
from planflow.summary import build_summary
from planflow.flows.runtime import RunRef, engine_for, root_id
from planflow.flows.stages import deadline_sweep, delivery_task, drive, stage_flow


@dataclass
class Result:
    summary: dict
    report: str | None
    out_dir: Path
    documents: list[Path] | None = None  # report.docx, report.pdf (when LibreOffice is there), annex.xlsx
    documents_note: str = ""  # why there is no PDF


@dataclass
class PrefectActions:
    """The moments of a simulated year, acted by the plan's Prefect flows."""

    ref: RunRef
    plan: object

    async def record(self, stage: str, submissions: list, clock: dt.datetime) -> None:
        batch = [{"unit": x.unit, "element": x.element, "submitted_at": x.submitted_at.isoformat(),
                  "payload": x.payload} for x in submissions]
        stage_def = next(st for st in self.plan.definition.stages if st.id == stage)
        await stage_flow(stage_def)(self.ref, clock, submissions=batch)

    async def sweep(self, clock: dt.datetime) -> None:
        await deadline_sweep(self.ref, clock)

    async def drive(self, clock: dt.datetime) -> None:
        await drive(self.ref, clock)
        # letters a killed run queued at this moment but did not send: sent now, dated now
        engine = engine_for(self.ref)
        if outbox.deliverable(engine.db, instance_ids=engine.tree(root_id(self.ref)), limit=1):
            delivery_task()(self.ref, clock)


async def run_simulation(definition: Path, scenario_path: Path | None, out_dir: Path, db_url: str,
                         year: int | None = None) -> Result:
    plan = cached_plan(definition, year)  # the plan the engine runs on (engine_for): loaded once
    scenario = load_scenario(scenario_path or default_scenario(plan), plan)
    key = f"{plan.id}/{plan.definition.year}/simulation-{scenario.digest}"
    ref = RunRef(definition=str(plan.path), db_url=db_url, root_key=key, outbox_dir=str(out_dir / "outbox"))
    engine = engine_for(ref)
    clock = first_start(plan)
    # started once (a second run finds it); run_year carries on from the clock the store holds
    root = engine.start(key, clock, variables={}, replay=True)
    await run_year(engine, scenario, root, clock, PrefectActions(ref, plan))
    summary = build_summary(engine, root)
    report = latest_markdown(engine, root)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")
    result = Result(summary=summary, report=report, out_dir=out_dir)
    if report:
        (out_dir / "report.md").write_text(report, encoding="utf-8")
        # the aggregation step wrote them (documents/ beside the outbox); written now if it did not
        docs = write_latest(engine, root, documents_dir(ref.outbox_dir))
        if docs is not None:
            result.documents, result.documents_note = export(docs, out_dir), docs.note
            if docs.note:  # no LibreOffice: the DOCX and XLSX are there, the PDF is not
                print(f"report.pdf not written: {docs.note}", file=sys.stderr)
    return result
