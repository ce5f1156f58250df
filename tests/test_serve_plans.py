"""Many plans, one Prefect server (issue 11): ``planflow serve DIR``.

A folder holds the shipped plan and a copy under another id whose review form words its
decisions differently. Registered on the session's Prefect API, each plan has its own
deployments (named by its id, each with its own form), its own automations (named by its id,
matching only its events) — and a deployed flow of one plan, run as ``planflow serve`` runs
it (``python -m prefect.engine`` for the run, the plan chosen by its deployment's name),
writes that plan's instance and never the other's.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.conftest import PLAN

OTHER = "thu-nghiem-dan-van-2022"
SHIPPED = "hai-duong-dan-van-2022"
OTHER_RETURN = "Trả lại để hoàn thiện"


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def folder(tmp_path) -> Path:
    """The shipped plan and its copy under another id (its own review form), with the
    registry and forms they name, and a YAML file that is not a plan."""
    plans = tmp_path / "plans"
    for sub in ("registries", "forms"):
        shutil.copytree(PLAN.parent / sub, plans / sub)
    shipped = PLAN.read_text(encoding="utf-8")
    (plans / PLAN.name).write_text(shipped, encoding="utf-8")
    review = (plans / "forms" / "review-decision.yaml").read_text(encoding="utf-8")
    (plans / "forms" / "review-decision-b.yaml").write_text(
        review.replace('"Trả lại, đề nghị bổ sung"', f'"{OTHER_RETURN}"'), encoding="utf-8")
    other = shipped.replace(f"id: {SHIPPED}\n", f"id: {OTHER}\n").replace(
        "review-decision: forms/review-decision.yaml", "review-decision: forms/review-decision-b.yaml")
    assert other.count(OTHER) == 1 and "review-decision-b" in other
    (plans / f"{OTHER}.yml").write_text(other, encoding="utf-8")
    (plans / "ghi-chu.yaml").write_text("ghi_chu: không phải một Kế hoạch\n", encoding="utf-8")
    return plans


def test_a_folder_serves_every_plan_at_its_top_level_and_says_which_a_run_is_for(folder, monkeypatch):
    from planflow.flows.served_plans import ServedPlanError, plan_files, plans_by_id, served_definition

    assert [p.name for p in plan_files(folder)] == [PLAN.name, f"{OTHER}.yml"]  # not ghi-chu.yaml, not forms/
    assert set(plans_by_id(folder)) == {SHIPPED, OTHER}
    assert plan_files(folder / PLAN.name) == [folder / PLAN.name]
    monkeypatch.setenv("PLANFLOW_DEFINITION", str(folder / PLAN.name))
    assert served_definition() == str(folder / PLAN.name)
    monkeypatch.setenv("PLANFLOW_DEFINITION", str(folder))
    with pytest.raises(ServedPlanError, match="2 plans .*hai-duong-dan-van-2022, thu-nghiem-dan-van-2022"):
        served_definition()  # outside a deployment's run, two plans cannot be told apart
    monkeypatch.setenv("PREFECT__RUNTIME__DEPLOYMENT__NAME", OTHER)  # Prefect's own stand-in for a run's deployment
    assert served_definition() == str(folder / f"{OTHER}.yml")
    monkeypatch.setenv("PREFECT__RUNTIME__DEPLOYMENT__NAME", "ke-hoach-khac")
    with pytest.raises(ServedPlanError, match="deployment 'ke-hoach-khac': no plan with this id"):
        served_definition()
    monkeypatch.delenv("PREFECT__RUNTIME__DEPLOYMENT__NAME")
    (folder / "ban-sao.yaml").write_text(PLAN.read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(ServedPlanError, match=f"ban-sao.yaml and .*{PLAN.name}: both define the plan '{SHIPPED}'"):
        plan_files(folder)
    (folder / "ban-sao.yaml").unlink()
    (folder / f"{OTHER}.yml").unlink()
    assert served_definition() == str(folder / PLAN.name)  # a folder of one plan: that plan


def _engine_run(flow_run_id, env: dict) -> None:
    """Run a deployment's flow run as ``planflow serve``'s runner does: a process of its own
    (``python -m prefect.engine``) that loads the flow from the deployment's entrypoint."""
    done = subprocess.run([sys.executable, "-m", "prefect.engine", str(flow_run_id)],
                          env={**env, "PREFECT__FLOW_RUN_ID": str(flow_run_id)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]


async def _deployed_run(deployment_id, parameters: dict) -> str:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return (await client.create_flow_run_from_deployment(deployment_id, parameters=parameters)).id


async def _state_of(flow_run_id):
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return (await client.read_flow_run(flow_run_id)).state


def _schemas(ids: dict, role: str) -> dict:
    """Plan id -> the parameter schema the server keeps for that plan's ``role`` deployment."""
    from prefect.client.orchestration import get_client

    async def read():
        async with get_client() as client:
            return {plan: (await client.read_deployment(role_ids[role])).parameter_openapi_schema
                    for plan, role_ids in ids.items()}

    return run(read())


@pytest.mark.usefixtures("prefect_harness")
def test_two_plans_on_one_server_have_their_own_deployments_automations_and_instances(folder, tmp_path, monkeypatch):
    from prefect.automations import Automation
    from prefect.events.schemas.events import Resource
    from prefect.settings import PREFECT_API_URL

    from planflow import Engine, connect, load_plan
    from planflow.clock import set_replay_clock
    from planflow.flows.events import unit_resources
    from planflow.flows.serve import DEPLOYMENT_ENTRYPOINTS, pin_environment, register

    url = f"sqlite:///{tmp_path / 'planflow.db'}"
    for name in ("PLANFLOW_DEFINITION", "PLANFLOW_DATABASE_URL", "PLANFLOW_OUTBOX_DIR"):
        # set through monkeypatch (not deleted: a variable that was not there would then not be
        # removed again), so that what pin_environment writes below is undone after the test
        monkeypatch.setenv(name, "")
    monkeypatch.setenv("PLANFLOW_OUTBOX_DIR", str(tmp_path / "outbox"))
    pin_environment(str(folder), url)  # what `planflow serve DIR --db URL` does before it registers
    assert os.environ["PLANFLOW_DEFINITION"] == str(folder.resolve())
    deps, ids = run(register(str(folder)))

    # one deployment per plan and flow, named by the plan: 20 distinct full names
    assert set(ids) == {SHIPPED, OTHER} and all(set(i) == set(DEPLOYMENT_ENTRYPOINTS) for i in ids.values())
    full = {f"{d.flow_name}/{d.name}" for d in deps}
    assert len(deps) == len(full) == 20 and {"plan-cycle/thu-nghiem-dan-van-2022", f"plan-cycle/{SHIPPED}"} <= full
    assert {OTHER, "planflow"} <= set(next(d for d in deps if d.name == OTHER).tags)
    # each plan's form is its own: the other plan's review lists its own words for "return"
    schemas = _schemas(ids, "review-decision")
    assert schemas[SHIPPED]["definitions"]["YKien"]["enum"] == ["Thống nhất", "Trả lại, đề nghị bổ sung"]
    assert schemas[OTHER]["definitions"]["YKien"]["enum"] == ["Thống nhất", OTHER_RETURN]

    # two sets of automations, each matching its own plan's events only
    automations = {plan: [run(Automation.aread(name=f"planflow {plan}: {what}")) for what in (
        "báo cáo đã gửi → chuyển tiếp", "đơn vị quá hạn → gửi thông báo", "lần chạy thất bại → sự cố")]
        for plan in (SHIPPED, OTHER)}
    advance_of = {plan: a[0] for plan, a in automations.items()}
    submitted = {plan: Resource(unit_resources(load_plan(path), "so-tu-phap", f"{plan}/2022")[0])
                 for plan, path in ((SHIPPED, folder / PLAN.name), (OTHER, folder / f"{OTHER}.yml"))}
    assert advance_of[SHIPPED].trigger.match.matches(submitted[SHIPPED])
    assert advance_of[OTHER].trigger.match.matches(submitted[OTHER])
    assert not advance_of[OTHER].trigger.match.matches(submitted[SHIPPED])
    assert not advance_of[SHIPPED].trigger.match.matches(submitted[OTHER])
    assert advance_of[OTHER].actions[0].deployment_id == ids[OTHER]["advance"]
    # submissions arriving together move the plan once: the first schedules advance a minute
    # later, the others until then start nothing (Prefect's debouncing)
    assert advance_of[OTHER].trigger.within == advance_of[OTHER].actions[0].schedule_after == dt.timedelta(seconds=60)
    # a run of the plan's deployments that goes silent (its worker lost) is set Crashed — and a
    # run that ended in one of planflow's own final states ("Từ chối") is not silent
    lost = run(Automation.aread(name=f"planflow {OTHER}: lần chạy mất tín hiệu → Crashed"))
    assert lost.trigger.after == {"prefect.flow-run.heartbeat"} and lost.trigger.posture == "Proactive"
    assert {"prefect.flow-run.Từ chối", "prefect.flow-run.Completed", "prefect.flow-run.Crashed"} <= lost.trigger.expect
    assert lost.actions[0].state.value == "CRASHED"
    # its runs are the plan's by their tag: the deployments' runs and the stage flows they run
    from prefect.events.related import tags_as_related_resources

    def lost_sees(tags: set[str]) -> bool:
        return any(lost.trigger.match_related.matches(r) for r in tags_as_related_resources(tags))

    assert lost_sees({"planflow", OTHER}) and not lost_sees({"planflow", SHIPPED})
    incident = automations[OTHER][2].trigger.match_related
    assert f"prefect.deployment.{ids[OTHER]['advance']}" in incident["prefect.resource.id"]
    assert f"prefect.deployment.{ids[SHIPPED]['advance']}" not in incident["prefect.resource.id"]

    # the shipped plan's year, started beforehand; then deployed flows of the other plan, run as
    # the runner runs them: its year starts, the shipped plan's instance is never written
    started = load_plan(folder / PLAN.name)
    set_replay_clock(Engine(started, connect(url)), f"{SHIPPED}/2022", dt.datetime(2022, 3, 15, 8, tzinfo=started.calendar.tz),
                     actor="Nguyễn Văn A", reason="Chạy lại Kế hoạch năm 2022")
    shipped_before = _rows_of(url, SHIPPED)
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PREFECT_LOGGING_LEVEL": "WARNING"}
    clock = run(_deployed_run(ids[OTHER]["set-replay-clock"], {
        "day": "2022-04-01", "time": "09:00", "actor": "Trần Thị B", "reason": "Chạy thử Kế hoạch thứ hai"}))
    _engine_run(clock, env)
    state = run(_state_of(clock))
    assert state.is_completed(), (state.name, state.message)
    other = _rows_of(url, OTHER)
    assert other["instances"] == 1 and other["audit"] > 0 and str(other["clock"]).startswith("2022-04-01")  # UTC
    # the other plan's run reads its own review form: its words for "return" are one of its
    # choices (the run is refused only because no review is open yet); the shipped plan's list
    # has no such words
    review = run(_deployed_run(ids[OTHER]["review-decision"], {"decision": OTHER_RETURN, "reviewer": "Trần Thị B"}))
    _engine_run(review, env)
    state = run(_state_of(review))
    assert state.name == "Từ chối" and "không có trong danh sách" not in state.message, state.message
    assert _rows_of(url, SHIPPED) == shipped_before


def _rows_of(url: str, plan_id: str) -> dict:
    """What the store holds for a plan: its instances, their tasks, reports, letters, audit rows, clock."""
    from planflow import connect

    ids = "select id from instances where definition_id = :plan"
    queries = {"instances": "select count(*) from instances where definition_id = :plan",
               "work_items": f"select count(*) from work_items where instance_id in ({ids})",
               "submissions": f"select count(*) from submissions s join work_items w on s.work_item_id = w.id "
                              f"where w.instance_id in ({ids})",
               "outbox": f"select count(*) from outbox where instance_id in ({ids})",
               "audit": f"select count(*) from audit where instance_id in ({ids})",
               "clock": "select max(clock_at) from instances where definition_id = :plan"}
    with connect(url).connect() as conn:
        return {name: conn.execute(text(q), {"plan": plan_id}).scalar() for name, q in queries.items()}


@pytest.mark.usefixtures("prefect_harness")
def test_deploy_puts_every_plan_on_a_work_pool_whose_process_worker_runs_them(folder, tmp_path):
    """``planflow deploy DIR --pool P`` (README, "Run it at scale"): refused while the pool does not
    exist, nothing registered; then every plan's deployments on the pool, and a real process worker
    (``prefect worker start --run-once``) runs a plan's deployment with the plan, the store and the
    outbox of its own environment."""
    import json
    import uuid

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.settings import PREFECT_API_URL
    from typer.testing import CliRunner

    from planflow.flows.cli import app
    from tests.conftest import REPO

    pool = f"pool-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    refused = CliRunner().invoke(app, ["deploy", str(folder), "--pool", pool], env=env)
    assert refused.exit_code == 1 and f"no work pool '{pool}'" in " ".join(refused.output.split())
    assert run(_on_pool(pool)) == {}

    template = json.loads((REPO / "work-pool.json").read_text(encoding="utf-8"))

    async def create_pool():
        async with get_client() as client:
            await client.create_work_pool(WorkPoolCreate(name=pool, type="process", base_job_template=template))

    run(create_pool())
    done = CliRunner().invoke(app, ["deploy", str(folder), "--pool", pool], env=env)
    assert done.exit_code == 0, done.output
    assert f"{OTHER}: 10 deployments on pool {pool}, 4 automations" in " ".join(done.output.split())
    on_pool = run(_on_pool(pool))
    assert len(on_pool) == 20 and {"plan-cycle/" + OTHER, "advance/" + SHIPPED} <= set(on_pool)

    url = f"sqlite:///{tmp_path / 'worker.db'}"
    clock = run(_deployed_run(on_pool[f"set-replay-clock/{OTHER}"], {
        "day": "2022-04-01", "time": "09:00", "actor": "Trần Thị B", "reason": "Chạy thử trên work pool"}))
    worker_env = {**env, "PLANFLOW_DEFINITION": str(folder), "PLANFLOW_DATABASE_URL": url,
                  "PLANFLOW_OUTBOX_DIR": str(tmp_path / "outbox"), "PREFECT_LOGGING_LEVEL": "WARNING"}
    worker = subprocess.run([sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", "process",
                             "--run-once"], env=worker_env, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert worker.returncode == 0, worker.stderr[-3000:]
    state = run(_state_of(clock))
    assert state.is_completed(), (state.name, state.message, worker.stderr[-3000:])
    other = _rows_of(url, OTHER)
    assert other["instances"] == 1 and str(other["clock"]).startswith("2022-04-01")
    assert _rows_of(url, SHIPPED)["instances"] == 0
    # the plan's cycle, on the worker too: its stage flows carry the plan's tags (not those of
    # an operator's form): the plan's lost-run automation sees them
    cycle = run(_deployed_run(on_pool[f"plan-cycle/{OTHER}"], {}))
    worker = subprocess.run([sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", "process",
                             "--run-once"], env=worker_env, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    state = run(_state_of(cycle))
    assert state.is_completed(), (state.name, state.message, worker.stderr[-3000:])
    stages = run(_subflow_tags(cycle))
    assert "dissemination" in stages and all(tags == {"planflow", OTHER} for tags in stages.values()), stages


async def _subflow_tags(flow_run_id) -> dict[str, set[str]]:
    """The tags of each flow run started inside the run ``flow_run_id``, by its flow's name."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    async with get_client() as client:
        runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id])))
        names = {f.id: f.name for f in await client.read_flows()}
    return {names[r.flow_id]: set(r.tags) for r in runs}


async def _on_pool(pool: str) -> dict:
    """``flow/deployment`` -> id of the deployments on the work pool ``pool``."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import WorkPoolFilter, WorkPoolFilterName

    async with get_client() as client:
        deployments = await client.read_deployments(work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[pool])))
        flows = {f.id: f.name for f in await client.read_flows()}
    return {f"{flows[d.flow_id]}/{d.name}": d.id for d in deployments}


def test_deploy_refuses_without_a_server_or_with_a_broken_plan_before_it_registers_anything(folder):
    """No ``PREFECT_API_URL``: said so. A plan of the folder broken: refused at its file and line,
    before the server is asked anything (the URL here answers nothing)."""
    from typer.testing import CliRunner

    from planflow.flows.cli import app

    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    no_server = CliRunner().invoke(app, ["deploy", str(folder)], env={**env, "PREFECT_API_URL": ""})
    assert no_server.exit_code == 1 and "PREFECT_API_URL is not set" in no_server.output
    odd = CliRunner().invoke(app, ["deploy", str(folder)], env={**env, "PREFECT_API_URL": "http://127.0.0.1:9/api",
                                                                 "PLANFLOW_ADVANCE_AFTER": "một phút"})
    assert odd.exit_code == 1 and "PLANFLOW_ADVANCE_AFTER must be a number, not 'một phút'" in odd.output, odd.output
    assert isinstance(odd.exception, SystemExit)
    other = folder / f"{OTHER}.yml"
    other.write_text(other.read_text(encoding="utf-8").replace("registry: ", "registry: missing/"), encoding="utf-8")
    broken = CliRunner().invoke(app, ["deploy", str(folder), "--pool", "planflow"],
                                env={**env, "PREFECT_API_URL": "http://127.0.0.1:9/api"})
    said = " ".join(broken.output.split())
    assert broken.exit_code == 1 and f"{OTHER}.yml" in said and "missing/" in said, said
    assert isinstance(broken.exception, SystemExit)
    # the plans right, the server not answering: said in one line, nothing registered
    other.write_text(other.read_text(encoding="utf-8").replace("registry: missing/", "registry: "), encoding="utf-8")
    # (a process of its own: Prefect reads PREFECT_API_URL when it is imported)
    silent = subprocess.run([str(Path(sys.executable).parent / "planflow"), "deploy", str(folder)], cwd=folder,
                            env={**env, "PREFECT_API_URL": "http://127.0.0.1:9/api"}, capture_output=True, text=True,
                            timeout=120)
    said = " ".join((silent.stdout + silent.stderr).split())
    assert silent.returncode == 1 and "Traceback" not in said, said
    assert "did not answer" in said and "127.0.0.1:9" in said, said
