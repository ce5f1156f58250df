"""What ``planflow status`` and ``planflow notifications`` show: progress, open and stalled
steps, failed notifications — read from a store named by its URL."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from planflow import outbox
from planflow import store as s


def instances_status(url: str) -> list[dict]:
    db = s.connect(url)
    out = []
    with db.connect() as conn:
        roots = conn.execute(select(s.instances).where(s.instances.c.parent_id.is_(None))
                             .order_by(s.instances.c.id)).all()
        for root in roots:
            tree = s.tree_ids(conn, root.id)
            items = dict(conn.execute(select(s.work_items.c.status, func.count())
                                      .where(s.work_items.c.instance_id.in_(tree))
                                      .group_by(s.work_items.c.status)).all())
            open_steps = sorted(set(conn.scalars(select(s.tokens.c.element_id).where(
                s.tokens.c.instance_id.in_(tree), s.tokens.c.status.in_(("waiting", "ready", "active"))))))
            stalled = [f"{r.element_id} (token {r.id}, {r.attempts} attempt(s)): {r.last_error}"
                       for r in conn.execute(select(s.tokens).where(
                           s.tokens.c.instance_id.in_(tree), s.tokens.c.status == "ready",
                           s.tokens.c.last_error.is_not(None)))]
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
            out.append({
                "key": root.key, "status": root.status,
                "clock_at": root.clock_at.isoformat() if root.clock_at else None,
                "expected": sum(items.values()), "reported": items.get("submitted", 0),
                "open_steps": open_steps, "stalled": stalled, "incidents": incidents,
            })
    return out


def masked_url(url: str) -> str:
    """A store's URL as it may be shown: its password masked."""
    return make_url(url).render_as_string(hide_password=True)


def outbox_overview(url: str, ids: list[int] | None = None) -> dict:
    """The store's outbox for ``planflow notifications``: the URL shown (masked), how many
    notifications are in each status, and the failed ones (only ``ids`` if given)."""
    db = s.connect(url)
    incidents = outbox.failed(db, ids=ids)
    return {"store": masked_url(url), "counts": outbox.counts(db), "incidents": incidents}
