"""What ``planflow status`` and ``planflow notifications`` show: progress, open and stalled
steps, failed notifications — read from a store named by its URL.

"Reported N/M" counts units as everywhere else (``progress.unit_counts``: the units a
criteria-form task asks, never Ban Dân vận's review), which needs the instance's plan: the
definition given, else the one with the instance's id under ./definitions or shipped with
planflow (the file it was started from first, by its digest).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from sqlalchemy import select

from planflow import outbox
from planflow import store as s
from planflow.store import masked_url  # noqa: F401 - planflow.status.masked_url, used by flows
from planflow.interpreter import Engine
from planflow.loader import Plan, load_plan
from planflow.problems import CalendarError, DefinitionError
from planflow.progress import unit_counts


class Definitions:
    """The plans of a store's instances, found by definition id (and digest), each loaded once."""

    def __init__(self, given: Sequence[Path] = ()):
        from planflow.definitions import shipped

        folders = [Path.cwd() / "definitions", shipped()]
        found = [*given, *(p for f in folders if f.is_dir() for p in sorted(f.glob("*.yaml")))]
        self.paths = list(dict.fromkeys(Path(p).resolve() for p in found))
        self.loaded: dict[Path, Plan | None] = {}

    def plan(self, path: Path) -> Plan | None:
        if path not in self.loaded:
            try:
                self.loaded[path] = load_plan(path)
            except (DefinitionError, CalendarError, OSError, ValueError):
                self.loaded[path] = None  # not a plan this store can be read with
        return self.loaded[path]

    def of(self, definition_id: str, digest: str | None) -> Plan | None:
        """The plan with this id: the file of this digest if there is one, else the first."""
        matches = [p for p in map(self.plan, self.paths) if p is not None and p.id == definition_id]
        return next((p for p in matches if p.digest == digest), matches[0] if matches else None)


def _counts(db, root, plan: Plan | None) -> dict:
    """The instance's "reported N/M" (None, None and a note when its plan cannot be found)."""
    if plan is None:
        return {"reported": None, "expected": None,
                "note": f"definition '{root.definition_id}' not found under ./definitions: units asked unknown"}
    reported, expected = unit_counts(Engine(plan, db), root.id)
    return {"reported": reported, "expected": expected}


def _incidents(conn, tree: list[int]) -> list[str]:
    """Failed notifications, and rows left in 'sending' past their lease (their deliverer died)."""
    incidents = [f"#{r.id} {r.kind} to {r.recipient} after {r.attempts} attempt(s): {r.last_error} "
                 f"(retry: planflow notifications --retry)" for r in conn.execute(
        select(s.outbox).where(s.outbox.c.instance_id.in_(tree), s.outbox.c.status == "failed")
        .order_by(s.outbox.c.id))]
    # a row left in 'sending' past its lease: its deliverer died; the next delivery takes it over
    cutoff = outbox.now() - outbox.lease()
    incidents += [f"#{r.id} {r.kind} to {r.recipient} left sending by {r.claimed_by} since "
                  f"{r.claimed_at.isoformat()}: the next delivery run sends it (maybe a second time)"
                  for r in conn.execute(select(s.outbox).where(
                      s.outbox.c.instance_id.in_(tree), s.outbox.c.status == "sending",
                      s.outbox.c.claimed_at < cutoff).order_by(s.outbox.c.id))]
    return incidents


def instances_status(url: str, definitions: Sequence[Path] = ()) -> list[dict]:
    """Every plan instance in the store: its status and clock, units reported of units asked
    (``reported``/``expected``), open and stalled steps, failed notifications. ``definitions``:
    plan files to read the instances with, before those found by id."""
    db = s.connect(url, create=False)
    plans = Definitions(definitions)
    with db.connect() as conn:
        roots = conn.execute(select(s.instances).where(s.instances.c.parent_id.is_(None))
                             .order_by(s.instances.c.id)).all()
    out = []
    for root in roots:  # one connection at a time: on SQLite each holds the write lock (BEGIN IMMEDIATE)
        plan = plans.of(root.definition_id, root.definition_digest)
        out.append({**_steps(db, root, plan.calendar.tz if plan else None), **_counts(db, root, plan)})
    return out


def _steps(db, root, tz) -> dict:
    """Status, clock (in the plan's time zone when its plan is known), open and stalled
    steps, failed notifications of one instance."""
    with db.connect() as conn:
        tree = s.tree_ids(conn, root.id)
        open_steps = sorted(set(conn.scalars(select(s.tokens.c.element_id).where(
            s.tokens.c.instance_id.in_(tree), s.tokens.c.status.in_(("waiting", "ready", "active"))))))
        stalled = [f"{r.element_id} (token {r.id}, {r.attempts} attempt(s)): {r.last_error}"
                   for r in conn.execute(select(s.tokens).where(
                       s.tokens.c.instance_id.in_(tree), s.tokens.c.status == "ready",
                       s.tokens.c.last_error.is_not(None)))]
        return {"key": root.key, "status": root.status,
                "clock_at": root.clock_at.astimezone(tz).isoformat() if root.clock_at else None,
                "open_steps": open_steps, "stalled": stalled, "incidents": _incidents(conn, tree)}


def outbox_overview(url: str, ids: list[int] | None = None) -> dict:
    """The store's outbox for ``planflow notifications``: the URL shown (masked), how many
    notifications are in each status, and the failed ones (only ``ids`` if given)."""
    db = s.connect(url, create=False)
    incidents = outbox.failed(db, ids=ids)
    return {"store": masked_url(url), "counts": outbox.counts(db), "incidents": incidents}
