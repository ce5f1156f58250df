"""The whole country, engine only (no Prefect): every province's plan of a year in one store.

    python bench/national.py                          # 2026 (34 provinces) and 2022 (63), one subprocess each
    python bench/national.py --years 2026 --repeat 3
    python bench/national.py --drive year             # the scenario's plan year instead of every unit at once
    python bench/national.py --db postgresql+psycopg://postgres@127.0.0.1:5432/bench
    python bench/national.py --one 2026               # one year in this process (what the driver runs)
    python bench/national.py --one 2022 --profile national.prof && python -m pstats national.prof

For each province in force on the year's day (2026: the 34 of ``vietnam-provinces``, two tiers;
2022: the 63 of the GSO list of 2022-10-01, three tiers) its registry is built with
``planflow.registry_build.build_registry`` (what ``planflow registry`` runs) and written with
``write_registry`` (which checks it with the loader); its plan is the shipped example of that
shape (``hai-phong-dan-van-2026.yaml`` / ``hai-duong-dan-van-2022.yaml``) with the province's
registry, id and names. Everything is generated into a temporary folder and deleted.

Every plan's year is then run in one store, plan after plan:

- ``--drive cycle`` (default): every unit reports. The instance is started on the plan's start
  moment and driven as ``planflow.simulation.EngineActions.drain`` drives it (advance, run every
  ready step); whatever work is open is then answered, one ``Engine.submit`` per round, an hour
  after the last item opened (scores, the review's approval, from the scenario's rules), until
  the instance is completed: departments and communes, then districts (2022), then the review.
- ``--drive year``: ``planflow.simulation.run_year`` with ``EngineActions`` and a scenario where
  every unit reports on time (1–4 working days before its due day): reminders, sweeps, the
  moments of a plan year, as ``planflow simulate`` runs them but without Prefect.

Each province's aggregate report is checked against its registry: per tier (departments,
districts, communes) the units expected are the registry's, every one reported, none twice.
One JSON line per run: ``plans``, ``units`` (units that evaluate: the report's ``expected``),
``wall_s`` (the drive, every plan), ``cpu_s``, ``load_s`` (``load_plan`` of every plan, not in
``wall_s``), ``generate_s`` (registries and plans written, not in ``wall_s``), ``peak_rss_mib``
(the subprocess's ``ru_maxrss``, loading included), ``load_avg_1m``, ``slowest`` (the three
plans that took longest to drive).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

DEFINITIONS = REPO / "definitions"
# year → (the day the registries are built for, the shipped example of that shape, its province's code)
SHAPES = {
    2026: (dt.date(2026, 1, 1), DEFINITIONS / "hai-phong-dan-van-2026.yaml", "31"),
    2022: (dt.date(2022, 10, 1), DEFINITIONS / "hai-duong-dan-van-2022.yaml", "30"),
}
# report tier → the registry group (and the report's list) of its units
TIERS = {"department": "departments", "district": "districts", "commune": "communes"}
SCENARIO = "description: Cả nước — mọi đơn vị báo cáo đúng hạn.\ndefault: {submit: on_time}\n"
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


@dataclass(frozen=True)
class Generated:
    plans: list[Path]
    scenario: Path


def _words(built) -> list[str]:
    """How a registry's province is written in a plan, longest first: its body's code, "UBND TỈNH X",
    "tỉnh X", "UBND tỉnh", "Ủy ban nhân dân tỉnh", "Tỉnh ủy",
    "X" (or "thành phố", "Thành ủy" for a city)."""
    pu = built.province
    name = pu.province.proper_name
    return [built.root["unit"], f"UBND {pu.word} {name}".upper(), f"{pu.word} {name}", f"UBND {pu.word}",
            f"Ủy ban nhân dân {pu.word}",
            "Tỉnh ủy" if pu.kind == "tinh" else "Thành ủy", name]


def _renamed(value, pairs: list[tuple[str, str]]):
    """``value`` (a definition's mapping, list or text) with the example province's words replaced."""
    if isinstance(value, dict):
        return {k: _renamed(v, pairs) for k, v in value.items()}
    if isinstance(value, list):
        return [_renamed(v, pairs) for v in value]
    if isinstance(value, str):
        for old, new in pairs:
            value = value.replace(old, new)
    return value


def plan_text(example: dict, example_built, built, year: int) -> str:
    """The example plan made the plan of ``built``'s province: its id, registry and names."""
    pairs = [(old, new) for old, new in zip(_words(example_built), _words(built)) if old != new]
    plan = _renamed(example, pairs)
    plan["id"] = f"{built.province.province.code}-dan-van-{year}"
    plan["registry"] = f"registries/{built.id}.yaml"
    plan["document"]["signer"]["name"] = None  # the example's signer is a person of its own province
    return yaml.dump(plan, Dumper=DUMPER, allow_unicode=True, sort_keys=False, width=10_000)


def generate(year: int, folder: Path, limit: int | None = None) -> Generated:
    """Registries (``build_registry`` + ``write_registry``) and plans of every province in force."""
    from planflow.registry_build import build_registry, write_registry
    from planflow.registry_sources import province_codes

    day, example_path, example_code = SHAPES[year]
    for sub in ("forms", "calendars"):
        shutil.copytree(DEFINITIONS / sub, folder / sub)
    example = yaml.load(example_path.read_text(encoding="utf-8"), Loader=LOADER)
    example_built = build_registry(example_code, day)
    plans = []
    for code in province_codes(day)[:limit]:
        built = build_registry(code, day)
        write_registry(built, folder / "registries" / f"{built.id}.yaml")
        path = folder / f"{built.province.province.code}-dan-van-{year}.yaml"
        path.write_text(plan_text(example, example_built, built, year), encoding="utf-8")
        plans.append(path)
    scenario = folder / "scenarios" / "national.yaml"
    scenario.parent.mkdir()
    scenario.write_text(SCENARIO, encoding="utf-8")
    return Generated(plans, scenario)


def _payload(plan, scenario, item, element) -> dict:
    """What the unit answers: its scores, or the scenario's answer to a decision or fields form."""
    form = plan.forms[element.form]
    if form.decides:
        return scenario.decision_for(plan, 0, item.opened_at)[1]
    if form.kind == "fields":
        return scenario.answer_for(plan, form, item.opened_at)[1]
    return {"scores": scenario.scores_for(form, item.unit_code)}


@contextmanager
def lap(phases: dict, name: str):
    """Add the time of the block to ``phases[name]``."""
    t0 = time.perf_counter()
    yield
    phases[name] = phases.get(name, 0.0) + time.perf_counter() - t0


def drain(engine, root: int, clock, phases: dict) -> None:
    """``planflow.simulation.EngineActions.drain``, timed: advance, then run every ready step
    (its time under its element's id), until none is ready."""
    while True:
        with lap(phases, "advance"):
            engine.advance(clock, root_id=root)
        with lap(phases, "ready_steps"):
            steps = engine.ready_steps(root_id=root)
        if not steps:
            return
        for step in steps:
            with lap(phases, f"step {step.element_id}"):
                engine.run_step(step.token_ids, clock)


def drive_cycle(engine, scenario, key: str, phases: dict) -> int:
    """Every unit reports: start, then drain and answer every open item, until completed."""
    from planflow import Submission
    from planflow.simulation import first_start

    plan = engine.plan
    clock = first_start(plan)
    with lap(phases, "start"):
        root = engine.start(key, clock, replay=True)
    tasks = {e.id: e for p in (plan.definition.main, *plan.definition.subprocesses) for e in p.elements
             if e.type == "userTask"}  # a user task's id is one in the whole definition
    for _ in range(20):
        drain(engine, root, clock, phases)
        if engine.instance(root).status == "completed":
            return root
        with lap(phases, "open_work"):
            work = engine.open_work(root)
        assert work, f"{plan.id}: stuck at {clock.isoformat()} with nothing open"
        clock = max(clock, max(w.opened_at for w in work).astimezone(clock.tzinfo) + dt.timedelta(hours=1))
        engine.set_clock(root, clock)
        subs = []
        for w in work:
            subs.append(Submission(w.unit_code, clock, _payload(plan, scenario, w, tasks[w.element_id]), w.element_id))
        with lap(phases, "submit"):
            assert engine.submit(subs, clock, root_id=root) == len(subs), plan.id
    raise AssertionError(f"{plan.id}: not completed after 20 rounds")


def drive_year(engine, scenario, key: str, phases: dict) -> int:
    """The plan year of the scenario, as ``planflow simulate`` runs it, on the engine alone."""
    from planflow.simulation import EngineActions, first_start, run_year

    clock = first_start(engine.plan)
    root = engine.start(key, clock, replay=True)
    asyncio.run(run_year(engine, scenario, root, clock, EngineActions(engine, root)))
    return root


def check_report(engine, root: int) -> dict[str, int]:
    """The province's aggregate report against its registry: every unit of each tier expected
    and reported, once. Return the units per tier."""
    from planflow.report import latest_report
    from planflow.simulation import first_start

    plan = engine.plan
    with engine.db.connect() as conn:
        report = latest_report(conn, root)
    assert report is not None, f"{plan.id}: no aggregate report"
    day = first_start(plan).date()
    out = {}
    for tier, group in TIERS.items():
        codes = [u.code for u in plan.registry.group(group) if u.valid_on(day)]
        if not codes:
            assert tier not in report.data["tiers"], (plan.id, tier)
            continue
        counts = report.data["tiers"][tier]["counts"]
        listed = [row["code"] for row in report.data[group]]
        assert counts["expected"] == len(codes), (plan.id, tier, counts, len(codes))
        assert counts["on_time"] + counts["late"] == len(codes), (plan.id, tier, counts)
        assert sorted(listed) == sorted(codes), (plan.id, tier, "the report's units are not the registry's")
        out[group] = len(codes)
    total = report.data["total"]["counts"]
    assert total["expected"] == sum(out.values()) and total["missing"] == total["open"] == 0, (plan.id, total)
    return out


def drive_all(engines, scenarios, runner, year: int, profile: Path | None, phases: dict) -> tuple[list, list]:
    """Drive every plan in turn; return the roots and (seconds, plan id) per plan. ``phases``:
    where the time went (``--drive cycle``), summed over the plans. ``profile``:
    write cProfile's statistics of the whole drive there (read them with ``python -m pstats``)."""
    import cProfile

    profiler = cProfile.Profile() if profile else None
    per_plan, roots = [], []
    if profiler:
        profiler.enable()
    for engine, scenario in zip(engines, scenarios):
        t0 = time.perf_counter()
        key = f"{engine.plan.id}/{year}"
        if engine.instance_id(key) is not None:  # a --db that holds an earlier run
            key += f"-{uuid.uuid4().hex[:8]}"
        roots.append(runner(engine, scenario, key, phases))
        per_plan.append((round(time.perf_counter() - t0, 3), engine.plan.id))
    if profiler:
        profiler.disable()
        profiler.dump_stats(str(profile))
    return roots, per_plan


def run_one(year: int, db_url: str | None, drive: str, limit: int | None = None,
            profile: Path | None = None) -> dict:
    from planflow import Engine, connect, load_plan, load_scenario
    from planflow import store

    out: dict = {"year": year, "drive": drive}
    with tempfile.TemporaryDirectory(prefix=f"planflow-national-{year}-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        gen = generate(year, tmp, limit)
        out["generate_s"] = round(time.perf_counter() - t0, 3)
        t0 = time.perf_counter()
        plans = [load_plan(p) for p in gen.plans]
        out["load_s"] = round(time.perf_counter() - t0, 3)
        scenarios = [load_scenario(gen.scenario, plan) for plan in plans]
        url = db_url or f"sqlite:///{tmp / 'planflow.db'}"
        db = connect(url)
        engines = [Engine(plan, db) for plan in plans]
        runner = drive_cycle if drive == "cycle" else drive_year
        started, cpu_started = time.perf_counter(), time.process_time()
        phases: dict[str, float] = {}
        roots, per_plan = drive_all(engines, scenarios, runner, year, profile, phases)
        out["wall_s"] = round(time.perf_counter() - started, 3)
        out["cpu_s"] = round(time.process_time() - cpu_started, 3)
        tiers: dict[str, int] = {}
        for engine, root in zip(engines, roots):
            assert engine.instance(root).status == "completed", engine.plan.id
            for group, n in check_report(engine, root).items():
                tiers[group] = tiers.get(group, 0) + n
        out.update(plans=len(plans), units=sum(tiers.values()), **tiers,
                   registry_units=sum(len(p.registry.units) for p in plans), reports_checked=len(roots),
                   slowest=sorted(per_plan, reverse=True)[:3], db=db.dialect.name,
                   phases_s={k: round(v, 3) for k, v in sorted(phases.items(), key=lambda kv: -kv[1])})
        store.dispose(url)
    out["load_avg_1m"] = round(os.getloadavg()[0], 2)
    out["prefect_imported"] = any(m == "prefect" or m.startswith("prefect.") for m in sys.modules)
    out["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--years", default="2026,2022", help="comma-separated: 2026 (two tiers), 2022 (three tiers)")
    ap.add_argument("--one", type=int, metavar="YEAR", help="run one year in this process")
    ap.add_argument("--repeat", type=int, default=1, help="runs per year (each in a fresh subprocess)")
    ap.add_argument("--drive", default="cycle", choices=("cycle", "year"),
                    help="cycle (default): every unit reports at once; year: the scenario's plan year")
    ap.add_argument("--db", default=None, help="SQLAlchemy URL (default: a fresh SQLite file per run in a "
                                               "temp dir); a database holding earlier runs gets new keys")
    ap.add_argument("--limit", type=int, default=None, help="only the first N provinces (a quick try)")
    ap.add_argument("--profile", type=Path, help="with --one: cProfile statistics of the drive to this file "
                                                 "(wall_s then includes the profiler's cost)")
    args = ap.parse_args(argv)

    if args.one is not None:
        print(json.dumps(run_one(args.one, args.db, args.drive, args.limit, args.profile), ensure_ascii=False), flush=True)
        return 0
    rc = 0
    for year in [int(y) for y in args.years.split(",") if y.strip()]:
        for _ in range(args.repeat):
            cmd = [sys.executable, str(Path(__file__).resolve()), "--one", str(year), "--drive", args.drive]
            cmd += ["--db", args.db] if args.db else []
            cmd += ["--limit", str(args.limit)] if args.limit else []
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            sys.stdout.write(proc.stdout)
            sys.stdout.flush()
            if proc.returncode:
                sys.stderr.write(proc.stderr)
                last = (proc.stderr.strip().splitlines() or [""])[-1]
                print(json.dumps({"year": year, "error": f"exit {proc.returncode}: {last}"}, ensure_ascii=False))
                rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
