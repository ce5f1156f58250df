"""``planflow serve``: the deployments of every served plan, their schedules and automations, one process.

Against a Prefect server (``PREFECT_API_URL``, and ``PREFECT_API_AUTH_STRING`` when the
server asks for basic authentication), this registers each plan's deployments — their
schedules in Asia/Ho_Chi_Minh — creates its automations, and runs the flows they start
(Prefect's ``serve``: no work pool needed). ``prefect.yaml`` declares the same deployments
for ``prefect deploy --all`` with a process work pool and a worker.

Many plans, one server: ``serve`` takes a definition or a folder of them
(``planflow.flows.served_plans``). Every plan has one deployment per flow, named by the plan's
id (``plan-cycle/hai-duong-dan-van-2022``), tagged with it, and with its own parameter
schema (the operator forms list that plan's units, steps, decisions and criteria); its
automations carry its id in their names and match only its events (label ``planflow.plan``)
and its deployments' runs.

The definitions and the store are fixed here, not given by callers: ``serve`` puts them in
its own environment (``PLANFLOW_DEFINITION``, ``PLANFLOW_DATABASE_URL``), which the runs it
starts inherit; a run finds its plan by its deployment's name. No deployment has a parameter
naming a file, a database or an instance, and nothing about the store is sent to the server.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from planflow.plan_cache import cached_plan
from planflow.outbox import env_number
from planflow.flows import operations as ops
from planflow.flows.events import PLAN_LABEL
from planflow.flows.outcome import OPERATOR_TAG
from planflow.flows.served_plans import configured_path, plan_files


def sweep_cron(plan) -> str:
    """The daily sweep's schedule: every day at the calendar's office opening, when reminders,
    escalations and closing timers fall (the flow itself skips days off, so a make-up
    Saturday is swept and a holiday is not)."""
    opening = plan.calendar.office_open
    return f"{opening.minute} {opening.hour} * * *"


# role -> the flow it runs (planflow.flows.operations:<function>), as declared here and in
# prefect.yaml; every plan has one deployment per role, named by the plan's id
DEPLOYMENT_ENTRYPOINTS = {
    "plan-cycle": "plan_cycle", "deadline-sweep": "daily_deadline_sweep", "advance": "advance",
    "submit-self-evaluation": "submit_self_evaluation", "review-decision": "review_decision", "revise-report": "revise_report",
    "retrigger-step": "retrigger_step", "set-replay-clock": "set_replay_clock", "deliver-outbox": "deliver_outbox",
    "record-incident": "record_incident",
}
ENTRYPOINT_MODULE = "planflow.flows.operations"

# a failed or crashed run of these becomes an incident (set-replay-clock, an operator's own
# setting, does not)
PLAN_DEPLOYMENTS = ("plan-cycle", "deadline-sweep", "advance", "submit-self-evaluation", "review-decision",
                    "revise-report", "retrigger-step", "deliver-outbox")
OPERATOR_ROLES = ("submit-self-evaluation", "review-decision", "revise-report", "retrigger-step", "set-replay-clock")


def plan_flows(definition: str) -> dict[str, object]:
    """Role -> the flow a plan's deployment runs. The operator forms are built from this plan's
    choices (``operator_actions.build``, as ``operations`` builds them for the run's own plan),
    so each plan's deployment carries its own parameter schema; the other flows are shared."""
    from planflow.flows import operator_actions
    from planflow.flows.operator_forms import choices_of

    built = operator_actions.build(choices_of(str(Path(definition).resolve())))
    return {role: built[function] if function in built else getattr(ops, function)
            for role, function in DEPLOYMENT_ENTRYPOINTS.items()}


def cycle_parameters(plan) -> dict:
    """``plan-cycle``'s parameters: the plan's year when its definition fixes one; none for a
    plan of every year (the schedule starts the year it fires in)."""
    return {} if plan.every_year else {"year": plan.year}


async def deployments(definition: str, db_url: str | None = None) -> dict[str, object]:
    """Role -> the plan's deployment, named by the plan's id. None has a parameter naming the
    definition, the store or the instance: the runs read them from the serving process's
    environment (:func:`pin_environment`); ``db_url`` is not used here, and never sent to the server."""
    from prefect.deployments.runner import EntrypointType
    from prefect.schedules import Cron

    plan = cached_plan(definition)  # plan_flows' forms are built from the same load
    flows = plan_flows(definition)
    start = plan.definition.main.start
    tz = (start.timer and start.timer.timezone) or plan.definition.timezone
    schedules = {"plan-cycle": [Cron(start.timer.cron, timezone=tz)] if start.timer else [],
                 "deadline-sweep": [Cron(sweep_cron(plan), timezone=tz)]}
    out = {}
    for role, function in DEPLOYMENT_ENTRYPOINTS.items():
        # enforce_parameter_schema: the server refuses a run whose parameters are not in the
        # form's lists or limits when it is created, before any worker picks it up
        deployment = await flows[role].ato_deployment(
            name=plan.id, parameters=cycle_parameters(plan) if role == "plan-cycle" else {},
            schedules=schedules.get(role, []), tags=["planflow", plan.id, *([OPERATOR_TAG] if role in OPERATOR_ROLES else [])],
            entrypoint_type=EntrypointType.MODULE_PATH, enforce_parameter_schema=True)
        # by module path, so the runs import the installed package and build the forms of
        # their own plan (``operations.__getattr__``), whichever plan built this flow
        deployment.entrypoint = f"{ENTRYPOINT_MODULE}.{function}"
        out[role] = deployment
    return out


def pin_environment(definition: str, db_url: str | None) -> None:
    """Fix where the served runs work: the definition or folder of definitions (absolute
    path), the store, the outbox."""
    os.environ["PLANFLOW_DEFINITION"] = str(Path(definition).resolve())
    if db_url:
        os.environ["PLANFLOW_DATABASE_URL"] = db_url
    os.environ.setdefault("PLANFLOW_OUTBOX_DIR", str(Path.cwd() / "out" / "outbox"))


def automation_name(plan_id: str, what: str) -> str:
    return f"planflow {plan_id}: {what}"


def advance_after() -> dt.timedelta:
    """How long submissions are gathered before the plan moves on (``PLANFLOW_ADVANCE_AFTER``,
    seconds, default 60; 0: a run for every submission)."""
    return dt.timedelta(seconds=env_number("PLANFLOW_ADVANCE_AFTER", 60, 0))


def plan_automations(plan_id: str, ids: dict[str, object]) -> list:
    """The automations of one plan: its events (resource label ``planflow.plan``) and its
    deployments' runs start its own deployments."""
    from prefect.automations import Automation
    from prefect.events.actions import RunDeployment
    from prefect.events.schemas.automations import EventTrigger, Posture

    unit_of_plan = {"prefect.resource.id": "planflow.unit.*", PLAN_LABEL: plan_id}
    gather = advance_after()
    return [
        Automation(
            name=automation_name(plan_id, "báo cáo đã gửi → chuyển tiếp"),
            description=f"Units' submissions (or a review decision) move the plan instance on: one advance run "
                        f"{gather.total_seconds():g} s after the first of them, for all that came meanwhile.",
            # Prefect's debouncing: the first event fires and schedules the run `gather` later;
            # the events until then fire nothing (a reactive trigger waits out `within`), and
            # the run, starting after them, moves on what they all recorded. Without it every
            # submission through the portal started a run of its own (~8 s of CPU each).
            trigger=EventTrigger(expect={"planflow.unit.submitted"}, match=unit_of_plan,
                                 posture=Posture.Reactive, threshold=1, within=gather),
            actions=[RunDeployment(source="selected", deployment_id=ids["advance"], schedule_after=gather)],
        ),
        Automation(
            name=automation_name(plan_id, "đơn vị quá hạn → gửi thông báo"),
            description="Overdue units (escalations recorded by a sweep): deliver their letters now — one "
                        "delivery run for a sweep's burst of events, not one per unit.",
            # a sweep emits one event per escalation (hundreds at once) after queueing all their
            # letters; one deliver-outbox run sends them all, so fire on the first event and
            # ignore the rest of the burst (a reactive trigger waits out `within` after firing)
            trigger=EventTrigger(expect={"planflow.unit.overdue"}, match=unit_of_plan,
                                 posture=Posture.Reactive, threshold=1, within=dt.timedelta(minutes=2)),
            actions=[RunDeployment(source="selected", deployment_id=ids["deliver-outbox"])],
        ),
        Automation(
            name=automation_name(plan_id, "lần chạy thất bại → sự cố"),
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
        lost_run_automation(plan_id),
    ]


# a run of a plan deployment whose heartbeats stop (PREFECT_FLOWS_HEARTBEAT_FREQUENCY on the workers,
# every 30 s) for this long lost its worker: it is marked Crashed
LOST_AFTER = dt.timedelta(seconds=90)


def lost_run_automation(plan_id: str):
    """Prefect's zombie-run detection, for one plan's runs: a run that sent a heartbeat and then
    neither another nor a final state within :data:`LOST_AFTER` is set Crashed (its worker or
    machine was lost), which the incident automation turns into a letter to Sở Nội vụ. The runs
    are the plan's by its tag: its deployments' runs and the stage flows they run
    (``outcome.inherited_tags``), which would stay Running forever after their worker died."""
    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture

    from planflow.flows.outcome import OPEN_PROBLEMS, REFUSED

    # every final state's event, by its name: planflow names some of its own (planflow.flows.outcome)
    final = {f"prefect.flow-run.{name}" for name in ("Completed", "Failed", "Cancelled", "Crashed", REFUSED,
                                                      OPEN_PROBLEMS)}
    return Automation(
        name=automation_name(plan_id, "lần chạy mất tín hiệu → Crashed"),
        description="A run of a plan deployment that stopped sending heartbeats (its worker or machine lost) is "
                    "set Crashed, so that it becomes an incident (a letter to Sở Nội vụ); run it again.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"}, expect={"prefect.flow-run.heartbeat", *final},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.id": f"prefect.tag.{plan_id}", "prefect.resource.role": "tag"},
            for_each={"prefect.resource.id"}, posture=Posture.Proactive, threshold=1, within=LOST_AFTER),
        actions=[ChangeFlowRunState(state=StateType.CRASHED,
                                    message=f"no heartbeat for {LOST_AFTER.seconds} s: the worker running it was lost")],
    )


async def ensure_automations(plan_id: str, ids: dict[str, object]) -> list[str]:
    """Create (or replace) one plan's automations; return their names."""
    from prefect.automations import Automation

    names = []
    for automation in plan_automations(plan_id, ids):
        try:
            existing = await Automation.aread(name=automation.name)
        except ValueError:
            existing = None
        if existing is not None:
            await existing.adelete()
        await automation.acreate()
        names.append(automation.name)
    return names


async def deployment_ids(definition: str) -> dict[str, object]:
    """Role -> the id of a plan's deployment on the server (``prefect deploy --all`` made them)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    plan_id = cached_plan(definition).id
    ids, missing = {}, []
    async with get_client() as client:
        for role, flow in plan_flows(definition).items():
            try:
                ids[role] = (await client.read_deployment_by_name(f"{flow.name}/{plan_id}")).id
            except ObjectNotFound:
                missing.append(f"{flow.name}/{plan_id}")
    if missing:
        raise LookupError(f"deployment(s) {', '.join(missing)} not found on the server: "
                          "run `prefect deploy --all` (prefect.yaml) first")
    return ids


async def register_automations() -> list[str]:
    """The automations alone, for deployments made by ``prefect deploy --all``: of every plan
    ``PLANFLOW_DEFINITION`` names (a definition or a folder; default the shipped plan)."""
    names = []
    for path in plan_files(configured_path()):
        names += await ensure_automations(cached_plan(path).id, await deployment_ids(str(path)))
    return names


async def register(definitions: str, work_pool: str | None = None):
    """Register the deployments and automations of every plan of ``definitions`` (a file or a
    folder); return (deployments, plan id -> role -> deployment id). ``work_pool``: the
    deployments are run by that pool's workers (``planflow deploy``), else by ``serve``."""
    deps, ids = [], {}
    for path in plan_files(definitions):
        plan_deps = await deployments(str(path))
        plan_ids = {role: await d.aapply(work_pool_name=work_pool) for role, d in plan_deps.items()}
        plan_id = next(iter(plan_deps.values())).name
        await ensure_automations(plan_id, plan_ids)
        deps += plan_deps.values()
        ids[plan_id] = plan_ids
    return deps, ids


async def pool_type(name: str) -> str | None:
    """The type of the work pool ``name`` on the server, None when there is none. A server that
    does not answer, or refuses the login, is a ``ConnectionError`` saying so."""
    import httpx
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    async with get_client() as client:
        try:
            return (await client.read_work_pool(name)).type
        except ObjectNotFound:
            return None
        except (httpx.HTTPError, OSError) as exc:
            raise ConnectionError(f"the Prefect server at {client.api_url} did not answer as it should "
                                  f"({type(exc).__name__}: {exc}); check PREFECT_API_URL and "
                                  "PREFECT_API_AUTH_STRING") from None


async def serve(definitions: str, db_url: str | None) -> None:
    from prefect import aserve

    pin_environment(definitions, db_url)
    deps, _ = await register(definitions)
    await aserve(*deps, print_starting_message=True)
