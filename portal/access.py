"""Which task a personal link opens, and whether it may be used now.

A link is read (``links.read_link``), then checked against the store through the engine's
public functions: the plan instance its key names, the unit's link generation in force
(``planflow.unit_links``), and the unit's work item for the link's task. Every refusal is a
``Refusal`` with the HTTP status and the Vietnamese words the page shows; nothing is written.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from planflow.flows.runtime import RunRef, engine_for
from planflow.letters import user_task
from planflow.flows.served_plans import ServedPlanError, plans_by_id
from planflow.portal.links import BadLink, Claim, read_link
from planflow.unit_links import generation

OPEN, SUBMITTED, CLOSED, NOT_OPEN = "open", "submitted", "closed", "not_open"
STATES = {"open": OPEN, "submitted": SUBMITTED, "missing": CLOSED}  # a work item's status -> the link's state
EXPIRED = "Đường dẫn đã hết hạn/đã đóng"


class Refusal(Exception):
    """A link that opens nothing: the status and the words of the page (Vietnamese)."""

    def __init__(self, status: int, title: str, message: str):
        super().__init__(title)
        self.status, self.title, self.message = status, title, message


@dataclass(frozen=True)
class Task:
    """The task a link opens: its plan, unit, element and form, and its state now. ``item`` is
    the unit's latest round of the task (``planflow.submissions.UnitItem``; None before it
    opens), ``rounds`` how many times it was asked."""

    claim: Claim
    engine: object  # planflow.Engine of the instance's version of the plan
    root_id: int
    unit: object  # planflow.model.Unit
    element: object  # planflow.model.Element (a user task with a criteria form or a deciding form)
    form: object  # planflow.model.Form
    state: str  # OPEN, SUBMITTED, CLOSED or NOT_OPEN
    item: object | None = None
    rounds: int = 0

    @property
    def plan(self):
        return self.engine.plan

    @property
    def due_at(self) -> dt.datetime | None:
        return self.item.due_at if self.item is not None else None

    def correctable(self, now: dt.datetime) -> bool:
        """Whether the unit may send a corrected report now: the definition's rule
        (``corrections: before_due``), the task still waiting on units, its due moment ahead."""
        item = self.item
        return (self.state == SUBMITTED and self.element.corrections == "before_due" and item.task_waiting
                and now.replace(microsecond=0) <= item.due_at)

    @property
    def decides(self) -> bool:
        """A reviewer's task (the form decides: approve, return…), not a unit's self-evaluation."""
        return self.form.kind != "criteria"


def claim_of(secret: str, token: str) -> Claim:
    try:
        return read_link(secret, token)
    except BadLink:
        raise Refusal(403, "Đường dẫn không hợp lệ",
                      "Đường dẫn này không do hệ thống cấp hoặc đã bị sửa đổi. Vui lòng mở đúng đường dẫn "
                      "trong văn bản đã nhận, hoặc liên hệ Sở Nội vụ để được cấp lại.") from None


def gone(message: str, title: str = EXPIRED) -> Refusal:
    return Refusal(410, title, message)


def engine_of(definition: str | Path, db_url: str, key: str):
    """The engine of the plan instance ``key`` (``<plan id>/<year>``), on the version it started with."""
    plan_id = key.split("/")[0]
    try:
        path = plans_by_id(definition).get(plan_id)
    except ServedPlanError:
        path = None
    if path is None:
        raise gone("Kế hoạch của đường dẫn này không còn được phục vụ trên hệ thống.")
    return engine_for(RunRef(definition=str(path), db_url=db_url, root_key=key))


def portal_element(plan, element_id: str):
    """The user task a link may open: one on a criteria form (a unit's self-evaluation) or on a
    form that decides (a reviewer's decision); None for any other element."""
    element = user_task(plan, element_id)
    form = plan.forms[element.form] if element is not None else None
    return element if form is not None and (form.kind == "criteria" or form.decides) else None


def resolve(secret: str, token: str, definition: str | Path, db_url: str) -> Task:
    """The task of a link, checked; ``Refusal`` when it may not be opened."""
    claim = claim_of(secret, token)
    engine = engine_of(definition, db_url, claim.key)
    root_id = engine.instance_id(claim.key)
    unit = engine.plan.registry.get(claim.unit)
    element = portal_element(engine.plan, claim.element)
    if root_id is None or unit is None or element is None:
        raise gone("Kỳ báo cáo hoặc nhiệm vụ của đường dẫn này không còn trên hệ thống.")
    if generation(engine.db, root_id, claim.unit) != claim.generation:
        raise gone("Đơn vị đã được cấp đường dẫn mới; đường dẫn này không còn dùng được. "
                   "Vui lòng mở đường dẫn trong văn bản mới nhất.", "Đường dẫn đã bị thu hồi")
    items = engine.unit_items(root_id, claim.unit, claim.element)
    latest = items[-1] if items else None
    state = NOT_OPEN if latest is None else STATES.get(latest.status, CLOSED)
    return Task(claim, engine, root_id, unit, element, engine.plan.forms[element.form], state, latest, len(items))
