"""The deadline sweep over many open work items, engine only (no Prefect).

    python bench/sweep.py [--open 100000] [--due-share 0.01] [--db URL]

Builds one self-evaluation task over ``--open`` units (registry generated from the GSO list,
see ``bench/_registry.py``) with the shipped plan's ladder, due before 10/12/2022. Every
item's first reminder is 08:00 on 2/12; all but ``--due-share`` of them are put one rung
further, as if an earlier sweep had reminded them, so at 2/12 08:00 exactly that share is
due. Prints one JSON object: the sweep's wall time, what it recorded, and a second sweep at
the same moment (which must record nothing).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import func, select, update  # noqa: E402

from bench._registry import DEFAULT_GSO, generate_units, process_yaml, write_definition  # noqa: E402
from planflow import Engine, load_plan, store  # noqa: E402

TZ = dt.timezone(dt.timedelta(hours=7))
LADDER = """    reminders: [-5wd, -2wd, -1wd]
    escalations:
      - {after: +1wd, to: [unit.head, so-noi-vu], template: escalation-1}
      - {after: +3wd, to: [so-noi-vu], template: escalation-2}
      - {after: +5wd, to: [so-noi-vu], template: escalation-final}
"""


def run(open_items: int, due_share: float, db_url: str | None, gso: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="planflow-sweep-") as tmp:
        folder = Path(tmp)
        gen = generate_units(open_items, gso)
        path = write_definition(folder, gen, shape="flat")
        text = path.read_text(encoding="utf-8")
        marker = '    due: {before: "2022-12-10"}\n'
        path.write_text(text.replace(marker, marker + LADDER, 1), encoding="utf-8")
        assert "reminders" in path.read_text(encoding="utf-8"), process_yaml  # the ladder is in
        plan = load_plan(path)
        url = db_url or f"sqlite:///{folder / 'sweep.db'}"
        engine = Engine(plan, store.connect(url))
        issued = dt.datetime(2022, 3, 15, 8, tzinfo=TZ)
        engine.start("bench-sweep", issued)
        engine.advance(issued)
        w = store.work_items
        every = max(1, round(1 / due_share))
        with engine.db.begin() as conn:
            conn.execute(update(w).where(w.c.id % every != 0).values(
                ladder_step=1, next_notice_at=dt.datetime(2022, 12, 7, 8, tzinfo=TZ)))
            n_open = conn.scalar(select(func.count()).select_from(w).where(w.c.status == "open"))
            n_due = conn.scalar(select(func.count()).select_from(w).where(
                w.c.next_notice_at <= dt.datetime(2022, 12, 2, 8, tzinfo=TZ)))
        as_of = dt.datetime(2022, 12, 2, 8, tzinfo=TZ)
        t0 = time.perf_counter()
        notices = engine.sweep(as_of)
        wall = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = engine.sweep(as_of)
        wall_again = time.perf_counter() - t0
        with engine.db.connect() as conn:
            letters = conn.scalar(select(func.count()).select_from(store.outbox))
        store.dispose(url)
        return {"open_items": n_open, "due": n_due, "wall_s": round(wall, 3), "recorded": len(notices),
                "letters_queued": letters, "second_sweep_recorded": len(again),
                "second_sweep_wall_s": round(wall_again, 3), "db": url.split(":")[0],
                "synthetic_repeat": gen.synthetic_repeat}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--open", type=int, default=100_000, dest="open_items")
    parser.add_argument("--due-share", type=float, default=0.01)
    parser.add_argument("--db", default=None, help="SQLAlchemy URL of an EMPTY database (default: temp SQLite)")
    parser.add_argument("--gso", type=Path, default=DEFAULT_GSO)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.open_items, args.due_share, args.db, args.gso)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
