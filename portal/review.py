"""A reviewer's link: the aggregate report to read and the decision form (approve, return
with a comment…, as the plan's review form has them), recorded through the engine's one
submission path with the reviewer's name, then the Prefect event that moves the plan on.

The form's words and choices are the plan's (``planflow.expressions.review_decision``:
which choice sends the report back); a return needs a comment saying what to add.
"""

from __future__ import annotations

import datetime as dt
import logging

from markdown_it import MarkdownIt
from starlette.concurrency import run_in_threadpool

from planflow import Submission, SubmissionError
from planflow.expressions import review_decision
from planflow.portal.reporting import ReportRefused, emit
from planflow.report import latest_markdown

log = logging.getLogger("planflow.portal")
NAME_FIELD = "reviewer"  # the form's input of the reviewer's name (not a field of the plan's form)
MAX_NAME, MAX_TEXT = 200, 5000  # characters
# raw HTML in the report is shown as text: nothing a unit typed reaches the page unescaped
_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")


def report_html(task) -> str | None:
    """The plan instance's newest aggregate report (with the decisions of earlier rounds), as
    HTML; None before Sở Nội vụ has aggregated."""
    markdown = latest_markdown(task.engine, task.root_id)
    if not markdown:
        return None
    # the report's heading cells break their lines with <br> (escaped like any HTML): a line break
    return _MARKDOWN.render(markdown).replace("&lt;br&gt;", "<br>")


def fields_view(form, values: dict | None = None) -> list[dict]:
    """The form's fields as the page shows them: a choice as its options in the form's words."""
    values = values or {}
    return [{"name": f.name, "type": f.type, "label": f.label or ("Kết luận" if f.type == "choice" else f.name),
             "required": f.required, "value": values.get(f.name, ""),
             "choices": list((f.choices or {}).items())} for f in form.fields]


def answers(form, payload: dict) -> list[tuple[str, str]]:
    """(label, answer) of a decision sent, a choice by its words in the form."""
    out = []
    for f in form.fields:
        value = payload.get(f.name)
        label = f.label or ("Kết luận" if f.type == "choice" else f.name)
        out.append((label, (f.choices or {}).get(value, value) if f.type == "choice" else (value or "không có")))
    return out


def read_decision(task, fields) -> tuple[dict, str]:
    """(payload, reviewer's name) from the form, checked in Vietnamese: every required field,
    a choice among the form's, a comment when the choice returns the report, the name."""
    form, payload = task.form, {}
    for f in form.fields:
        value = str(fields.get(f.name) or "").strip()
        label = f.label or ("kết luận" if f.type == "choice" else f.name)
        if len(value) > MAX_TEXT:
            raise ReportRefused(400, f"Phần “{label}” dài quá {MAX_TEXT} ký tự.")
        if f.type == "choice" and value and value not in (f.choices or {}):
            raise ReportRefused(400, f"Lựa chọn “{label}” không hợp lệ; vui lòng chọn lại.")
        if f.required and not value:
            raise ReportRefused(400, f"Chưa chọn {label.lower()}." if f.type == "choice"
                                else f"Chưa nhập “{label}”.")
        if value:
            payload[f.name] = value
    review = review_decision(task.plan)
    if review is not None and review.comment and payload.get(review.field) in review.returning \
            and not payload.get(review.comment):
        raise ReportRefused(400, "Khi trả lại báo cáo, vui lòng ghi rõ ý kiến, nội dung đề nghị bổ sung.")
    name = " ".join(str(fields.get(NAME_FIELD) or "").split())
    if not name:
        raise ReportRefused(400, "Chưa nhập họ và tên người cho ý kiến.")
    if len(name) > MAX_NAME:
        raise ReportRefused(400, f"Họ và tên dài quá {MAX_NAME} ký tự.")
    return payload, name


async def decide(task, fields, now: dt.datetime) -> None:
    """Record the reviewer's decision through the engine, by name ("<unit code>:<name>", which
    the report shows as "<name> (<reviewing body>)"); ``ReportRefused`` (nothing recorded) when
    refused."""
    payload, name = read_decision(task, fields)
    actor = f"{task.unit.code}:{name}"
    try:
        recorded = await run_in_threadpool(
            task.engine.submit, [Submission(task.unit.code, now, payload, task.element.id, actor=actor)], now,
            root_id=task.root_id)
    except SubmissionError as exc:
        log.info("decision of %s refused by the engine: %s", task.unit.code, exc)
        recorded = 0
    if not recorded:
        raise ReportRefused(409, "Hệ thống không ghi nhận được ý kiến: nhiệm vụ không còn mở hoặc đã có ý kiến "
                                 "gửi trước. Vui lòng tải lại trang.")
    emit(task, now, actor)
