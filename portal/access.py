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

from planflow.annex_xlsx import criterion_scores
from planflow.flows.runtime import RunRef, engine_for
from planflow.flows.served_plans import ServedPlanError, plans_by_id
from planflow.portal.links import BadLink, Claim, read_link
from planflow.summary import build_summary
from planflow.unit_links import generation

OPEN, SUBMITTED, CLOSED, NOT_OPEN = "open", "submitted", "closed", "not_open"
EXPIRED = "Đường dẫn đã hết hạn/đã đóng"


class Refusal(Exception):
    """A link that opens nothing: the status and the words of the page (Vietnamese)."""

    def __init__(self, status: int, title: str, message: str):
        super().__init__(title)
        self.status, self.title, self.message = status, title, message


@dataclass(frozen=True)
class Sent:
    """What the unit sent, as the store keeps it."""

    submitted_at: dt.datetime
    scores: dict
    total: float | None
    late: bool


@dataclass(frozen=True)
class Task:
    """The task a link opens: its plan, unit, element and form, and its state now."""

    claim: Claim
    engine: object  # planflow.Engine of the instance's version of the plan
    root_id: int
    unit: object  # planflow.model.Unit
    element: object  # planflow.model.Element (a user task with a criteria form)
    form: object  # planflow.model.Form
    state: str  # OPEN, SUBMITTED, CLOSED or NOT_OPEN
    due_at: dt.datetime | None
    sent: Sent | None = None

    @property
    def plan(self):
        return self.engine.plan


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


def criteria_element(plan, element_id: str):
    for process in [plan.definition.main, *plan.definition.subprocesses]:
        for element in process.elements:
            if element.id == element_id and element.type == "userTask" and element.form \
                    and plan.forms[element.form].kind == "criteria":
                return element
    return None


def resolve(secret: str, token: str, definition: str | Path, db_url: str) -> Task:
    """The task of a link, checked; ``Refusal`` when it may not be opened."""
    claim = claim_of(secret, token)
    engine = engine_of(definition, db_url, claim.key)
    root_id = engine.instance_id(claim.key)
    unit = engine.plan.registry.get(claim.unit)
    element = criteria_element(engine.plan, claim.element)
    if root_id is None or unit is None or element is None:
        raise gone("Kỳ báo cáo hoặc nhiệm vụ của đường dẫn này không còn trên hệ thống.")
    if generation(engine.db, root_id, claim.unit) != claim.generation:
        raise gone("Đơn vị đã được cấp đường dẫn mới; đường dẫn này không còn dùng được. "
                   "Vui lòng mở đường dẫn trong văn bản mới nhất.", "Đường dẫn đã bị thu hồi")
    form = engine.plan.forms[element.form]
    state, due_at, sent = task_state(engine, root_id, claim)
    return Task(claim, engine, root_id, unit, element, form, state, due_at, sent)


def task_state(engine, root_id: int, claim: Claim) -> tuple[str, dt.datetime | None, Sent | None]:
    """(state, due moment, what was sent) of the unit's work item for the link's task."""
    for item in engine.open_work(root_id):
        if item.unit_code == claim.unit and item.element_id == claim.element:
            return OPEN, item.due_at, None
    row = build_summary(engine, root_id)["units"].get(claim.unit)
    if row is None or row["element"] != claim.element:
        return NOT_OPEN, None, None
    due = dt.datetime.fromisoformat(row["due"]) if row["due"] else None
    if row["status"] not in ("on_time", "late"):
        return CLOSED, due, None
    with engine.db.connect() as conn:
        scores = criterion_scores(conn, engine.plan, engine.tree(root_id)).get(claim.unit, {})
    sent = Sent(dt.datetime.fromisoformat(row["submitted_at"]), scores, row["score"], row["status"] == "late")
    return SUBMITTED, due, sent
