"""The portal's pages: Jinja2 templates (autoescaped) and what they show, in Vietnam time
and Vietnamese words. Nothing here decides; the engine does."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from planflow.notifications.vn_format import vn_number
from planflow.report import plan_words

TEMPLATES = Path(__file__).parent / "templates"
ENV = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True, undefined=StrictUndefined,
                  trim_blocks=True, lstrip_blocks=True)
ENV.filters["number"] = lambda v: vn_number(v, 2)


def render(name: str, **context) -> str:
    return ENV.get_template(name).render(**context)


def local(plan, moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(plan.calendar.tz)


def due_text(plan, due_at: dt.datetime) -> str:
    """``trước 23:59:59 ngày 09/12/2022`` (Vietnam time)."""
    when = local(plan, due_at)
    return f"trước {when:%H:%M:%S} ngày {when:%d/%m/%Y}"


def time_text(plan, moment: dt.datetime) -> str:
    """``14:05:09 ngày 01/12/2022`` (Vietnam time)."""
    when = local(plan, moment)
    return f"{when:%H:%M:%S} ngày {when:%d/%m/%Y}"


def days_left_text(plan, now: dt.datetime, due_at: dt.datetime) -> str:
    """How long is left before the due moment, in working days and calendar days."""
    today, due_day = local(plan, now).date(), local(plan, due_at).date()
    if now > due_at:
        late = plan.calendar.count_working_days(due_day, today)
        return f"Đã quá hạn {late} ngày làm việc; báo cáo gửi bây giờ được ghi nhận là nộp muộn."
    working = plan.calendar.count_working_days(today, due_day)
    calendar = (due_day - today).days
    if calendar == 0:
        return "Hôm nay là ngày cuối cùng của thời hạn."
    return f"Còn {working} ngày làm việc ({calendar} ngày theo lịch)."


def receipt_number(key: str, unit: str, element: str) -> str:
    """The receipt number of a unit's report for a task: derived from the instance, the unit
    and the task (one report per task), so the same report always shows the same number."""
    digest = hashlib.sha256(f"{key}\n{unit}\n{element}".encode()).hexdigest().upper()
    year = key.split("/")[1] if "/" in key else ""
    return f"{year}-{digest[:4]}-{digest[4:8]}"


def groups_view(form, scores: dict | None = None) -> list[dict]:
    """The form's groups, each criterion with its title, maximum, whether the workflow scores
    it (on time) and, for a report already sent, its score."""
    scores = scores or {}
    return [{"code": g.code, "title": g.title, "max": g.max,
             "items": [{"code": i.code, "title": i.title, "max": i.max, "auto": bool(i.auto_from_workflow),
                        "score": scores.get(i.code)} for i in g.items]}
            for g in form.groups]


def task_context(task, now: dt.datetime) -> dict:
    """What every page of a task shows: the unit, the plan, the task, the due date."""
    plan = task.plan
    return {"unit_name": task.unit.name, "plan_name": plan.definition.name, "task_name": task.element.name,
            "form_title": task.form.title, "due": due_text(plan, task.due_at) if task.due_at else None,
            "days_left": days_left_text(plan, now, task.due_at) if task.due_at else None,
            "receipt_number": receipt_number(task.claim.key, task.claim.unit, task.claim.element),
            "coordinator": plan_words(plan)["coordinator"],
            "due_label": "Hạn cho ý kiến" if task.decides else "Hạn báo cáo"}
