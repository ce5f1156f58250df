"""The whole country through Prefect: the 34 plans of 2026 run by their deployments on a process work
pool, two workers, a Prefect server and planflow's store both on PostgreSQL — then the same moments on
the engine alone, and the two stores compared.

    python bench/national_prefect.py                   # 34 plans, two workers
    python bench/national_prefect.py --kill-worker     # worker 1 and its runs killed mid-year
    python bench/national_prefect.py --limit 3 --workers 1      # a quick try
    python bench/national_prefect.py --no-pdf          # the reports' documents without LibreOffice's PDF

What runs (``bench/_prefect_cluster.py``): new PostgreSQL databases for the server and the store,
``prefect server start`` on 127.0.0.1 (its scheduler service off: the bench fires the schedules at the
plan's moments), the pool ``planflow`` made from ``work-pool.json``, every plan's 10 deployments and 3
automations as ``planflow serve`` registers them (``flows/serve.py``) but on the pool, and ``prefect
worker start --pool planflow`` twice. Plans are generated as ``bench/national.py`` generates them.

The plan year of each plan, all plans at once (``Year``): the replay clock is set to the plan's start
and ``plan-cycle`` runs (as its schedule would): dissemination. Every unit but one in twenty reports
(through the portal's path: ``Engine.submit``), and one ``planflow.unit.submitted`` event is emitted
for the round, whose automation starts ``advance`` (at once: the bench sets ``PLANFLOW_ADVANCE_AFTER``
to 0 unless it is set, as one event per round is no burst to gather; printed as ``advance_after_s``). The clock then goes to the plan's next deadlines
and ``deadline-sweep`` runs there (``--sweeps``, as the daily schedule would): reminders, escalations,
whose ``planflow.unit.overdue`` events start ``deliver-outbox``. The late units report, then the
review's approval: each round an event and its ``advance`` — aggregation, the review request, the
publication. The bench waits for each run it caused, as an operator watching the UI would.

``--kill-worker``: when half the plans have their ``plan-cycle`` run started, worker 1 and every
process it started are killed (SIGKILL to its session: a machine lost). Worker 2 carries on. A run the
dead worker held stays Running or Pending: the bench finds it (its process gone, or Pending for 20 s),
sets it Crashed — what a zombie-run automation on heartbeats does in production, slower — and runs its
deployment again; the Crashed state starts the plan's ``record-incident`` (a letter to Sở Nội vụ).

Then every plan's same moments are run on the engine alone (``EngineYear``) into a SQLite store, and
both stores are compared plan by plan (``bench/_fingerprint.py``): same instances, tokens, work items,
submissions, reminders, timers, reports, letters and audit rows, none twice, none missing. Each
province's report is checked against its registry (``national.check_report``).

Prints one JSON object: ``plans``, ``units``, ``wall_s`` (the drive through Prefect, from the first
run created to the last run finished), ``flow_runs`` and ``task_runs`` (by flow name / state),
``peak_rss_mib`` per process (server; each worker with its flow-run processes; this bench), ``equal``
and ``diff`` (the comparison), ``engine_only_wall_s``, ``killed`` (with ``--kill-worker``),
``load_avg_1m``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import resource
import signal
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import national  # noqa: E402
from _fingerprint import compare, delivery, fingerprint  # noqa: E402
from _prefect_cluster import POOL, REPO, Cluster  # noqa: E402
from _prefect_runs import Chaos, Runs  # noqa: E402

from planflow.outbox import env_number  # noqa: E402

YEAR = 2026
ACTOR, REASON = "so-noi-vu:bench", "Chạy thử cả nước (bench/national_prefect.py)"


class Moves:
    """The moments of a plan year, acted on the engine alone: the reference run."""

    def __init__(self, engine, key: str):
        self.engine, self.key = engine, key

    async def at(self, clock: dt.datetime) -> None:
        from planflow.clock import set_replay_clock

        set_replay_clock(self.engine, self.key, clock, actor=ACTOR, reason=REASON)

    async def cycle(self) -> None:
        self.drain()

    async def submitted(self, code: str, element: str, clock) -> None:
        self.drain()

    async def sweep(self) -> None:
        from planflow.clock import now_of

        engine = self.engine
        root = engine.instance_id(self.key)
        now = now_of(engine, self.key)
        for _ in range(20):  # as ``daily-deadline-sweep`` passes (planflow.flows.operations._sweep_passes)
            engine.sweep(now, root_id=root)
            self.drain()
            upcoming = engine.next_deadline_at(root)
            if upcoming is None or upcoming > now:
                break
        self.drain()

    def drain(self) -> None:
        from planflow.clock import now_of

        national.drain(self.engine, self.engine.instance_id(self.key), now_of(self.engine, self.key), {})


class Year:
    """One plan's year: the moments, the same whoever acts them (``Moves`` or ``PrefectMoves``)."""

    def __init__(self, engine, scenario, moves, sweeps: int):
        self.engine, self.scenario, self.moves, self.sweeps = engine, scenario, moves, sweeps

    async def run(self) -> None:
        from planflow.simulation import first_start

        engine = self.engine
        clock = first_start(engine.plan)
        await self.moves.at(clock)
        await self.moves.cycle()
        root = engine.instance_id(self.moves.key)
        late = {u.code for i, u in enumerate(sorted(engine.plan.registry.units, key=lambda u: u.code)) if i % 20 == 7}
        clock = await self.round(root, clock, lambda w: w.unit_code not in late)
        for _ in range(self.sweeps):
            upcoming = engine.next_deadline_at(root)
            if upcoming is None:
                break
            clock = max(clock, upcoming)
            await self.moves.at(clock)
            await self.moves.sweep()
        for _ in range(10):
            if engine.instance(root).status == "completed":
                return
            clock = await self.round(root, clock, lambda w: True)
        raise AssertionError(f"{engine.plan.id}: not completed")

    async def round(self, root: int, clock: dt.datetime, who) -> dt.datetime:
        """Every open item ``who`` accepts is answered an hour after the last one opened (or the
        clock), through the portal's path; one event for the round."""
        from planflow import Submission

        engine, plan = self.engine, self.engine.plan
        work = [w for w in engine.open_work(root) if who(w)]
        if not work:
            return clock
        clock = max(clock, max(w.opened_at for w in work).astimezone(clock.tzinfo) + dt.timedelta(hours=1))
        await self.moves.at(clock)
        tasks = {e.id: e for p in (plan.definition.main, *plan.definition.subprocesses) for e in p.elements
                 if e.type == "userTask"}
        subs = [Submission(w.unit_code, clock, national._payload(plan, self.scenario, w, tasks[w.element_id]),
                           w.element_id) for w in work]
        assert engine.submit(subs, clock, root_id=root) == len(subs), plan.id
        await self.moves.submitted(subs[-1].unit, subs[-1].element, clock)
        return clock


class PrefectMoves(Moves):
    """The moments acted through the plan's deployments (the clock is set in the store as
    ``set-replay-clock`` sets it; the units report through the portal's path)."""

    def __init__(self, engine, key: str, runs: Runs, ids: dict, chaos):
        super().__init__(engine, key)
        self.runs, self.ids, self.chaos = runs, ids, chaos

    async def cycle(self) -> None:
        run = await self.runs.start(self.ids["plan-cycle"])
        await self.chaos.cycle_started()
        await self.runs.finished(run)

    async def submitted(self, code: str, element: str, clock) -> None:
        from planflow.flows.events import emit_submitted

        known = await self.runs.ids_of(self.ids["advance"])
        emit_submitted(self.engine.plan, self.key, code, element, clock, "unit")
        await self.runs.finished(await self.runs.new_of(self.ids["advance"], known))

    async def sweep(self) -> None:
        await self.runs.finished(await self.runs.start(self.ids["deadline-sweep"]))


async def register(client, definitions: Path) -> dict[str, dict]:
    """The pool from ``work-pool.json`` (``prefect work-pool create``), then every plan's deployments
    on it and its automations (``planflow deploy``). Return plan id -> role -> deployment id."""
    from prefect.client.schemas.actions import WorkPoolCreate

    from planflow.flows import serve

    template = json.loads((REPO / "work-pool.json").read_text(encoding="utf-8"))
    await client.create_work_pool(WorkPoolCreate(name=POOL, type="process", base_job_template=template))
    return (await serve.register(str(definitions), work_pool=POOL))[1]


async def counts(client, runs: list) -> dict:
    """Flow runs by flow name and by state; task runs in all."""
    flows = {f.id: f.name for f in await client.read_flows(limit=200)}
    by_flow, by_state = {}, {}
    for r in runs:
        name = flows.get(r.flow_id, str(r.flow_id))
        by_flow[name] = by_flow.get(name, 0) + 1
        by_state[r.state.type.value] = by_state.get(r.state.type.value, 0) + 1
    reply = await client._client.post("/task_runs/count", json={})
    top = [r for r in runs if r.parent_task_run_id is None and r.start_time and r.end_time]
    return {"flow_runs": len(runs), "flow_runs_by_flow": dict(sorted(by_flow.items(), key=lambda kv: -kv[1])),
            "flow_runs_by_state": by_state, "task_runs": reply.json(),
            # a deployment's run: from created to started (the worker's poll, a process), then its own time
            "deployment_runs": len(top),
            "start_s_median": _median([(r.start_time - r.created).total_seconds() for r in top]),
            "run_s_median": _median([(r.end_time - r.start_time).total_seconds() for r in top])}


def _median(values: list[float]) -> float | None:
    return round(sorted(values)[len(values) // 2], 2) if values else None


async def through_prefect(cluster: Cluster, gen, plans, scenarios, args) -> dict:
    from prefect.client.orchestration import get_client

    from planflow import Engine, connect

    db = connect(cluster.store_url)
    out: dict = {}
    async with get_client() as client:
        t0 = time.perf_counter()
        ids = await register(client, cluster.definitions)
        out["register_s"] = round(time.perf_counter() - t0, 2)
        cluster.start_workers()
        runs = Runs(client)
        chaos = Chaos(cluster, runs, len(plans), args.kill_worker)
        years = []
        for plan, scenario in zip(plans, scenarios):
            engine = Engine(plan, db)
            moves = PrefectMoves(engine, f"{plan.id}/{YEAR}", runs, ids[plan.id], chaos)
            years.append(Year(engine, scenario, moves, args.sweeps))
        sampler = asyncio.create_task(_sample(cluster))
        t0 = time.perf_counter()
        await asyncio.gather(*(y.run() for y in years))
        out["drive_s"] = round(time.perf_counter() - t0, 2)
        all_runs = await runs.settled()
        out["wall_s"] = round(time.perf_counter() - t0, 2)
        sampler.cancel()
        out.update(await counts(client, all_runs))
        out["runs_created_by_bench"] = runs.created
        if chaos.killed is not None:
            out["killed"] = {**chaos.killed, "runs_lost_and_run_again": runs.lost}
    tiers: dict[str, int] = {}
    for y in years:  # each province's report against its registry
        for group, n in national.check_report(y.engine, y.engine.instance_id(y.moves.key)).items():
            tiers[group] = tiers.get(group, 0) + n
    out.update(reports_checked=len(years), units=sum(tiers.values()), **tiers)
    out["letters"] = _letters(db, [y.moves.key for y in years])
    out["fingerprints"] = {y.moves.key: fingerprint(db, y.moves.key) for y in years}
    return out


def _letters(db, keys: list[str]) -> dict[str, int]:
    total: dict[str, int] = {}
    for key in keys:
        for status, n in delivery(db, key).items():
            total[status] = total.get(status, 0) + n
    return total


async def _sample(cluster: Cluster) -> None:
    while True:
        cluster.sample_memory()
        await asyncio.sleep(1)


def engine_only(tmp: Path, plans, scenarios, sweeps: int) -> tuple[float, dict]:
    """The same moments on the engine alone, in a SQLite store of their own."""
    from planflow import Engine, connect

    db = connect(f"sqlite:///{tmp / 'engine-only.db'}")
    t0 = time.perf_counter()
    keys = []
    for plan, scenario in zip(plans, scenarios):
        engine = Engine(plan, db)
        keys.append(f"{plan.id}/{YEAR}")
        asyncio.run(Year(engine, scenario, Moves(engine, keys[-1]), sweeps).run())
    wall = round(time.perf_counter() - t0, 2)
    return wall, {key: fingerprint(db, key) for key in keys}


def run(args) -> dict:
    from planflow import load_plan, load_scenario

    out: dict = {"year": YEAR, "workers": args.workers, "worker_limit": args.worker_limit, "sweeps": args.sweeps,
                 "pdf": not args.no_pdf}
    with tempfile.TemporaryDirectory(prefix="planflow-national-prefect-") as tmp:
        tmp = Path(tmp)
        (tmp / "definitions").mkdir()
        gen = national.generate(YEAR, tmp / "definitions", args.limit)
        plans = [load_plan(p) for p in gen.plans]
        scenarios = [load_scenario(gen.scenario, plan) for plan in plans]
        out["plans"] = len(plans)
        if args.no_pdf:
            os.environ["PLANFLOW_SOFFICE"] = str(tmp / "no-libreoffice")
        with Cluster(tmp, tmp / "definitions", args.db, args.workers, args.worker_limit) as cluster:
            out["store"] = cluster.store_url.split("://")[0]
            from planflow.flows.serve import advance_after  # once the cluster's environment is set

            out["advance_after_s"] = advance_after().total_seconds()  # as the automation is registered
            prefect = asyncio.run(through_prefect(cluster, gen, plans, scenarios, args))
            cluster.sample_memory()
            out["cpu_s"] = cluster.cpu_s()  # a worker's: its own and its finished flow runs'
            out["peak_rss_mib"] = {**cluster.peak, "bench": round(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
        theirs = prefect.pop("fingerprints")
        out.update(prefect)
        out["engine_only_wall_s"], ours = engine_only(tmp, plans, scenarios, args.sweeps)
        diff = {key: d for key in ours if (d := compare(ours[key], theirs.get(key, {})))}
        out["equal"], out["diff"] = not diff, dict(list(diff.items())[:3])
    out["load_avg_1m"] = round(os.getloadavg()[0], 2)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2, help="process workers of the pool (default 2)")
    ap.add_argument("--worker-limit", type=int, default=4, help="flow runs at once per worker (default 4)")
    ap.add_argument("--kill-worker", action="store_true", help="kill worker 1 and its runs mid-year")
    ap.add_argument("--sweeps", type=int, default=2, help="deadline sweeps per plan (default 2)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N provinces (a quick try)")
    ap.add_argument("--no-pdf", action="store_true", help="no LibreOffice PDF of the reports (DOCX and XLSX only)")
    ap.add_argument("--db", default=None, help="the planflow store's URL (default: a new PostgreSQL database)")
    args = ap.parse_args(argv)
    if args.kill_worker and args.workers < 2:
        ap.error("--kill-worker needs --workers 2 or more: the other worker carries on")
    # one planflow.unit.submitted per plan round, not one per unit: no burst to gather, so the
    # advance run starts at once unless PLANFLOW_ADVANCE_AFTER says otherwise (checked here, as
    # `planflow serve` checks it, before anything starts)
    os.environ.setdefault("PLANFLOW_ADVANCE_AFTER", "0")
    try:
        env_number("PLANFLOW_ADVANCE_AFTER", 0, 0)
    except ValueError as exc:
        ap.error(str(exc))
    # stopped (timeout, Ctrl-C): the server, the workers and the databases are removed all the same
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("national_prefect: stopped (SIGTERM)"))
    print(json.dumps(run(args), ensure_ascii=False, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
