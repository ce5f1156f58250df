"""A running year keeps its definition: the files an instance started with, kept in the store.

When a plan instance starts, the files its plan was read from (definition, registry, forms,
its own calendar and templates — ``Plan.sources``) are kept under their digest. Whoever works
on the instance afterwards gets the plan it started with (:func:`plan_for`), even when the
file was edited since: the edit reaches the next year's instance. ``planflow validate`` names
the running instances a change does not reach (:func:`behind`); moving one onto the current
version is an operator's explicit, audited act (:func:`migrate`).
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select, update

from planflow import audit
from planflow import store as s
from planflow.loader import Plan, load_plan
from planflow.plan_cache import cached_plan, long_lived
from planflow.plan_years import year_of_key

__all__ = ["Behind", "MigrationError", "behind", "keep", "migrate", "plan_for", "started_version", "years"]


class MigrationError(ValueError):
    """A running instance cannot move onto another version of its definition (said why)."""


@dataclass(frozen=True)
class Behind:
    """A running plan instance on another version of its definition than the file's."""

    key: str
    started_at: dt.datetime
    digest: str


def _files(plan: Plan) -> list[list[str]]:
    base = Path(plan.sources[0]).parent
    return [[Path(os.path.relpath(p, base)).as_posix(), Path(p).read_text(encoding="utf-8")] for p in plan.sources]


def keep(conn, plan: Plan, as_of: dt.datetime) -> None:
    """Keep the plan's files under its digest (once)."""
    if not plan.sources:
        return
    exists = conn.scalar(select(s.plan_versions.c.digest).where(s.plan_versions.c.digest == plan.digest))
    if exists is None:
        conn.execute(s.insert_ignore(conn, s.plan_versions),
                     [dict(digest=plan.digest, definition_id=plan.id, files=_files(plan), kept_at=as_of)])


def _versions_dir() -> Path:
    """Where kept versions are written back as files to be read: private to this user."""
    root = Path(tempfile.gettempdir()) / f"planflow-versions-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
    root.mkdir(mode=0o700, exist_ok=True)
    if hasattr(os, "getuid") and (root.stat().st_uid != os.getuid() or root.stat().st_mode & 0o077):
        raise PermissionError(f"{root} is not private to this user: remove it")
    return root


def _written_out(digest: str, files: list[list[str]]) -> Path:
    """The kept files as a folder (written once per digest); the definition's path in it."""
    depth = max(Path(rel).parts.count("..") for rel, _ in files)
    folder = _versions_dir() / digest
    base = folder.joinpath(*(["v"] * (depth + 1)))
    if not (folder / ".complete").exists():
        staging = Path(tempfile.mkdtemp(dir=_versions_dir()))
        for rel, text in files:
            target = staging.joinpath(*(["v"] * (depth + 1))) / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        (staging / ".complete").write_text("")
        try:
            staging.rename(folder)
        except OSError:  # another process wrote it first: the same files
            pass
    return (base / files[0][0]).resolve()


def _root_digest(conn, key: str) -> str | None:
    return conn.scalar(select(s.instances.c.definition_digest)
                       .where(s.instances.c.key == key, s.instances.c.parent_id.is_(None)))


def started_version(db, key: str) -> str | None:
    """The digest of the version the instance ``key`` runs on; None before it starts."""
    if not key:
        return None
    with db.connect() as conn:
        return _root_digest(conn, key)


def plan_for(db, key: str, path: str | Path, year: int | None = None) -> Plan:
    """The plan instance ``key`` works on: the version it started with when it has started
    (and that version was kept), else the file's plan for the key's year."""
    current = cached_plan(path, year or year_of_key(key))
    with db.connect() as conn:
        digest = _root_digest(conn, key) if key else None
        if digest is None or digest == current.digest:
            return current
        files = conn.scalar(select(s.plan_versions.c.files).where(s.plan_versions.c.digest == digest))
    if not files:  # started before versions were kept: the file is all there is
        return current
    return long_lived(load_plan(_written_out(digest, files), current.year))


def years(db, plan_id: str, running: bool = False) -> list[int]:
    """The years of the plan's instances in the store (``<plan id>/<year>``), oldest first."""
    query = select(s.instances.c.key).where(s.instances.c.definition_id == plan_id, s.instances.c.parent_id.is_(None))
    if running:
        query = query.where(s.instances.c.status == "running")
    with db.connect() as conn:
        keys = conn.scalars(query).all()
    return sorted({y for y in map(year_of_key, keys) if y is not None and f"{plan_id}/{y}" in keys})


def behind(db, plan: Plan) -> list[Behind]:
    """The running instances of ``plan``'s id started on another version than the file's."""
    with db.connect() as conn:
        rows = conn.execute(select(s.instances.c.key, s.instances.c.started_at, s.instances.c.definition_digest)
                            .where(s.instances.c.definition_id == plan.id, s.instances.c.parent_id.is_(None),
                                   s.instances.c.status == "running",
                                   s.instances.c.definition_digest != plan.digest)
                            .order_by(s.instances.c.key)).all()
    return [Behind(r.key, r.started_at, r.definition_digest) for r in rows]


def migrate(db, key: str, plan: Plan, *, actor: str, reason: str, as_of: dt.datetime) -> str:
    """Move the running instance ``key`` (and its sub-processes) onto ``plan``'s version, audited;
    refused when a step it waits at is not in the new version. Returns the old digest."""
    if not actor.strip() or not reason.strip():
        raise MigrationError("name the operator (actor) and the reason: both go to the audit log")
    with db.begin() as conn:
        row = conn.execute(select(s.instances.c.id, s.instances.c.definition_digest, s.instances.c.status)
                           .where(s.instances.c.key == key, s.instances.c.parent_id.is_(None))).one_or_none()
        if row is None or not key.startswith(f"{plan.id}/"):
            raise MigrationError(f"no instance '{key}' of plan '{plan.id}' in the store")
        if row.status != "running":
            raise MigrationError(f"instance '{key}' is {row.status}: only a running one moves")
        ids = s.tree_ids(conn, row.id)
        _check_steps(conn, plan, ids)
        keep(conn, plan, as_of)
        conn.execute(update(s.instances).where(s.instances.c.id.in_(ids)).values(definition_digest=plan.digest))
        audit.record(conn, as_of, row.id, actor.strip(), "instance.migrated",
                     detail={"from": row.definition_digest, "to": plan.digest, "reason": reason.strip()})
    return row.definition_digest


def _check_steps(conn, plan: Plan, ids: list[int]) -> None:
    """Every step a token of these instances is at must exist in the new version."""
    rows = conn.execute(select(s.instances.c.process_id, s.tokens.c.element_id)
                        .join(s.tokens, s.tokens.c.instance_id == s.instances.c.id)
                        .where(s.instances.c.id.in_(ids), s.tokens.c.status.notin_(("completed", "cancelled")))
                        .distinct()).all()
    processes = {p.id: p for p in (plan.definition.main, *plan.definition.subprocesses)}
    missing = [f"{process_id}:{element_id}" for process_id, element_id in rows
               if process_id not in processes or not processes[process_id].has(element_id)]
    if missing:
        raise MigrationError("the new version has no step " + ", ".join(sorted(missing)) +
                             ": the instance waits there; keep those steps or finish them first")
