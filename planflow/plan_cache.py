"""A plan loaded once per process and kept while its files say the same.

A deployed run (``python -m prefect.engine``, one process per flow run) asks for its plan
several times: the run's reference, its name, the instance's version, the sweep's list of
running years. Each ``load_plan`` parses and checks every file again (the registry, the
forms, every letter template rendered against its sample), ~0.3–0.5 s of a small province's
plan. ``cached_plan`` gives the plan loaded before in this process when the plan's files still
have the same contents (``sources_digest`` of the files it was read from, and the same files
in its templates folder) — a plan edited between two calls is loaded and checked again, so a
broken edit is still refused at its file and line.

A plan loaded to be kept (``cached_plan``'s, a started instance's older version, the commands
that run the engine here) goes through :func:`long_lived`: the cyclic garbage collector stops
walking it.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path

from planflow.loader import Plan, load_plan, sources_digest
from planflow.plan_years import this_year

_LIMIT = 64  # plans kept per process (a server of the whole country serves 63 or 34)


@dataclass(frozen=True)
class _Kept:
    plan: Plan
    templates: tuple[str, ...]  # the files of its templates folder when it was loaded


_kept: dict[tuple, _Kept] = {}


def _template_files(plan: Plan) -> tuple[str, ...]:
    if plan.template_dir is None:
        return ()
    return tuple(sorted(str(p.resolve()) for p in plan.template_dir.rglob("*") if p.is_file()))


def _still_same(kept: _Kept) -> bool:
    plan = kept.plan
    try:
        return (_template_files(plan) == kept.templates
                and sources_digest([Path(p) for p in plan.sources]) == plan.digest)
    except OSError:  # a file went away: load again, and let the loader say what is missing
        return False


def long_lived(plan: Plan) -> Plan:
    """``plan``, kept for the rest of the process: everything alive now, the plan among it, is
    moved out of the cyclic garbage collector's reach (``gc.freeze()``). Each full collection
    walks every tracked object; a 10 000-unit plan is ~130 000 of them, walked again each time
    the engine has read back enough rows (a 10 000-unit cycle: 0.05–0.1 s of 0.8–0.95 s CPU;
    30 000: 0.14 s). Reference counting still frees what is dropped.

    Collected before each freeze, everything frozen earlier included (``gc.unfreeze()``): a
    fresh load leaves no garbage (0 found at 10 000 units), but a freeze would keep for good
    whatever dead cycles were waiting, and what was alive at an earlier load and has died in
    cycles since (a request's or a test's objects, an engine and its connections). That walk
    costs one full collection per plan loaded (0.03–0.05 s with Prefect imported and a
    10 000-unit plan), never in the cycle."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    return plan


def cached_plan(path: str | Path, year: int | None = None) -> Plan:
    """``load_plan(path, year)``, or the same plan loaded before in this process when none of
    its files changed since. Refusals are not kept: a broken plan is checked again each call."""
    key = (str(Path(path).resolve()), year, this_year() if year is None else None)
    kept = _kept.get(key)
    if kept is not None and _still_same(kept):
        return kept.plan
    plan = long_lived(load_plan(path, year))
    while len(_kept) >= _LIMIT - 1:
        _kept.pop(next(iter(_kept)))
    # kept also as the plan of its year: load_plan(path, plan.year) is this same plan (a run asks
    # for "this year's" plan first, then for the year of its instance's key)
    _kept[key] = _kept[(key[0], plan.year, None)] = _Kept(plan, _template_files(plan))
    return plan
