"""The flows operators and schedules run for real (deployed by ``prefect.yaml`` / ``planflow serve``).

- ``plan-cycle``: once a year (cron in Asia/Ho_Chi_Minh) — start the year's instance and
  disseminate the plan;
- ``deadline-sweep``: every working day at office opening (08:00);
- ``advance``: move the instance on after submissions (an automation on
  ``planflow.unit.submitted`` starts it);
- ``submit-self-evaluation``, ``review-decision``: what a unit (or an operator entering a
  paper report for it) and Ban Dân vận Tỉnh ủy enter; the Prefect UI renders their typed
  parameters as forms;
- ``revise-report``: Sở Nội vụ sends back the report Ban Dân vận returned, completed;
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
import threading
from typing import Annotated, Optional

from prefect import flow, get_run_logger
from pydantic import Field

from planflow import outbox
from planflow.plan_cache import cached_plan
from planflow.clock import ClockError, now_of, real_now
from planflow.clock import set_replay_clock as set_clock_of
from planflow.flows import operator_actions
from planflow.flows.artifacts import publish_artifacts
from planflow.flows.instance import (SHIPPED_DEFINITION, OperatorError, definition_path, instance_key,  # noqa: F401
                                     named_actor, plan_ref, run_name, running_refs, started)
from planflow.flows.operator_forms import PaperReport, choices_of, score_sheet_of, vietnam_moment  # noqa: F401
from planflow.flows.outcome import concluded, configured
from planflow.flows.runtime import RunRef, engine_for, root_id
from planflow.flows.stages import deadline_sweep, delivery_task, drive
from planflow.notifications.vn_format import short_datetime

Reason = Annotated[str, Field(min_length=1, pattern=r"\S")]


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


def score_sheet(definition: str | None = None):
    """The score sheet of a definition's criteria form (one field per criterion): see
    ``operator_forms.score_sheet_of``."""
    return choices_of(definition).score_sheet


def _fired_year(tz) -> int:
    """The year this run of the annual schedule fired in (its scheduled start; now, run by hand)."""
    try:
        from prefect.runtime import flow_run

        fired = flow_run.scheduled_start_time
        return (fired or real_now()).astimezone(tz).year
    except Exception:  # noqa: BLE001 - outside a run: the real clock
        return real_now().astimezone(tz).year


def _cycle_ref(year: int | None) -> RunRef:
    """The instance a run of plan-cycle starts: a plan of every year, the one of ``year`` or of
    the year the schedule fired in; a plan of a fixed year, that year's (another is refused)."""
    plan = cached_plan(definition_path())
    if not plan.every_year:
        return plan_ref(plan.year)
    return plan_ref(year or _fired_year(plan.calendar.tz))


@flow(name="plan-cycle", flow_run_name=run_name("Ban hành Kế hoạch"),
      description="Ban hành Kế hoạch năm: khởi tạo và phổ biến đến các nơi nhận.")
@configured
async def plan_cycle(year: Optional[int] = None):
    """Start the instance of the year (once: ``<plan>/<year>``) and run what is ready:
    dissemination. A plan of every year starts the year the schedule fires in (or ``year``).
    A live start runs on the real clock; a replay is started by ``set-replay-clock`` and runs
    on its own."""
    ref = _cycle_ref(year)

    async def body() -> str:
        engine = engine_for(ref)
        plan_year = engine.plan.definition.year
        if year is not None and year != plan_year:
            raise OperatorError(f"Kế hoạch '{engine.plan.id}' là Kế hoạch năm {plan_year}, không phải năm {year}: "
                                "dùng định nghĩa của năm đó")
        if engine.instance_id(ref.root_key) is None:
            now = real_now()
            if now.astimezone(engine.plan.calendar.tz).year > plan_year:
                raise OperatorError(f"Kế hoạch năm {plan_year} không thể bắt đầu theo đồng hồ hôm nay: để chạy lại "
                                    "năm đã qua, đặt đồng hồ chạy lại trước (deployment set-replay-clock)")
            engine.start(ref.root_key, now)
        else:
            now = now_of(engine, ref.root_key)
        await _drive_and_publish(ref, now)
        return ref.root_key

    return await concluded(ref, body)


@flow(name="advance", flow_run_name=run_name("Chuyển tiếp"),
      description="Chuyển tiếp các bước sau khi đơn vị gửi báo cáo hoặc có ý kiến thẩm định.")
@configured
async def advance():
    ref = plan_ref()

    async def body() -> None:
        engine, now = started(ref)
        await _drive_and_publish(ref, now)
        # letters a report queued itself (a receipt to a unit that reported through its link)
        if outbox.deliverable(engine.db, instance_ids=engine.tree(root_id(ref)), limit=1):
            delivery_task()(ref, now)

    return await concluded(ref, body)


def _clock_run_name() -> str:
    """``"Đặt đồng hồ chạy lại 12/12/2022 08:00"``: the moment the clock is set to."""
    from prefect.runtime import flow_run

    try:
        params = flow_run.parameters
        day = dt.date.fromisoformat(str(params["day"]))
        return f"Đặt đồng hồ chạy lại {day:%d/%m/%Y} {params.get('time') or '08:00'}"
    except Exception:  # noqa: BLE001 - a run name never stops a run
        return "Đặt đồng hồ chạy lại"


def _replay_ref(day, year: int | None) -> RunRef:
    plan = cached_plan(definition_path())
    if year or not plan.every_year:
        return plan_ref(year)
    ref = plan_ref()
    if engine_for(ref).instance_id(ref.root_key) is None and isinstance(day, dt.date):
        return plan_ref(day.year)
    return ref


@flow(name="set-replay-clock", flow_run_name=_clock_run_name, validate_parameters=False,
      description="Đặt đồng hồ chạy lại (năm đã qua), theo giờ Việt Nam; ghi người thực hiện và lý do.")
@configured
async def set_replay_clock(
        day: dt.date = operator_actions.titled("Ngày (giờ Việt Nam)", "Ngày của năm chạy lại, ví dụ 2022-12-12"),
        time: Annotated[str, Field(pattern=r"^([01]?[0-9]|2[0-3]):[0-5][0-9]$")] = operator_actions.titled("Giờ (giờ Việt Nam, HH:MM)", "Giờ Việt Nam (+07:00), ví dụ 08:00", "08:00"),
        actor: str = operator_actions.titled("Người thực hiện", "Họ tên, chức vụ; ghi vào nhật ký"),
        reason: str = operator_actions.titled("Lý do", "Lý do đặt đồng hồ, ghi vào nhật ký"),
        year: Optional[int] = operator_actions.titled(
            "Năm của Kế hoạch", "Để trống: năm đang chạy (Kế hoạch lập cho mọi năm: năm của ngày nếu chưa có năm nào)",
            None)):
    """Set the replay clock of the plan's instance to ``day`` at ``time`` in Vietnam's time
    (forward only); the first setting starts the instance as a replay. A live instance keeps
    the real clock. ``year``: the instance's year (a plan of every year); not said, the current
    instance, or the year of ``day`` when none has started."""
    ref = _replay_ref(day, year)

    async def body() -> str:
        engine = engine_for(ref)
        tz = engine.plan.calendar.tz
        at = vietnam_moment(day, time, tz)
        who = named_actor(actor)
        if not (reason or "").strip():
            raise OperatorError("Lý do: ghi lý do đặt đồng hồ chạy lại (được lưu vào nhật ký)")
        try:
            change = set_clock_of(engine, ref.root_key, at, actor=who, reason=reason.strip())
        except ClockError as exc:
            raise OperatorError(f"Không đặt được đồng hồ chạy lại: {exc}") from None
        get_run_logger().info("Đồng hồ chạy lại của %s: %s → %s (%s: %s)", ref.root_key,
                              short_datetime(change.previous, tz) if change.previous else "bắt đầu",
                              short_datetime(change.at, tz), who, reason.strip())
        await publish_artifacts(ref, change.at)
        return change.at.astimezone(tz).isoformat()

    return await concluded(ref, body)


async def _sweep_passes(ref: RunRef) -> int:
    engine = engine_for(ref)
    if engine.instance_id(ref.root_key) is None:
        get_run_logger().info("%s chưa bắt đầu: không có gì để đôn đốc", ref.root_key)
        return 0
    now = now_of(engine, ref.root_key)
    cal = engine.plan.calendar
    day = now.astimezone(cal.tz).date()
    if not cal.is_working_day(day):
        get_run_logger().info("%s: ngày nghỉ (%s), không đôn đốc", f"{day:%d/%m/%Y}", cal.day_off_reason(day))
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


@flow(name="daily-deadline-sweep", flow_run_name=run_name("Quét hạn"),
      description="Mỗi sáng ngày làm việc: nhắc nhở, đôn đốc, đóng nhận báo cáo.")
@configured
async def daily_deadline_sweep():
    """The scheduled sweep of the plan's instance on its clock; nothing happens on a day off
    (the ladder's moments fall on working days). The instance is moved on afterwards, and
    swept again while that opened a task with a rung due at this very moment."""
    ref = plan_ref()

    async def body() -> int:  # every running year of the plan (a cycle may run on into the next year)
        return sum([await _sweep_passes(each) for each in running_refs(ref)])

    return await concluded(ref, body)


@flow(name="deliver-outbox", flow_run_name=run_name("Gửi thư"), description="Gửi các thông báo đang chờ trong hộp thư đi.")
@configured
async def deliver_outbox():
    ref = plan_ref()

    async def body() -> int:
        engine = engine_for(ref)
        if engine.instance_id(ref.root_key) is None:
            return 0
        return delivery_task()(ref, now_of(engine, ref.root_key))

    return await concluded(ref, body)


@flow(name="record-incident", flow_run_name=run_name("Ghi nhận sự cố"),
      description="Ghi nhận sự cố của một lần chạy và báo Sở Nội vụ.")
@configured
async def record_incident(flow_run: str, state: str, message: str = "", step: str = "") -> None:
    """Started by an automation when a run of a plan deployment fails or crashes."""
    ref = plan_ref()
    engine, now = started(ref)
    engine.record_incident(root_id(ref), flow_run=flow_run, state=state, message=message, step=step or flow_run,
                           as_of=now)
    delivery_task()(ref, now)
    await publish_artifacts(ref, now)


_BUILT = threading.Lock()
OPERATOR_FLOWS = ("submit_self_evaluation", "review_decision", "revise_report", "retrigger_step")


def __getattr__(name: str):
    """``ScoreSheet`` and the operator flows (``submit_self_evaluation``, ``review_decision``,
    ``retrigger_step``), built on first use from the plan's choices (PEP 562) and kept: their
    forms read the plan, which importing this module must not do. Prefect finds the flows the
    same way (entrypoint ``planflow.flows.operations:submit_self_evaluation``)."""
    if name not in ("ScoreSheet", *OPERATOR_FLOWS):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    with _BUILT:
        built = globals()
        if "ScoreSheet" not in built:
            choices = choices_of()
            built.update(operator_actions.build(choices), ScoreSheet=choices.score_sheet)
        return built[name]
