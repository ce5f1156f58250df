"""The flows operators and schedules run for real (deployed by ``prefect.yaml`` / ``planflow serve``).

- ``plan-cycle``: once a year (cron in Asia/Ho_Chi_Minh) — start the year's instance and
  disseminate the plan;
- ``deadline-sweep`` (``planflow.flows.stages``): every working day at office opening (08:00);
- ``advance``: move instances on after submissions (an automation on
  ``planflow.unit.submitted`` starts it);
- ``submit-self-evaluation``, ``review-decision``: what a unit or Ban Dân vận Tỉnh ủy
  enters; the Prefect UI renders their typed parameters as forms;
- ``retrigger-step``: re-run a stalled step, recording who and why.

Time is the real clock here (``as_of`` may be given to replay a moment). Every flow ends
by refreshing the instance's artifacts, so the UI shows where the plan stands.

``submit-self-evaluation``'s form (``ScoreSheet``: one field per criterion of the shipped
plan's form) is built the first time the flow or the form is looked up, not when this
module is imported (see ``__getattr__``).
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from pathlib import Path
from typing import Literal, Optional

from prefect import flow, get_run_logger
from prefect.events import emit_event
from pydantic import BaseModel, Field, create_model

from planflow import Submission, SubmissionError, load_plan
from planflow.definitions import shipped
from planflow.flows.artifacts import publish_artifacts
from planflow.flows.runtime import RunRef, engine_for, root_id
from planflow.flows.stages import deadline_sweep, delivery_task, drive

DEFAULT_DEFINITION = os.environ.get("PLANFLOW_DEFINITION", str(shipped("hai-duong-dan-van-2022.yaml")))


class OperatorError(ValueError):
    """A refusal an operator can act on; the flow run fails with this message, nothing written."""


def _db_url(db_url: str | None) -> str:
    return db_url or os.environ.get("PLANFLOW_DATABASE_URL") or f"sqlite:///{Path.cwd() / 'out' / 'planflow.db'}"


def instance_key(plan, year: int | None = None) -> str:
    return f"{plan.id}/{year or plan.definition.year}"


def _ref(definition: str, db_url: str | None, key: str | None = None) -> RunRef:
    plan = load_plan(definition)
    return RunRef(definition=str(plan.path), db_url=_db_url(db_url), root_key=key or instance_key(plan),
                  outbox_dir=os.environ.get("PLANFLOW_OUTBOX_DIR", str(Path.cwd() / "out" / "outbox")))


def _now(as_of: dt.datetime | None) -> dt.datetime:
    if as_of is None:
        return dt.datetime.now(dt.timezone.utc)
    if as_of.tzinfo is None:
        raise OperatorError(f"as_of {as_of} needs a time zone (e.g. +07:00)")
    return as_of


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


def score_sheet(definition: str = DEFAULT_DEFINITION) -> type[BaseModel]:
    """A pydantic model with one field per criterion of the plan's form: the UI shows a form."""
    plan = load_plan(definition)
    form = next(f for f in plan.forms.values() if f.kind == "criteria")
    fields = {}
    for code, item in form.items.items():
        if item.auto_from_workflow:
            continue
        fields[code.replace(".", "_")] = (float, Field(ge=0, le=item.max, multiple_of=form.step,
                                                        title=f"{code}. {item.title}", description=f"tối đa {item.max:g} điểm"))
    return create_model("ScoreSheet", __doc__=form.title, **fields)


@flow(name="plan-cycle", description="Ban hành Kế hoạch năm: khởi tạo và phổ biến đến các nơi nhận.")
async def plan_cycle(definition: str = DEFAULT_DEFINITION, year: Optional[int] = None,
                     db_url: Optional[str] = None, as_of: Optional[dt.datetime] = None) -> str:
    """Start the plan's instance for ``year`` (once) and run what is ready: dissemination."""
    plan = load_plan(definition)
    if year is not None and year != plan.definition.year:
        raise OperatorError(f"definition '{plan.id}' is the plan of {plan.definition.year}, not {year}: "
                            "give the definition of that year")
    ref = _ref(definition, db_url, instance_key(plan, year))
    now = _now(as_of)
    engine_for(ref).start(ref.root_key, now)
    await _drive_and_publish(ref, now)
    return ref.root_key


@flow(name="advance", description="Chuyển tiếp các bước sau khi đơn vị gửi báo cáo hoặc có ý kiến thẩm định.")
async def advance(definition: str = DEFAULT_DEFINITION, db_url: Optional[str] = None,
                  instance: Optional[str] = None, as_of: Optional[dt.datetime] = None) -> None:
    ref = _ref(definition, db_url, instance)
    now = _now(as_of)
    await _drive_and_publish(ref, now)


def _emit_submitted(ref: RunRef, unit: str, element: str | None, at: dt.datetime) -> None:
    emit_event(event="planflow.unit.submitted",
               resource={"prefect.resource.id": f"planflow.unit.{unit}"},
               payload={"instance": ref.root_key, "definition": ref.definition, "db_url": ref.db_url,
                        "element": element, "at": at.isoformat()})


def _submit(ref: RunRef, submission: Submission, now: dt.datetime) -> None:
    engine = engine_for(ref)
    try:
        engine.submit([submission], now, root_id=root_id(ref))
    except SubmissionError as exc:
        raise OperatorError("; ".join(exc.problems)) from None


def submit_self_evaluation_flow(sheet: type[BaseModel]):
    """The ``submit-self-evaluation`` flow, its ``scores`` typed by ``sheet`` (the UI's form)."""

    async def submit_self_evaluation(unit: str, scores: BaseModel, evidence: str = "", note: str = "",
                                     definition: str = DEFAULT_DEFINITION, db_url: Optional[str] = None,
                                     instance: Optional[str] = None,
                                     submitted_at: Optional[dt.datetime] = None) -> str:
        """Record one unit's self-evaluation (checked against the criteria form)."""
        ref = _ref(definition, db_url, instance)
        now = _now(submitted_at)
        payload = {"scores": {k.replace("_", "."): v for k, v in scores.model_dump().items()},
                   "evidence": evidence, "note": note}
        _submit(ref, Submission(unit=unit, submitted_at=now, payload=payload, actor=f"operator:{unit}"), now)
        _emit_submitted(ref, unit, None, now)
        get_run_logger().info("Đã nhận báo cáo tự đánh giá của %s", unit)
        await publish_artifacts(ref, now)
        return unit

    submit_self_evaluation.__annotations__["scores"] = sheet  # what Prefect renders and validates
    submit_self_evaluation.__qualname__ = "submit_self_evaluation"
    return flow(name="submit-self-evaluation",
                description="Đơn vị gửi kết quả tự đánh giá công tác dân vận.")(submit_self_evaluation)


@flow(name="review-decision", description="Ban Dân vận Tỉnh ủy: thống nhất hoặc trả lại kết quả tổng hợp.")
async def review_decision(decision: Literal["approve", "return"], comment: str = "",
                          definition: str = DEFAULT_DEFINITION, db_url: Optional[str] = None,
                          instance: Optional[str] = None, decided_at: Optional[dt.datetime] = None) -> str:
    ref = _ref(definition, db_url, instance)
    now = _now(decided_at)
    reviewer = (engine_for(ref).plan.registry.group("reviewers") or [None])[0]
    if reviewer is None:
        raise OperatorError("the registry has no unit in group 'reviewers'")
    _submit(ref, Submission(unit=reviewer.code, submitted_at=now,
                            payload={"decision": decision, "comment": comment or None},
                            actor=f"operator:{reviewer.code}"), now)
    _emit_submitted(ref, reviewer.code, "review", now)
    await publish_artifacts(ref, now)
    return decision


@flow(name="retrigger-step", description="Chạy lại một bước bị đình trệ; ghi người thực hiện và lý do.")
async def retrigger_step(step: str, reason: str, actor: str, instance: Optional[str] = None,
                         unit: Optional[str] = None, definition: str = DEFAULT_DEFINITION,
                         db_url: Optional[str] = None, as_of: Optional[dt.datetime] = None) -> int:
    """Re-run ``step`` where it is stalled (optionally for one unit's sub-process or letters)."""
    ref = _ref(definition, db_url, instance)
    now = _now(as_of)
    engine = engine_for(ref)
    try:
        count = engine.retrigger(root_id(ref), step, unit=unit, actor=actor, reason=reason, as_of=now)
    except ValueError as exc:
        raise OperatorError(str(exc)) from None
    if count:
        # letters put back in the outbox go out now, not at the next delivery of the plan
        delivery_task()(ref, now)
    await _drive_and_publish(ref, now)
    return count


@flow(name="daily-deadline-sweep", description="Mỗi sáng ngày làm việc: nhắc nhở, đôn đốc, đóng nhận báo cáo.")
async def daily_deadline_sweep(definition: str = DEFAULT_DEFINITION, db_url: Optional[str] = None,
                               as_of: Optional[dt.datetime] = None) -> int:
    """The scheduled sweep over every instance of the definition; nothing happens on a day off
    (the ladder's moments fall on working days), and the instance is moved on afterwards."""
    ref = _ref(definition, db_url, "")
    now = _now(as_of)
    cal = engine_for(ref).plan.calendar
    if not cal.is_working_day(now.astimezone(cal.tz).date()):
        get_run_logger().info("%s: ngày nghỉ (%s), không đôn đốc", now.date(),
                              cal.day_off_reason(now.astimezone(cal.tz).date()))
        return 0
    recorded = await deadline_sweep(ref, now)
    instance = _ref(definition, db_url)
    if engine_for(instance).instance_id(instance.root_key) is not None:
        await _drive_and_publish(instance, now)
    return recorded


@flow(name="deliver-outbox", description="Gửi các thông báo đang chờ trong hộp thư đi.")
async def deliver_outbox(definition: str = DEFAULT_DEFINITION, db_url: Optional[str] = None,
                         instance: Optional[str] = None) -> int:
    return delivery_task()(_ref(definition, db_url, instance if instance is not None else ""), _now(None))


@flow(name="record-incident", description="Ghi nhận sự cố của một lần chạy và báo Sở Nội vụ.")
async def record_incident(flow_run: str, state: str, message: str = "", step: str = "",
                          definition: str = DEFAULT_DEFINITION, db_url: Optional[str] = None,
                          instance: Optional[str] = None) -> None:
    """Started by an automation when a run of a plan deployment fails or crashes."""
    ref = _ref(definition, db_url, instance)
    now = _now(None)
    engine = engine_for(ref)
    root = root_id(ref)
    engine.record_incident(root, flow_run=flow_run, state=state, message=message, step=step or flow_run, as_of=now)
    delivery_task()(ref, now)
    await publish_artifacts(ref, now)


_BUILT = threading.Lock()


def __getattr__(name: str):
    """``ScoreSheet`` and ``submit_self_evaluation``, built on first use (PEP 562) and kept:
    the form reads the shipped plan, which importing this module must not do. Prefect finds
    the flow the same way (entrypoint ``planflow.flows.operations:submit_self_evaluation``)."""
    if name not in ("ScoreSheet", "submit_self_evaluation"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    with _BUILT:
        built = globals()
        if "ScoreSheet" not in built:
            built["ScoreSheet"] = score_sheet()
        if "submit_self_evaluation" not in built:
            built["submit_self_evaluation"] = submit_self_evaluation_flow(built["ScoreSheet"])
        return built[name]
