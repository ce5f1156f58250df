"""The units' portal: the page a unit opens from its personal link, and its report.

``create_app(definition, db_url, secret, files_dir)`` is a FastAPI app with two routes,
``GET /u/{token}`` (the task, or what the unit sent) and ``POST /u/{token}`` (the report).
The unit, the plan instance and the task come from the signed token only; the time of
receipt is the server's clock. Every response carries the security headers; every refusal
is a Vietnamese page and records nothing. The token is never logged.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from pathlib import Path
from typing import Callable

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from planflow.clock import now_of
from planflow.portal import access
from planflow.portal.links import MIN_SECRET
from planflow.portal.pages import groups_view, render, task_context, time_text
from planflow.portal.reporting import SCORE_FIELD, ReportRefused, report
from planflow.portal.security import (CSRF_COOKIE, CSRF_FIELD, RateLimit, csrf_field, csrf_ok, new_csrf_cookie,
                                      security_headers, token_tag)
from planflow.portal.uploads import UploadRefused, max_upload, size_text

log = logging.getLogger("planflow.portal")
FORM_OVERHEAD = 256 * 1024  # bytes of a report's form besides its file (scores, notes, boundaries)


class PortalConfigError(ValueError):
    """The portal cannot start as configured (said why)."""


class Portal:
    """What the routes share: where the plans, the store and the files are; the clock; the limits."""

    def __init__(self, definition, db_url: str, secret: str, files_dir, clock: Callable[[], dt.datetime],
                 rate: RateLimit, upload_limit: int):
        self.definition, self.db_url, self.secret = str(definition), db_url, secret
        self.files_dir, self.clock, self.rate, self.upload_limit = Path(files_dir), clock, rate, upload_limit

    def page(self, request: Request, name: str, status: int = 200, **context) -> HTMLResponse:
        context.setdefault("title", "Báo cáo tự đánh giá")
        return HTMLResponse(render(name, nonce=request.state.nonce, **context), status_code=status)

    def refusal(self, request: Request, status: int, title: str, message: str) -> HTMLResponse:
        return self.page(request, "message.html.j2", status, title=title, message=message)

    def now(self, task) -> dt.datetime:
        """The server's time for the task's instance: its replay clock for a replayed year, the
        real clock for a live one (``planflow.clock.now_of``), unless the app was given a clock."""
        return self.clock() if self.clock is not None else now_of(task.engine, task.claim.key)

    def limited(self, request: Request, token: str) -> HTMLResponse | None:
        if self.rate.allow(token_tag(token)):
            return None
        return self.refusal(request, 429, "Quá nhiều yêu cầu",
                            "Đường dẫn này được mở quá nhiều lần trong thời gian ngắn. Vui lòng thử lại sau một phút.")

    def task_page(self, request: Request, task, status: int = 200, error: str | None = None,
                  values: dict | None = None) -> HTMLResponse:
        """The page of a task in its state: the form (open), what was sent, not open yet, closed."""
        now = self.now(task)
        context = task_context(task, now)
        if task.state == access.SUBMITTED:
            sent, context["days_left"] = task.sent, None
            return self.page(request, "sent.html.j2", status, **context, groups=groups_view(task.form, sent.scores),
                             total=sent.total, received=time_text(task.plan, sent.submitted_at), late=sent.late,
                             sha256=None, file_name=None)
        if task.state == access.NOT_OPEN:
            return self.refusal(request, status, "Nhiệm vụ chưa mở",
                                f"Nhiệm vụ “{task.element.name}” của {task.unit.name} chưa mở. Đơn vị sẽ nhận "
                                "được văn bản kèm đường dẫn khi nhiệm vụ bắt đầu.")
        if task.state == access.CLOSED:
            return self.refusal(request, 410, access.EXPIRED,
                                f"Nhiệm vụ “{task.element.name}” đã đóng; hệ thống không nhận báo cáo qua đường dẫn "
                                "này nữa. Vui lòng liên hệ Sở Nội vụ.")
        cookie = request.cookies.get(CSRF_COOKIE) or new_csrf_cookie()
        response = self.page(request, "task.html.j2", status, **context, groups=groups_view(task.form),
                             step=task.form.step, score_field=SCORE_FIELD, error=error, values=values or {},
                             csrf_name=CSRF_FIELD, csrf=csrf_field(self.secret, cookie, request.path_params["token"]),
                             max_upload=size_text(self.upload_limit))
        response.set_cookie(CSRF_COOKIE, cookie, httponly=True, samesite="strict", path="/u/",
                            secure=request.url.scheme == "https")
        return response


def create_app(definition, db_url: str, secret: str | None, files_dir, clock: Callable[[], dt.datetime] | None = None,
               *, rate_limit: int = 30, upload_limit: int | None = None) -> FastAPI:
    """The portal for the plans of ``definition`` (a file or a folder) in the store ``db_url``;
    refuses to be built without a signing secret of at least 32 characters."""
    if not secret or len(secret) < MIN_SECRET:
        raise PortalConfigError(f"the portal needs a signing secret of at least {MIN_SECRET} characters: "
                                "set PLANFLOW_PORTAL_SECRET or the Prefect Secret block 'planflow-portal-secret'")
    portal = Portal(definition, db_url, secret, files_dir, clock, RateLimit(rate_limit),
                    upload_limit or max_upload())
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.state.portal = portal

    @app.middleware("http")
    async def headers(request: Request, call_next):
        request.state.nonce = secrets.token_urlsafe(16)
        response = await call_next(request)
        response.headers.update(security_headers(request.state.nonce))
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code in (404, 405):
            return portal.refusal(request, exc.status_code, "Không tìm thấy trang",
                                  "Vui lòng mở đúng đường dẫn trong văn bản đơn vị đã nhận.")
        return portal.refusal(request, exc.status_code, "Yêu cầu không hợp lệ",
                              "Trình duyệt đã gửi một biểu mẫu hệ thống không đọc được. Vui lòng mở lại đường dẫn "
                              "và gửi lại.")

    @app.get("/u/{token}", response_class=HTMLResponse)
    def open_task(token: str, request: Request):
        refused = portal.limited(request, token)
        if refused is not None:
            return refused
        try:
            task = access.resolve(portal.secret, token, portal.definition, portal.db_url)
        except access.Refusal as exc:
            log.info("link %s refused: %s", token_tag(token), exc.title)
            return portal.refusal(request, exc.status, exc.title, exc.message)
        return portal.task_page(request, task)

    @app.post("/u/{token}", response_class=HTMLResponse)
    async def send_report(token: str, request: Request):
        return await receive_report(portal, token, request)

    return app


async def receive_report(portal: Portal, token: str, request: Request) -> HTMLResponse:
    refused = portal.limited(request, token)
    if refused is not None:
        return refused
    length = request.headers.get("content-length", "")
    if not length.isdigit():
        return portal.refusal(request, 411, "Yêu cầu không hợp lệ", "Trình duyệt cần gửi độ dài của biểu mẫu.")
    if int(length) > portal.upload_limit + FORM_OVERHEAD:
        return portal.refusal(request, 413, "Tệp quá lớn", f"Tệp báo cáo tối đa {size_text(portal.upload_limit)}.")
    try:
        task = await run_in_threadpool(access.resolve, portal.secret, token, portal.definition, portal.db_url)
    except access.Refusal as exc:
        log.info("report on link %s refused: %s", token_tag(token), exc.title)
        return portal.refusal(request, exc.status, exc.title, exc.message)
    if task.state != access.OPEN:
        return portal.task_page(request, task, status=409)
    async with request.form(max_files=1, max_fields=200, max_part_size=64 * 1024) as fields:
        if not csrf_ok(portal.secret, request.cookies.get(CSRF_COOKIE), fields.get(CSRF_FIELD), token):
            return portal.refusal(request, 403, "Phiên làm việc không hợp lệ",
                                  "Biểu mẫu đã hết hiệu lực hoặc không được gửi từ trang của hệ thống. "
                                  "Vui lòng mở lại đường dẫn và gửi lại.")
        now = portal.now(task)
        try:
            receipt = await report(task, fields, portal.files_dir, portal.upload_limit, now)
        except (ReportRefused, UploadRefused) as exc:
            log.info("report of %s refused: %s", task.unit.code, exc.message)
            typed = {k: v for k, v in fields.items() if isinstance(v, str) and k != CSRF_FIELD}
            return portal.task_page(request, task, status=exc.status, error=exc.message, values=typed)
    log.info("report of %s received (link %s)", task.unit.code, token_tag(token))
    context = {**task_context(task, now), "days_left": None}
    return portal.page(request, "sent.html.j2", 200, **context, groups=groups_view(task.form, receipt.scores),
                       total=receipt.total, received=time_text(task.plan, receipt.received_at), late=receipt.late,
                       sha256=receipt.upload.sha256, file_name=receipt.upload.name, just_sent=True)
