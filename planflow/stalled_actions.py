"""What needs an operator, and the action that clears each, in the operator's words: steps
that failed after their retries and letters that could not be delivered (re-triggered from
the ``retrigger-step`` deployment, picking the step and the unit as its lists offer them),
units past their final escalation, incidents. Read from ``Engine.stalled``."""

from __future__ import annotations

import datetime as dt

from planflow.notifications.vn_format import MISSING, short_datetime
from planflow.unit_labels import element_name, step_label, unit_label, unit_name

RETRIGGER = "retrigger-step"
BREAK = "  \n"  # a line break inside a table cell (the cell is Markdown): long actions stay narrow
PAPER = "submit-self-evaluation"

KIND_WORDS = {"step-failed": "Bước bị lỗi", "notification-failed": "Thư không gửi được",
              "past-final-escalation": "Quá hạn sau cấp đôn đốc cuối", "incident": "Sự cố"}

LETTER_WORDS = {"dissemination": "phổ biến Kế hoạch", "reminder": "nhắc hạn", "overdue": "báo quá hạn",
                "escalation-1": "đôn đốc cấp 1", "escalation-2": "đôn đốc cấp 2",
                "escalation-final": "đôn đốc cấp cuối", "review-request": "đề nghị thẩm định",
                "report-upward": "báo cáo kết quả", "review-result": "ý kiến thẩm định",
                "incident": "báo sự cố", "publication": "công khai kết quả", "link": "đường dẫn báo cáo mới"}


def retrigger_action(plan, step: str, unit: str | None) -> str:
    """How to re-run ``step`` (for ``unit`` only when given), as the operator picks it."""
    action = f"Chạy deployment {RETRIGGER}:{BREAK}Bước «{step_label(plan, step)}»{BREAK}"
    if unit:
        return f"{action}Đơn vị «{unit_label(plan.registry, unit)}»"
    return f"{action}Đơn vị để trống (cả bước)"


def _row(kind: str, step: str, unit: str, detail: str, action: str) -> dict:
    return {"Loại": KIND_WORDS.get(kind, kind), "Đơn vị": unit, "Cách xử lý": action, "Bước": step, "Chi tiết": detail}


def _letter_detail(detail: str) -> str:
    kind, _, error = detail.partition(": ")
    return f"Thư {LETTER_WORDS.get(kind, kind)}: {error}" if error else detail


def _due_detail(detail: str, tz) -> str:
    due = detail.removeprefix("due ")
    try:
        return f"Hạn {short_datetime(dt.datetime.fromisoformat(due), tz)}"
    except ValueError:
        return detail


def stalled_row(plan, item: dict) -> dict:
    """One item of ``Engine.stalled`` as the operator reads it, with the action that clears it."""
    kind, step, unit = item["kind"], item["step"], item["unit"]
    name, who = element_name(plan, step), unit_name(plan.registry, unit) if unit else MISSING
    if kind == "step-failed":
        return _row(kind, name, who, item["detail"].replace(" attempt(s):", " lần thử:"),
                    retrigger_action(plan, step, unit))
    if kind == "notification-failed":
        return _row(kind, name, who, _letter_detail(item["detail"]),
                    f"Sửa địa chỉ thư nếu sai, rồi{BREAK}{retrigger_action(plan, step, unit)}")
    if kind == "past-final-escalation":
        return _row(kind, name, who, _due_detail(item["detail"], plan.calendar.tz),
                    f"Liên hệ trực tiếp đơn vị; nhận văn bản giấy thì{BREAK}chạy deployment {PAPER} "
                    f"(mục paper):{BREAK}Đơn vị «{unit_label(plan.registry, unit)}»")
    known = any(p.has(step or "") for p in [plan.definition.main, *plan.definition.subprocesses])
    action = retrigger_action(plan, step, unit) if known else "Xem nhật ký lần chạy bị lỗi, khắc phục nguyên nhân"
    return _row(kind, name, who, item["detail"] or MISSING, action)


def stalled_rows(plan, stalled: list[dict]) -> list[dict]:
    """Every stalled item with its action; a step with several failed letters first gets one
    row that re-triggers them all. A row saying none when nothing is stalled."""
    rows = []
    letters: dict[str, int] = {}
    for item in stalled:
        if item["kind"] == "notification-failed":
            letters[item["step"]] = letters.get(item["step"], 0) + 1
    for step, count in letters.items():
        if count > 1:
            rows.append(_row("notification-failed", element_name(plan, step), f"{count} đơn vị",
                             f"{count} thư không gửi được", retrigger_action(plan, step, None)))
    rows += [stalled_row(plan, item) for item in stalled]
    return rows or [_row(MISSING, MISSING, MISSING, "Không có", "Không cần xử lý")]
