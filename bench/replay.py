"""Engine-only replay of a plan year, and a canonical dump of the store, to check that a
performance change to the engine changes nothing it records.

    python bench/replay.py --dump before.json            # shipped plan and scenario, SQLite
    ... change the engine ...
    python bench/replay.py --dump after.json && cmp before.json after.json

The replay runs ``planflow.simulation.run_year`` — the loop ``planflow.flows.simulate``
runs through Prefect — with actions on the engine alone, each done twice to show it changes
nothing. On top of the scenario it sends what a careless client would (the same batch
twice, a submission after the close, one with a bad score) and checks that each is refused
or ignored. The dump holds every row of every table (ids included, times as
ISO strings), so any difference in order, content or count shows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


from planflow import Engine, Submission, SubmissionError, connect, load_plan, load_scenario  # noqa: E402
from planflow import store as s  # noqa: E402
from planflow.simulation import first_start, run_year  # noqa: E402

REPO = HERE.parent
PLAN = REPO / "definitions" / "hai-duong-dan-van-2022.yaml"
SCENARIO = REPO / "definitions" / "scenarios" / "hai-duong-2022.yaml"


class EngineActions:
    """The moments of the year acted on the engine alone, each done twice to prove it idempotent."""

    def __init__(self, engine: Engine, root: int):
        self.engine, self.root, self.sent = engine, root, []

    def _drive_stage(self, stage: str, as_of) -> None:
        while True:
            self.engine.advance(as_of, root_id=self.root)
            steps = self.engine.ready_steps(stage=stage, root_id=self.root)
            if not steps:
                return
            for step in steps:
                self.engine.run_step(step.token_ids, as_of)
                assert self.engine.run_step(step.token_ids, as_of) == 0  # a retry changes nothing

    async def record(self, stage: str, batch: list, clock) -> None:
        self.engine.submit(batch, clock, root_id=self.root)
        assert self.engine.submit(batch, clock, root_id=self.root) == 0  # the same batch again: a no-op
        self.sent += batch
        self._drive_stage(stage, clock)

    async def sweep(self, clock) -> None:
        self.engine.sweep(clock, root_id=self.root)
        assert self.engine.sweep(clock, root_id=self.root) == []
        assert self.engine.fire_timers(clock, root_id=self.root) == 0

    async def drive(self, clock) -> None:
        while True:
            self.engine.advance(clock, root_id=self.root)
            ready = {step.stage for step in self.engine.ready_steps(root_id=self.root)}
            if not ready:
                return
            for stage in self.engine.plan.definition.stages:
                if stage.id in ready:
                    self._drive_stage(stage.id, clock)


def replay(url: str, plan_path: Path = PLAN, scenario_path: Path = SCENARIO) -> list[str]:
    """Run the year; return what the careless client was told (refusals)."""
    plan = load_plan(plan_path)
    scenario = load_scenario(scenario_path, plan)
    engine = Engine(plan, connect(url))
    clock = first_start(plan)
    root = engine.start("replay", clock, replay=True)
    assert engine.start("replay", clock, replay=True) == root
    told: list[str] = []
    actions = EngineActions(engine, root)
    clock = asyncio.run(run_year(engine, scenario, root, clock, actions))
    sent = actions.sent
    assert engine.instance(root).status == "completed"
    # a careless client: after close, other answers, unknown unit, bad score, no time zone
    form_sub = next(x for x in sent if "scores" in x.payload)
    bad = [
        Submission("so-y-te", clock, {"scores": dict(form_sub.payload["scores"])}),
        Submission(form_sub.unit, form_sub.submitted_at, {"scores": {**form_sub.payload["scores"], "g1.1": 0}}),
        Submission("no-such-unit", clock, {"scores": {}}),
        Submission(form_sub.unit, clock.replace(tzinfo=None), {"scores": {}}),
    ]
    for sub in bad:
        try:
            engine.submit([sub], clock, root_id=root)
            told.append("accepted?!")
        except SubmissionError as exc:
            told += exc.problems
    assert engine.submit([form_sub], clock, root_id=root) == 0  # re-sent as it was: ignored
    return told


def dump(url: str) -> dict:
    """Every row of every table as the database holds it (raw SQL, no type processing), so
    that e.g. SQL NULL and JSON ``null`` differ."""
    db = connect(url)
    out = {}
    with db.connect() as conn:
        for name, table in s.metadata.tables.items():
            order = ", ".join(f'"{c.name}"' for c in table.primary_key.columns)  # not every table has an id
            if conn.dialect.name == "postgresql":
                rows = [r[0] for r in conn.exec_driver_sql(f'SELECT t::text FROM "{name}" t ORDER BY {order}')]
            else:
                rows = [list(r) for r in conn.exec_driver_sql(f'SELECT * FROM "{name}" ORDER BY {order}')]
            out[name] = rows
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dump", type=Path, required=True, help="where to write the canonical dump (JSON)")
    ap.add_argument("--db", help="SQLAlchemy URL of an EMPTY database (default: a temp SQLite file)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        url = args.db or f"sqlite:///{Path(tmp) / 'replay.db'}"
        told = replay(url)
        data = {"told": told, "tables": dump(url)}
        s.dispose(url)
    args.dump.write_text(json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True, default=str), encoding="utf-8")
    counts = {k: len(v) for k, v in data["tables"].items()}
    print(json.dumps({"rows": counts, "refusals": len(told)}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
