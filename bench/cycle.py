"""Engine-only plan cycle benchmark (no Prefect): issue → every unit submits → aggregate.

    python bench/cycle.py                       # N = 265, 10 000, 30 000, one subprocess each
    python bench/cycle.py --sizes 10000 --repeat 3
    python bench/cycle.py --db postgresql://postgres@127.0.0.1:5432/bench   # an EMPTY database
    python bench/cycle.py --one 10000           # one N in this process (what the driver runs)

Prints one JSON object per run on its own line. ``wall_s`` is the measured cycle: start →
advance (the task opens a work item per unit) → ``Engine.submit`` in batches → advance →
``run_step`` of the aggregate step → advance to the end, instance completed. Registry
generation and definition loading are timed separately (``generate_s``, ``load_s``). The plan
is loaded as the product loads a plan it keeps (``planflow.plan_cache.cached_plan``: a deployed
run, the worker's runs, the commands that run the engine), called here: ``load_plan``, then
``long_lived`` (the cyclic garbage collector's full collection and ``gc.freeze()``), both in ``load_s``.
``peak_rss_mib`` is the subprocess's ``ru_maxrss`` at the end, so it includes loading;
``cycle_peak_rss_mib`` is the same when the cycle ends, before the bench reads the report back to
check its counts (10 000 units: 3.6 MB of JSON).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

TZ = dt.timezone(dt.timedelta(hours=7))
ISSUED = dt.datetime(2022, 3, 15, 8, 0, tzinfo=TZ)
LATE_EVERY = 37  # one unit in 37 reports after the due moment (but before the close timer)


def run_one(n: int, gso: Path, db_url: str | None, batch_size: int, shape: str = "district",
            dump_to: Path | None = None) -> dict:
    import _registry

    from planflow import Engine, connect
    from planflow import store
    from planflow.plan_cache import cached_plan

    out: dict = {"units": n, "shape": shape}
    with tempfile.TemporaryDirectory(prefix=f"planflow-bench-{n}-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        gen = _registry.generate_units(n, gso)
        path = _registry.write_definition(tmp, gen, shape)
        out["generate_s"] = round(time.perf_counter() - t0, 3)
        t0 = time.perf_counter()
        plan = cached_plan(path)  # as the product loads a plan it keeps
        out["load_s"] = round(time.perf_counter() - t0, 3)
        out.update(gen.counts)
        out["synthetic_repeat"] = gen.synthetic_repeat

        url = db_url or f"sqlite:///{tmp / 'planflow.db'}"
        t0 = time.perf_counter()
        db = connect(url)
        out["connect_s"] = round(time.perf_counter() - t0, 3)
        engine = Engine(plan, db)
        form = plan.forms["self-evaluation"]
        # payloads are prepared before the clock starts: they stand for what units send
        payloads = {u["code"]: {"scores": _registry.scores_for(u["code"], form)} for u in gen.units}

        key = f"bench-{n}"
        if engine.instance_id(key) is not None:  # a --db that holds an earlier run
            key += f"-{uuid.uuid4().hex[:8]}"
        iid = _timed_cycle(engine, key, payloads, n, batch_size, out)
        out["cycle_peak_rss_mib"] = _peak_rss_mib()  # loading and the cycle; not the check below
        out["report"] = _report_figures(engine, iid, n)
        out["db"] = db.dialect.name
        if db_url is None:
            out["db_file_mib"] = round(sum(f.stat().st_size for f in tmp.glob("planflow.db*")) / 2**20, 1)
        if dump_to is not None:  # every row, to compare engine versions (bench/replay.py)
            from replay import dump

            Path(dump_to).write_text(json.dumps(dump(url), ensure_ascii=False, indent=1, sort_keys=True,
                                                default=str), encoding="utf-8")
        store.dispose(url)
    out["batch"] = batch_size
    out["load_avg_1m"] = round(os.getloadavg()[0], 2)  # other work on the machine skews wall_s
    out["prefect_imported"] = any(m == "prefect" or m.startswith("prefect.") for m in sys.modules)
    out["peak_rss_mib"] = _peak_rss_mib()
    return out


def _peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def _timed_cycle(engine, key: str, payloads: dict, n: int, batch_size: int, out: dict) -> int:
    """The measured cycle, start to completed instance; its times go into ``out``
    (``wall_s``, ``cpu_s``, ``phases_s``). Return the instance's id."""
    from planflow import Submission

    phases: dict[str, float] = {}
    started, cpu_started = time.perf_counter(), time.process_time()

    def lap(name: str, since: float) -> float:
        now = time.perf_counter()
        phases[name] = round(now - since, 3)
        return now

    t = started
    iid = engine.start(key, ISSUED)
    engine.advance(ISSUED, iid)
    t = lap("issue", t)

    work = engine.open_work(iid)
    assert len(work) == n, (len(work), n)
    due = work[0].due_at
    t = lap("open_work", t)

    subs = []
    for i, w in enumerate(work):
        at = due + dt.timedelta(hours=2) if i % LATE_EVERY == LATE_EVERY - 1 else due - dt.timedelta(days=3, hours=i % 9)
        subs.append(Submission(w.unit_code, at, payloads[w.unit_code]))
    last = max(s.submitted_at for s in subs)
    recorded = 0
    for k in range(0, len(subs), batch_size):
        recorded += engine.submit(subs[k:k + batch_size], last, root_id=iid)
    assert recorded == n, (recorded, n)
    t = lap("submit", t)

    engine.advance(last, iid)
    steps = engine.ready_steps(stage="aggregation", root_id=iid)
    assert [s.element_id for s in steps] == ["aggregate"], steps
    t = lap("advance_to_aggregate", t)

    engine.run_step(steps[0].token_ids, last)
    t = lap("aggregate", t)

    engine.advance(last, iid)
    status = engine.instance(iid).status
    t = lap("finish", t)
    out["wall_s"] = round(t - started, 3)
    out["cpu_s"] = round(time.process_time() - cpu_started, 3)  # this process only (not a DB server)
    out["phases_s"] = phases
    assert status == "completed", status
    return iid


def _report_figures(engine, iid: int, n: int) -> dict:
    """The aggregate report's figures, checked: every unit counted, every one reported."""
    from planflow.report import latest_report

    with engine.db.connect() as conn:
        report = latest_report(conn, iid)
    assert report is not None, "no aggregate report"
    counts = report.data["total"]["counts"]
    assert counts["expected"] == n and counts["on_time"] + counts["late"] == n, counts
    return {"on_time": counts["on_time"], "late": counts["late"],
            "average": report.data["total"]["average"], "classes": report.data["total"]["classes"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="265,10000,30000", help="comma-separated unit counts")
    ap.add_argument("--one", type=int, metavar="N", help="run one size in this process")
    ap.add_argument("--repeat", type=int, default=1, help="runs per size (each in a fresh subprocess)")
    ap.add_argument("--gso", type=Path, default=None, help="GSO admin-units JSON")
    ap.add_argument("--db", default=None, help="SQLAlchemy URL of an empty database (default: a fresh "
                                               "SQLite file per run in a temp dir)")
    ap.add_argument("--batch", type=int, default=1000, help="submissions per Engine.submit call")
    ap.add_argument("--shape", default="district", choices=("district", "flat"),
                    help="district (default): communes evaluate in a sub-process per district, as in the "
                         "shipped plan; flat: one user task over every unit")
    ap.add_argument("--dump", type=Path, help="with --one: write every row of the store here (JSON)")
    args = ap.parse_args(argv)

    if args.one is not None:
        import _registry

        print(json.dumps(run_one(args.one, args.gso or _registry.DEFAULT_GSO, args.db, args.batch,
                                 args.shape, args.dump),
                         ensure_ascii=False), flush=True)
        return 0

    rc = 0
    for n in [int(x) for x in args.sizes.split(",") if x.strip()]:
        for _ in range(args.repeat):
            cmd = [sys.executable, str(Path(__file__).resolve()), "--one", str(n), "--batch", str(args.batch),
                   "--shape", args.shape]
            if args.gso:
                cmd += ["--gso", str(args.gso)]
            if args.db:
                cmd += ["--db", args.db]
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=os.environ.copy())
            sys.stdout.write(proc.stdout)
            sys.stdout.flush()
            if proc.returncode:
                sys.stderr.write(proc.stderr)
                last = (proc.stderr.strip().splitlines() or [""])[-1]
                print(json.dumps({"units": n, "shape": args.shape, "error": f"exit {proc.returncode}: {last}"},
                                 ensure_ascii=False), flush=True)
                rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
