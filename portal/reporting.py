"""A unit's report from the portal's form to the engine: the scores read and checked against
the form (the engine's own check), the file received, then the engine's one submission path
with the server's clock, then the Prefect event."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from starlette.concurrency import run_in_threadpool

from planflow import Submission, SubmissionError
from planflow.portal.pages import receipt_number
from planflow.portal.uploads import UploadRefused, receive
from planflow.submissions import ScoreError, score_payload

log = logging.getLogger("planflow.portal")
MAX_NOTES = 5000  # characters
SCORE_FIELD = "score-"  # the form's input of a criterion: score-<code>


class ReportRefused(UploadRefused):
    """A report the portal does not pass on: the HTTP status and the Vietnamese reason (the
    same shape as a refused file's)."""


def criterion_words(form, code: str) -> str:
    item = form.items.get(code)
    return f"tiêu chí {code} ({item.title})" if item else f"tiêu chí {code}"


def read_scores(form, fields) -> dict:
    """The scores typed in the form, by criterion code (``1,5`` or ``1.5``); the criteria the
    workflow scores are not the unit's to send."""
    scores = {}
    for code, item in form.items.items():
        if item.auto_from_workflow:
            continue
        text = str(fields.get(f"{SCORE_FIELD}{code}") or "").strip().replace(",", ".")
        if not text:
            raise ReportRefused(400, f"Chưa nhập điểm cho {criterion_words(form, code)}.")
        try:
            value = float(text)
        except ValueError:
            raise ReportRefused(400, f"Điểm của {criterion_words(form, code)} không phải là số.") from None
        scores[code] = int(value) if value.is_integer() else value
    return scores


def check_scores(form, scores: dict, late: bool) -> None:
    """The engine's check of a payload against its form (``score_payload``), said in Vietnamese
    with the criterion it names (``ScoreError.code``), its maximum and the form's step."""
    try:
        score_payload(form, {"scores": scores}, late)
    except ScoreError as exc:
        item = form.items.get(exc.code)
        if item is None:
            raise ReportRefused(400, "Điểm chưa hợp lệ; vui lòng kiểm tra lại phiếu.") from None
        raise ReportRefused(400, f"Điểm của {criterion_words(form, item.code)} không hợp lệ: phải từ 0 đến "
                                 f"{item.max:g}, là bội số của {form.step:g}.") from None
    except ValueError:
        raise ReportRefused(400, "Điểm chưa hợp lệ; vui lòng kiểm tra lại phiếu.") from None


def notes_of(fields) -> str:
    notes = str(fields.get("notes") or "").strip()
    if len(notes) > MAX_NOTES:
        raise ReportRefused(400, f"Phần ghi chú dài quá {MAX_NOTES} ký tự.")
    return notes


async def report(task, fields, files_dir: Path, limit: int, now: dt.datetime) -> None:
    """Record the unit's report through the engine; ``ReportRefused`` (nothing recorded) when refused."""
    form = task.form
    scores = read_scores(form, fields)
    late = task.due_at is not None and now.replace(microsecond=0) > task.due_at
    check_scores(form, scores, late)
    notes = notes_of(fields)
    file = fields.get("file")
    if file is None or isinstance(file, str):
        raise ReportRefused(400, "Chưa chọn tệp báo cáo (PDF hoặc DOCX) có chữ ký.")
    upload = await receive(file, files_dir, limit)
    payload = {"scores": scores, "notes": notes, "file": upload.payload()}
    actor = f"unit:{task.unit.code} (đường dẫn cá nhân)"
    receipt = {"number": receipt_number(task.claim.key, task.unit.code, task.element.id),
               "file": {"name": upload.name, "sha256": upload.sha256}}
    try:
        recorded = await run_in_threadpool(
            task.engine.submit, [Submission(task.unit.code, now, payload, task.element.id, actor=actor,
                                            receipt=receipt)], now, root_id=task.root_id)
    except SubmissionError as exc:
        log.info("report of %s refused by the engine: %s", task.unit.code, exc)
        recorded = 0
    if not recorded:  # refused, or another request of the unit's claimed the task first
        upload.discard()
        raise ReportRefused(409, "Hệ thống không ghi nhận được báo cáo: nhiệm vụ không còn mở hoặc đơn vị "
                                 "đã gửi báo cáo. Vui lòng tải lại trang.") from None
    upload.keep(files_dir)
    emit(task, now, actor)


def emit(task, now: dt.datetime, actor: str) -> None:
    """``planflow.unit.submitted`` to the Prefect server the portal works with, so its automation
    moves the plan on. Without a server (no ``PREFECT_API_URL``), or when it cannot be reached,
    the report stays recorded (the engine has it) and the log says the event was not sent."""
    try:
        from prefect.settings import get_current_settings

        if not get_current_settings().api.url:
            log.warning("PREFECT_API_URL is not set: the event of %s's report was not sent", task.unit.code)
            return
        from planflow.flows.events import emit_submitted

        emit_submitted(task.plan, task.claim.key, task.unit.code, task.element.id, now, actor)
    except Exception as exc:  # noqa: BLE001 - the report is recorded; the event is a nudge
        log.warning("the event of %s's report was not sent: %s", task.unit.code, exc)
