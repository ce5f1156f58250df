"""Scenarios (planflow/scenario.py): how units behave in a simulated plan year."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from planflow import DefinitionError, load_scenario
from planflow.submissions import score_payload
from tests.conftest import SCENARIO

FIXTURES = Path(__file__).parent / "fixtures"


def at(plan, *args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=plan.calendar.tz)


@pytest.fixture(scope="module")
def scenario(plan):
    return load_scenario(SCENARIO, plan)


def _only_problem(path: Path, plan):
    with pytest.raises(DefinitionError) as info:
        load_scenario(path, plan)
    problems = info.value.problems
    assert len(problems) == 1, [str(p) for p in problems]
    p = problems[0]
    assert Path(p.file).resolve() == path.resolve()
    assert str(p).startswith(f"{p.file}:{p.line}:")
    return p


def _line_of(path: Path, needle: str) -> int:
    hits = [i for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if needle in line]
    assert len(hits) == 1
    return hits[0]


# --- the shipped scenario ----------------------------------------------------------------


def test_shipped_scenario_loads(plan, scenario):
    assert scenario.default.submit == "on_time"
    assert scenario.plan_for("so-y-te").submit == "never"
    assert scenario.plan_for("so-tu-phap").submit == dt.datetime.fromisoformat("2022-12-05T10:00:00+07:00")
    assert scenario.plan_for("so-tu-phap").scores == {"g1.1": 5, "g2.3": 4}
    # the last on-time second, kept to the second and with its offset
    last = scenario.plan_for("so-khoa-hoc-va-cong-nghe").submit
    assert last.isoformat() == "2022-12-09T23:59:59+07:00"
    # a unit it does not name follows the default
    assert scenario.plan_for("so-noi-vu") is scenario.default
    assert [(d.decision, d.at.isoformat()) for d in scenario.review] == [
        ("return", "2022-12-20T09:00:00+07:00"), ("approve", "2022-12-27T09:00:00+07:00")]
    assert scenario.review[0].comment
    assert all(code in plan.registry for code in scenario.units)


def test_every_drawn_score_is_one_the_form_accepts(plan, scenario):
    form = plan.forms["self-evaluation"]
    for unit in plan.registry.group("departments") + plan.registry.group("communes")[:20]:
        scores = scenario.scores_for(form, unit.code)
        total = score_payload(form, {"scores": scores}, late=False)
        assert 0.72 * form.scale_max <= total <= form.scale_max, (unit.code, total)
    assert scenario.scores_for(form, "so-tu-phap")["g1.1"] == 5
    assert scenario.scores_for(form, "so-tu-phap")["g2.3"] == 4


# --- broken scenarios --------------------------------------------------------------------


def test_unknown_unit_is_refused_by_name_and_line(plan):
    path = FIXTURES / "scenario-unknown-unit.yaml"
    p = _only_problem(path, plan)
    assert "so-khong-ton-tai" in p.message
    assert plan.registry.id in p.message
    assert p.line == _line_of(path, "so-khong-ton-tai:")


def test_submit_time_without_offset_is_refused(plan):
    path = FIXTURES / "scenario-naive-time.yaml"
    p = _only_problem(path, plan)
    assert "2022-12-05 10:00" in p.message and "offset" in p.message
    assert "so-tu-phap" in p.message
    assert p.line == _line_of(path, "so-tu-phap:")


def test_review_decision_maybe_is_refused(plan):
    path = FIXTURES / "scenario-bad-decision.yaml"
    p = _only_problem(path, plan)
    assert "review #2" in p.message and "approve or return" in p.message
    assert p.line == _line_of(path, "decision: maybe")


def test_unknown_top_level_key_is_refused(plan, tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("default: {submit: on_time}\nunit:\n  so-y-te: {submit: never}\n", encoding="utf-8")
    p = _only_problem(path, plan)
    assert "unknown key 'unit'" in p.message


# --- on_time submission times ------------------------------------------------------------


def _on_time_units(plan, scenario, group):
    units = [u.code for u in plan.registry.group(group) if scenario.plan_for(u.code).submit == "on_time"]
    assert units
    return units


@pytest.mark.parametrize(("group", "opened", "due"), [
    # departments and communes open when the plan is disseminated
    ("departments", (2022, 3, 15, 8, 0), (2022, 12, 9, 23, 59, 59)),
    ("communes", (2022, 3, 15, 8, 0), (2022, 12, 2, 23, 59, 59)),
    # a district's own task opens once its communes' task closed (Wed 7/12 08:00)
    ("districts", (2022, 12, 7, 8, 0), (2022, 12, 9, 23, 59, 59)),
    # ... or late on the day before the deadline
    ("districts", (2022, 12, 8, 16, 30), (2022, 12, 9, 23, 59, 59)),
])
def test_on_time_falls_on_a_working_day_before_due_and_not_before_opening(plan, scenario, group, opened, due):
    cal = plan.calendar
    opened_at, due_at = at(plan, *opened), at(plan, *due)
    for code in _on_time_units(plan, scenario, group):
        when = scenario.submission_time(plan, code, opened_at, due_at)
        local = when.astimezone(cal.tz)
        assert cal.is_working_day(local.date()), (code, local)
        assert opened_at <= when <= due_at, (code, local)
        assert cal.is_on_time(when, due_at)
        # the same unit always gets the same time: every run is the same
        assert scenario.submission_time(plan, code, opened_at, due_at) == when


def test_on_time_is_10_00_one_to_four_working_days_before_due(plan, scenario):
    cal = plan.calendar
    due_at = at(plan, 2022, 12, 9, 23, 59, 59)
    days = set()
    for code in _on_time_units(plan, scenario, "departments"):
        local = scenario.submission_time(plan, code, at(plan, 2022, 3, 15, 8), due_at).astimezone(cal.tz)
        assert local.time() == dt.time(10, 0)
        days.add(local.date())
        assert 1 <= cal.count_working_days(local.date(), due_at.date()) <= 4, (code, local)
    assert len(days) > 1, "on_time times should spread over several days"


def test_an_opening_sweep_over_office_hours_keeps_the_rule(plan, scenario):
    """Tasks opening at any office hour of the last two weeks before the due."""
    cal = plan.calendar
    due_at = at(plan, 2022, 12, 9, 23, 59, 59)
    codes = _on_time_units(plan, scenario, "departments") + _on_time_units(plan, scenario, "districts")
    day = dt.date(2022, 11, 28)
    while day <= due_at.date():
        if cal.is_working_day(day):
            for hour in (8, 11, 14, 17):
                opened_at = at(plan, day.year, day.month, day.day, hour)
                for code in codes:
                    when = scenario.submission_time(plan, code, opened_at, due_at)
                    assert cal.is_working_day(when.astimezone(cal.tz).date()), (opened_at, code, when)
                    assert opened_at <= when <= due_at, (opened_at, code, when)
        day += dt.timedelta(days=1)


def test_on_time_for_a_task_opened_on_a_weekend_is_on_a_working_day(plan, scenario):
    cal = plan.calendar
    opened_at = at(plan, 2022, 12, 10, 9, 0)  # Saturday
    due_at = at(plan, 2022, 12, 12, 23, 59, 59)  # Monday
    when = scenario.submission_time(plan, "so-noi-vu", opened_at, due_at)
    assert cal.is_working_day(when.astimezone(cal.tz).date()), when
    assert opened_at <= when <= due_at


def test_on_time_for_a_task_opened_in_the_last_hour_is_not_before_it_opened(plan, scenario):
    opened_at = at(plan, 2022, 12, 9, 23, 30)
    due_at = at(plan, 2022, 12, 9, 23, 59, 59)
    when = scenario.submission_time(plan, "so-noi-vu", opened_at, due_at)
    assert opened_at <= when <= due_at, when


def test_a_fixed_time_before_the_task_opened_moves_to_the_opening(plan, scenario):
    # so-tu-phap's scripted 5/12 10:00 cannot precede the moment its task opened
    opened_at = at(plan, 2022, 12, 6, 8, 0)
    when = scenario.submission_time(plan, "so-tu-phap", opened_at, at(plan, 2022, 12, 9, 23, 59, 59))
    assert when == opened_at
    assert scenario.submission_time(plan, "so-y-te", opened_at, at(plan, 2022, 12, 9, 23, 59, 59)) is None
