"""The flows operators and schedules run for real (deployed by ``prefect.yaml`` / ``planflow serve``).

- ``plan-cycle``: once a year (cron in Asia/Ho_Chi_Minh) — start the year's instance and
  disseminate the plan;
- ``deadline-sweep``: every working day at office opening (08:00);
- ``advance``: move the instance on after submissions (an automation on
  ``planflow.unit.submitted`` starts it);
- ``submit-self-evaluation``, ``review-decision``: what a unit (or an operator entering a
  paper report for it) and Ban Dân vận Tỉnh ủy enter; the Prefect UI renders their typed
  parameters as forms;
- ``retrigger-step``: re-run a stalled step; ``set-replay-clock``: move a replay's clock.

Nothing a caller sends chooses the definition, the store or the instance: they are fixed
where the deployments run — ``PLANFLOW_DEFINITION``, ``PLANFLOW_DATABASE_URL`` and
``PLANFLOW_OUTBOX_DIR`` in the environment of ``planflow serve`` (which sets them from its
arguments) or of the worker — and the instance is the definition's year. Every action by a
person names its ``actor``, kept in the audit log.

Time is the instance's clock (``planflow.clock``): the real clock for a live instance, the
replay clock an operator set for a replay; never a time a caller gives. Every flow ends by
refreshing the instance's artifacts, so the UI shows where the plan stands.

``submit-self-evaluation``'s form (``ScoreSheet``: one field per criterion of the plan's
form) is built the first time the flow or the form is looked up, not when this module is
imported (see ``__getattr__``).
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from pathlib import Path
from typing import Annotated, Literal, Optional

from prefect import flow, get_run_logger
from prefect.events import emit_event
from pydantic import BaseModel, ConfigDict, Field, create_model

from planflow import Submission, SubmissionError, load_plan
from planflow.clock import ClockError, now_of, real_now
from planflow.clock import set_replay_clock as set_clock_of
from planflow.definitions import shipped
from planflow.flows.artifacts import publish_artifacts
from planflow.flows.runtime import RunRef, engine_for, root_id
from planflow.flows.stages import deadline_sweep, delivery_task, drive

SHIPPED_DEFINITION = "hai-duong-dan-van-2022.yaml"

Actor = Annotated[str, Field(min_length=1, max_length=200, pattern=r"\S",
                             description="Người thực hiện (đơn vị:họ-tên), ghi vào nhật ký")]
Reason = Annotated[str, Field(min_length=1, pattern=r"\S", description="Lý do, ghi vào nhật ký")]


class OperatorError(ValueError):
    """A refusal an operator can act on; the flow run fails with this message, nothing written."""


class PaperReport(BaseModel):
    """A report a unit sent on paper, entered by an operator (the run's ``actor``)."""

    document_number: str = Field(min_length=1, max_length=100, pattern=r"\S", title="Số văn bản",
                                 description="Số, ký hiệu của văn bản, ví dụ 12/BC-STP")
    document_date: dt.date = Field(title="Ngày văn bản")
    reason: str = Field(min_length=1, pattern=r"\S", title="Lý do nhập thay đơn vị")


def definition_path() -> str:
    """The definition the deployments run: ``PLANFLOW_DEFINITION``, else the shipped plan."""
    return os.environ.get("PLANFLOW_DEFINITION") or str(shipped(SHIPPED_DEFINITION))


def instance_key(plan, year: int | None = None) -> str:
    return f"{plan.id}/{year or plan.definition.year}"


def plan_ref() -> RunRef:
    """Where the deployed flows work, read from the environment they run in."""
    plan = load_plan(definition_path())
    db_url = os.environ.get("PLANFLOW_DATABASE_URL") or f"sqlite:///{Path.cwd() / 'out' / 'planflow.db'}"
    return RunRef(definition=str(plan.path), db_url=db_url, root_key=instance_key(plan),
                  outbox_dir=os.environ.get("PLANFLOW_OUTBOX_DIR", str(Path.cwd() / "out" / "outbox")))


def _started(ref: RunRef):
    """The engine of the plan's instance, and the instance's now; refused before it starts."""
    engine = engine_for(ref)
    if engine.instance_id(ref.root_key) is None:
        raise OperatorError(f"plan instance '{ref.root_key}' has not started: run plan-cycle first "
                            "(for a past year, set-replay-clock first)")
    return engine, now_of(engine, ref.root_key)


def _actor(actor: str) -> str:
    if not (actor or "").strip():
        raise OperatorError("name who does this (actor): it is kept in the audit log")
    return actor.strip()


async def _drive_and_publish(ref: RunRef, now: dt.datetime) -> None:
    """Move the instance on, then refresh its artifacts — also when a step failed, so that the
    ``stalled`` table shows the step the run stopped at."""
    try:
        await drive(ref, now)
    except BaseException:
        try:
            await publish_artifacts(ref, now)
        except Exception:  # noqa: BLE001 - the step's failure is the one to report
            get_run_logger().exception("artifacts of %s not refreshed", ref.root_key)
        raise
    await publish_artifacts(ref, now)


def score_sheet(definition: str | None = None) -> type[BaseModel]:
    """A pydantic model with one field per criterion of the plan's form: the UI shows a form.

    Strict: a criterion the form does not have is refused (not dropped), and a score must be
    a number (``"5"`` is refused, not converted)."""
    plan = load_plan(definition or definition_path())
    form = next(f for f in plan.forms.values() if f.kind == "criteria")
    fields = {}
    for code, item in form.items.items():
        if item.auto_from_workflow:
            continue
        fields[code.replace(".", "_")] = (float, Field(ge=0, le=item.max, multiple_of=form.step,
                                                        title=f"{code}. {item.title}", description=f"tối đa {item.max:g} điểm"))
    return create_model("ScoreSheet", __doc__=form.title, __config__=ConfigDict(extra="forbid", strict=True), **fields)


@flow(name="plan-cycle", description="Ban hành Kế hoạch năm: khởi tạo và phổ biến đến các nơi nhận.")
async def plan_cycle(year: Optional[int] = None) -> str:
    """Start the plan's instance (once) and run what is ready: dissemination. A live start
    runs on the real clock; a replay is started by ``set-replay-clock`` and runs on its own."""
    ref = plan_ref()
    engine = engine_for(ref)
    plan_year = engine.plan.definition.year
    if year is not None and year != plan_year:
        raise OperatorError(f"definition '{engine.plan.id}' is the plan of {plan_year}, not {year}: "
                            "give the definition of that year")
    if engine.instance_id(ref.root_key) is None:
        now = real_now()
        if now.astimezone(engine.plan.calendar.tz).year > plan_year:
            raise OperatorError(f"the plan of {plan_year} cannot start on today's clock: to run a past year "
                                "again, set its replay clock first (deployment set-replay-clock)")
        engine.start(ref.root_key, now)
    else:
        now = now_of(engine, ref.root_key)
    await _drive_and_publish(ref, now)
    return ref.root_key


@flow(name="advance", description="Chuyển tiếp các bước sau khi đơn vị gửi báo cáo hoặc có ý kiến thẩm định.")
async def advance() -> None:
    ref = plan_ref()
    _, now = _started(ref)
    await _drive_and_publish(ref, now)


def _emit_submitted(ref: RunRef, unit: str, element: str | None, at: dt.datetime) -> None:
    emit_event(event="planflow.unit.submitted",
               resource={"prefect.resource.id": f"planflow.unit.{unit}"},
               payload={"instance": ref.root_key, "element": element, "at": at.isoformat()})


def _submit(ref: RunRef, engine, submission: Submission, now: dt.datetime) -> None:
    try:
        engine.submit([submission], now, root_id=root_id(ref))
    except SubmissionError as exc:
        raise OperatorError("; ".join(exc.problems)) from None


def _paper_fields(paper: PaperReport | None, now: dt.datetime, tz) -> dict:
    """The Submission fields of a paper report; a document dated after its receipt is refused."""
    if paper is None:
        return {}
    received = now.astimezone(tz).date()
    if paper.document_date > received:
        raise OperatorError(f"document {paper.document_number} is dated {paper.document_date:%d/%m/%Y}, "
                            f"after it was received ({received:%d/%m/%Y})")
    return {"document_number": paper.document_number.strip(), "document_date": paper.document_date,
            "entry_reason": paper.reason.strip()}


def submit_self_evaluation_flow(sheet: type[BaseModel]):
    """The ``submit-self-evaluation`` flow, its ``scores`` typed by ``sheet`` (the UI's form)."""

    async def submit_self_evaluation(unit: str, scores: BaseModel, actor: Actor, evidence: str = "", note: str = "",
                                     paper: Optional[PaperReport] = None) -> str:
        """Record one unit's self-evaluation (checked against the criteria form), received now:
        on the instance's clock. ``paper``: a report the unit sent on paper, entered by ``actor``.

        Args:
            unit: Mã đơn vị báo cáo, ví dụ so-tu-phap
            scores: Điểm tự đánh giá theo từng tiêu chí
            actor: Người gửi (đơn vị:họ-tên), hoặc cán bộ nhập thay khi đơn vị gửi văn bản giấy
            evidence: Tài liệu kiểm chứng
            note: Ghi chú
            paper: Chỉ khi nhập thay báo cáo bằng văn bản giấy: số, ngày văn bản và lý do
        """
        ref = plan_ref()
        engine, now = _started(ref)
        who = _actor(actor)
        payload = {"scores": {k.replace("_", "."): v for k, v in scores.model_dump().items()},
                   "evidence": evidence, "note": note}
        submission = Submission(unit=unit, submitted_at=now, payload=payload, actor=who,
                                **_paper_fields(paper, now, engine.plan.calendar.tz))
        _submit(ref, engine, submission, now)
        _emit_submitted(ref, unit, None, now)
        get_run_logger().info("Đã nhận báo cáo tự đánh giá của %s lúc %s (%s%s)", unit, now.isoformat(), who,
                              f", văn bản số {paper.document_number}" if paper else "")
        await publish_artifacts(ref, now)
        return unit

    submit_self_evaluation.__annotations__["scores"] = sheet  # what Prefect renders and validates
    submit_self_evaluation.__qualname__ = "submit_self_evaluation"
    return flow(name="submit-self-evaluation",
                description="Đơn vị gửi kết quả tự đánh giá công tác dân vận.")(submit_self_evaluation)


@flow(name="review-decision", description="Ban Dân vận Tỉnh ủy: thống nhất hoặc trả lại kết quả tổng hợp.")
async def review_decision(decision: Literal["approve", "return"], actor: Actor, comment: str = "") -> str:
    """Ban Dân vận Tỉnh ủy's decision on the aggregate report; ``actor``: the reviewer.

    Args:
        decision: approve (thống nhất) hoặc return (trả lại)
        actor: Người thẩm định của Ban Dân vận Tỉnh ủy (đơn vị:họ-tên)
        comment: Ý kiến
    """
    ref = plan_ref()
    engine, now = _started(ref)
    who = _actor(actor)
    reviewer = (engine.plan.registry.group("reviewers") or [None])[0]
    if reviewer is None:
        raise OperatorError("the registry has no unit in group 'reviewers'")
    _submit(ref, engine, Submission(unit=reviewer.code, submitted_at=now,
                                    payload={"decision": decision, "comment": comment or None}, actor=who), now)
    _emit_submitted(ref, reviewer.code, "review", now)
    get_run_logger().info("Ý kiến thẩm định của %s (%s): %s", reviewer.code, who, decision)
    await publish_artifacts(ref, now)
    return decision


@flow(name="retrigger-step", description="Chạy lại một bước bị đình trệ; ghi người thực hiện và lý do.")
async def retrigger_step(step: str, reason: Reason, actor: Actor, unit: Optional[str] = None) -> int:
    """Re-run ``step`` where it is stalled (optionally for one unit's sub-process or letters).

    Args:
        step: Bước cần chạy lại, ví dụ aggregate
        reason: Lý do chạy lại
        actor: Người thực hiện (đơn vị:họ-tên)
        unit: Chỉ cho một đơn vị (tùy chọn)
    """
    ref = plan_ref()
    engine, now = _started(ref)
    try:
        count = engine.retrigger(root_id(ref), step, unit=unit, actor=_actor(actor), reason=reason, as_of=now)
    except ValueError as exc:
        raise OperatorError(str(exc)) from None
    if count:
        # letters put back in the outbox go out now, not at the next delivery of the plan
        delivery_task()(ref, now)
    await _drive_and_publish(ref, now)
    return count


@flow(name="set-replay-clock", description="Đặt đồng hồ chạy lại (năm đã qua); ghi người thực hiện và lý do.")
async def set_replay_clock(at: dt.datetime, actor: Actor, reason: Reason) -> str:
    """Set the replay clock of the plan's instance to ``at`` (forward only); the first setting
    starts the instance as a replay. A live instance keeps the real clock.

    Args:
        at: Thời điểm của năm chạy lại, có múi giờ, ví dụ 2022-12-12T08:00:00+07:00
        actor: Người thực hiện (đơn vị:họ-tên)
        reason: Lý do
    """
    ref = plan_ref()
    engine = engine_for(ref)
    try:
        change = set_clock_of(engine, ref.root_key, at, actor=_actor(actor), reason=reason)
    except ClockError as exc:
        raise OperatorError(str(exc)) from None
    tz = engine.plan.calendar.tz
    get_run_logger().info("Đồng hồ chạy lại của %s: %s → %s (%s: %s)", ref.root_key,
                          change.previous.astimezone(tz).isoformat() if change.previous else "bắt đầu",
                          change.at.astimezone(tz).isoformat(), actor.strip(), reason.strip())
    await publish_artifacts(ref, change.at)
    return change.at.astimezone(tz).isoformat()


@flow(name="daily-deadline-sweep", description="Mỗi sáng ngày làm việc: nhắc nhở, đôn đốc, đóng nhận báo cáo.")
async def daily_deadline_sweep() -> int:
    """The scheduled sweep of the plan's instance on its clock; nothing happens on a day off
    (the ladder's moments fall on working days). The instance is moved on afterwards, and
    swept again while that opened a task with a rung due at this very moment."""
    ref = plan_ref()
    engine = engine_for(ref)
    if engine.instance_id(ref.root_key) is None:
        get_run_logger().info("%s chưa bắt đầu: không có gì để đôn đốc", ref.root_key)
        return 0
    now = now_of(engine, ref.root_key)
    cal = engine.plan.calendar
    if not cal.is_working_day(now.astimezone(cal.tz).date()):
        get_run_logger().info("%s: ngày nghỉ (%s), không đôn đốc", now.date(),
                              cal.day_off_reason(now.astimezone(cal.tz).date()))
        return 0
    root = engine.instance_id(ref.root_key)
    recorded = 0
    for _ in range(20):  # again while moving on opened a task with a rung due at this very moment
        recorded += await deadline_sweep(ref, now)
        await drive(ref, now)
        upcoming = engine.next_deadline_at(root)
        if upcoming is None or upcoming > now:
            break
    await _drive_and_publish(ref, now)
    return recorded


@flow(name="deliver-outbox", description="Gửi các thông báo đang chờ trong hộp thư đi.")
async def deliver_outbox() -> int:
    ref = plan_ref()
    engine = engine_for(ref)
    if engine.instance_id(ref.root_key) is None:
        return 0
    return delivery_task()(ref, now_of(engine, ref.root_key))


@flow(name="record-incident", description="Ghi nhận sự cố của một lần chạy và báo Sở Nội vụ.")
async def record_incident(flow_run: str, state: str, message: str = "", step: str = "") -> None:
    """Started by an automation when a run of a plan deployment fails or crashes."""
    ref = plan_ref()
    engine, now = _started(ref)
    engine.record_incident(root_id(ref), flow_run=flow_run, state=state, message=message, step=step or flow_run,
                           as_of=now)
    delivery_task()(ref, now)
    await publish_artifacts(ref, now)


_BUILT = threading.Lock()


def __getattr__(name: str):
    """``ScoreSheet`` and ``submit_self_evaluation``, built on first use (PEP 562) and kept:
    the form reads the plan, which importing this module must not do. Prefect finds the flow
    the same way (entrypoint ``planflow.flows.operations:submit_self_evaluation``)."""
    if name not in ("ScoreSheet", "submit_self_evaluation"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    with _BUILT:
        built = globals()
        if "ScoreSheet" not in built:
            built["ScoreSheet"] = score_sheet()
        if "submit_self_evaluation" not in built:
            built["submit_self_evaluation"] = submit_self_evaluation_flow(built["ScoreSheet"])
        return built[name]
