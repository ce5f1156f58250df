"""Service steps: what a serviceTask's ``handler`` names, and the sendTask step.

A flow runs these inside Prefect tasks (with the definition's retry policy); each call
runs inside the transaction that completes the step, so its writes commit exactly once.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Callable

from sqlalchemy import update

from planflow import aggregation, letters, outbox, report
from planflow import store as s
from planflow.expressions import review_decision
from planflow.model import SERVICE_HANDLERS


@dataclass
class StepContext:
    engine: Any  # planflow.interpreter.Engine
    conn: Any
    instance: Any
    element: Any
    token: Any
    as_of: dt.datetime

    @property
    def plan(self):
        return self.engine.plan

    def root_id(self) -> int:
        """The plan instance at the top of this step's tree."""
        return s.root_of(self.conn, self.instance.id)


def _record(ctx: StepContext) -> None:
    """A step whose work is done by people outside the system: record that it was done."""
    ctx.conn.execute(s.audit.insert().values(
        at=ctx.as_of, instance_id=ctx.instance.id, actor=ctx.element.lane or "engine",
        action="step.recorded", element_id=ctx.element.id, unit_code=ctx.instance.scope_unit,
        detail={"name": ctx.element.name}))


def _returned_comment(plan, variables: dict) -> str | None:
    """The reviewer's comment when the last review sent the report back (the review task's
    ``output`` variable, its form's choice and text fields: ``expressions.review_decision``)."""
    review = review_decision(plan)
    if review is None or not review.variable or review.comment is None:
        return None
    answer = variables.get(review.variable) or {}
    return answer.get(review.comment) if review.returned(answer) else None


def _aggregate(ctx: StepContext) -> None:
    """Sở Nội vụ (or a district, for its communes) aggregates scores into a report."""
    conn, inst = ctx.conn, ctx.instance
    tree = s.tree_ids(conn, inst.id)
    round_ = report.next_round(conn, inst.id)
    data = aggregation.build(conn, ctx.plan, tree, round_, ctx.as_of)
    comment = _returned_comment(ctx.plan, inst.variables or {})
    markdown = report.render_markdown(ctx.plan, data, comment)
    report.save(conn, key=f"{inst.id}:{ctx.element.id}:{ctx.token.id}", instance_id=inst.id,
                element_id=ctx.element.id, at=ctx.as_of, data=data, markdown=markdown)
    variables = {**(inst.variables or {}), "report": {"round": round_, "counts": data["total"]["counts"]}}
    conn.execute(update(s.instances).where(s.instances.c.id == inst.id).values(variables=variables))


def _send(ctx: StepContext) -> None:
    """A sendTask: queue one message per recipient in the outbox."""
    rows = letters.rows_for_send(ctx)
    outbox.queue(ctx.conn, rows, ctx.as_of)


HANDLERS: dict[str, Callable[[StepContext], None]] = {
    "record": _record,
    "aggregate": _aggregate,
    "send": _send,  # every sendTask
}
assert set(HANDLERS) == {*SERVICE_HANDLERS, "send"}, "planflow.model.SERVICE_HANDLERS names the handlers"
