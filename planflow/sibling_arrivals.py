"""Sibling tokens arriving together: several transitions in one transaction.

``Engine.advance`` reads a batch of active tokens (oldest first) and cuts it into *runs*:
consecutive tokens of the batch on the same element of the same process — the start
events of the sub-processes a call activity has just created, the user tasks those
start events lead to, the end events of the districts whose communes have all reported.
A run is interpreted in one transaction (at most ``RUN_LIMIT`` tokens), not one per
token. That is the rule since issue 15; it keeps what made one transaction per
transition safe:

* every token is still claimed by a conditional ``UPDATE`` (``tokens.claim_many``: one
  statement, ``RETURNING`` the ids this caller moved), so a replay, a retry or a second
  worker changes nothing twice — a token another worker claimed is simply not among the
  ids returned, and rows that could be written twice keep their unique keys;
* each token is stamped with its own moment (its arrival, ``created_at``), as alone;
* the rows written are those the tokens write one at a time, in the same order (each
  table's rows in token order), so the record does not depend on how tokens were grouped;
* if a run fails (a handler raises, or PostgreSQL picks the transaction as a deadlock
  victim), it is rolled back and interpreted again one token per transaction: the tokens
  before the failing one commit and its error is raised, exactly as before the rule; if
  no token fails alone, the run's error is raised once they all went through (an error is
  never swallowed: a caller that retries finds them done).

The element kinds that many siblings reach at once have a handler for a whole run
(``ON_ARRIVAL_MANY``: start, end, service and send steps, user tasks); the others run
``arrivals.ON_ARRIVAL`` token by token inside the run's transaction.
"""

from __future__ import annotations

from typing import Callable

from sqlalchemy import bindparam, exists, select, update

from planflow import audit, escalation, timers, tokens, units
from planflow import store as s
from planflow.arrivals import ON_ARRIVAL, item_rows, open_items
from planflow.deadlines import resolve_due

RUN_LIMIT = 500  # tokens per transaction: bounds how long a writer holds SQLite's lock

# rows of ``tokens.in_status``: (id, instance_id, element_id, process_id, created_at)
Row = tuple


def runs(batch: list[Row], limit: int | None = None) -> list[list[Row]]:
    """The batch cut into runs of consecutive tokens on one element of one process, each
    of at most ``limit`` tokens (``RUN_LIMIT``; 1: one transaction per token)."""
    limit = RUN_LIMIT if limit is None else limit
    out: list[list[Row]] = []
    for row in batch:
        last = out[-1] if out else None
        if last is not None and len(last) < limit and last[0][2] == row[2] and last[0][3] == row[3]:
            last.append(row)
        else:
            out.append([row])
    return out


def arrive(conn, plan, run: list[Row]) -> None:
    """Interpret one run inside the caller's transaction."""
    proc = plan.definition.process(run[0][3])
    element = proc.element(run[0][2])
    many = ON_ARRIVAL_MANY.get(element.type) if len(run) > 1 else None
    if many is not None:  # its handlers read only what an instance never changes (scope, parent)
        insts = {r.id: r for r in conn.execute(select(s.instances).where(
            s.instances.c.id.in_(sorted({row[1] for row in run}))))}
        if many(conn, plan, insts, element, run):
            return
    handler = ON_ARRIVAL[element.type]
    for token_id, iid, _element_id, _process_id, arrived_at in run:
        # the instance read as each token comes, as when every token had its own transaction
        handler(conn, plan, tokens.instance_row(conn, iid), proc, element, token_id,
                tokens.local(plan, arrived_at))


# --- handlers of a whole run: each returns False to leave the run to the one-token handlers,
# --- deciding so before it writes anything


def _passed(element, token_id, iid, at) -> tuple[list[dict], dict]:
    """The tokens ``tokens.pass_through`` emits for one token, and its audit row."""
    return ([dict(key=f"{token_id}>{t}", instance_id=iid, element_id=t, status="active", created_at=at)
             for t in element.next], audit.entry(at, iid, audit.ENGINE, "element.completed", element.id))


def _write(conn, emitted: list[dict], audits: list[dict], items=(), timer_rows=()) -> None:
    if emitted:
        conn.execute(s.insert_ignore(conn, s.tokens), emitted)
    open_items(conn, items)
    if timer_rows:
        conn.execute(s.insert_ignore(conn, s.timers), list(timer_rows))
    if audits:
        audit.record_all(conn, audits)


def _pass_many(conn, plan, insts, element, run) -> bool:
    """``tokens.pass_through`` of every token of the run (start events)."""
    claimed = tokens.claim_many(conn, [r[0] for r in run], "completed", completed_at=s.tokens.c.created_at)
    emitted, audits = [], []
    for token_id, iid, _e, _p, arrived_at in run:
        if token_id in claimed:
            rows, entry = _passed(element, token_id, iid, tokens.local(plan, arrived_at))
            emitted += rows
            audits.append(entry)
    _write(conn, emitted, audits)
    return True


def _service_many(conn, plan, insts, element, run) -> bool:
    """``arrivals.on_service`` of every token: each step becomes ready for a flow to run."""
    claimed = tokens.claim_many(conn, [r[0] for r in run], "ready")
    _write(conn, [], [audit.entry(tokens.local(plan, arrived_at), iid, audit.ENGINE, "step.ready", element.id)
                      for token_id, iid, _e, _p, arrived_at in run if token_id in claimed])
    return True


def _user_many(conn, plan, insts, element, run) -> bool:
    """``arrivals.on_user`` of every token: each task opens its work items and timers (a
    task over no unit valid on its day passes through, as alone)."""
    arriving, memo = [], {}
    for token_id, iid, _e, _p, arrived_at in run:
        at = tokens.local(plan, arrived_at)
        members = units.in_collection(plan, element.for_each, insts[iid].scope_unit, at)
        if members and at not in memo:  # the due moment and ladder of tasks opening at one moment
            due = resolve_due(plan.calendar, element.due, start=at)
            memo[at] = (due, escalation.start(plan, element, due, at))
        arriving.append((token_id, iid, at, members))
    claimed = tokens.claim_many(conn, [t for t, _, _, m in arriving if not m], "completed",
                                completed_at=s.tokens.c.created_at)
    for due in {memo[at][0] for _, _, at, m in arriving if m}:  # one claim per due moment (mostly one)
        claimed |= tokens.claim_many(conn, [t for t, _, at, m in arriving if m and memo[at][0] == due],
                                     "waiting", due_at=due)
    emitted, items, timer_rows, audits = [], [], [], []
    for token_id, iid, at, members in arriving:
        if token_id not in claimed:
            continue
        if not members:
            rows, entry = _passed(element, token_id, iid, at)
            emitted += rows
            audits.append(entry)
            continue
        due, (step, next_notice) = memo[at]
        items += item_rows(token_id, iid, element, members, at, due, step, next_notice)
        timer_rows += timers.rows_for(plan, element, token_id, due, at)
        audits.append(audit.entry(at, iid, audit.ENGINE, "task.opened", element.id,
                                  detail={"units": len(members), "due": due.isoformat()}))
    _write(conn, emitted, audits, items, timer_rows)
    return True


# an instance with no token left open completes (``tokens.end_instance``, for many at once)
_COMPLETE_MANY = (update(s.instances).where(
    s.instances.c.id.in_(bindparam("_iids", expanding=True)), s.instances.c.status == "running",
    ~exists().where(s.tokens.c.instance_id == s.instances.c.id,
                    s.tokens.c.status.in_(("active", "waiting", "ready"))))
    .values(status="completed", ended_at=bindparam("_at")).returning(s.instances.c.id))


def _end_many(conn, plan, insts, element, run) -> bool:
    """``arrivals.on_end`` of every token: instances with nothing left open complete, and a
    call activity moves on at the last of its sub-processes, as token by token."""
    claimed = tokens.claim_many(conn, [r[0] for r in run], "completed", completed_at=s.tokens.c.created_at)
    last: dict[int, tuple[int, object]] = {}  # instance → its last end token of the run, and when
    for token_id, iid, _e, _p, arrived_at in run:
        if token_id in claimed:
            last[iid] = (token_id, tokens.local(plan, arrived_at))
    completed: set[int] = set()
    for at in {at for _, at in last.values()}:
        completed |= set(conn.scalars(_COMPLETE_MANY, {"_iids": [i for i, (_, a) in last.items() if a == at],
                                                      "_at": at}))
    ending = []  # the completions, in the order the tokens one by one would make them
    for token_id, iid, *_ in run:
        if iid in completed and last[iid][0] == token_id:
            ending.append((iid, last[iid][1]))
    parents = {insts[iid].parent_token_id for iid, _ in ending} - {None}
    done_parents = {p for p in parents if not tokens.siblings_left(conn, p)}
    last_child = {insts[iid].parent_token_id: iid for iid, _ in ending}
    audits: list[dict] = []
    for iid, at in ending:
        audits.append(audit.entry(at, iid, audit.ENGINE, "instance.completed"))
        ptid = insts[iid].parent_token_id
        if ptid in done_parents and last_child[ptid] == iid:
            audit.record_all(conn, audits)  # the rows before the parent's, in their order
            audits = []
            tokens.finish_parent(conn, plan, insts[iid], at)
    if audits:
        audit.record_all(conn, audits)
    return True


ON_ARRIVAL_MANY: dict[str, Callable] = {
    "startEvent": _pass_many,
    "endEvent": _end_many,
    "serviceTask": _service_many,
    "sendTask": _service_many,
    "userTask": _user_many,
}
