"""Where the time of one ``cycle.py`` run goes: cProfile of the definition load and of the
measured cycle, each on its own, and the SQL statements the cycle sends.

    python bench/cycle_profile.py                         # N = 10 000, district shape
    python bench/cycle_profile.py --n 10000 --shape flat --top 30 --sort tottime

Prints the run's JSON line (as ``cycle.py --one`` does, the times inflated by the
profiler), then per part the ``--top`` functions by ``--sort`` (``tottime`` or
``cumulative``), then the statements of the cycle by count: executions, rows, SQL.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import io
import json
import pstats
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


def profiled(fn, profile: cProfile.Profile):
    """``fn`` run under ``profile`` each time it is called."""
    def run(*args, **kwargs):
        profile.enable()
        try:
            return fn(*args, **kwargs)
        finally:
            profile.disable()
    return run


def count_statements(statements: collections.Counter, rows: collections.Counter) -> None:
    """Count every statement SQLAlchemy sends (and the rows of an executemany)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine as SAEngine

    @event.listens_for(SAEngine, "before_cursor_execute")
    def _seen(conn, cursor, statement, parameters, context, executemany):
        key = " ".join(statement.split())[:100]
        statements[key] += 1
        rows[key] += len(parameters) if executemany else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--shape", default="district", choices=("district", "flat"))
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--sort", default="tottime", choices=("tottime", "cumulative"))
    args = ap.parse_args(argv)

    import _registry
    import cycle
    import planflow

    parts = {"load": cProfile.Profile(), "cycle": cProfile.Profile()}
    original = planflow.load_plan
    planflow.load_plan = profiled(original, parts["load"])  # run_one imports it from planflow
    cycle._timed_cycle = profiled(cycle._timed_cycle, parts["cycle"])
    statements: collections.Counter = collections.Counter()
    rows: collections.Counter = collections.Counter()
    count_statements(statements, rows)
    out = cycle.run_one(args.n, _registry.DEFAULT_GSO, None, 1000, args.shape)
    print(json.dumps(out, ensure_ascii=False))
    for name, profile in parts.items():
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats(args.sort).print_stats(args.top)
        print(f"===== {name} (by {args.sort})\n{text.getvalue().strip()}\n")
    print(f"===== statements ({sum(statements.values())} in all; the load's and the report check's included)")
    for sql, count in statements.most_common(args.top):
        print(f"{count:7d} {rows[sql]:7d}  {sql}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
