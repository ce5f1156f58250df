"""The units' portal: the page a unit opens from its personal link, and its report.

``create_app(definition, db_url, secret, files_dir)`` is a FastAPI app with two routes,
``GET /u/{token}`` (the task, or what was sent; ``views``) and ``POST /u/{token}`` (a unit's
report, ``reporting``, or a reviewer's decision, ``review``).
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
from planflow.portal.pages import render, task_context
from planflow.portal.reporting import ReportRefused, report
from planflow.portal.review import decide
from planflow.portal.security import CSRF_COOKIE, CSRF_FIELD, RateLimit, csrf_ok, security_headers, token_tag
from planflow.portal.views import decided_page, sent_page, task_page
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
        return task_page(portal, request, task)

    @app.post("/u/{token}", response_class=HTMLResponse)
    async def send_report(token: str, request: Request):
        return await receive_report(portal, token, request)

    return app


async def receive_report(portal: Portal, token: str, request: Request) -> HTMLResponse:
    """A unit's report or a reviewer's decision, checked, recorded through the engine; then
    the page of what was sent (read back from the store)."""
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
    if task.state != access.OPEN and not task.correctable(portal.now(task)):
        return task_page(portal, request, task, status=409)
    async with request.form(max_files=1, max_fields=200, max_part_size=64 * 1024) as fields:
        if not csrf_ok(portal.secret, request.cookies.get(CSRF_COOKIE), fields.get(CSRF_FIELD), token):
            return portal.refusal(request, 403, "Phiên làm việc không hợp lệ",
                                  "Biểu mẫu đã hết hiệu lực hoặc không được gửi từ trang của hệ thống. "
                                  "Vui lòng mở lại đường dẫn và gửi lại.")
        now = portal.now(task)
        try:
            if task.decides:
                await decide(task, fields, now)
            else:
                await report(task, fields, portal.files_dir, portal.upload_limit, now)
        except (ReportRefused, UploadRefused) as exc:
            log.info("report of %s refused: %s", task.unit.code, exc.message)
            typed = {k: v for k, v in fields.items() if isinstance(v, str) and k != CSRF_FIELD}
            return task_page(portal, request, task, status=exc.status, error=exc.message, values=typed)
    log.info("report of %s received (link %s)", task.unit.code, token_tag(token))
    task = await run_in_threadpool(access.resolve, portal.secret, token, portal.definition, portal.db_url)
    return sent_page_of(portal, request, task)


def sent_page_of(portal: Portal, request: Request, task) -> HTMLResponse:
    context = {**task_context(task, portal.now(task)), "communes": [], "days_left": None}
    return (decided_page if task.decides else sent_page)(portal, request, task, context, just_sent=True)
