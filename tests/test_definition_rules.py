"""Single validation rules, called alone (planflow/definition_rules.py, planflow/graph_rules.py),
and the tables of planflow/loader.py that say which rules apply to what."""

from __future__ import annotations

import typing

import pytest

from planflow import definition_rules as rules
from planflow import graph_rules
from planflow.loader import DEFINITION_RULES, ELEMENT_RULES, GRAPH_RULES, PROCESS_RULES, check_definition
from planflow.model import Element, ElementType, Process, Stage


@pytest.fixture(scope="module")
def ctx(plan):
    return rules.RuleContext(plan.definition, plan.registry, plan.forms, plan.calendar, plan.template_dir, "plan.yaml")


@pytest.fixture(scope="module")
def main(ctx):
    return ctx.inside(ctx.definition.main)


@pytest.fixture(scope="module")
def sub(ctx):
    return ctx.inside(ctx.definition.subprocesses[0])


def el(ctx, element_id: str, **changes) -> Element:
    return ctx.process.element(element_id).model_copy(update=changes)


def messages(found) -> list[str]:
    return [p.message for p in found]


# --- the tables ------------------------------------------------------------------------


def test_every_element_kind_has_its_rules():
    assert set(ELEMENT_RULES) == set(typing.get_args(ElementType))


def test_the_table_says_which_kinds_a_rule_applies_to():
    assert rules.only_user_task_has_boundary not in ELEMENT_RULES["userTask"]
    assert rules.only_gateway_has_conditions not in ELEMENT_RULES["exclusiveGateway"]
    assert rules.only_start_has_timer not in ELEMENT_RULES["startEvent"]
    assert rules.leads_somewhere not in ELEMENT_RULES["endEvent"]
    assert [k for k, found in ELEMENT_RULES.items() if rules.task_has_stage in found] == [
        "serviceTask", "sendTask", "userTask", "callActivity"]
    assert all(rules.next_targets_exist == found[0] for found in ELEMENT_RULES.values())
    assert DEFINITION_RULES and PROCESS_RULES and GRAPH_RULES


def test_the_shipped_plan_breaks_no_rule(ctx):
    assert check_definition(ctx) == []


# --- rules alone -----------------------------------------------------------------------


def test_handler_is_known(main):
    assert list(rules.handler_is_known(el(main, "aggregate"), main)) == []
    (p,) = rules.handler_is_known(el(main, "aggregate", handler="recrod"), main)
    assert (p.file, p.element, p.line) == ("plan.yaml", "aggregate", main.process.element("aggregate").line)
    assert p.message == "unknown handler 'recrod': known handlers are aggregate, record"


def test_next_targets_exist_in_the_same_process(main, sub):
    assert list(rules.next_targets_exist(el(main, "aggregate"), main)) == []
    (p,) = rules.next_targets_exist(el(main, "aggregate", next=["district_plan"]), main)
    assert "'district_plan' is not an element of process 'hai-duong-dan-van-2022'" in p.message
    assert list(rules.next_targets_exist(el(sub, "start"), sub)) == []


def test_scope_only_exists_inside_a_sub_process(main, sub):
    assert list(rules.collection_problems(sub, None, "communes of scope", "to")) == []
    assert messages(rules.collection_problems(main, None, "communes of scope", "to")) == [
        "to 'communes of scope' uses 'scope', which only exists inside a sub-process"]


def test_collection_names_registry_groups(main):
    (p,) = rules.user_task_has_units(el(main, "department_self_evaluation", for_each="departmens"), main)
    assert p.message.startswith("for_each 'departmens': unknown registry group 'departmens'; the registry has ")
    (p,) = rules.user_task_has_units(el(main, "department_self_evaluation", for_each=None), main)
    assert "needs 'for_each'" in p.message


def test_user_task_has_a_known_form(main):
    assert list(rules.user_task_has_form(el(main, "review"), main)) == []
    assert messages(rules.user_task_has_form(el(main, "review", form="x"), main)) == [
        "unknown form 'x': forms are report-revision, review-decision, self-evaluation"]
    assert messages(rules.user_task_has_form(el(main, "review", form=None), main)) == ["a userTask needs a 'form'"]


def test_due_is_readable_on_the_plan_calendar(main):
    assert list(rules.due_is_readable(el(main, "review"), main)) == []  # within_working_days, from early 2022
    (p,) = rules.due_is_readable(el(main, "review", due={"before": "2022-02-30"}), main)
    assert p.message.startswith("due: bad date '2022-02-30'")


def test_reminders_and_escalations(main):
    task = el(main, "department_self_evaluation")
    assert list(rules.reminders_are_offsets(task, main)) == []
    assert list(rules.escalations_are_valid(task, main)) == []
    bad = task.model_copy(update={"reminders": ["5x"], "escalations": [
        task.escalations[0].model_copy(update={"after": "1day", "to": ["unit.head", "so-khong"]})]})
    assert messages(rules.reminders_are_offsets(bad, main)) == [
        "reminder '5x': bad offset '5x': use +Nwd, -Nwd or an ISO 8601 duration such as P7D"]
    found = list(rules.escalations_are_valid(bad, main))
    assert [p.line for p in found] == [task.escalations[0].line] * 2
    assert found[1].message == "escalation to 'so-khong': not a unit of the registry (or 'unit.head', 'unit.parent')"


def test_unknown_template_lists_the_known_ones(main):
    (p,) = rules.send_task_has_template(el(main, "publish", template="publikation"), main)
    assert p.message.startswith("unknown template 'publikation': known templates are dissemination, ")


def test_boundaries(main):
    task = el(main, "department_self_evaluation")
    b = task.boundary[0].model_copy(update={"interrupting": False})
    found = list(rules.boundaries_are_valid(task.model_copy(update={"boundary": [b], "due": None}), main))
    assert messages(found) == [
        "boundary 'department_reports_closed' is anchored on 'due' but the element has no due",
        "non-interrupting boundary 'department_reports_closed' needs a 'next'"]
    assert messages(rules.only_user_task_has_boundary(el(main, "district_cycle", boundary=[b]), main)) == [
        "timer boundary events attach to a userTask"]


def test_gateway_rules(main):
    gw = el(main, "review_gateway")
    for rule in (rules.gateway_has_default, rules.gateway_has_conditions, rules.conditions_are_expressions,
                 rules.gateway_has_no_next):
        assert list(rule(gw, main)) == []
    assert messages(rules.gateway_has_no_next(gw.model_copy(update={"next": ["publish"]}), main)) == [
        "an exclusiveGateway leaves by 'conditions' and 'default', not 'next'"]
    bad = gw.model_copy(update={"conditions": [gw.conditions[0].model_copy(update={"when": "f(x)"})]})
    assert "uses Call" in messages(rules.conditions_are_expressions(bad, main))[0]


def test_a_timer_starts_only_the_main_process(main, sub):
    timer = el(main, "start").timer
    assert list(rules.no_timer_in_subprocess(el(main, "start"), main)) == []
    assert messages(rules.no_timer_in_subprocess(el(sub, "start", timer=timer), sub)) == [
        "a sub-process starts when it is called, not on a timer"]


def test_stage_ids_are_unique(ctx):
    assert list(rules.stage_ids_are_unique(ctx)) == []
    stages = [*ctx.definition.stages, Stage(id="review", name="again", line=99)]
    twice = rules.RuleContext(ctx.definition.model_copy(update={"stages": stages}), ctx.registry, ctx.forms,
                              ctx.calendar, None, "plan.yaml")
    found = list(rules.stage_ids_are_unique(twice))
    assert messages(found) == ["stage 'review' is declared twice"] * 2
    assert found[1].line == 99


def test_a_process_has_one_start_and_an_end(main):
    proc = Process(id="p", elements=[Element(id="a", type="serviceTask", next=["a"])], line=7)
    assert messages(rules.has_one_start_event(proc, main)) == ["process 'p' needs exactly one startEvent, has 0"]
    assert [p.line for p in rules.has_end_event(proc, main)] == [7]


# --- the graph -------------------------------------------------------------------------


def _process(*elements: dict) -> Process:
    """A process of the given elements, each on its own line (1, 2, ...)."""
    return Process.model_validate({"id": "p", "elements": [{**e, "line": n} for n, e in enumerate(elements, start=1)]})


def test_every_element_is_reachable(main):
    proc = _process({"id": "s", "type": "startEvent", "next": "e"}, {"id": "lost", "type": "serviceTask", "next": "e"},
                    {"id": "e", "type": "endEvent"})
    (p,) = graph_rules.every_element_is_reachable(proc, main)
    assert (p.element, p.line, p.message) == ("lost", 2, "unreachable: no path from 's' leads here")


def test_a_join_of_exclusive_branches_can_never_complete(main):
    proc = _process({"id": "s", "type": "startEvent", "next": "x"},
                    {"id": "x", "type": "exclusiveGateway", "conditions": [{"when": "go", "next": "a"}], "default": "b"},
                    {"id": "a", "type": "serviceTask", "next": "j"}, {"id": "b", "type": "serviceTask", "next": "j"},
                    {"id": "j", "type": "parallelGateway", "next": "e"}, {"id": "e", "type": "endEvent"})
    (p,) = graph_rules.joins_can_complete(proc, main)
    assert p.element == "j" and "branches a, b leave exclusive gateway 'x'" in p.message
    assert graph_rules.split_of(proc, graph_rules.predecessors(proc), "a", "j") == ("x", "a")
    assert graph_rules.downstream(proc, "x") == {"a", "b", "j", "e"}


def test_two_start_events_are_each_named_at_their_line(main):
    proc = _process({"id": "s1", "type": "startEvent", "next": "e"}, {"id": "s2", "type": "startEvent", "next": "e"},
                    {"id": "e", "type": "endEvent"})
    found = list(rules.has_one_start_event(proc, main))
    assert [(p.element, p.line) for p in found] == [("s1", 1), ("s2", 2)]
    assert all("2 startEvents ('s1' (line 1), 's2' (line 2))" in p.message for p in found)


def test_a_loop_with_no_way_out_is_named_once_at_its_first_element(main):
    proc = _process({"id": "s", "type": "startEvent", "next": "a"},
                    {"id": "a", "type": "serviceTask", "next": "g"},
                    {"id": "g", "type": "exclusiveGateway", "conditions": [{"when": "x", "next": "a"}], "default": "b"},
                    {"id": "b", "type": "serviceTask", "next": "a"},
                    {"id": "e", "type": "endEvent"})
    (p,) = graph_rules.every_loop_has_a_way_out(proc, main)
    assert (p.element, p.line) == ("a", 2) and p.message.startswith("loop with no way out: a, g, b ")
    # the same loop with a flow out of it is a loop, not a trap
    out = _process({"id": "s", "type": "startEvent", "next": "a"}, {"id": "a", "type": "serviceTask", "next": "g"},
                   {"id": "g", "type": "exclusiveGateway", "conditions": [{"when": "x", "next": "a"}], "default": "e"},
                   {"id": "e", "type": "endEvent"})
    assert list(graph_rules.every_loop_has_a_way_out(out, main)) == []
    selfloop = _process({"id": "s", "type": "startEvent", "next": "a"}, {"id": "a", "type": "serviceTask", "next": "a"},
                        {"id": "e", "type": "endEvent"})
    assert [p.element for p in graph_rules.every_loop_has_a_way_out(selfloop, main)] == ["a"]


def test_the_graph_of_a_long_process_is_walked_without_recursion(main):
    n = 20_000
    chain = [{"id": "s", "type": "startEvent", "next": "t0"}]
    chain += [{"id": f"t{i}", "type": "serviceTask", "next": f"t{i + 1}" if i + 1 < n else "e"} for i in range(n)]
    proc = _process(*chain, {"id": "e", "type": "endEvent"})
    component = graph_rules.components(proc)
    assert len(set(component.values())) == n + 2  # no loop: every element its own component
    assert list(graph_rules.every_loop_has_a_way_out(proc, main)) == []
    assert list(graph_rules.every_element_is_reachable(proc, main)) == []


def test_a_start_timer_needs_a_real_cron_and_zone(main):
    from planflow import time_rules

    start = el(main, "start")
    assert list(time_rules.start_timer_is_valid(start, main)) == []
    for cron, tz, words in (("0 8 32 3 *", None, "Bad day-of-month"), ("0 8 15 3", None, "has 4 field(s)"),
                            ("0 8 29 2 *", None, "does not fire in the plan's year 2022"),
                            ("0 8 15 3 *", "Asia/Hanoi", "unknown time zone 'Asia/Hanoi'")):
        timer = start.timer.model_copy(update={"cron": cron, "timezone": tz or start.timer.timezone, "line": 7})
        (p,) = time_rules.start_timer_is_valid(start.model_copy(update={"timer": timer}), main)
        assert (p.element, p.line) == ("start", 7) and words in p.message, p.message


def test_a_fixed_deadline_falls_after_the_plan_starts(main, sub):
    from planflow import time_rules

    task = el(main, "department_self_evaluation")
    assert list(time_rules.due_is_after_the_start(task, main)) == []
    assert list(time_rules.due_is_after_the_start(el(main, "review"), main)) == []  # relative: after the start
    (p,) = time_rules.due_is_after_the_start(task.model_copy(update={"due": {"before": "2022-03-15"}}), main)
    assert p.element == "department_self_evaluation"
    assert "due 14/03/2022 23:59 is before the plan's cycle starts (15/03/2022 08:00" in p.message
    commune = el(sub, "commune_self_evaluation", due={"before": "2022-03-20", "offset": "-5wd"})
    assert [p.element for p in time_rules.due_is_after_the_start(commune, sub)] == ["commune_self_evaluation"]
