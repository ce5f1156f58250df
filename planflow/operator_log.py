"""The audit of operator actions, as a table: who, what, why, when (+07:00). Read from the
audit log (``planflow.audit.read``): the replay clock set, steps re-triggered, letters
sent again, paper reports entered for a unit, Ban Dân vận Tỉnh ủy's review decisions (in
the form's words), Sở Nội vụ's revision of a returned report.
A unit's own report is not an operator action (the units table shows it)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from planflow import audit
from planflow import store as s
from planflow.notifications.vn_format import MISSING, short_datetime
from planflow.report import reviewer_name
from planflow.unit_labels import element_name, unit_label

ACTIONS = ("clock.set", "step.retriggered", "notification.retried", "task.submitted")


def _fields_elements(plan) -> dict[str, object]:
    """The user tasks on a "fields" form (a review decision, a revision's note), by id: their form."""
    return {e.id: plan.forms[e.form] for p in [plan.definition.main, *plan.definition.subprocesses]
            for e in p.elements if e.type == "userTask" and e.form and plan.forms[e.form].kind == "fields"}


def _answer(plan, element_id: str, form, payload: dict) -> tuple[str, str]:
    """What a fields-form answer says: a decision in its form's words, or the step and its note."""
    choice = next((f for f in form.fields if f.type == "choice"), None)
    text = next((payload.get(f.name) for f in form.fields if f.type == "text" and payload.get(f.name)), None)
    if form.decides and choice is not None:
        value = payload.get(choice.name)
        return f"Ý kiến thẩm định: {(choice.choices or {}).get(value, value or MISSING)}", text or MISSING
    return element_name(plan, element_id), text or MISSING


def _reviews(conn, tree: list[int], elements: set[str]) -> dict[tuple[str, dt.datetime], dict]:
    """The review submissions' payloads by (unit, moment received)."""
    rows = conn.execute(select(s.submissions.c.unit_code, s.submissions.c.submitted_at, s.submissions.c.payload)
                        .join(s.work_items, s.work_items.c.id == s.submissions.c.work_item_id)
                        .where(s.work_items.c.instance_id.in_(tree), s.work_items.c.element_id.in_(elements)))
    return {(r.unit_code, r.submitted_at): r.payload or {} for r in rows}


def _what_why(plan, row, reviews: dict, review_elements: dict) -> tuple[str, str] | None:
    """What the operator did and why, in words; None for an entry that is not an operator's."""
    detail = row.detail or {}
    tz = plan.calendar.tz
    if row.action == "clock.set":
        return f"Đặt đồng hồ chạy lại: {short_datetime(detail.get('to'), tz)}", detail.get("reason") or MISSING
    if row.action == "step.retriggered":
        unit = f", đơn vị {unit_label(plan.registry, row.unit_code)}" if row.unit_code else ""
        return f"Chạy lại bước «{element_name(plan, row.element_id)}»{unit}", detail.get("reason") or MISSING
    if row.action == "notification.retried":
        return (f"Gửi lại thư «{element_name(plan, row.element_id)}» đến {unit_label(plan.registry, row.unit_code)}",
                detail.get("reason") or MISSING)
    if row.element_id in review_elements:
        received = dt.datetime.fromisoformat(detail["submitted_at"]) if detail.get("submitted_at") else None
        payload = reviews.get((row.unit_code, received), {})
        return _answer(plan, row.element_id, review_elements[row.element_id], payload)
    if detail.get("entered_by"):
        number = detail.get("document_number") or MISSING
        return (f"Nhập báo cáo giấy số {number} thay {unit_label(plan.registry, row.unit_code)}",
                detail.get("entry_reason") or MISSING)
    return None


def operator_rows(engine, root_id: int) -> list[dict]:
    """The operator actions of instance ``root_id``, oldest first; a row saying none otherwise."""
    plan = engine.plan
    elements = _fields_elements(plan)
    with engine.db.connect() as conn:
        tree = s.tree_ids(conn, root_id)
        entries = audit.read(conn, tree, ACTIONS)
        reviews = _reviews(conn, tree, elements) if any(e.element_id in elements for e in entries) else {}
    rows = []
    for row in entries:
        said = _what_why(plan, row, reviews, elements)
        if said is not None:
            who = reviewer_name(plan, row.unit_code, row.actor) if row.element_id in elements else row.actor
            rows.append({"Lúc": short_datetime(row.at, plan.calendar.tz), "Người thực hiện": who,
                         "Việc": said[0], "Lý do / ý kiến": said[1]})
    return rows or [{"Lúc": MISSING, "Người thực hiện": MISSING, "Việc": "Chưa có thao tác nào",
                     "Lý do / ý kiến": MISSING}]
