"""The page a link opens, by its task's kind and state: a unit's self-evaluation form or what
it sent (a district's page also lists its communes' progress, read-only); a reviewer's
report and decision form or the decision sent; not open yet; closed."""

from __future__ import annotations

import datetime as dt

from fastapi import Request
from fastapi.responses import HTMLResponse

from planflow.portal import access
from planflow.portal.pages import groups_view, task_context, time_text
from planflow.portal.review import NAME_FIELD, answers, fields_view, report_html
from planflow.portal.reporting import SCORE_FIELD
from planflow.portal.security import CSRF_COOKIE, CSRF_FIELD, csrf_field, new_csrf_cookie
from planflow.portal.uploads import size_text
from planflow.report import reviews_of
from planflow.status_words import moment_status
from planflow.summary import build_summary
from planflow.aggregation import group_of


def task_page(portal, request: Request, task, status: int = 200, error: str | None = None,
              values: dict | None = None) -> HTMLResponse:
    """The page of a task in its state: the form (open), what was sent, not open yet, closed."""
    now = portal.now(task)
    context = {**task_context(task, now), "communes": communes(task, now)}
    if task.state == access.SUBMITTED:
        context["days_left"] = None
        if task.decides:
            return decided_page(portal, request, task, context, status)
        return sent_page(portal, request, task, context, status, error=error, values=values)
    if task.state == access.NOT_OPEN:  # a district sees its communes' progress meanwhile
        return portal.page(request, "waiting.html.j2", status, **{**context, "days_left": None},
                           message=f"Nhiệm vụ “{task.element.name}” của {task.unit.name} chưa mở; khi nhiệm vụ "
                                   "bắt đầu, đơn vị sẽ nhận được văn bản và báo cáo bằng chính đường dẫn này.")
    if task.state == access.CLOSED:
        return portal.refusal(request, 410, access.EXPIRED,
                              f"Nhiệm vụ “{task.element.name}” đã đóng; hệ thống không nhận báo cáo qua đường dẫn "
                              f"này nữa. Vui lòng liên hệ {context['coordinator']}.")
    if task.decides:
        return form_page(portal, request, "review.html.j2", status, **context, report=report_html(task),
                         fields=fields_view(task.form, values), name_field=NAME_FIELD,
                         reviewer=(values or {}).get(NAME_FIELD, ""), round=task.rounds, error=error)
    return form_page(portal, request, "task.html.j2", status, **context, **report_form(portal, task, values),
                     error=error)


def report_form(portal, task, values: dict | None) -> dict:
    """What the self-evaluation form needs: the criteria by group, the step, what was typed."""
    return {"groups": groups_view(task.form), "step": task.form.step, "score_field": SCORE_FIELD,
            "values": values or {}, "max_upload": size_text(portal.upload_limit)}


def form_page(portal, request: Request, template: str, status: int, **context) -> HTMLResponse:
    """A page with a form: its CSRF field, bound to the link, and the cookie it is checked against."""
    cookie = request.cookies.get(CSRF_COOKIE) or new_csrf_cookie()
    response = portal.page(request, template, status, **context, csrf_name=CSRF_FIELD,
                           csrf=csrf_field(portal.secret, cookie, request.path_params["token"]))
    response.set_cookie(CSRF_COOKIE, cookie, httponly=True, samesite="strict", path="/u/",
                        secure=request.url.scheme == "https")
    return response


def sent_page(portal, request: Request, task, context: dict, status: int = 200, just_sent: bool = False,
              error: str | None = None, values: dict | None = None):
    """What the unit sent: the receipt, its scores, its notes and its file's SHA-256; and, where
    the definition lets a unit correct its report before the due date, the form to send it again
    (filled with what was sent)."""
    item = task.item
    payload, file = item.payload, item.payload.get("file") or {}
    shown = dict(context, sent_groups=groups_view(task.form, payload.get("scores")), total=item.total,
                 received=time_text(task.plan, item.submitted_at), late=bool(item.late),
                 notes=payload.get("notes") or "", sha256=file.get("sha256"), file_name=file.get("name"),
                 just_sent=just_sent, error=error)
    if not task.correctable(portal.now(task)):
        return portal.page(request, "sent.html.j2", status, **shown)
    sent = {f"{SCORE_FIELD}{code}": f"{score:g}" for code, score in (payload.get("scores") or {}).items()}
    form = report_form(portal, task, values or {**sent, "notes": payload.get("notes") or ""})
    return form_page(portal, request, "sent.html.j2", status, **shown, **form,
                     correct_until=context.get("due") or "trước hạn báo cáo")


def decided_page(portal, request: Request, task, context: dict, status: int = 200, just_sent: bool = False):
    """The decision the reviewer sent, in the form's words, with who and when."""
    item = task.item
    return portal.page(request, "decided.html.j2", status, **context, answers=answers(task.form, item.payload),
                       received=time_text(task.plan, item.submitted_at), round=task.rounds,
                       reviewer=reviewer_of(task), just_sent=just_sent)


def reviewer_of(task) -> str | None:
    """Who sent the latest decision: the name given, with the reviewing body (``report.reviews``)."""
    decisions = [d for d in reviews_of(task.engine, task.root_id) if d["unit"] == task.unit.code]
    return decisions[-1]["by"] if decisions else None


def communes(task, now: dt.datetime) -> list[dict]:
    """A district's communes asked in this plan instance and where each stands (read-only);
    [] for any other unit."""
    if task.decides or group_of(task.unit) != "district":
        return []
    units = build_summary(task.engine, task.root_id, as_of=now)["units"]
    registry = task.plan.registry
    rows = []
    for code, u in units.items():
        if u.get("district") != task.unit.code or u.get("group") != "commune":
            continue
        unit = registry.get(code)
        rows.append({"name": unit.name if unit else code, "status": moment_status(u["status"], u["due"], now),
                     "reported": u["status"] in ("on_time", "late"),
                     "at": time_text(task.plan, dt.datetime.fromisoformat(u["submitted_at"]))
                     if u.get("submitted_at") else "", "score": u.get("score")})
    return sorted(rows, key=lambda r: r["name"])
