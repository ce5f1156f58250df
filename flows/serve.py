"""``planflow serve``: the plan's deployments, their schedules and automations, one process.

Against a Prefect server (``PREFECT_API_URL``, and ``PREFECT_API_AUTH_STRING`` when the
server asks for basic authentication), this registers the deployments — their schedules in
Asia/Ho_Chi_Minh — creates the automations, and runs the flows they start (Prefect's
``serve``: no work pool needed). ``prefect.yaml`` declares the same deployments for
``prefect deploy --all`` with a process work pool and a worker.

The definition and the store are fixed here, not given by callers: ``serve`` puts them in
its own environment (``PLANFLOW_DEFINITION``, ``PLANFLOW_DATABASE_URL``), which the runs it
starts inherit; no deployment has a parameter naming a file, a database or an instance,
and nothing about the store is sent to the Prefect server.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from planflow import load_plan
from planflow.flows import operations as ops


def sweep_cron(plan) -> str:
    """The daily sweep's schedule: every day at the calendar's office opening, when reminders,
    escalations and closing timers fall (the flow itself skips days off, so a make-up
    Saturday is swept and a holiday is not)."""
    opening = plan.calendar.office_open
    return f"{opening.minute} {opening.hour} * * *"


# a failed or crashed run of these becomes an incident (set-replay-clock, an operator's own
# setting, does not)
PLAN_DEPLOYMENTS = ("plan-cycle", "deadline-sweep", "advance", "submit-self-evaluation", "review-decision",
                    "revise-report", "retrigger-step", "deliver-outbox")


async def deployments(definition: str, db_url: str | None = None):
    """The plan's deployments. None has a parameter naming the definition, the store or the
    instance: the runs read them from the serving process's environment (:func:`pin_environment`);
    ``db_url`` is not used here, and never sent to the server."""
    from prefect.deployments.runner import EntrypointType
    from prefect.schedules import Cron

    plan = load_plan(definition)
    start = plan.definition.main.start
    tz = (start.timer and start.timer.timezone) or plan.definition.timezone
    tags = ["planflow", plan.id]
    cycle = [Cron(start.timer.cron, timezone=tz)] if start.timer else []
    specs = [
        (ops.plan_cycle, "plan-cycle", {"year": plan.definition.year}, cycle, tags),
        (ops.daily_deadline_sweep, "deadline-sweep", {}, [Cron(sweep_cron(plan), timezone=tz)], tags),
        (ops.advance, "advance", {}, [], tags),
        (ops.submit_self_evaluation, "submit-self-evaluation", {}, [], [*tags, "operator"]),
        (ops.review_decision, "review-decision", {}, [], [*tags, "operator"]),
        (ops.revise_report, "revise-report", {}, [], [*tags, "operator"]),
        (ops.retrigger_step, "retrigger-step", {}, [], [*tags, "operator"]),
        (ops.set_replay_clock, "set-replay-clock", {}, [], [*tags, "operator"]),
        (ops.deliver_outbox, "deliver-outbox", {}, [], tags),
        (ops.record_incident, "record-incident", {}, [], tags),
    ]
    # by module path (planflow.flows.operations:...), so the runs import the installed package
    # enforce_parameter_schema: the server refuses a run whose parameters are not in the form's
    # lists or limits when it is created, before any worker picks it up
    return [await flow.ato_deployment(name=name, parameters=parameters, schedules=schedules, tags=t,
                                      entrypoint_type=EntrypointType.MODULE_PATH, enforce_parameter_schema=True)
            for flow, name, parameters, schedules, t in specs]


def pin_environment(definition: str, db_url: str | None) -> None:
    """Fix where the served runs work: the definition (absolute path), the store, the outbox.
    Call before the flows are looked up (the form is built from this definition)."""
    os.environ["PLANFLOW_DEFINITION"] = str(Path(definition).resolve())
    if db_url:
        os.environ["PLANFLOW_DATABASE_URL"] = db_url
    os.environ.setdefault("PLANFLOW_OUTBOX_DIR", str(Path.cwd() / "out" / "outbox"))


async def ensure_automations(ids: dict[str, object]) -> list[str]:
    """Create (or replace) the automations that tie events to deployments; return their names."""
    from prefect.automations import Automation
    from prefect.events.actions import RunDeployment
    from prefect.events.schemas.automations import EventTrigger, Posture

    wanted = [
        Automation(
            name="planflow: báo cáo đã gửi → chuyển tiếp",
            description="A unit's submission (or a review decision) moves the plan instance on.",
            trigger=EventTrigger(expect={"planflow.unit.submitted"}, match={"prefect.resource.id": "planflow.unit.*"},
                                 posture=Posture.Reactive, threshold=1),
            actions=[RunDeployment(source="selected", deployment_id=ids["advance"])],
        ),
        Automation(
            name="planflow: đơn vị quá hạn → gửi thông báo",
            description="Overdue units (escalations recorded by a sweep): deliver their letters now — one "
                        "delivery run for a sweep's burst of events, not one per unit.",
            # a sweep emits one event per escalation (hundreds at once) after queueing all their
            # letters; one deliver-outbox run sends them all, so fire on the first event and
            # ignore the rest of the burst (a reactive trigger waits out `within` after firing)
            trigger=EventTrigger(expect={"planflow.unit.overdue"}, match={"prefect.resource.id": "planflow.unit.*"},
                                 posture=Posture.Reactive, threshold=1, within=dt.timedelta(minutes=2)),
            actions=[RunDeployment(source="selected", deployment_id=ids["deliver-outbox"])],
        ),
        Automation(
            name="planflow: lần chạy thất bại → sự cố",
            # Prefect names a state-change event after the state's *name*: a run that refused an
            # operator's input ends FAILED-type but named "Từ chối" (prefect.flow-run.Từ chối), so
            # an input mistake writes no incident letter (planflow.flows.outcome)
            description="A Failed or Crashed run of a plan deployment becomes an incident and a letter to Sở Nội vụ "
                        "(a refused operator input, state \"Từ chối\", does not).",
            trigger=EventTrigger(
                expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
                match_related={"prefect.resource.id": [f"prefect.deployment.{ids[n]}" for n in PLAN_DEPLOYMENTS]},
                posture=Posture.Reactive, threshold=1),
            actions=[RunDeployment(source="selected", deployment_id=ids["record-incident"], parameters={
                "flow_run": "{{ flow_run.name }}", "state": "{{ event.event }}",
                "message": "{{ flow_run.state.message }}", "step": "{{ flow.name }}"})],
        ),
    ]
    names = []
    for automation in wanted:
        try:
            existing = await Automation.aread(name=automation.name)
        except ValueError:
            existing = None
        if existing is not None:
            await existing.adelete()
        await automation.acreate()
        names.append(automation.name)
    return names


# deployment name -> the flow it runs (planflow.flows.operations:<name>), as declared here
# and in prefect.yaml
DEPLOYMENT_ENTRYPOINTS = {
    "plan-cycle": "plan_cycle", "deadline-sweep": "daily_deadline_sweep", "advance": "advance",
    "submit-self-evaluation": "submit_self_evaluation", "review-decision": "review_decision", "revise-report": "revise_report",
    "retrigger-step": "retrigger_step", "set-replay-clock": "set_replay_clock", "deliver-outbox": "deliver_outbox",
    "record-incident": "record_incident",
}


def deployment_flows() -> dict[str, object]:
    """Deployment name -> its flow (looked up when asked: ``submit_self_evaluation``'s form
    reads the plan)."""
    return {name: getattr(ops, function) for name, function in DEPLOYMENT_ENTRYPOINTS.items()}


async def deployment_ids() -> dict[str, object]:
    """The ids of the plan's deployments on the server (``prefect deploy --all`` made them)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    ids, missing = {}, []
    async with get_client() as client:
        for name, flow in deployment_flows().items():
            try:
                ids[name] = (await client.read_deployment_by_name(f"{flow.name}/{name}")).id
            except ObjectNotFound:
                missing.append(f"{flow.name}/{name}")
    if missing:
        raise LookupError(f"deployment(s) {', '.join(missing)} not found on the server: "
                          "run `prefect deploy --all` (prefect.yaml) first")
    return ids


async def register_automations() -> list[str]:
    """The automations alone, for deployments made by ``prefect deploy --all``."""
    return await ensure_automations(await deployment_ids())


async def register(definition: str):
    """Register the deployments and automations; return (deployments, ids)."""
    deps = await deployments(definition)
    ids = {}
    for d in deps:
        ids[d.name] = await d.aapply()
    await ensure_automations(ids)
    return deps, ids


async def serve(definition: str, db_url: str | None) -> None:
    from prefect import aserve

    pin_environment(definition, db_url)
    deps, _ = await register(definition)
    await aserve(*deps, print_starting_message=True)
