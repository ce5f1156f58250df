"""Tokens and the instances they run in: the moves every transition is made of.

An instance runs one process of the plan (the main one, or a sub-process a call activity
started for one unit); its tokens sit on elements: ``active`` (to be interpreted),
``waiting`` (on units, sub-processes, a timer or a join), ``ready`` (a service step for a
flow to run), ``running``, ``completed`` or ``cancelled``.

Every function here runs inside the caller's transaction. A move first *claims* its token
with a conditional UPDATE (``claim``), so a replay, a retry or a second worker changes
nothing twice; rows that could be written twice (instances, tokens) have unique keys and
are inserted with ``store.insert_ignore``.

Every move is stamped with the moment it belongs to, not with the clock of whoever runs
it: a token arrives at its element at its ``created_at``, a join at the latest arrival, a
call activity moves on when the last of its sub-processes ended, a step of a replay
completes at the moment it became ready (``moment_of``). So a resumed, late or concurrent
run writes the moments an uninterrupted one writes.
"""

from __future__ import annotations

from typing import Iterable

from sqlalchemy import bindparam, exists, func, or_, select, update

from planflow import audit
from planflow import store as s

# Statements of the hot paths, built once: a transition runs a handful of them, a plan
# cycle thousands, and building a statement costs more than executing its cached compile.
_INSTANCE = select(s.instances).where(s.instances.c.id == bindparam("_iid"))
_CLAIM = (update(s.tokens).where(s.tokens.c.id == bindparam("_tid"), s.tokens.c.status == bindparam("_from"))
          .values(status=bindparam("_to")))
_CLAIM_CLOSING = (update(s.tokens).where(s.tokens.c.id == bindparam("_tid"), s.tokens.c.status == bindparam("_from"))
                  .values(status=bindparam("_to"), completed_at=bindparam("_at")))
_CLAIM_DUE = (update(s.tokens).where(s.tokens.c.id == bindparam("_tid"), s.tokens.c.status == bindparam("_from"))
              .values(status=bindparam("_to"), due_at=bindparam("_due")))
# "is a sibling instance not completed?" as two range lookups on ix_instances_parent_token
# (status < or > 'completed', i.e. != for a NOT NULL column), not a count over every sibling:
# a call activity over N units otherwise costs O(N^2) as its children end
_SIBLINGS_LEFT = select(or_(
    exists().where(s.instances.c.parent_token_id == bindparam("_ptid"), s.instances.c.status < "completed"),
    exists().where(s.instances.c.parent_token_id == bindparam("_ptid"), s.instances.c.status > "completed")))
# a running instance with no token left open completes: one statement, the check and the change
_COMPLETE_INSTANCE = (update(s.instances).where(
    s.instances.c.id == bindparam("_iid"), s.instances.c.status == "running",
    ~exists().where(s.tokens.c.instance_id == bindparam("_iid"),
                    s.tokens.c.status.in_(("active", "waiting", "ready"))))
    .values(status="completed", ended_at=bindparam("_at")))
_LAST_SIBLING_END = select(func.max(s.instances.c.ended_at)).where(s.instances.c.parent_token_id == bindparam("_ptid"))


def local(plan, moment):
    """A moment read from the store (UTC) in the plan's time zone, as callers pass theirs."""
    return moment.astimezone(plan.calendar.tz)


def moment_of(plan, inst, created_at, as_of):
    """The moment a step that a token waited on completes: in a replay (the instance runs on
    plan time) the moment it became ready, whoever runs it and whenever; in a live
    instance the caller's clock, never before the step became ready."""
    if inst.replay or created_at > as_of:
        return local(plan, created_at)
    return as_of


# --- instances -------------------------------------------------------------------------


def instance_row(conn, iid: int):
    return conn.execute(_INSTANCE, {"_iid": iid}).one()


def create_instances(conn, plan, keys: list[str], process_id: str, parent_id, parent_token_id,
                     scope_units: list, as_of, variables: dict, replay: bool = False) -> list[int]:
    """One instance of ``process_id`` per key, each with its start token; a key started
    before is left as it is. The same rows, in the same order, as one key at a time, in
    three statements (plus one to look up keys started before). ``replay``: the instances
    run on plan time (``store.instances.c.replay``; a sub-process inherits its parent's), a
    plan instance's clock starting at ``as_of``."""
    created = {key: iid for iid, key in conn.execute(
        s.insert_ignore(conn, s.instances).returning(s.instances.c.id, s.instances.c.key),
        [dict(key=key, definition_id=plan.id, definition_digest=plan.digest,
              process_id=process_id, parent_id=parent_id, parent_token_id=parent_token_id,
              scope_unit=scope_unit, status="running", started_at=as_of, replay=replay,
              clock_at=as_of if replay and parent_id is None else None, variables=variables)
         for key, scope_unit in zip(keys, scope_units)])}
    before = [key for key in keys if key not in created]  # started before: nothing to do again
    known = {}
    for i in range(0, len(before), 1000):
        known.update(conn.execute(select(s.instances.c.key, s.instances.c.id)
                                  .where(s.instances.c.key.in_(before[i:i + 1000]))).all())
    new = [(key, created[key]) for key in keys if key in created]
    if new:
        start = plan.definition.process(process_id).start
        conn.execute(s.insert_ignore(conn, s.tokens), [dict(
            key=f"{iid}:{start.id}", instance_id=iid, element_id=start.id, status="active",
            created_at=as_of) for _, iid in new])
        audit.record_all(conn, [audit.entry(as_of, iid, audit.ENGINE, "instance.started",
                                            detail={"key": key, "process": process_id}) for key, iid in new])
    return [created.get(key) or known.get(key) for key in keys]


def end_instance(conn, plan, inst, as_of) -> None:
    """An end event was reached: the instance completes once no token of it is left open,
    and the call activity that started it moves on once none of its siblings is left."""
    done = conn.execute(_COMPLETE_INSTANCE, {"_iid": inst.id, "_at": as_of}).rowcount
    if not done:
        return
    audit.record(conn, as_of, inst.id, audit.ENGINE, "instance.completed")
    if inst.parent_token_id is not None and not siblings_left(conn, inst.parent_token_id):
        finish_parent(conn, plan, inst, as_of)


def siblings_left(conn, parent_token_id: int) -> bool:
    """Is a sub-process instance of this call activity's token not completed yet?"""
    return bool(conn.scalar(_SIBLINGS_LEFT, {"_ptid": parent_token_id}))


def finish_parent(conn, plan, inst, as_of) -> None:
    """The call activity that started ``inst`` moves on (none of its sub-processes is left),
    at the moment the last of them ended, whichever of them happens to be interpreted last."""
    last = conn.scalar(_LAST_SIBLING_END, {"_ptid": inst.parent_token_id})
    at = local(plan, last) if last is not None and last > as_of else as_of
    finish_waiting(conn, plan, inst.parent_id, inst.parent_token_id, at)


# --- tokens ----------------------------------------------------------------------------


_IN_STATUS = (select(s.tokens.c.id, s.tokens.c.instance_id, s.tokens.c.element_id, s.instances.c.process_id,
                     s.tokens.c.created_at)
              .join(s.instances, s.instances.c.id == s.tokens.c.instance_id)
              .where(s.tokens.c.status == bindparam("_status"), s.instances.c.definition_id == bindparam("_plan"))
              .order_by(s.tokens.c.id))
_IN_STATUS_IN_TREE = _IN_STATUS.where(s.tokens.c.instance_id.in_(s.IN_TREE))


def in_status(conn, plan, status: str, root_id: int | None):
    """(id, instance_id, element_id, process_id, created_at) of the plan's tokens in
    ``status``, oldest first; only those of the instance tree under ``root_id`` when it is
    given (one statement either way, built once: the tree is a subquery)."""
    if root_id is None:
        return conn.execute(_IN_STATUS, {"_status": status, "_plan": plan.id})
    return conn.execute(_IN_STATUS_IN_TREE, {"_status": status, "_plan": plan.id, "root_id": root_id})


def claim(conn, token_id: int, new_status: str, as_of, *, from_status: str = "active", due_at=None) -> bool:
    """Move a token from ``from_status`` to ``new_status`` (and set its ``due_at`` when
    given, in the same statement); True only for the one caller that moved it."""
    params = {"_tid": token_id, "_from": from_status, "_to": new_status}
    if new_status in ("completed", "cancelled"):
        res = conn.execute(_CLAIM_CLOSING, {**params, "_at": as_of})
    elif due_at is not None:
        res = conn.execute(_CLAIM_DUE, {**params, "_due": due_at})
    else:
        res = conn.execute(_CLAIM, params)
    return res.rowcount == 1


def claim_many(conn, token_ids, new_status: str, *, from_status: str = "active", completed_at=None,
               due_at=None) -> set[int]:
    """``claim`` for many tokens in one ``UPDATE ... RETURNING``: the ids this caller moved
    (a token another worker or an earlier run moved is not among them). ``completed_at``
    and ``due_at`` are set in the same statement when given (a value, or a column of the
    token such as ``created_at``: a token that arrived completes at its arrival)."""
    token_ids = list(token_ids)
    if not token_ids:
        return set()
    values = {"status": new_status}
    if completed_at is not None:
        values["completed_at"] = completed_at
    if due_at is not None:
        values["due_at"] = due_at
    return set(conn.scalars(update(s.tokens).where(s.tokens.c.id.in_(token_ids),
                                                   s.tokens.c.status == from_status)
                            .values(**values).returning(s.tokens.c.id)))


def emit(conn, iid: int, key_prefix: str, targets: Iterable[str], as_of) -> None:
    """An active token on each target element (keyed by where it came from: emitted once)."""
    rows = [dict(key=f"{key_prefix}>{t}", instance_id=iid, element_id=t, status="active",
                 created_at=as_of) for t in targets]
    if rows:
        conn.execute(s.insert_ignore(conn, s.tokens), rows)


def pass_through(conn, inst, element, token_id: int, as_of, targets=None) -> None:
    """Complete an active token at once and move on (to ``targets``, default the element's next)."""
    if claim(conn, token_id, "completed", as_of):
        emit(conn, inst.id, str(token_id), element.next if targets is None else targets, as_of)
        audit.record(conn, as_of, inst.id, audit.ENGINE, "element.completed", element.id)


def finish_waiting(conn, plan, iid: int, token_id: int, as_of, targets=None) -> bool:
    """Complete a token that waited (on units, children or a timer) and move on; its
    timers that have not fired are cancelled."""
    if not claim(conn, token_id, "completed", as_of, from_status="waiting"):
        return False
    inst = instance_row(conn, iid)
    element_id = conn.scalar(select(s.tokens.c.element_id).where(s.tokens.c.id == token_id))
    element = plan.definition.process(inst.process_id).element(element_id)
    conn.execute(update(s.timers).where(s.timers.c.token_id == token_id,
                                        s.timers.c.fired_at.is_(None)).values(cancelled=True))
    emit(conn, iid, str(token_id), element.next if targets is None else targets, as_of)
    audit.record(conn, as_of, iid, audit.ENGINE, "element.completed", element.id)
    return True


def settle(conn, plan, token_ids: set[int], as_of) -> None:
    """Complete the user tasks whose every work item is closed."""
    if not token_ids:
        return
    still_open = set(conn.scalars(select(s.work_items.c.token_id).where(
        s.work_items.c.token_id.in_(token_ids), s.work_items.c.status == "open").distinct()))
    done = sorted(token_ids - still_open)
    if len(done) > 1:
        return _finish_waiting_many(conn, plan, done, as_of)
    for token_id in done:
        iid = conn.scalar(select(s.tokens.c.instance_id).where(s.tokens.c.id == token_id))
        finish_waiting(conn, plan, iid, token_id, as_of)


def _finish_waiting_many(conn, plan, token_ids: list[int], as_of) -> None:
    """``finish_waiting`` for many tokens in a few statements: the same rows, in the same
    order, as finishing them one by one (ascending token id)."""
    claimed = claim_many(conn, token_ids, "completed", from_status="waiting", completed_at=as_of)
    if not claimed:
        return
    rows = {r.id: r for r in conn.execute(
        select(s.tokens.c.id, s.tokens.c.instance_id, s.tokens.c.element_id, s.instances.c.process_id)
        .join(s.instances, s.instances.c.id == s.tokens.c.instance_id).where(s.tokens.c.id.in_(claimed)))}
    conn.execute(update(s.timers).where(s.timers.c.token_id.in_(claimed), s.timers.c.fired_at.is_(None))
                 .values(cancelled=True))
    emitted, audits = [], []
    for token_id in token_ids:
        if token_id not in claimed:
            continue
        r = rows[token_id]
        element = plan.definition.process(r.process_id).element(r.element_id)
        emitted += [dict(key=f"{token_id}>{t}", instance_id=r.instance_id, element_id=t, status="active",
                         created_at=as_of) for t in element.next]
        audits.append(audit.entry(as_of, r.instance_id, audit.ENGINE, "element.completed", element.id))
    if emitted:
        conn.execute(s.insert_ignore(conn, s.tokens), emitted)
    audit.record_all(conn, audits)
