"""The review's decisions, the units that report and the stage flows come from the definition
(planflow/expressions.py ``review_decision``, ``units_that_report``; flows/stages.py,
flows/operator_forms.py, flows/operator_actions.py), not from names in code.

A copy of the shipped plan whose review form has other decisions (three, the one that
approves not first), other field names and another output variable runs a whole year on the
engine alone, its scenario read with those decisions; the operator's form offers them.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from planflow import DefinitionError, Engine, load_plan, load_scenario, store
from planflow.expressions import review_decision, units_that_report
from planflow.simulation import EngineActions, first_start, run_year
from planflow.summary import build_summary
from tests.conftest import PLAN, REPO

FORM = """\
id: review-decision
kind: fields
title: Ý kiến thẩm định của Ban Dân vận Tỉnh ủy
fields:
  - {name: y_kien, type: choice, required: true, choices: {bo-sung: "Yêu cầu bổ sung", dong-y: "Đồng ý", lam-lai: "Yêu cầu làm lại"}}
  - {name: nhan_xet, type: text, required: false, label: "Nhận xét"}
"""

SCENARIO = """\
default: {submit: on_time}
review:
  - {at: "2022-12-20T09:00:00+07:00", decision: lam-lai, comment: "Làm lại phần cấp xã"}
"""


def _other_plan(folder: Path) -> Path:
    """The shipped plan with the review form above: output ``tham_dinh``, and a gateway that
    sends the report back on ``bo-sung`` or ``lam-lai``."""
    shutil.copytree(REPO / "definitions", folder, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    (folder / "forms" / "review-decision.yaml").write_text(FORM, encoding="utf-8")
    text = PLAN.read_text(encoding="utf-8")
    for old, new in [("    output: review\n", "    output: tham_dinh\n"),
                     ("review.decision == 'return'", "tham_dinh.y_kien in ['bo-sung', 'lam-lai']")]:
        assert old in text
        text = text.replace(old, new)
    path = folder / PLAN.name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def other(tmp_path_factory):
    return load_plan(_other_plan(tmp_path_factory.mktemp("other-review") / "definitions"))


def test_the_shipped_review_is_read_from_its_form_and_gateway(plan):
    review = review_decision(plan)
    assert (review.element, review.variable, review.field, review.comment) == ("review", "review", "decision", "comment")
    assert review.choices == {"approve": "Thống nhất", "return": "Trả lại, đề nghị bổ sung"}
    assert review.returning == ("return",) and review.default == "approve"
    assert review.units == ("ban-dan-van-tinh-uy",)
    assert review.returned({"decision": "return"}) and not review.returned({"decision": "approve"})


def test_the_units_that_report_are_the_criteria_tasks_units_by_tier(plan):
    units = units_that_report(plan)
    reg = plan.registry
    departments, districts = reg.group("departments"), reg.group("districts")
    assert units[:18] == departments and units[18:30] == districts and len(units) == 265
    communes = units[30:]
    assert sorted(u.code for u in communes) == sorted(u.code for u in reg.group("communes"))
    order = [u.code for u in districts]
    assert [order.index(u.parent) for u in communes] == sorted(order.index(u.parent) for u in communes)


def test_another_review_form_gives_its_own_decisions(other):
    review = review_decision(other)
    assert (review.variable, review.field, review.comment) == ("tham_dinh", "y_kien", "nhan_xet")
    assert list(review.choices) == ["bo-sung", "dong-y", "lam-lai"]
    assert review.returning == ("bo-sung", "lam-lai")
    assert review.default == "dong-y"  # the gateway's default branch, not the first choice


def test_another_review_form_runs_a_whole_year_on_the_engine(other, tmp_path):
    scenario_path = tmp_path / "scenario.yaml"
    scenario_path.write_text(SCENARIO, encoding="utf-8")
    scenario = load_scenario(scenario_path, other)
    engine = Engine(other, store.connect(f"sqlite:///{tmp_path / 'planflow.db'}"))
    clock = first_start(other)
    root = engine.start("other-review/2022", clock, replay=True)
    asyncio.run(run_year(engine, scenario, root, clock, EngineActions(engine, root)))

    summary = build_summary(engine, root)
    assert summary["status"] == "completed" and summary["review_rounds"] == 2
    with engine.db.connect() as conn:
        answers = conn.scalars(select(store.submissions.c.payload).join(
            store.work_items, store.work_items.c.id == store.submissions.c.work_item_id)
            .where(store.work_items.c.element_id == "review").order_by(store.submissions.c.id)).all()
        reports = conn.execute(select(store.reports.c.element_id, store.reports.c.markdown)
                               .where(store.reports.c.instance_id == root).order_by(store.reports.c.id)).all()
    # the scenario's decision, then the default answer, each in the form's own fields
    assert answers == [{"y_kien": "lam-lai", "nhan_xet": "Làm lại phần cấp xã"},
                       {"y_kien": "dong-y", "nhan_xet": None}]
    assert engine.instance(root).variables["tham_dinh"]["y_kien"] == "dong-y"
    # sent back: revised and aggregated again, the reviewer's comment answered in round 2
    assert [r.element_id for r in reports] == ["aggregate", "reaggregate"]
    assert "Làm lại phần cấp xã" in reports[1].markdown
    assert "Làm lại phần cấp xã" not in reports[0].markdown


def test_a_scenario_decision_outside_the_review_form_is_refused_with_the_allowed_ones(other, tmp_path):
    path = tmp_path / "scenario.yaml"
    path.write_text('default: {submit: on_time}\nreview:\n'
                    '  - {at: "2022-12-20T09:00:00+07:00", decision: return}\n', encoding="utf-8")
    with pytest.raises(DefinitionError) as info:
        load_scenario(path, other)
    (problem,) = info.value.problems
    assert Path(problem.file).resolve() == path.resolve() and problem.line == 3
    assert "review #1" in problem.message and "'return'" in problem.message
    assert "bo-sung, dong-y or lam-lai" in problem.message
    assert "dong-y = «Đồng ý»" in problem.message


def test_the_operators_review_form_offers_the_forms_decisions(other):
    from planflow.flows.operator_actions import review_flow
    from planflow.flows.operator_forms import choices_of, decision_code

    choices = choices_of(other.path)
    assert choices.decisions == {"Yêu cầu bổ sung": "bo-sung", "Đồng ý": "dong-y", "Yêu cầu làm lại": "lam-lai"}
    assert decision_code("Đồng ý", choices) == "dong-y" and decision_code("lam-lai", choices) == "lam-lai"
    assert choices.reviewer == "Ban Dân vận Tỉnh ủy"
    schema = review_flow(choices).parameters.model_dump()
    assert schema["definitions"]["YKien"]["enum"] == ["Yêu cầu bổ sung", "Đồng ý", "Yêu cầu làm lại"]
    assert "«Đồng ý»" in schema["properties"]["decision"]["description"]
    assert len(choices.units) == 265


def test_stage_flows_are_made_from_the_definitions_stages(plan):
    from planflow.flows.stages import stage_flow
    from planflow.model import Stage

    names = {st.id: stage_flow(st).name for st in plan.definition.stages}
    assert names == {"dissemination": "dissemination", "district_cycle": "district-cycle",
                     "self_evaluation": "self-evaluation", "aggregation": "aggregation", "review": "review",
                     "publication": "publication"}
    first = plan.definition.stages[0]
    assert stage_flow(first) is stage_flow(first) and stage_flow(first).description == first.name
    own = Stage(id="tong_ket", name="Tổng kết, rút kinh nghiệm")
    assert (stage_flow(own).name, stage_flow(own).description) == ("tong-ket", "Tổng kết, rút kinh nghiệm")
