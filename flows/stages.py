"""One Prefect flow per stage of the plan (the definition's ``stages:``), named in its words.

A stage flow records what people did (submissions, decisions), then runs the service
steps of its stage that the engine has made ready: one Prefect task per *step*, batched
over every token (unit, district) waiting on that step, with the definition's retry
policy. The engine decides; these flows act and show.
"""

from __future__ import annotations

import datetime as dt

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from planflow import Submission, outbox
from planflow.documents import documents_dir, write_latest
from planflow.flows.delivery import backoff_seconds, deliver_pending
from planflow.flows.events import emit_overdue
from planflow.flows.runtime import RunRef, engine_for, root_id
from planflow.notifications.vn_format import short_datetime


@task(cache_policy=NO_CACHE, task_run_name="record-submissions")
def record_submissions(ref: RunRef, as_of: dt.datetime, submissions: list[dict]) -> int:
    engine = engine_for(ref)
    batch = [Submission(unit=s["unit"], submitted_at=dt.datetime.fromisoformat(s["submitted_at"]),
                        payload=s["payload"], element=s.get("element"), actor=s.get("actor", "unit"))
             for s in submissions]
    return engine.submit(batch, as_of, root_id=root_id(ref))


@task(cache_policy=NO_CACHE)
def run_step(ref: RunRef, element_id: str, token_ids: list[int], as_of: dt.datetime) -> int:
    return engine_for(ref).run_step(token_ids, as_of)


@task(name="deliver_notifications", cache_policy=NO_CACHE, task_run_name="deliver-notifications",
      retry_jitter_factor=0.2)
def deliver_outbox_rows(ref: RunRef, as_of: dt.datetime) -> int:
    """Deliver the plan's outbox; retried with exponential backoff on temporary failures.

    One attempt per row per task attempt, so with ``PLANFLOW_OUTBOX_MAX_ATTEMPTS`` = N the
    task tries N times (N-1 retries, ``PLANFLOW_OUTBOX_BACKOFF_SECONDS`` doubling: 10, 20,
    40, 80 s by default) and a row still failing on the last one becomes an incident
    instead of failing the flow. The retries are set by :func:`delivery_task`.
    """
    return deliver_pending(ref, as_of, logger=get_run_logger())


def delivery_task():
    """:func:`deliver_outbox_rows` with its retry settings read now (when a flow delivers),
    not when this module was imported."""
    return deliver_outbox_rows.with_options(
        retries=outbox.max_attempts() - 1, retry_delay_seconds=exponential_backoff(backoff_factor=backoff_seconds()))


def __getattr__(name: str):
    """``deliver_notifications``: :func:`delivery_task`, built with the settings of the
    moment it is looked up (PEP 562), never those of when this module was imported."""
    if name == "deliver_notifications":
        return delivery_task()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@task(cache_policy=NO_CACHE, task_run_name="write-report-documents")
def write_report_documents(ref: RunRef) -> dict | None:
    """Write the latest report as report.docx, report.pdf and annex.xlsx in the documents
    folder (``PLANFLOW_DOCUMENTS_DIR``, else ``documents/`` beside the outbox), once per
    round. The report is recorded already and its documents can be made again from it, so a
    failure here is logged, not raised: the next run of the stage writes them."""
    logger = get_run_logger()
    try:
        docs = write_latest(engine_for(ref), root_id(ref), documents_dir(ref.outbox_dir))
    except Exception:  # noqa: BLE001 - e.g. a plan's own template that does not render
        logger.exception("Báo cáo chưa được ghi thành văn bản / the report's documents were not written")
        return None
    if docs is None:
        return None
    logger.info("Báo cáo lần %d: %s trong %s%s", docs.round, ", ".join(p.name for p in docs.files), docs.folder,
                f" ({docs.note})" if docs.note else "")
    return {"folder": str(docs.folder), "files": [p.name for p in docs.files], "note": docs.note}


async def drive_stage(ref: RunRef, stage: str, as_of: dt.datetime) -> int:
    """Run this stage's ready steps until none is left; return how many tokens moved."""
    engine = engine_for(ref)
    root = root_id(ref)
    moved = 0
    queued = aggregated = False
    while True:
        engine.advance(as_of, root_id=root)
        steps = engine.ready_steps(stage=stage, root_id=root)
        if not steps:
            break
        for step in steps:
            element = engine.element_of_token(step.token_ids[0])
            policy = element.retry or engine.plan.definition.retry
            runner = run_step.with_options(
                name=step.element_id, task_run_name=f"{step.element_id} ×{len(step.token_ids)}",
                retries=policy.retries, retry_delay_seconds=list(policy.delay_s))
            moved += runner(ref, step.element_id, list(step.token_ids), as_of)
            queued = queued or element.type == "sendTask"
            aggregated = aggregated or getattr(element, "handler", None) == "aggregate"
    if aggregated:
        write_report_documents(ref)
    if queued:
        delivery_task()(ref, as_of)
    return moved


def _at_name(label: str) -> str:
    """``"<label> dd/mm/yyyy HH:MM"`` at the run's ``as_of`` (the plan's moment, +07:00)."""
    try:
        from prefect.runtime import flow_run

        params = flow_run.parameters
        tz = engine_for(RunRef.model_validate(params["ref"])).plan.calendar.tz
        as_of = params["as_of"]
        return f"{label} {short_datetime(as_of if isinstance(as_of, dt.datetime) else str(as_of), tz)}"
    except Exception:  # noqa: BLE001 - a run name never stops a run
        return label


def _stage_flow(stage: str, description: str):
    @flow(name=stage.replace("_", "-"), description=description, log_prints=True,
          flow_run_name=lambda: _at_name(description.split(":")[0].split(";")[0].rstrip(".")))
    async def stage_flow(ref: RunRef, as_of: dt.datetime, submissions: list[dict] | None = None) -> int:
        if submissions:
            record_submissions(ref, as_of, submissions)
        return await drive_stage(ref, stage, as_of)

    stage_flow.__name__ = stage
    return stage_flow


# the stage flows made so far, by (stage id, stage name): one per stage of the definitions run
STAGE_FLOWS: dict[tuple[str, str], object] = {}


def stage_flow(stage) -> callable:
    """The flow of a stage of the definition (``stages:``), made on first use: named after its id
    (``district_cycle`` -> "district-cycle"), described and its runs named by its name."""
    key = (stage.id, stage.name)
    if key not in STAGE_FLOWS:
        STAGE_FLOWS[key] = _stage_flow(stage.id, stage.name)
    return STAGE_FLOWS[key]


@task(cache_policy=NO_CACHE, task_run_name="sweep")
def sweep_due(ref: RunRef, as_of: dt.datetime) -> list[dict]:
    notices = engine_for(ref).sweep(as_of, root_id=root_id(ref))
    return [{"unit": n.unit, "element": n.element, "kind": n.kind, "level": n.level,
             "at": n.at.isoformat(), "due": n.due.isoformat(),
             "superseded": [{"kind": kind, "level": level} for kind, level in n.superseded]} for n in notices]


def log_sweep(logger, notices: list[dict], as_of: dt.datetime, tz) -> None:
    """Say in the run's log what the sweep recorded and, when it came late, how many lower
    rungs it did not send because a higher one of the same unit was due too."""
    when = short_datetime(as_of, tz)
    superseded = sum(len(n["superseded"]) for n in notices)
    logger.info("Quét hạn lúc %s: %d nhắc nhở, đôn đốc được ghi nhận / sweep at %s: %d recorded",
                when, len(notices), as_of.isoformat(), len(notices))
    if superseded:
        units = sum(1 for n in notices if n["superseded"])
        logger.warning(
            "Quét hạn lúc %s: %d bậc nhắc nhở, đôn đốc đã quá hạn của %d đơn vị được thay bằng bậc cao nhất "
            "đến hạn, không gửi / %d rung(s) of %d unit(s) superseded by the highest rung due, not sent "
            "(audit: unit.superseded)", when, superseded, units, superseded, units)


def _sweep_run_name() -> str:
    return _at_name("Quét hạn")


@flow(name="deadline-sweep", flow_run_name=_sweep_run_name,
      description="Đến hạn: nhắc nhở, đôn đốc theo cấp, đóng nhận báo cáo.")
async def deadline_sweep(ref: RunRef, as_of: dt.datetime) -> int:
    """Record the highest reminder or escalation due at ``as_of`` for each unit once (a late
    sweep supersedes the lower rungs: audited and logged, not sent), close what must close.

    Each escalation becomes a ``planflow.unit.overdue`` event (for automations and the Event
    Feed: ``planflow.flows.events``); the overdue units are listed by the instance's keyed
    artifact (``publish_artifacts``), not by one table per pass.
    """
    notices = sweep_due(ref, as_of)
    engine = engine_for(ref)
    log_sweep(get_run_logger(), notices, as_of, engine.plan.calendar.tz)
    for n in notices:
        if n["kind"] == "escalation":
            emit_overdue(engine.plan, ref.root_key, n, as_of)
    if notices:
        delivery_task()(ref, as_of)
    return len(notices)


async def drive(ref: RunRef, as_of: dt.datetime) -> None:
    """Run the stage flows that have ready steps, in plan order, until nothing is ready."""
    engine = engine_for(ref)
    root = root_id(ref)
    while True:
        engine.advance(as_of, root_id=root)
        ready = {step.stage for step in engine.ready_steps(root_id=root)}
        if not ready:
            return
        for stage in engine.plan.definition.stages:
            if stage.id in ready:
                await stage_flow(stage)(ref, as_of)
