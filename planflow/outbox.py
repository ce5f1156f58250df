"""The outbox: every notification is a row first, keyed so it is queued once and sent once.

Queueing. The engine queues rows inside the transaction of the step that decides them
(``queue``); the key (instance, element, token, recipient, kind, level) is unique, so a
retried or replayed step queues nothing twice. A process that dies before delivery loses
nothing: the row is still ``pending``.

Delivering (``flows/delivery.py`` drives these functions). A row moves
``pending -> sending -> sent``; a failure moves it back to ``pending`` (temporary, the
Prefect task retries with exponential backoff) or to ``failed`` (permanent: a refused
address, a 5xx reply, a template that cannot render; or temporary failures that reached
``PLANFLOW_OUTBOX_MAX_ATTEMPTS``, default 5). A ``failed`` row is an *incident*: shown by
``planflow status`` and ``planflow notifications``, put back to ``pending`` by
``planflow notifications --retry`` (``requeue_failed``, audited as ``notification.retried``).
``attempts`` counts claims, i.e. delivery attempts, including one cut short by a crash.

Exactly once, and where it stops. Before sending, a deliverer *claims* the row with a
conditional ``UPDATE ... SET status='sending' WHERE id=? AND status='pending'`` and goes on
only if it changed one row (``claim``); on PostgreSQL the second of two concurrent claims
waits for the first to commit, re-reads the row and changes nothing, on SQLite writers are
serialized by ``BEGIN IMMEDIATE``. So two deliverers running at once never send the same
row. Marking it ``sent`` (or releasing it) is conditional on still holding the claim.

What a claim cannot cover is a deliverer that dies between handing the message to its
channel and marking the row ``sent``. Such a row stays ``sending``; it is taken over
(claimed again, compare-and-swap on ``claimed_by``) once its lease has run out
(``PLANFLOW_OUTBOX_LEASE_SECONDS``, default 600, measured on the wall clock, not on the
plan's ``as_of``), or at once when the claimant ran on this host and its process is gone.
Then:

* the file channel writes ``<key>.eml`` again, atomically replacing the same file: a
  notification is never delivered twice;
* SMTP may deliver it twice at worst (the first copy may have left before the crash).
  Both copies carry the same ``Message-ID`` (built from the key), so a receiver or a
  mail system that deduplicates on it shows one. SMTP cannot do better: there is no
  two-phase commit between a mail server and our database.

A deliverer slower than the lease (a mail server hanging for 10 minutes) can likewise be
overtaken; keep the lease well above the SMTP time-out (``PLANFLOW_SMTP_TIMEOUT``, 10 s).
Lease checks use this machine's clock: hosts sharing a store need roughly synchronized
clocks (minutes of skew, not seconds, would matter).
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid

from sqlalchemy import func, or_, select, update

from planflow import store as s
from planflow.letters import plan_context
from planflow.report import letter_results


def encode(value):
    """JSON-safe form of a template context (dates and datetimes tagged)."""
    if isinstance(value, dt.datetime):
        return {"__datetime__": value.isoformat()}
    if isinstance(value, dt.date):
        return {"__date__": value.isoformat()}
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    return value


def decode(value):
    if isinstance(value, dict):
        if set(value) == {"__datetime__"}:
            return dt.datetime.fromisoformat(value["__datetime__"])
        if set(value) == {"__date__"}:
            return dt.date.fromisoformat(value["__date__"])
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


def render_context(plan, row, db=None, reports: dict | None = None) -> dict:
    """The template context of a queued row: what the row stores, plus the plan itself
    (the same for every letter, so it is added here rather than stored in each row) and,
    for a letter that names a report (``report_id``: publication, report upward, review
    request), its ``results``, read from ``db``'s report row (``reports``: report id ->
    results, kept by a delivery run). A row queued with its ``results`` keeps them."""
    context = {"plan": plan_context(plan), **decode(row.context)}
    if "report_id" in context and "results" not in context:
        context["results"] = letter_results(db, context["report_id"], reports)
    return context


def queue(conn, rows: list[dict], as_of: dt.datetime) -> None:
    """Queue notifications; a row whose key exists already is left as it is.

    A row's ``context`` holds what is particular to that letter; ``render_context`` adds
    the plan, and the results of the report a row names, when it is delivered."""
    if rows:
        conn.execute(s.insert_ignore(conn, s.outbox), [
            {**r, "context": encode(r["context"]), "status": "pending", "attempts": 0,
             "created_at": as_of} for r in rows])


STATUSES = ("pending", "sending", "sent", "failed")
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_LEASE_SECONDS = 600


def env_number(name: str, default: float, minimum: float) -> float:
    """A numeric setting from the environment, checked (a bad value names the variable)."""
    text = os.environ.get(name)
    if text in (None, ""):
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number, not {text!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum:g}, not {text!r}")
    return value


def max_attempts() -> int:
    """Attempts after which a row that keeps failing temporarily becomes ``failed``."""
    return int(env_number("PLANFLOW_OUTBOX_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS, 1))


def lease() -> dt.timedelta:
    """How long a claim protects a row in ``sending`` from being taken over."""
    return dt.timedelta(seconds=env_number("PLANFLOW_OUTBOX_LEASE_SECONDS", DEFAULT_LEASE_SECONDS, 0))


def now() -> dt.datetime:
    """The wall clock, for claims and leases (the plan's ``as_of`` is for what users read)."""
    return dt.datetime.now(dt.timezone.utc)


def worker_id() -> str:
    """Who claims: ``host:pid:nonce``, one per delivery run."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _claimant_gone(claimed_by: str | None) -> bool:
    """True when the claim was made on this host by a process that no longer runs."""
    if not claimed_by:
        return False
    parts = claimed_by.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname():
        return False
    try:
        pid = int(parts[1])
    except ValueError:
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: it runs, as another user
        return False
    return False


def deliverable(db, *, instance_ids: list[int] | None = None, definition_id: str | None = None,
                ids: list[int] | None = None, at: dt.datetime | None = None,
                lease_for: dt.timedelta | None = None, limit: int = 100_000) -> list:
    """Rows to deliver: ``pending`` ones, and ``sending`` ones whose claimant is gone.

    Restricted to ``instance_ids``, to the instances of ``definition_id``, to ``ids``.
    A ``sending`` row is taken over when its claim is older than the lease, or when its
    claimant ran on this host and has died. Read without locks: ``claim`` decides.
    """
    at = at or now()
    cutoff = at - (lease() if lease_for is None else lease_for)
    with db.connect() as conn:
        q = select(s.outbox).where(or_(s.outbox.c.status == "pending", s.outbox.c.status == "sending"))
        if instance_ids is not None:
            q = q.where(s.outbox.c.instance_id.in_(instance_ids))
        if definition_id is not None:
            q = q.where(s.outbox.c.instance_id.in_(
                select(s.instances.c.id).where(s.instances.c.definition_id == definition_id)))
        if ids is not None:
            q = q.where(s.outbox.c.id.in_(ids))
        rows = conn.execute(q.order_by(s.outbox.c.id).limit(limit)).all()
    return [r for r in rows if r.status == "pending"
            or r.claimed_at is None or r.claimed_at < cutoff or _claimant_gone(r.claimed_by)]


def claim(db, row, owner: str, at: dt.datetime | None = None) -> bool:
    """Claim ``row`` for ``owner``; True only for the one deliverer that got it.

    A pending row is claimed if it is still pending; a row in ``sending`` only if it is
    still held by the same (expired or dead) claimant that ``deliverable`` saw.
    """
    cond = [s.outbox.c.id == row.id, s.outbox.c.status == row.status]
    if row.status == "sending":
        cond.append(s.outbox.c.claimed_by == row.claimed_by if row.claimed_by is not None
                    else s.outbox.c.claimed_by.is_(None))
    elif row.status != "pending":
        return False
    with db.begin() as conn:
        return conn.execute(update(s.outbox).where(*cond).values(
            status="sending", claimed_at=at or now(), claimed_by=owner,
            attempts=s.outbox.c.attempts + 1)).rowcount == 1


def mark_sent(db, row_id: int, owner: str, as_of: dt.datetime) -> bool:
    """The channel accepted the message: ``sent`` (if ``owner`` still holds the claim)."""
    with db.begin() as conn:
        return conn.execute(update(s.outbox).where(
            s.outbox.c.id == row_id, s.outbox.c.status == "sending", s.outbox.c.claimed_by == owner)
            .values(status="sent", sent_at=as_of)).rowcount == 1


def release(db, row_id: int, owner: str, error: str, *, permanent: bool, limit: int | None = None,
            at: dt.datetime | None = None) -> str | None:
    """A delivery failed: back to ``pending``, or ``failed`` when permanent or out of attempts.

    Returns the new status, or None when ``owner`` no longer held the claim. A row that
    becomes ``failed`` is recorded in ``audit`` as ``notification.failed``.
    """
    limit = max_attempts() if limit is None else limit
    with db.begin() as conn:
        row = conn.execute(select(s.outbox).where(
            s.outbox.c.id == row_id, s.outbox.c.status == "sending", s.outbox.c.claimed_by == owner)).first()
        if row is None:
            return None
        status = "failed" if permanent or row.attempts >= limit else "pending"
        changed = conn.execute(update(s.outbox).where(
            s.outbox.c.id == row_id, s.outbox.c.status == "sending", s.outbox.c.claimed_by == owner)
            .values(status=status, last_error=error[:2000])).rowcount
        if not changed:
            return None
        if status == "failed":
            conn.execute(s.audit.insert().values(
                at=at or now(), instance_id=row.instance_id, actor="delivery", action="notification.failed",
                element_id=row.element_id, unit_code=row.recipient,
                detail={"key": row.key, "kind": row.kind, "attempts": row.attempts,
                        "permanent": permanent, "error": error[:500]}))
        return status


def _roots(conn, instance_ids: set[int]) -> dict[int, object]:
    """The root instance row of each instance id."""
    parent: dict[int, int | None] = {}
    frontier = set(instance_ids)
    while frontier:
        rows = conn.execute(select(s.instances.c.id, s.instances.c.parent_id)
                            .where(s.instances.c.id.in_(frontier))).all()
        parent.update({r.id: r.parent_id for r in rows})
        frontier = {r.parent_id for r in rows if r.parent_id is not None and r.parent_id not in parent}
    root_ids = {}
    for iid in instance_ids:
        top = iid
        while parent.get(top) is not None:
            top = parent[top]
        root_ids[iid] = top
    roots = {r.id: r for r in conn.execute(select(s.instances).where(s.instances.c.id.in_(set(root_ids.values()))))}
    return {iid: roots[top] for iid, top in root_ids.items() if top in roots}


def failed(db, ids: list[int] | None = None) -> list[dict]:
    """The incidents: ``failed`` rows, each with its root instance (key, definition)."""
    with db.connect() as conn:
        q = select(s.outbox).where(s.outbox.c.status == "failed")
        if ids is not None:
            q = q.where(s.outbox.c.id.in_(ids))
        rows = conn.execute(q.order_by(s.outbox.c.id)).all()
        roots = _roots(conn, {r.instance_id for r in rows})
    out = []
    for r in rows:
        root = roots.get(r.instance_id)
        context = r.context or {}
        out.append({
            "id": r.id, "key": r.key, "kind": r.kind, "recipient": r.recipient,
            "email": ((context.get("recipient") or {}).get("email")), "attempts": r.attempts,
            "last_error": r.last_error, "instance_id": r.instance_id, "element_id": r.element_id,
            "root_key": root.key if root is not None else None,
            "definition_id": root.definition_id if root is not None else None,
            "definition_digest": root.definition_digest if root is not None else None,
        })
    return out


def statuses(db, ids: list[int]) -> dict[int, tuple[str, str | None]]:
    """``{id: (status, last_error)}`` of the rows ``ids``."""
    with db.connect() as conn:
        return {r.id: (r.status, r.last_error) for r in conn.execute(
            select(s.outbox.c.id, s.outbox.c.status, s.outbox.c.last_error).where(s.outbox.c.id.in_(ids)))}


def counts(db, instance_ids: list[int] | None = None) -> dict[str, int]:
    with db.connect() as conn:
        q = select(s.outbox.c.status, func.count()).group_by(s.outbox.c.status)
        if instance_ids is not None:
            q = q.where(s.outbox.c.instance_id.in_(instance_ids))
        return dict(conn.execute(q).all())


def requeue_failed(db, ids: list[int], *, actor: str, reason: str | None,
                   at: dt.datetime | None = None) -> list[int]:
    """Put ``failed`` rows back to ``pending`` with a fresh attempt count; audit who and why.

    Returns the ids that were requeued (a row no longer ``failed`` is left alone).
    """
    at = at or now()
    done: list[int] = []
    with db.begin() as conn:
        rows = conn.execute(select(s.outbox).where(s.outbox.c.id.in_(ids), s.outbox.c.status == "failed")).all()
        for row in rows:
            changed = conn.execute(update(s.outbox).where(s.outbox.c.id == row.id, s.outbox.c.status == "failed")
                                   .values(status="pending", attempts=0)).rowcount
            if not changed:
                continue
            conn.execute(s.audit.insert().values(
                at=at, instance_id=row.instance_id, actor=actor, action="notification.retried",
                element_id=row.element_id, unit_code=row.recipient,
                detail={"key": row.key, "kind": row.kind, "reason": reason,
                        "previous_attempts": row.attempts, "previous_error": (row.last_error or "")[:500]}))
            done.append(row.id)
    return done


def units_of_letter(row) -> set[str]:
    """The units a letter concerns: its recipient, the unit it is about, and every unit an
    escalation to a higher body lists (a commune's escalation goes to its district)."""
    listed = (row.context or {}).get("units") or []
    return {row.recipient, row.unit_code, *(u.get("code") for u in listed if isinstance(u, dict))} - {None}


def failed_rows(db, instance_ids: list[int] | None) -> list[dict]:
    """The ``failed`` letters of these instances (all when None): id, step, recipient, kind,
    the units they concern, attempts and last error, oldest first."""
    with db.connect() as conn:
        q = select(s.outbox).where(s.outbox.c.status == "failed")
        if instance_ids is not None:
            q = q.where(s.outbox.c.instance_id.in_(instance_ids))
        rows = conn.execute(q.order_by(s.outbox.c.id)).all()
    return [{"id": r.id, "step": r.element_id, "recipient": r.recipient, "kind": r.kind, "attempts": r.attempts,
             "error": r.last_error, "units": sorted(units_of_letter(r) - {r.recipient})} for r in rows]
