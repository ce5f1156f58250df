"""A unit's personal link to its task: which generation of it is in force.

A link (``planflow.portal.links``) names the plan instance, the unit, the task and a
generation. An operator who revokes a unit's link and sends it a new one (``planflow links
reissue``) moves the generation on, audited; every link of an older generation is refused
from then on. The link's secret never reaches the store: only the generation does.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from sqlalchemy import select, update

from planflow import audit, outbox
from planflow import store as s

__all__ = ["LinkError", "generation", "generations", "reissue"]


class LinkError(ValueError):
    """A link cannot be reissued (said why)."""


def generation(db, root_id: int, unit_code: str) -> int:
    """The generation of ``unit_code``'s links in force in the plan instance ``root_id`` (0: never reissued)."""
    with db.connect() as conn:
        return conn.scalar(select(s.unit_links.c.generation).where(
            s.unit_links.c.instance_id == root_id, s.unit_links.c.unit_code == unit_code)) or 0


def generations(db, root_id: int) -> dict[str, int]:
    """The generation in force of every unit whose links were ever reissued in ``root_id``
    (a unit not in it: 0)."""
    with db.connect() as conn:
        return dict(conn.execute(select(s.unit_links.c.unit_code, s.unit_links.c.generation).where(
            s.unit_links.c.instance_id == root_id)).all())


def reissue(db, root_id: int, unit_code: str, *, actor: str, reason: str, as_of: dt.datetime,
            letters: Callable[[int], list[dict]] | None = None) -> int:
    """Revoke the unit's links and return the new generation; audited with actor and reason.
    ``letters(generation)``: the letters that give the unit its new link, queued in the same
    transaction (a link is never revoked without its replacement on its way)."""
    if not (actor or "").strip() or not (reason or "").strip():
        raise LinkError("name the operator (actor) and the reason: both go to the audit log")
    with db.begin() as conn:
        if conn.scalar(select(s.instances.c.id).where(s.instances.c.id == root_id,
                                                      s.instances.c.parent_id.is_(None))) is None:
            raise LinkError(f"no plan instance {root_id} in the store")
        current = conn.scalar(select(s.unit_links.c.generation).where(
            s.unit_links.c.instance_id == root_id, s.unit_links.c.unit_code == unit_code).with_for_update())
        if current is None:
            conn.execute(s.insert_ignore(conn, s.unit_links),
                         [dict(instance_id=root_id, unit_code=unit_code, generation=1)])
            new = conn.scalar(select(s.unit_links.c.generation).where(
                s.unit_links.c.instance_id == root_id, s.unit_links.c.unit_code == unit_code))
            if new != 1:  # another operator's reissue came first: move on from it
                new = _bump(conn, root_id, unit_code)
        else:
            new = _bump(conn, root_id, unit_code)
        audit.record(conn, as_of, root_id, actor.strip(), "link.reissued", unit_code=unit_code,
                     detail={"generation": new, "reason": reason.strip()})
        if letters is not None:
            outbox.queue(conn, letters(new), as_of)
    return new


def _bump(conn, root_id: int, unit_code: str) -> int:
    conn.execute(update(s.unit_links).where(s.unit_links.c.instance_id == root_id,
                                            s.unit_links.c.unit_code == unit_code)
                 .values(generation=s.unit_links.c.generation + 1))
    return conn.scalar(select(s.unit_links.c.generation).where(
        s.unit_links.c.instance_id == root_id, s.unit_links.c.unit_code == unit_code))
