"""The flows operators run for real (flows/operations.py), under the session Prefect harness.

Each flow is called as Prefect runs it from a deployment (a top-level flow run against the
harness's API). Where it works — the definition and the store, a SQLite file and a
PostgreSQL database (``db_url``) — is the environment of the process, as ``planflow serve``
or a worker fixes it; no flow takes it from its caller. The 2022 plan is replayed: an
operator sets the instance's replay clock (``set-replay-clock``), and every flow runs at it.
To reach the later steps quickly, units' submissions are recorded through ``Engine.submit``
in batches at 2022 dates — what the deployments would do one unit at a time.
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
OPERATOR = "so-noi-vu:nguyen-van-a"
REPLAY = "Chạy lại Kế hoạch năm 2022 để kiểm tra"
REPORTS_DOWN = "cơ sở dữ liệu báo cáo không truy cập được"
TABLES = ("instances", "tokens", "work_items", "submissions", "timers", "reports", "outbox", "audit")


def run(coro):
    return asyncio.run(coro)


def at(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=TZ)


@pytest.fixture
def where(db_url, plan, monkeypatch):
    """The deployment's environment: the shipped plan and the test's store."""
    monkeypatch.setenv("PLANFLOW_DEFINITION", str(plan.path))
    monkeypatch.setenv("PLANFLOW_DATABASE_URL", db_url)


@pytest.fixture
def outbox_dir(where, tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "outbox"
    monkeypatch.setenv("PLANFLOW_OUTBOX_DIR", str(folder))
    return folder


@pytest.fixture
def definition(where, tmp_path, monkeypatch) -> str:
    """The shipped plan with a short retry policy (1 retry, no delay), so that a step that keeps
    failing gives up in a second instead of the plan's 2 + 10 + 60 s. The policy is data."""
    folder = tmp_path / "definitions"
    shutil.copytree(REPO / "definitions", folder)
    path = folder / "hai-duong-dan-van-2022.yaml"
    text = path.read_text(encoding="utf-8")
    policy = "retry: {retries: 3, delay_s: [2, 10, 60]}"
    assert policy in text
    path.write_text(text.replace(policy, "retry: {retries: 1, delay_s: [0]}"), encoding="utf-8")
    monkeypatch.setenv("PLANFLOW_DEFINITION", str(path))
    return str(path)


def engine_of():
    from planflow.flows.operations import plan_ref
    from planflow.flows.runtime import engine_for

    return engine_for(plan_ref())


def clock(when: dt.datetime, actor: str = OPERATOR, reason: str = REPLAY):
    """An operator moves the replay clock of the 2022 instance (the first time: starts it)."""
    from planflow.flows.operations import set_replay_clock

    state = run(set_replay_clock(**moment(when), actor=actor, reason=reason, return_state=True))
    assert state.is_completed(), state.message
    return state


def moment(when: dt.datetime) -> dict:
    """The replay clock's form: a date and a time in Vietnam's time (no UTC date-time picker)."""
    local = when.astimezone(TZ)
    return {"day": local.date().isoformat(), "time": f"{local:%H:%M}"}


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
    """Start the instance (a replay at ISSUED) and move it to the units' tasks with the engine
    alone: no Prefect run, no letter delivered (for tests about what comes after dissemination)."""
    from planflow.clock import set_replay_clock

    set_replay_clock(engine, KEY, ISSUED, actor=OPERATOR, reason=REPLAY)
    root = engine.instance_id(KEY)
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


async def _run_name(flow_run) -> str:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return (await client.read_flow_run(flow_run)).name


def run_name(flow_run) -> str:
    return run(_run_name(flow_run))


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


# --- plan-cycle and the replay clock ---------------------------------------------------


def test_plan_cycle_starts_the_year_once_and_publishes_its_artifacts(db_url, outbox_dir, plan):
    from planflow.flows.operations import plan_cycle

    clock(ISSUED)
    state = run(plan_cycle(year=2022, return_state=True))
    assert state.is_completed(), state.message
    assert state.result() == KEY
    engine = engine_of()
    root = engine.instance_id(KEY)
    assert root is not None
    letters = sorted(p.name for p in outbox_dir.glob("*.eml"))
    # the plan to every recipient, then each district's directive to its communes
    assert len(letters) == len(plan.registry.group("recipients")) + len(plan.registry.group("communes"))
    before = snapshot(engine)

    # the instance's artifacts (what they show: the "view" tests) are the run's
    found = artifacts(flow_run_id(state), "progress", "units", "districts", "stalled")
    assert set(found) == {"progress", "units", "districts", "stalled"}
    assert found["progress"].type == "progress" and float(found["progress"].data) == 0
    assert len(table(found["units"])) == 265
    # the run's name is the plan's moment, not the real clock's
    assert state.name == "Completed"
    assert run_name(flow_run_id(state)) == "Ban hành Kế hoạch 15/03/2022 08:00"

    # the schedule fires again, or an operator runs it twice: nothing changes
    again = run(plan_cycle(year=2022, return_state=True))
    assert again.is_completed(), again.message
    assert snapshot(engine) == before
    assert sorted(p.name for p in outbox_dir.glob("*.eml")) == letters


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_plan_cycle_refuses_another_year_and_a_past_year_on_the_real_clock(db_url, outbox_dir):
    from planflow.flows.operations import plan_cycle

    state = run(plan_cycle(year=2023, return_state=True))
    assert state.is_failed() and state.name == "Từ chối"
    assert "Kế hoạch năm 2022, không phải năm 2023" in state.message
    # today is after 2022: a live start of the 2022 plan would find every deadline long past
    state = run(plan_cycle(return_state=True))
    assert state.is_failed() and "đặt đồng hồ chạy lại trước" in state.message
    assert engine_of().instance_id(KEY) is None
    assert not outbox_dir.exists()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_replay_clock_is_set_by_an_operator_forward_only_and_audited(db_url, outbox_dir):
    from planflow.flows.operations import set_replay_clock

    engine = engine_of()
    clock(ISSUED)
    clock(at(2022, 12, 5, 10), actor="so-noi-vu:tran-thi-b", reason="Đến ngày nhận báo cáo")
    clock(at(2022, 12, 5, 10), actor="so-noi-vu:tran-thi-b", reason="bấm lại")  # already there: nothing
    inst = engine.instance(engine.instance_id(KEY))
    assert inst.replay and inst.clock_at == at(2022, 12, 5, 10) and inst.started_at == ISSUED
    before = snapshot(engine)
    refused = {
        "back": dict(**moment(at(2022, 12, 1, 8)), actor=OPERATOR, reason="lùi lại"),
        "time": dict(day="2022-12-06", time="25:00", actor=OPERATOR, reason="giờ sai"),
        "actor": dict(**moment(at(2022, 12, 6, 8)), actor="  ", reason="không tên"),
        "reason": dict(**moment(at(2022, 12, 6, 8)), actor=OPERATOR, reason=" "),
    }
    for what, params in refused.items():
        state = run(set_replay_clock(**params, return_state=True))
        # an operator's mistake: refused by name ("Từ chối"), not an incident ("Failed")
        assert state.is_failed() and state.name == "Từ chối", what
    assert "moves forward only" in run(set_replay_clock(**refused["back"], return_state=True)).message
    message = run(set_replay_clock(**refused["time"], return_state=True)).message
    assert "25:00" in message and "giờ Việt Nam" in message
    assert snapshot(engine) == before
    with engine.db.connect() as conn:
        rows = conn.execute(select(s.audit.c.at, s.audit.c.actor, s.audit.c.detail)
                            .where(s.audit.c.action == "clock.set").order_by(s.audit.c.id)).all()
    utc = dt.timezone.utc
    assert [(r.at, r.actor, r.detail["from"], r.detail["to"], r.detail["reason"]) for r in rows] == [
        (ISSUED, OPERATOR, None, ISSUED.astimezone(utc).isoformat(), REPLAY),
        (at(2022, 12, 5, 10), "so-noi-vu:tran-thi-b", ISSUED.astimezone(utc).isoformat(),
         at(2022, 12, 5, 10).astimezone(utc).isoformat(), "Đến ngày nhận báo cáo")]
    assert all(dt.datetime.fromisoformat(r.detail["real_time"]).year > 2022 for r in rows)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_live_instance_runs_on_the_real_clock(db_url, outbox_dir, plan, monkeypatch):
    """The plan of this year, started live: a report is received at the server's time, and
    the instance's clock cannot be set."""
    from planflow import clock as planflow_clock
    from planflow.flows import operations
    from planflow.flows.operations import plan_cycle, set_replay_clock, submit_self_evaluation

    # the shipped plan is 2022's: "today", on the real clock, is pinned into 2022
    received = dt.datetime(2022, 3, 20, 3, 0, tzinfo=dt.timezone.utc)
    for module in (planflow_clock, operations):
        monkeypatch.setattr(module, "real_now", lambda: received)
    assert run(plan_cycle(return_state=True)).is_completed()
    engine = engine_of()
    inst = engine.instance(engine.instance_id(KEY))
    assert not inst.replay and inst.started_at == received
    state = run(set_replay_clock(**moment(at(2022, 12, 5, 10)), actor=OPERATOR, reason="thử", return_state=True))
    assert state.is_failed() and "is live" in state.message
    state = run(submit_self_evaluation(unit="so-tu-phap", scores=sheet(plan), actor="so-tu-phap:le-van-c",
                                       return_state=True))
    assert state.is_completed(), state.message
    with engine.db.connect() as conn:
        row = conn.execute(select(s.submissions).where(s.submissions.c.unit_code == "so-tu-phap")).one()
    assert row.submitted_at == received and row.recorded_at == received


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_daily_sweep_runs_at_the_replay_clock(db_url, outbox_dir, plan):
    """The schedule fires on real days; a replay is swept at its own clock: nothing on a day
    off of the replayed year, the escalations due on the first working day after the deadline."""
    from planflow.flows.operations import daily_deadline_sweep

    engine = engine_of()
    start_quietly(engine)
    clock(at(2022, 12, 11, 9))  # Sunday
    assert run(daily_deadline_sweep()) == 0
    clock(at(2022, 12, 12, 8))  # Monday after the deadline (Fri 9/12)
    assert run(daily_deadline_sweep()) > 0
    assert run(daily_deadline_sweep()) == 0  # the schedule firing again changes nothing
    with engine.db.connect() as conn:
        moments = set(conn.scalars(select(s.audit.c.at).where(s.audit.c.action.like("%escalat%"))))
    assert moments <= {at(2022, 12, 12, 8)}


# --- submissions and review ------------------------------------------------------------


def test_refused_submissions_name_what_is_wrong_and_write_nothing(db_url, outbox_dir, plan):
    from planflow.flows.operations import submit_self_evaluation

    engine = engine_of()
    start_quietly(engine)
    clock(at(2022, 12, 5, 10))
    assert len(engine.open_work()) == 18 + 235
    before = snapshot(engine)

    def refused(**params) -> str:
        params = {"unit": "so-tu-phap", "scores": sheet(plan), "actor": "so-tu-phap:le-van-c", **params}
        state = run(submit_self_evaluation(**params, return_state=True))
        # an operator's mistake ends "Từ chối": the incident automation (prefect.flow-run.Failed)
        # does not fire for it
        assert state.is_failed() and state.name == "Từ chối", params
        return state.message

    # above the criterion's maximum: named as the form shows it, with the unit
    message = refused(scores=sheet(plan, g1_1=9))
    assert message.startswith("Báo cáo của Sở Tư pháp không được ghi nhận")
    assert "g1.1. Ban hành kế hoạch/văn bản triển khai công tác dân vận năm của cơ quan, đơn vị: 9 điểm, " \
           "vượt mức tối đa 5" in message
    # a criterion the form does not have is refused, not dropped
    assert "tiêu chí «g9.9» không có trong biểu mẫu" in refused(scores=sheet(plan, g9_9=5))
    # a score given as a string is refused, not converted
    assert "g1.1. " in (message := refused(scores=sheet(plan, g1_1="5"))) and "không phải là số điểm" in message
    # who submits is required
    assert "Người gửi" in refused(actor="")
    # nobody chooses the time of receipt, nor where the flow works
    for param in ({"submitted_at": "2022-12-01T10:00:00+07:00"}, {"db_url": "sqlite:///x.db"},
                  {"definition": "/etc/passwd"}, {"instance": KEY}):
        with pytest.raises(TypeError):
            refused(**param)
    # a unit the plan's list does not have (a typo): refused by what was typed
    message = refused(unit="so-tu-phapp")
    assert "«so-tu-phapp» không có trong danh sách" in message
    # a known unit with nothing to submit (Bộ Nội vụ receives the report, it does not report)
    assert "bo-noi-vu" in refused(unit="bo-noi-vu")
    # a paper report dated after it is received
    message = refused(paper={"document_number": "12/BC-STP", "document_date": "2022-12-06", "reason": "nhập thay"})
    assert "12/BC-STP" in message and "sau ngày nhận (05/12/2022)" in message
    assert snapshot(engine) == before


def test_a_backdated_report_is_received_at_the_instances_clock(db_url, outbox_dir, plan):
    """Sở Y tế, escalated after the deadline (Fri 9/12), cannot report "on 8/12": its report is
    received when the instance's clock says, late, without the on-time points."""
    from planflow.flows.operations import submit_self_evaluation

    engine = engine_of()
    start_quietly(engine)
    clock(at(2022, 12, 12, 10))
    state = run(submit_self_evaluation(unit="so-y-te", scores=sheet(plan), actor="so-y-te:pham-van-d",
                                       note="Báo cáo ngày 08/12/2022", return_state=True))
    assert state.is_completed(), state.message
    with engine.db.connect() as conn:
        row = conn.execute(select(s.submissions).where(s.submissions.c.unit_code == "so-y-te")).one()
        item = conn.execute(select(s.work_items).where(s.work_items.c.id == row.work_item_id)).one()
        audit = conn.execute(select(s.audit).where(s.audit.c.action == "task.submitted")).one()
    assert row.submitted_at == at(2022, 12, 12, 10) and item.late
    assert row.total == 95  # the unit's own 95 points; nothing for reporting on time
    assert row.document_number is None and row.entered_by is None
    assert audit.actor == "so-y-te:pham-van-d" and audit.detail == {
        "submitted_at": at(2022, 12, 12, 10).astimezone(dt.timezone.utc).isoformat(), "late": True}


def test_a_paper_report_carries_its_document_and_who_entered_it(db_url, outbox_dir, plan):
    """Sở Tư pháp reported on paper (văn bản số 12/BC-STP ngày 08/12/2022); Sở Nội vụ enters it
    on 12/12: received then, its document's number and date kept, shown in the report."""
    from planflow.flows.operations import advance, submit_self_evaluation
    from planflow.report import latest_markdown

    engine = engine_of()
    root = start_quietly(engine)
    others = [c for c in codes(plan, "departments") if c != "so-tu-phap"]
    submit(engine, others + codes(plan, "communes"), at(2022, 11, 21, 10))
    clock(at(2022, 11, 21, 10, 5))
    assert run(advance(return_state=True)).is_completed()
    submit(engine, codes(plan, "districts"), at(2022, 11, 22, 10))
    clock(at(2022, 12, 12, 9))
    paper = {"document_number": "12/BC-STP", "document_date": "2022-12-08",
             "reason": "Sở Tư pháp gửi báo cáo bằng văn bản giấy"}
    state = run(submit_self_evaluation(unit="so-tu-phap", scores=sheet(plan), actor=OPERATOR, paper=paper,
                                       return_state=True))
    assert state.is_completed(), state.message
    with engine.db.connect() as conn:
        row = conn.execute(select(s.submissions).where(s.submissions.c.unit_code == "so-tu-phap")).one()
        audit = conn.execute(select(s.audit).where(s.audit.c.action == "task.submitted",
                                                   s.audit.c.unit_code == "so-tu-phap")).one()
    assert row.submitted_at == at(2022, 12, 12, 9)  # received: the instance's clock
    assert (row.document_number, row.document_date, row.entered_by, row.entry_reason) == (
        "12/BC-STP", dt.date(2022, 12, 8), OPERATOR, "Sở Tư pháp gửi báo cáo bằng văn bản giấy")
    assert audit.actor == OPERATOR
    assert audit.detail["document_number"] == "12/BC-STP" and audit.detail["document_date"] == "2022-12-08"
    assert audit.detail["entered_by"] == OPERATOR and audit.detail["late"] is True

    assert run(advance(return_state=True)).is_completed()
    report = latest_markdown(engine, root)
    line = next(x for x in report.splitlines() if "| Sở Tư pháp |" in x)
    assert "Văn bản số 12/BC-STP ngày 08/12/2022" in line
    assert "| 1 | Sở Tư pháp | 12/BC-STP | 08/12/2022 | 12/12/2022 09:00 | so-noi-vu:nguyen-van-a |" in report


def test_submission_then_advance_moves_the_plan_through_review_to_publication(db_url, outbox_dir, plan):
    from planflow.flows.operations import advance, plan_cycle, review_decision, revise_report, submit_self_evaluation

    clock(ISSUED)
    assert run(plan_cycle(return_state=True)).is_completed()
    engine = engine_of()
    root = engine.instance_id(KEY)
    departments = [c for c in codes(plan, "departments") if c != "so-tu-phap"]
    submit(engine, departments + codes(plan, "communes"), at(2022, 11, 21, 10))
    clock(at(2022, 11, 21, 10, 5))
    assert run(advance(return_state=True)).is_completed()
    submit(engine, codes(plan, "districts"), at(2022, 11, 22, 10))

    # the last unit reports through the operator form
    clock(at(2022, 12, 5, 10))
    state = run(submit_self_evaluation(unit="so-tu-phap", scores=sheet(plan, g1_1=4.5), evidence="Báo cáo số 12/BC-STP",
                                       actor="so-tu-phap:le-van-c", return_state=True))
    assert state.is_completed(), state.message
    with engine.db.connect() as conn:
        row = conn.execute(select(s.submissions).where(s.submissions.c.unit_code == "so-tu-phap")).one()
    assert row.payload["scores"]["g1.1"] == 4.5 and row.payload["evidence"] == "Báo cáo số 12/BC-STP"
    assert row.total == 99.5  # 95 scored by the unit less 0.5, plus 5 for reporting on time
    progress = artifacts(flow_run_id(state), "progress")["progress"]
    assert float(progress.data) == 100

    # what the automation on planflow.unit.submitted starts: aggregation, report, review request
    clock(at(2022, 12, 5, 10, 5))
    state = run(advance(return_state=True))
    assert state.is_completed(), state.message
    assert [w.element_id for w in engine.open_work(root)] == ["review"]
    report = artifacts(flow_run_id(state), "report")["report"]
    assert "# BÁO CÁO" in report.data
    assert len(emls(outbox_dir, "report-upward")) == len(plan.registry.group("report_to"))

    # Ban Dân vận Tỉnh ủy sends it back, then approves the revised report; the reviewer is named
    reviewer = "Hoàng Thị E, Phó Trưởng Ban Dân vận Tỉnh ủy"
    clock(at(2022, 12, 20, 9))
    assert "Người thẩm định" in run(review_decision(decision="return", reviewer=" ", return_state=True)).message
    state = run(review_decision(decision="Trả lại, đề nghị bổ sung", comment="Bổ sung số liệu cấp xã", reviewer=reviewer,
                                return_state=True))
    assert state.is_completed(), state.message
    assert run(advance(return_state=True)).is_completed()
    # the returned report waits for Sở Nội vụ, who sends it back completed two days later
    assert [w.element_id for w in engine.open_work(root)] == ["revise"]
    with engine.db.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(s.reports).where(s.reports.c.instance_id == root)) == 1
    assert "Người thực hiện" in run(revise_report(note="", actor=" ", return_state=True)).message
    clock(at(2022, 12, 22, 15))
    state = run(revise_report(note="Đã bổ sung số liệu cấp xã", actor=OPERATOR, return_state=True))
    assert state.is_completed(), state.message
    assert run(advance(return_state=True)).is_completed()
    assert [w.element_id for w in engine.open_work(root)] == ["review"]
    with engine.db.connect() as conn:
        made = conn.scalars(select(s.reports.c.created_at).where(s.reports.c.instance_id == root)
                            .order_by(s.reports.c.id)).all()
    assert made[1:] == [at(2022, 12, 22, 15)]  # "Báo cáo lần 2" is dated when it was completed
    # nothing waits for a revision now: refused by name, nothing written
    state = run(revise_report(note="", actor=OPERATOR, return_state=True))
    assert state.is_failed() and "Không có báo cáo nào đang chờ" in state.message
    clock(at(2022, 12, 27, 9))
    state = run(review_decision(decision="Thống nhất", reviewer=reviewer, return_state=True))
    assert state.is_completed(), state.message
    assert run(advance(return_state=True)).is_completed()
    assert engine.instance(root).status == "completed"
    assert len(emls(outbox_dir, "publication")) == len(plan.registry.group("recipients"))
    with engine.db.connect() as conn:
        decisions = conn.execute(select(s.audit.c.at, s.audit.c.actor).where(
            s.audit.c.action == "task.submitted", s.audit.c.unit_code == "ban-dan-van-tinh-uy")
            .order_by(s.audit.c.id)).all()
    assert [(d.at, d.actor) for d in decisions] == [(at(2022, 12, 20, 9), reviewer), (at(2022, 12, 27, 9), reviewer)]

    # a decision when nothing waits for one is refused by name
    clock(at(2022, 12, 28, 9))
    state = run(review_decision(decision="Thống nhất", reviewer=reviewer, return_state=True))
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

    clock(ISSUED)
    assert run(plan_cycle(return_state=True)).is_completed()
    engine = engine_of()
    root = engine.instance_id(KEY)
    submit(engine, codes(plan, "departments") + codes(plan, "communes"), at(2022, 11, 21, 10))
    clock(at(2022, 11, 21, 10, 5))
    assert run(advance(return_state=True)).is_completed()
    submit(engine, codes(plan, "districts"), at(2022, 11, 22, 10))

    # every unit has reported: Sở Nội vụ aggregates — and the reports database is down
    clock(at(2022, 11, 22, 10, 5))
    state = run(advance(return_state=True))
    # red, and says in Vietnamese what failed and what to do; an incident (state "Failed")
    assert state.is_failed() and state.name == "Failed"
    assert state.message.startswith("Không chạy được sau khi đã thử lại: bước «Sở Nội vụ tổng hợp, đánh giá, "
                                    "xếp loại (aggregate)», sau 2 lần thử")
    assert REPORTS_DOWN in state.message and "retrigger-step" in state.message
    assert reports_database["calls"] == 2  # the first try and the one retry of the policy
    stalled = [x for x in engine.stalled(root) if x["kind"] == "step-failed"]
    assert stalled == [{"kind": "step-failed", "step": "aggregate", "unit": None,
                        "detail": f"2 attempt(s): RuntimeError: {REPORTS_DOWN}"}]
    rows = table(artifacts(flow_run_id(state), "stalled")["stalled"])
    assert len(rows) == 1 and REPORTS_DOWN in rows[0]["Chi tiết"]
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
    clock(at(2022, 11, 23, 8))
    state = run(retrigger_step(step="aggregate", reason="Máy chủ CSDL báo cáo đã khôi phục", actor="so-noi-vu:tran-thi-b",
                               return_state=True))
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
    assert not any(REPORTS_DOWN in r["Chi tiết"] for r in table(artifacts(flow_run_id(state), "stalled")["stalled"]))
    # what it did, in its table (and its log: see the browser test, where the log is at INFO)
    assert table(artifacts(flow_run_id(state), "retrigger")["retrigger"]) == [
        {"Đơn vị": "Cả Kế hoạch", "Bước": "Sở Nội vụ tổng hợp, đánh giá, xếp loại", "Việc đã làm": "Chạy lại bước",
         "Kết quả": "Đã chạy lại"}]
    assert "stalled" not in CliRunner().invoke(app, ["status", "--db", db_url]).output

    # re-triggering again changes nothing: no step run, no letter, no audit line
    before, files = snapshot(engine), sorted(p.name for p in outbox_dir.glob("*.eml"))
    calls = reports_database["calls"]
    state = run(retrigger_step(step="aggregate", reason="bấm lại", actor="so-noi-vu:tran-thi-b", return_state=True))
    assert state.is_completed(), state.message
    assert state.result() == 0
    assert snapshot(engine) == before
    assert sorted(p.name for p in outbox_dir.glob("*.eml")) == files
    assert reports_database["calls"] == calls


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_retrigger_names_the_steps_it_knows(db_url, outbox_dir, plan):
    from planflow.flows.operations import retrigger_step

    start_quietly(engine_of())
    state = run(retrigger_step(step="tong-hop", reason="thử", actor="x", return_state=True))
    assert state.is_failed() and state.name == "Từ chối"
    assert "Bước «tong-hop» không có trong danh sách" in state.message
    for missing, said in (({"actor": ""}, "Người thực hiện"), ({"reason": " "}, "Lý do")):
        state = run(retrigger_step(**{"step": "aggregate", "reason": "thử", "actor": "x", **missing},
                                   return_state=True))
        assert state.is_failed() and state.name == "Từ chối" and said in state.message


def test_retrigger_sends_the_letters_a_step_could_not_send(db_url, where, tmp_path, monkeypatch, plan):
    """The plan went out while its outbox could not be written (a path under a file): the
    letters failed for good; once the folder is right, re-triggering the step sends them."""
    from planflow.flows.operations import deliver_outbox, retrigger_step

    engine = engine_of()
    start_quietly(engine)  # dissemination queued, not delivered
    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setenv("PLANFLOW_OUTBOX_DIR", str(tmp_path / "not-a-folder" / "outbox"))
    state = run(deliver_outbox(return_state=True))
    recipients = len(plan.registry.group("recipients"))
    communes = len(plan.registry.group("communes"))
    # red: how many letters, from which step, to whom, and what to do
    assert state.is_failed() and state.name == "Failed"
    assert state.message.startswith(f"{recipients + communes} thư không gửi được sau khi đã thử lại — bước "
                                    f"«Gửi Kế hoạch đến các nơi nhận (disseminate)»: {recipients} thư đến ")
    assert "Not a directory" in state.message and "Việc cần làm" in state.message
    failed = [x for x in engine.stalled(engine.instance_id(KEY)) if x["kind"] == "notification-failed"]
    assert len([x for x in failed if x["step"] == "disseminate"]) == recipients

    good = tmp_path / "outbox"
    monkeypatch.setenv("PLANFLOW_OUTBOX_DIR", str(good))
    clock(at(2022, 3, 16, 8))
    state = run(retrigger_step(step="disseminate", reason="Sửa thư mục hộp thư đi", actor="quan-tri",
                               return_state=True))
    # done, and says the communes' letters (another step) are still open
    assert state.is_completed() and state.name == "Hoàn thành, còn sự cố", state.message
    assert state.message.startswith(f"Còn {communes} thư chưa gửi được")
    assert state.result() == recipients
    assert len(emls(good, "dissemination")) == recipients
    rows = table(artifacts(flow_run_id(state), "retrigger")["retrigger"])
    assert len(rows) == recipients and {r["Kết quả"] for r in rows} == {"Đã gửi"}
    assert {r["Bước"] for r in rows} == {"Gửi Kế hoạch đến các nơi nhận"}
    assert "Gửi lại thư «dissemination» đến Sở Y tế" in {r["Việc đã làm"] for r in rows}
    left = [x for x in engine.stalled(engine.instance_id(KEY)) if x["kind"] == "notification-failed"]
    assert {x["step"] for x in left} == {"direct_communes"}  # the communes' letters: another step
    with engine.db.connect() as conn:
        retried = conn.scalar(select(func.count()).select_from(s.audit).where(
            s.audit.c.action == "notification.retried", s.audit.c.actor == "quan-tri"))
    assert retried == recipients


async def _logs(flow_run) -> list[str]:
    """What a flow run wrote to its log, read back from the API once the log handler has sent it."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    await APILogHandler.aflush()
    async with get_client() as client:
        return [log.message for log in await client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run])))]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_deployment_of_a_plan_the_folder_no_longer_has_fails_in_one_line(db_url, outbox_dir, plan, tmp_path,
                                                                            monkeypatch):
    """A server's folder of plans lost the plan a deployment is named after: the run ends Failed
    (the server's configuration, not an operator's input), its message naming the deployment and
    the folder, its log without a traceback, nothing written."""
    from planflow.flows.operations import daily_deadline_sweep, record_incident

    folder = tmp_path / "plans"
    folder.mkdir()
    shutil.copy(plan.path, folder / plan.path.name)
    monkeypatch.setenv("PLANFLOW_DEFINITION", str(folder))
    monkeypatch.setenv("PREFECT__RUNTIME__DEPLOYMENT__NAME", "ke-hoach-da-xoa")  # as a run of that deployment
    for state in (run(daily_deadline_sweep(return_state=True)),
                  run(record_incident(flow_run="x", state="Failed", return_state=True))):
        assert state.is_failed() and state.name == "Failed", state.message
        assert state.message.startswith(f"Deployment 'ke-hoach-da-xoa' không chạy được: thư mục Kế hoạch {folder} "
                                        "(PLANFLOW_DEFINITION) không có Kế hoạch mã 'ke-hoach-da-xoa' "
                                        f"(ở đó có: {plan.id}). Việc cần làm: ")
        assert "\n" not in state.message
        logs = run(_logs(flow_run_id(state)))
        assert state.message in logs and not [line for line in logs if "Traceback" in line], logs
    assert not outbox_dir.exists() and not list(folder.glob("*.db"))


def test_the_form_is_built_on_first_use_with_one_field_per_criterion(plan, tmp_path):
    import subprocess
    import sys

    from planflow.flows import operations

    # importing the module (what a worker does first) reads no plan
    code = ("import planflow.flows.operations as ops; "
            "assert not {'ScoreSheet', 'submit_self_evaluation', 'review_decision', 'retrigger_step'} & set(vars(ops)), "
            "'built at import'")
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True)
    # the flow Prefect finds by its entrypoint takes the form the UI renders
    flow = operations.submit_self_evaluation
    assert operations.ScoreSheet is flow.fn.__annotations__["scores"]
    fields = flow.parameters.model_dump()["definitions"]["ScoreSheet"]["properties"]
    form = plan.forms["self-evaluation"]
    criteria = {code: item for code, item in form.items.items() if not item.auto_from_workflow}
    assert list(fields) == list(criteria)  # "g1.1", as the form writes it
    assert flow.parameters.model_dump()["definitions"]["ScoreSheet"]["additionalProperties"] is False
    for code, item in criteria.items():
        field = fields[code]
        assert field["title"] == f"{code}. {item.title}" and field["maximum"] == item.max
        assert field["description"] == f"Từ 0 đến {item.max:g} điểm, bước 0,25"


def test_operator_forms_offer_the_plans_units_steps_and_decisions_as_lists(plan):
    """A pick, not an id: the unit (communes with their district, by tier), the step to re-run
    (by its Vietnamese name), the decision (the review form's choices); titled in Vietnamese."""
    from planflow.flows import operations

    def schema(flow):
        return flow.parameters.model_dump()

    submit = schema(operations.submit_self_evaluation)
    units = submit["definitions"]["DonVi"]["enum"]
    assert submit["properties"]["unit"]["title"] == "Đơn vị báo cáo"
    assert len(units) == 265 and units[0] == "Văn phòng UBND tỉnh (van-phong-ubnd-tinh)"
    assert units[18:20] == ["UBND thành phố Hải Dương (ubnd-thanh-pho-hai-duong)",
                           "UBND thành phố Chí Linh (ubnd-thanh-pho-chi-linh)"]
    assert "UBND xã Tân Việt — huyện Bình Giang (ubnd-huyen-binh-giang--xa-tan-viet)" in units
    tiers = [0 if "—" not in u and units.index(u) < 18 else 1 if "—" not in u else 2 for u in units]
    assert tiers == sorted(tiers)  # sở, ban, ngành; UBND cấp huyện; UBND cấp xã
    retrigger = schema(operations.retrigger_step)
    steps = retrigger["definitions"]["Buoc"]["enum"]
    assert "Sở Nội vụ tổng hợp, đánh giá, xếp loại (aggregate)" in steps
    assert "UBND cấp xã tự đánh giá, báo cáo UBND cấp huyện (commune_self_evaluation)" in steps
    assert steps[0] == "— Mọi bước bị lỗi, mọi thư chưa gửi được —" == retrigger["properties"]["step"]["default"]
    assert retrigger["definitions"]["DonViBatKy"]["enum"][0] == "— Mọi đơn vị —"
    review = schema(operations.review_decision)
    assert review["definitions"]["YKien"]["enum"] == ["Thống nhất", "Trả lại, đề nghị bổ sung"]
    assert review["properties"]["reviewer"]["title"] == "Người thẩm định (họ tên, chức vụ)"
    clock = schema(operations.set_replay_clock)
    assert clock["properties"]["day"] == {**clock["properties"]["day"], "type": "string", "format": "date"}
    assert "giờ Việt Nam" in clock["properties"]["time"]["title"] and "date-time" not in json.dumps(clock)


def test_prefect_yaml_declares_the_deployments_planflow_serve_registers():
    """prefect.yaml and ``planflow serve`` (the shipped plan): the same flows, each deployment
    named by the plan's id, the same parameters, schedules, tags and enforced schemas."""
    import yaml

    from planflow.flows import operations
    from planflow.flows.serve import deployments
    from tests.conftest import PLAN

    spec = yaml.safe_load((REPO / "prefect.yaml").read_text(encoding="utf-8"))
    assert spec["pull"] == [{"prefect.deployments.steps.set_working_directory": {"directory": "{{ $PLANFLOW_REPO }}"}}]
    served = {d.entrypoint.rsplit(".", 1)[1]: d for d in run(deployments(str(PLAN))).values()}
    declared = {d["entrypoint"].split(":")[1]: d for d in spec["deployments"]}
    assert set(declared) == set(served) and len(declared) == len(spec["deployments"]) == 10
    for function, d in declared.items():
        path = d["entrypoint"].split(":")[0]
        assert path == "planflow.flows.operations" and getattr(operations, function).name == served[function].flow_name
        assert d["name"] == served[function].name == "hai-duong-dan-van-2022", function
        assert d["work_pool"]["name"] == "planflow"
        assert (d.get("parameters") or {}) == served[function].parameters, function
        assert d["tags"] == served[function].tags, function
        assert "operator" not in d["tags"] or d.get("enforce_parameter_schema") is True, function
        assert [(s["cron"], s["timezone"]) for s in d.get("schedules") or []] == [
            (s.schedule.cron, s.schedule.timezone) for s in served[function].schedules], function
    assert declared["plan_cycle"]["parameters"] == {"year": 2022}
    assert [s["cron"] for s in declared["plan_cycle"]["schedules"]] == ["0 8 15 3 *"]


# --- what a caller may choose ------------------------------------------------------------

WHERE_OR_WHEN = {"definition", "db_url", "instance", "as_of", "submitted_at", "decided_at"}


def test_no_deployed_flow_lets_its_caller_choose_the_file_the_store_or_the_time(monkeypatch):
    """The deployments' parameters, as the server keeps them: none names a definition, a
    store, an instance or a moment; operators' actions require an actor."""
    from planflow.flows.serve import deployments
    from tests.conftest import PLAN

    monkeypatch.delenv("PLANFLOW_DATABASE_URL", raising=False)
    deps = run(deployments(str(PLAN)))
    assert len(deps) == 10 and {d.name for d in deps.values()} == {"hai-duong-dan-van-2022"}
    for name, d in deps.items():
        schema = d._parameter_openapi_schema.model_dump()  # what the server keeps and the UI renders
        properties = set(schema["properties"])
        assert not properties & WHERE_OR_WHEN, (name, properties)
        assert not set(d.parameters) & WHERE_OR_WHEN, name
        if "operator" in d.tags:
            assert {"actor", "reviewer"} & set(schema["required"]), name
    assert deps["plan-cycle"].parameters == {"year": 2022}


def test_the_work_pool_template_lets_no_caller_set_environment_command_or_folder():
    """``prefect work-pool create planflow --base-job-template work-pool.json``: a run's job
    variables (which any API caller may give) cannot change what the worker runs, where, or
    with which settings (PLANFLOW_DATABASE_URL, PLANFLOW_DEFINITION): the server refuses a
    run with job variables the template does not have."""
    import uuid

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    template = json.loads((REPO / "work-pool.json").read_text(encoding="utf-8"))
    assert not {"env", "command", "working_dir"} & set(template["variables"]["properties"])
    assert template["variables"]["additionalProperties"] is False
    config = json.dumps(template["job_configuration"])
    assert "{{ env }}" not in config and "{{ command }}" not in config and "{{ working_dir }}" not in config

    async def runs_with(job_variables: dict):
        pool = f"planflow-{uuid.uuid4().hex[:8]}"
        async with get_client() as client:
            await client.create_work_pool(WorkPoolCreate(name=pool, type="process", base_job_template=template))
            flow_id = await client.create_flow_from_name("advance")
            deployment = await client.create_deployment(flow_id=flow_id, name=pool, work_pool_name=pool,
                                                        entrypoint="planflow.flows.operations:advance")
            try:
                return await client.create_flow_run_from_deployment(deployment, job_variables=job_variables)
            except Exception as exc:  # noqa: BLE001 - what the server answered
                return exc

    assert not isinstance(run(runs_with({"stream_output": False})), Exception)
    for attack in ({"env": {"PLANFLOW_DATABASE_URL": "sqlite:////tmp/planflow-attack.db"}},
                   {"env.PLANFLOW_DEFINITION": "/etc/passwd"}, {"command": "touch /tmp/planflow-attack"},
                   {"working_dir": "/tmp"}):
        refused = run(runs_with(attack))
        assert isinstance(refused, Exception) and "Additional properties are not allowed" in str(refused), attack
