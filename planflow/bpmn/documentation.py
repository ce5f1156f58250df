"""The Vietnamese documentation of each process and element in the BPMN export: what a person
opening the file in a modeler reads about a step (who does it, the form, the deadline, the
reminders and the ladder, what a timer does). Export only: the import reads the planflow
extension elements, never these words."""

from __future__ import annotations

from planflow.deadlines import resolve_due
from planflow.due_phrases import due_words, offset_words, read_due, split_offset
from planflow.notifications.vn_format import vn_datetime

HANDLERS = {"record": "Ghi nhận việc đã làm vào nhật ký của kế hoạch.",
            "aggregate": "Tổng hợp, đánh giá, xếp loại kết quả tự đánh giá của các đơn vị."}
WHO = {"unit.head": "người đứng đầu đơn vị", "unit.parent": "đơn vị cấp trên"}

__all__ = ["boundary_text", "element_text", "process_text"]


def _due_text(plan, due) -> str:
    """The plan's words for a deadline and, for a fixed one, the moment the letters name
    ("chậm nhất 17 giờ 00 ngày 09 tháng 12 năm 2022"), read by the plan's calendar."""
    words = due_words(due)
    if read_due(split_offset(due)[0]).kind == "within_working_days":
        return words  # counted from the task's opening: no moment before the plan runs
    return f"{words}, chậm nhất {vn_datetime(resolve_due(plan.calendar, due))}"


def _start_words(timer) -> str:
    parts = timer.cron.split()
    if len(parts) == 5 and all(p.isdigit() for p in parts[:4]) and parts[4] == "*":
        minute, hour, day, month = (int(p) for p in parts[:4])
        when = f"{hour:02d}:{minute:02d} ngày {day}/{month} hằng năm"
    else:
        when = f"theo lịch «{timer.cron}»"
    zone = "Việt Nam" if timer.timezone in (None, "Asia/Ho_Chi_Minh") else timer.timezone
    return f"Bắt đầu lúc {when} (giờ {zone})."


def _user_task_words(plan, e, lane_name: str) -> list[str]:
    form = plan.forms.get(e.form)
    out = [f"Mỗi đơn vị thuộc «{e.for_each}» ({lane_name}) điền biểu mẫu «{form.title if form else e.form}»."]
    if e.due is not None:
        out.append(f"Hạn: {_due_text(plan, e.due)}.")
    if e.reminders:
        out.append("Nhắc việc: " + ", ".join(offset_words(r) for r in e.reminders) + " hạn.")
    for rung in e.escalations:
        who = ", ".join(WHO.get(c) or (plan.registry.get(c).name if c in plan.registry else c) for c in rung.to)
        out.append(f"Quá hạn {offset_words(rung.after)} hạn: báo {who} (mẫu thư «{rung.template}»).")
    return out


def element_text(plan, e, lane_name: str) -> str:
    """What the element does, in Vietnamese; "" for an element nothing needs to be said of."""
    out: list[str] = []
    if e.stage and any(s.id == e.stage for s in plan.definition.stages):
        out.append(f"Giai đoạn: {plan.definition.stage_name(e.stage)}.")
    if e.type == "startEvent" and e.timer is not None:
        out.append(_start_words(e.timer))
    elif e.type == "userTask":
        out += _user_task_words(plan, e, lane_name)
    elif e.type == "serviceTask" and e.handler in HANDLERS:
        out.append(HANDLERS[e.handler])
    elif e.type == "sendTask":
        out.append(f"Gửi thư theo mẫu «{e.template}» đến «{e.to}».")
    elif e.type == "callActivity":
        called = next((p.name for p in plan.definition.subprocesses if p.id == e.process and p.name), e.process)
        out.append(f"Chạy quy trình «{called}» cho mỗi đơn vị thuộc «{e.for_each}».")
    elif e.type == "exclusiveGateway":
        out.append("Rẽ nhánh theo ý kiến, kết quả của bước trước; không điều kiện nào đúng thì theo nhánh mặc định.")
    return " ".join(out)


def boundary_text(b) -> str:
    anchor = "hạn" if b.anchor == "due" else "lúc bắt đầu"
    at = f", lúc {b.at.strftime('%H:%M')}" if b.at else ""
    does = ("đóng việc; đơn vị chưa báo cáo không đủ điều kiện xếp loại" if b.interrupting
            else "mở thêm một nhánh, việc vẫn tiếp tục")
    return f"Hẹn giờ {offset_words(b.after)} {anchor}{at}, {does}."


def process_text(plan, process) -> str:
    d = plan.definition
    if process.id == d.id:
        doc = d.document
        return f"{doc.kind.capitalize()} {doc.title[:1].lower()}{doc.title[1:]}. Căn cứ {doc.basis}. Năm {d.year}."
    callers = [e for p in [d.main, *d.subprocesses] for e in p.elements if e.process == process.id]
    units = ", ".join(f"«{e.for_each}»" for e in callers if e.for_each)
    return f"{process.name or process.id}: chạy riêng cho mỗi đơn vị thuộc {units}." if units else (process.name or "")
