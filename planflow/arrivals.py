"""What happens when a token arrives at an element: one handler per element kind.

``ON_ARRIVAL`` is the one table of them, in the manner of Prefect's orchestration rules:
``Engine.advance`` looks up the kind of the element an active token sits on and calls its
handler, inside the transaction of that transition (or of its run of siblings:
``sibling_arrivals``). Every handler has the same signature, ``(conn, plan, instance,
process, element, token_id, as_of)``, and claims the token before it writes anything
(``tokens.claim``), so running it twice changes nothing.
``as_of`` is the moment the token arrived (its ``created_at``), never the clock of the
process that happens to interpret it: a user task opens, and its due moment and ladder
are reckoned, from when the token reached it.

* ``startEvent``, ``exclusiveGateway``: pass through (the gateway to the first condition
  that holds on the instance's variables, else its default);
* ``parallelGateway``: fork, or join once a token arrived on every incoming flow;
* ``serviceTask``, ``sendTask``: become ``ready``, for a flow to run (``Engine.run_step``);
* ``userTask``: one work item per unit of its ``for_each``, with its due moment, its
  ladder of reminders and escalations (``escalation.start``) and its boundary timers;
* ``callActivity``: one sub-process instance per unit (or one for the instance's scope);
* ``endEvent``: the instance completes when nothing of it is left open.

A user task or call activity over no unit (none valid on the day) passes through.
"""

from __future__ import annotations

from typing import Callable

from sqlalchemy import select, update

from planflow import audit, bulk_rows, escalation, timers, tokens, units
from planflow import store as s
from planflow.deadlines import resolve_due
from planflow.expressions import evaluate_condition


def on_start(conn, plan, inst, proc, element, token_id, as_of) -> None:
    tokens.pass_through(conn, inst, element, token_id, as_of)


def on_end(conn, plan, inst, proc, element, token_id, as_of) -> None:
    if tokens.claim(conn, token_id, "completed", as_of):
        tokens.end_instance(conn, plan, inst, as_of)


def on_parallel(conn, plan, inst, proc, element, token_id, as_of) -> None:
    needed = proc.incoming(element.id)
    if needed <= 1:
        return tokens.pass_through(conn, inst, element, token_id, as_of)
    if not tokens.claim(conn, token_id, "waiting", as_of):
        return
    arrived = conn.execute(select(s.tokens.c.id, s.tokens.c.created_at).where(
        s.tokens.c.instance_id == inst.id, s.tokens.c.element_id == element.id,
        s.tokens.c.status == "waiting").order_by(s.tokens.c.id).limit(needed)).all()
    if len(arrived) < needed:
        return
    waiting = [token for token, _ in arrived]
    last = max(created for _, created in arrived)
    as_of = tokens.local(plan, last) if last > as_of else as_of  # the join is done when the last arrived
    conn.execute(update(s.tokens).where(s.tokens.c.id.in_(waiting))
                 .values(status="completed", completed_at=as_of))
    tokens.emit(conn, inst.id, f"join:{waiting[0]}", element.next, as_of)
    audit.record(conn, as_of, inst.id, audit.ENGINE, "element.completed", element.id)


def on_exclusive(conn, plan, inst, proc, element, token_id, as_of) -> None:
    chosen = element.default
    for cond in element.conditions:
        if evaluate_condition(cond.when, inst.variables or {}):
            chosen = cond.next
            break
    tokens.pass_through(conn, inst, element, token_id, as_of, targets=[chosen])


def on_service(conn, plan, inst, proc, element, token_id, as_of) -> None:
    if tokens.claim(conn, token_id, "ready", as_of):
        audit.record(conn, as_of, inst.id, audit.ENGINE, "step.ready", element.id)


_WORK_ITEM_COLUMNS = ("token_id", "instance_id", "element_id", "unit_code", "status", "opened_at", "due_at",
                      "ladder_step", "next_notice_at")


def item_rows(token_id: int, iid: int, element, members, at, due, step: int, next_notice) -> list[tuple]:
    """A user task's open work items, one per unit (rows for ``open_items``)."""
    return [(token_id, iid, element.id, u.code, "open", at, due, step, next_notice) for u in members]


def open_items(conn, rows: list[tuple]) -> None:
    """Write ``item_rows`` (one executemany; an item opened before is left as it is)."""
    bulk_rows.insert_rows(conn, s.work_items, _WORK_ITEM_COLUMNS, rows, ignore=True)


def on_user(conn, plan, inst, proc, element, token_id, as_of) -> None:
    members = units.in_collection(plan, element.for_each, inst.scope_unit, as_of)
    due = resolve_due(plan.calendar, element.due, start=as_of)
    if not members:
        return tokens.pass_through(conn, inst, element, token_id, as_of)
    if not tokens.claim(conn, token_id, "waiting", as_of, due_at=due):  # its due moment in the same UPDATE
        return
    step, next_notice = escalation.start(plan, element, due, as_of)
    open_items(conn, item_rows(token_id, inst.id, element, members, as_of, due, step, next_notice))
    timers.set_for(conn, plan, element, token_id, due, as_of)
    audit.record(conn, as_of, inst.id, audit.ENGINE, "task.opened", element.id,
                 detail={"units": len(members), "due": due.isoformat()})


def on_call(conn, plan, inst, proc, element, token_id, as_of) -> None:
    scopes = ([u.code for u in units.in_collection(plan, element.for_each, inst.scope_unit, as_of)]
              if element.for_each else [inst.scope_unit])
    if not scopes:
        return tokens.pass_through(conn, inst, element, token_id, as_of)
    if not tokens.claim(conn, token_id, "waiting", as_of):
        return
    tokens.create_instances(conn, plan, [f"{inst.key}/{element.id}/{scope}" for scope in scopes],
                            element.process, inst.id, token_id, scopes, as_of, {}, replay=inst.replay)


ON_ARRIVAL: dict[str, Callable] = {
    "startEvent": on_start,
    "endEvent": on_end,
    "parallelGateway": on_parallel,
    "exclusiveGateway": on_exclusive,
    "serviceTask": on_service,
    "sendTask": on_service,
    "userTask": on_user,
    "callActivity": on_call,
}
