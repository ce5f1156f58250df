"""The flows operators run for real (flows/operations.py), under the session Prefect harness.

Each flow is called as Prefect runs it from a deployment (a top-level flow run against the
harness's API); the store is a SQLite file and a PostgreSQL database (``db_url``). To reach
the later steps quickly, units' submissions are recorded through ``Engine.submit`` in
batches at 2022 dates — what the deployments would do one unit at a time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select

from planflow import Submission
from planflow import store as s
from tests.conftest import REPO

pytestmark = pytest.mark.usefixtures("prefect_harness")

TZ = dt.timezone(dt.timedelta(hours=7))
KEY = "hai-duong-dan-van-2022/2022"
ISSUED = dt.datetime(2022, 3, 15, 8, tzinfo=TZ)
REPORTS_DOWN = "cơ sở dữ liệu báo cáo không truy cập được"
TABLES = ("instances", "tokens", "work_items", "submissions", "timers", "reports", "outbox", "audit")


def run(coro):
    return asyncio.run(coro)


def at(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=TZ)


@pytest.fixture
def outbox_dir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "outbox"
    monkeypatch.setenv("PLANFLOW_OUTBOX_DIR", str(folder))
    return folder


@pytest.fixture
def definition(tmp_path) -> str:
    """The shipped plan with a short retry policy (1 retry, no delay), so that a step that keeps
    failing gives up in a second instead of the plan's 2 + 10 + 60 s. The policy is data."""
    folder = tmp_path / "definitions"
    shutil.copytree(REPO / "definitions", folder)
    path = folder / "hai-duong-dan-van-2022.yaml"
    text = path.read_text(encoding="utf-8")
    policy = "retry: {retries: 3, delay_s: [2, 10, 60]}"
    assert policy in text
    path.write_text(text.replace(policy, "retry: {retries: 1, delay_s: [0]}"), encoding="utf-8")
    return str(path)


def engine_of(definition: str, db_url: str):
    from planflow.flows.operations import _ref
    from planflow.flows.runtime import engine_for

    return engine_for(_ref(definition, db_url))


def scores(plan) -> dict:
    """Full marks on every criterion a unit scores itself, keyed as the engine wants (g1.1)."""
    form = plan.forms["self-evaluation"]
    return {code: item.max for code, item in form.items.items() if not item.auto_from_workflow}


def sheet(plan, **override) -> dict:
    """The same scores as the ``submit-self-evaluation`` form takes them (g1_1)."""
    return {**{code.replace(".", "_"): value for code, value in scores(plan).items()}, **override}


def codes(plan, group: str) -> list[str]:
    return [u.code for u in plan.registry.group(group)]


def submit(engine, units: list[str], when: dt.datetime) -> int:
    root = engine.instance_id(KEY)
    batch = [Submission(unit=u, submitted_at=when, payload={"scores": scores(engine.plan)}, actor="test")
             for u in units]
    return engine.submit(batch, when, root_id=root)


def start_quietly(engine) -> int:
    """Start the instance and move it to the units' tasks with the engine alone: no Prefect
    run, no letter delivered (for tests about what comes after dissemination)."""
    root = engine.start(KEY, ISSUED)
    while True:
        engine.advance(ISSUED, root_id=root)
        steps = engine.ready_steps(root_id=root)
        if not steps:
            return root
        for step in steps:
            engine.run_step(step.token_ids, ISSUED)


def snapshot(engine) -> dict:
    with engine.db.connect() as conn:
        snap = {t: conn.scalar(select(func.count()).select_from(getattr(s, t))) for t in TABLES}
        snap["tokens_by_state"] = sorted(conn.execute(
            select(s.tokens.c.element_id, s.tokens.c.status, func.count())
            .group_by(s.tokens.c.element_id, s.tokens.c.status)).all())
        snap["outbox_by_state"] = sorted(conn.execute(
            select(s.outbox.c.kind, s.outbox.c.status, func.count()).group_by(s.outbox.c.kind, s.outbox.c.status)).all())
    return snap


def flow_run_id(state):
    return state.state_details.flow_run_id


async def _artifacts(flow_run, *keys: str) -> dict:
    """The latest version of each artifact ``key`` that ``flow_run`` published, read back from the API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=list(keys)),
                                           flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run])),
            sort=ArtifactSort.CREATED_DESC)
    latest: dict = {}
    for a in found:
        latest.setdefault(a.key, a)
    return latest


def artifacts(flow_run, *whats: str) -> dict:
    from planflow.flows.artifacts import artifact_key

    keys = {artifact_key(KEY, w): w for w in whats}
    found = run(_artifacts(flow_run, *keys))
    return {keys[k]: a for k, a in found.items()}


def table(artifact) -> list[dict]:
    return json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data


def emls(folder: Path, kind: str) -> list[str]:
    """Names of the .eml files of one kind of notification (the file name is the outbox key)."""
    import email
    import email.policy

    if not folder.exists():
        return []
    return sorted(p.name for p in folder.glob("*.eml")
                  if email.message_from_bytes(p.read_bytes(), policy=email.policy.default)["X-Planflow-Kind"] == kind)


# --- plan-cycle ------------------------------------------------------------------------


def test_plan_cycle_starts_the_year_once_and_publishes_its_artifacts(db_url, outbox_dir, plan):
    from planflow.flows.operations import plan_cycle

    state = run(plan_cycle(db_url=db_url, year=2022, as_of=ISSUED, return_state=True))
    assert state.is_completed(), state.message
    assert state.result() == KEY
    engine = engine_of(str(plan.path), db_url)
    root = engine.instance_id(KEY)
    assert root is not None
    letters = sorted(p.name for p in outbox_dir.glob("*.eml"))
    # the plan to every recipient, then each district's directive to its communes
    assert len(letters) == len(plan.registry.group("recipients")) + len(plan.registry.group("communes"))
    before = snapshot(engine)

    found = artifacts(flow_run_id(state), "progress", "units", "districts", "escalations", "stalled")
    assert set(found) == {"progress", "units", "districts", "escalations", "stalled"}
    assert found["progress"].type == "progress" and float(found["progress"].data) == 0
    units = table(found["units"])
    assert len(units) == 265 == len(codes(plan, "departments")) + len(codes(plan, "districts")) + len(
        codes(plan, "communes"))
    row = next(r for r in units if r["Mã"] == "so-y-te")
    assert row["Đơn vị"] == "Sở Y tế" and row["Hạn"] == "09/12/2022 23:59"
    assert len(table(found["districts"])) == 12
    assert table(found["stalled"])[0]["Chi tiết"] == "Không có"

    # the schedule fires again, or an operator runs it twice: nothing changes
    again = run(plan_cycle(db_url=db_url, year=2022, as_of=ISSUED, return_state=True))
    assert again.is_completed(), again.message
    assert snapshot(engine) == before
    assert sorted(p.name for p in outbox_dir.glob("*.eml")) == letters


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_plan_cycle_refuses_another_year(db_url, outbox_dir):
    from planflow.flows.operations import plan_cycle

    state = run(plan_cycle(db_url=db_url, year=2023, as_of=ISSUED, return_state=True))
    assert state.is_failed()
    assert "plan of 2022, not 2023" in state.message
    assert not outbox_dir.exists()


# --- submissions and review ------------------------------------------------------------


def test_refused_submissions_name_what_is_wrong_and_write_nothing(db_url, outbox_dir, plan):
    from planflow.flows.operations import submit_self_evaluation

    engine = engine_of(str(plan.path), db_url)
    start_quietly(engine)
    assert len(engine.open_work()) == 18 + 235
    before = snapshot(engine)

    # above the criterion's maximum: the form's own model (pydantic) refuses it before the flow runs
    state = run(submit_self_evaluation(unit="so-tu-phap", scores=sheet(plan, g1_1=9),
                                       submitted_at=at(2022, 12, 5, 10), db_url=db_url, return_state=True))
    assert state.is_failed()
    assert "scores.g1_1" in state.message and "less than or equal to 5" in state.message

    # a unit the registry does not know: the engine refuses it by name
    state = run(submit_self_evaluation(unit="so-khong-ton-tai", scores=sheet(plan),
                                       submitted_at=at(2022, 12, 5, 10), db_url=db_url, return_state=True))
    assert state.is_failed()
    assert "so-khong-ton-tai" in state.message and "not in registry" in state.message

    # a known unit with nothing to submit (Bộ Nội vụ receives the report, it does not report)
    state = run(submit_self_evaluation(unit="bo-noi-vu", scores=sheet(plan),
                                       submitted_at=at(2022, 12, 5, 10), db_url=db_url, return_state=True))
    assert state.is_failed()
    assert "bo-noi-vu" in state.message and "no open task" in state.message

    # a time without a zone is refused too
    state = run(submit_self_evaluation(unit="so-tu-phap", scores=sheet(plan),
                                       submitted_at=dt.datetime(2022, 12, 5, 10), db_url=db_url, return_state=True))
    assert state.is_failed() and "time zone" in state.message

    assert snapshot(engine) == before


def test_submission_then_advance_moves_the_plan_through_review_to_publication(db_url, outbox_dir, plan):
    from planflow.flows.operations import advance, plan_cycle, review_decision, submit_self_evaluation

    assert run(plan_cycle(db_url=db_url, as_of=ISSUED, return_state=True)).is_completed()
    engine = engine_of(str(plan.path), db_url)
    root = engine.instance_id(KEY)
    departments = [c for c in codes(plan, "departments") if c != "so-tu-phap"]
    submit(engine, departments + codes(plan, "communes"), at(2022, 11, 21, 10))
    assert run(advance(db_url=db_url, as_of=at(2022, 11, 21, 10, 5), return_state=True)).is_completed()
    submit(engine, codes(plan, "districts"), at(2022, 11, 22, 10))

    # the last unit reports through the operator form
    state = run(submit_self_evaluation(unit="so-tu-phap", scores=sheet(plan, g1_1=4.5), evidence="Báo cáo số 12/BC-STP",
                                       submitted_at=at(2022, 12, 5, 10), db_url=db_url, return_state=True))
    assert state.is_completed(), state.message
    with engine.db.connect() as conn:
        row = conn.execute(select(s.submissions).where(s.submissions.c.unit_code == "so-tu-phap")).one()
    assert row.payload["scores"]["g1.1"] == 4.5 and row.payload["evidence"] == "Báo cáo số 12/BC-STP"
    assert row.total == 99.5  # 95 scored by the unit less 0.5, plus 5 for reporting on time
    progress = artifacts(flow_run_id(state), "progress")["progress"]
    assert float(progress.data) == 100

    # what the automation on planflow.unit.submitted starts: aggregation, report, review request
    state = run(advance(db_url=db_url, instance=KEY, as_of=at(2022, 12, 5, 10, 5), return_state=True))
    assert state.is_completed(), state.message
    assert [w.element_id for w in engine.open_work(root)] == ["review"]
    report = artifacts(flow_run_id(state), "report")["report"]
    assert "# BÁO CÁO" in report.data
    assert len(emls(outbox_dir, "report-upward")) == len(plan.registry.group("report_to"))

    # Ban Dân vận Tỉnh ủy sends it back, then approves the revised report
    state = run(review_decision(decision="return", comment="Bổ sung số liệu cấp xã", db_url=db_url,
                                decided_at=at(2022, 12, 20, 9), return_state=True))
    assert state.is_completed(), state.message
    assert run(advance(db_url=db_url, as_of=at(2022, 12, 20, 9, 5), return_state=True)).is_completed()
    assert [w.element_id for w in engine.open_work(root)] == ["review"]
    with engine.db.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(s.reports).where(s.reports.c.instance_id == root)) == 2
    state = run(review_decision(decision="approve", db_url=db_url, decided_at=at(2022, 12, 27, 9), return_state=True))
    assert state.is_completed(), state.message
    assert run(advance(db_url=db_url, as_of=at(2022, 12, 27, 9, 5), return_state=True)).is_completed()
    assert engine.instance(root).status == "completed"
    assert len(emls(outbox_dir, "publication")) == len(plan.registry.group("recipients"))

    # a decision when nothing waits for one is refused by name
    state = run(review_decision(decision="approve", db_url=db_url, decided_at=at(2022, 12, 28, 9), return_state=True))
    assert state.is_failed() and "ban-dan-van-tinh-uy" in state.message


# --- a failed step, re-triggered -------------------------------------------------------


@pytest.fixture
def reports_database(monkeypatch):
    """Sở Nội vụ's aggregation fails for an outside reason — the reports database is down —
    until the test "repairs" it.

    Why this way: the report template folder is fixed inside engine/ (not a setting), so the
    failure is injected where the engine calls the step's handler (``HANDLERS['aggregate']``),
    and only for the province's ``aggregate`` step (the districts' ``aggregate_communes`` uses
    the same handler and keeps working). Everything around it is real: Prefect's task retries,
    the failed flow run, the token the engine keeps ready with its error, the audit, the outbox.
    """
    from planflow import services

    real = services.HANDLERS["aggregate"]
    down = {"now": True, "calls": 0}

    def aggregate(ctx):
        if ctx.element.id == "aggregate":
            down["calls"] += 1
            if down["now"]:
                raise RuntimeError(REPORTS_DOWN)
        return real(ctx)

    monkeypatch.setitem(services.HANDLERS, "aggregate", aggregate)
    return down


def test_failed_aggregation_retriggered_completes_without_duplicate_letters(
        db_url, outbox_dir, plan, definition, reports_database):
    from typer.testing import CliRunner

    from planflow.flows.cli import app
    from planflow.flows.operations import advance, plan_cycle, retrigger_step
    from planflow.notifications import safe_key

    assert run(plan_cycle(definition=definition, db_url=db_url, as_of=ISSUED, return_state=True)).is_completed()
    engine = engine_of(definition, db_url)
    root = engine.instance_id(KEY)
    submit(engine, codes(plan, "departments") + codes(plan, "communes"), at(2022, 11, 21, 10))
    assert run(advance(definition=definition, db_url=db_url, as_of=at(2022, 11, 21, 10, 5),
                       return_state=True)).is_completed()
    submit(engine, codes(plan, "districts"), at(2022, 11, 22, 10))

    # every unit has reported: Sở Nội vụ aggregates — and the reports database is down
    state = run(advance(definition=definition, db_url=db_url, as_of=at(2022, 11, 22, 10, 5), return_state=True))
    assert state.is_failed()
    assert REPORTS_DOWN in state.message
    assert reports_database["calls"] == 2  # the first try and the one retry of the policy
    stalled = [x for x in engine.stalled(root) if x["kind"] == "step-failed"]
    assert stalled == [{"kind": "step-failed", "step": "aggregate", "unit": None,
                        "detail": f"2 attempt(s): RuntimeError: {REPORTS_DOWN}"}]
    rows = table(artifacts(flow_run_id(state), "stalled")["stalled"])
    assert [(r["Loại"], r["Bước"]) for r in rows] == [("step-failed", "aggregate")]
    assert REPORTS_DOWN in rows[0]["Chi tiết"]
    status = CliRunner().invoke(app, ["status", "--db", db_url])
    assert status.exit_code == 0, status.output
    shown = " ".join(status.output.split())  # rich wraps long lines
    assert "stalled aggregate (token" in shown and f"2 attempt(s)): RuntimeError: {REPORTS_DOWN}" in shown
    with engine.db.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(s.reports).where(s.reports.c.instance_id == root)) == 0
        assert conn.scalar(select(func.count()).select_from(s.outbox)
                           .where(s.outbox.c.element_id == "report_upward")) == 0

    # the database is back: an operator re-triggers the step, saying who and why
    reports_database["now"] = False
    state = run(retrigger_step(step="aggregate", reason="Máy chủ CSDL báo cáo đã khôi phục", actor="so-noi-vu:tran-thi-b",
                               definition=definition, db_url=db_url, as_of=at(2022, 11, 23, 8), return_state=True))
    assert state.is_completed(), state.message
    assert state.result() == 1
    assert [w.element_id for w in engine.open_work(root)] == ["review"]
    assert not [x for x in engine.stalled(root) if x["kind"] == "step-failed"]
    report_to = codes(plan, "report_to")
    with engine.db.connect() as conn:
        letters = conn.execute(select(s.outbox.c.key, s.outbox.c.recipient, s.outbox.c.status, s.outbox.c.attempts)
                               .where(s.outbox.c.element_id == "report_upward")).all()
        audit = conn.execute(select(s.audit.c.actor, s.audit.c.element_id, s.audit.c.detail)
                             .where(s.audit.c.action == "step.retriggered")).all()
    assert sorted(r.recipient for r in letters) == sorted(report_to)
    assert {(r.status, r.attempts) for r in letters} == {("sent", 1)}
    assert emls(outbox_dir, "report-upward") == sorted(f"{safe_key(r.key)}.eml" for r in letters)
    assert len(audit) == 1
    assert audit[0].actor == "so-noi-vu:tran-thi-b" and audit[0].element_id == "aggregate"
    assert audit[0].detail["reason"] == "Máy chủ CSDL báo cáo đã khôi phục"
    assert audit[0].detail["previous_attempts"] == 2 and REPORTS_DOWN in audit[0].detail["previous_error"]
    rows = table(artifacts(flow_run_id(state), "stalled")["stalled"])
    assert rows[0]["Chi tiết"] == "Không có"
    assert "stalled" not in CliRunner().invoke(app, ["status", "--db", db_url]).output

    # re-triggering again changes nothing: no step run, no letter, no audit line
    before, files = snapshot(engine), sorted(p.name for p in outbox_dir.glob("*.eml"))
    calls = reports_database["calls"]
    state = run(retrigger_step(step="aggregate", reason="bấm lại", actor="so-noi-vu:tran-thi-b",
                               definition=definition, db_url=db_url, as_of=at(2022, 11, 23, 9), return_state=True))
    assert state.is_completed(), state.message
    assert state.result() == 0
    assert snapshot(engine) == before
    assert sorted(p.name for p in outbox_dir.glob("*.eml")) == files
    assert reports_database["calls"] == calls


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_retrigger_names_the_steps_it_knows(db_url, outbox_dir, plan):
    from planflow.flows.operations import retrigger_step

    start_quietly(engine_of(str(plan.path), db_url))
    state = run(retrigger_step(step="tong-hop", reason="thử", actor="x", db_url=db_url, return_state=True))
    assert state.is_failed()
    assert "'tong-hop' is not a step" in state.message and "aggregate" in state.message


def test_retrigger_sends_the_letters_a_step_could_not_send(db_url, tmp_path, monkeypatch, plan):
    """The plan went out while its outbox could not be written (a path under a file): the
    letters failed for good; once the folder is right, re-triggering the step sends them."""
    from planflow.flows.operations import deliver_outbox, retrigger_step

    engine = engine_of(str(plan.path), db_url)
    start_quietly(engine)  # dissemination queued, not delivered
    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setenv("PLANFLOW_OUTBOX_DIR", str(tmp_path / "not-a-folder" / "outbox"))
    assert run(deliver_outbox(db_url=db_url, return_state=True)).is_completed()
    failed = [x for x in engine.stalled(engine.instance_id(KEY)) if x["kind"] == "notification-failed"]
    recipients = len(plan.registry.group("recipients"))
    assert len([x for x in failed if x["step"] == "disseminate"]) == recipients

    good = tmp_path / "outbox"
    monkeypatch.setenv("PLANFLOW_OUTBOX_DIR", str(good))
    state = run(retrigger_step(step="disseminate", reason="Sửa thư mục hộp thư đi", actor="quan-tri",
                               db_url=db_url, as_of=at(2022, 3, 16, 8), return_state=True))
    assert state.is_completed(), state.message
    assert state.result() == recipients
    assert len(emls(good, "dissemination")) == recipients
    left = [x for x in engine.stalled(engine.instance_id(KEY)) if x["kind"] == "notification-failed"]
    assert {x["step"] for x in left} == {"direct_communes"}  # the communes' letters: another step
    with engine.db.connect() as conn:
        retried = conn.scalar(select(func.count()).select_from(s.audit).where(
            s.audit.c.action == "notification.retried", s.audit.c.actor == "quan-tri"))
    assert retried == recipients


def test_the_form_is_built_on_first_use_with_one_field_per_criterion(plan, tmp_path):
    import subprocess
    import sys

    from planflow.flows import operations

    # importing the module (what a worker does first) reads no plan
    code = ("import planflow.flows.operations as ops; "
            "assert not {'ScoreSheet', 'submit_self_evaluation'} & set(vars(ops)), 'built at import'")
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True)
    # the flow Prefect finds by its entrypoint takes the form the UI renders
    flow = operations.submit_self_evaluation
    assert operations.ScoreSheet is flow.fn.__annotations__["scores"]
    fields = flow.parameters.model_dump()["definitions"]["ScoreSheet"]["properties"]
    form = plan.forms["self-evaluation"]
    criteria = {code: item for code, item in form.items.items() if not item.auto_from_workflow}
    assert list(fields) == [code.replace(".", "_") for code in criteria]
    for code, item in criteria.items():
        field = fields[code.replace(".", "_")]
        assert field["title"] == f"{code}. {item.title}" and field["maximum"] == item.max
        assert field["description"] == f"tối đa {item.max:g} điểm"


def test_prefect_yaml_declares_the_deployments_planflow_serve_registers():
    import yaml

    from planflow.flows import operations
    from planflow import load_plan
    from planflow.flows.serve import deployment_flows, sweep_cron
    from tests.conftest import PLAN

    spec = yaml.safe_load((REPO / "prefect.yaml").read_text(encoding="utf-8"))
    assert spec["pull"] == [{"prefect.deployments.steps.set_working_directory": {"directory": "{{ $PLANFLOW_REPO }}"}}]
    deployments = {d["name"]: d for d in spec["deployments"]}
    flows = deployment_flows()
    assert set(deployments) == set(flows)
    for name, d in deployments.items():
        path, function = d["entrypoint"].split(":")
        assert path == "planflow.flows.operations" and getattr(operations, function) is flows[name], name
        assert d["work_pool"]["name"] == "planflow"
        assert (REPO / d["parameters"]["definition"]).exists()
    assert deployments["plan-cycle"]["parameters"]["year"] == 2022
    assert [(s["cron"], s["timezone"]) for s in deployments["plan-cycle"]["schedules"]] == [
        ("0 8 15 3 *", "Asia/Ho_Chi_Minh")]
    assert [(s["cron"], s["timezone"]) for s in deployments["deadline-sweep"]["schedules"]] == [
        (sweep_cron(load_plan(PLAN)), "Asia/Ho_Chi_Minh")]
    assert all("schedules" not in d for n, d in deployments.items() if n not in ("plan-cycle", "deadline-sweep"))
