"""Scenarios: how units behave in a simulated plan year.

```yaml
default: {submit: on_time}          # on_time | never | an ISO 8601 datetime with offset
units:
  so-tu-phap: {submit: "2022-12-05T10:00:00+07:00", scores: {g1.1: 5, g2.3: 4}}
  so-y-te: {submit: never}
review:                             # Ban Dân vận decisions, in order
  - {at: "2022-12-20T09:00:00+07:00", decision: return, comment: "Bổ sung số liệu"}
  - {at: "2022-12-27T09:00:00+07:00", decision: approve}
```

A ``decision`` is one of the choices of the plan's review form (the user task whose form
decides: ``approve`` and ``return`` in the shipped plan); it and the ``comment`` are recorded
as that form's choice and text fields.

``on_time`` means 10:00 on a working day 1–4 working days before the due date (chosen
from the unit code, so every run is the same), never before the task opened. Scores not
given are drawn the same way, between 72% and 100% of each criterion. A review round with
no decision in the scenario is answered two working days after it opens, at 09:00, with the
choice the review gateway's default branch stands for (``approve`` in the shipped plan). Any other task on
a fields form (e.g. Sở Nội vụ completing a returned report) is done two working days after
it opens, at 09:00, with each required choice's first choice and no text.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from planflow.expressions import ReviewDecision, review_decision
from planflow.model import Form
from planflow.problems import DefinitionError, Problem
from planflow.plan_years import with_year
from planflow.yaml_reader import LINE_KEY, line_of, line_of_key, load_mapping, strip_lines


@dataclass(frozen=True)
class UnitPlan:
    submit: str | dt.datetime  # "on_time" | "never" | a datetime
    scores: dict = field(default_factory=dict)
    expect: dict = field(default_factory=dict)
    line: int = 0


@dataclass(frozen=True)
class Decision:
    at: dt.datetime
    decision: str
    comment: str | None = None


@dataclass(frozen=True)
class Scenario:
    path: Path
    digest: str
    default: UnitPlan
    units: dict[str, UnitPlan]
    review: list[Decision]

    def plan_for(self, code: str) -> UnitPlan:
        return self.units.get(code, self.default)

    def submission_time(self, plan, code: str, opened_at: dt.datetime, due_at: dt.datetime) -> dt.datetime | None:
        how = self.plan_for(code).submit
        if how == "never":
            return None
        if isinstance(how, dt.datetime):
            return max(how, opened_at)
        cal = plan.calendar
        back = 1 + zlib.crc32(code.encode()) % 4
        day = cal.add_working_days(due_at.astimezone(cal.tz).date(), -back)
        at = dt.datetime.combine(day, dt.time(10, 0), tzinfo=cal.tz)
        if at < opened_at:
            # the task opened late: 10:00 on the first working day after it opened, or
            # two hours after it opened when that is still office hours of a working day
            soon = opened_at.astimezone(cal.tz) + dt.timedelta(hours=2)
            if not (cal.is_working_day(soon.date()) and soon.time() <= cal.office_close):
                day = cal.add_working_days(opened_at.astimezone(cal.tz).date(), 1)
                soon = dt.datetime.combine(day, dt.time(10, 0), tzinfo=cal.tz)
            at = soon if soon <= due_at else max(opened_at, due_at)
        return at

    def scores_for(self, form, code: str) -> dict:
        given = self.plan_for(code).scores
        out = {}
        for item_code, item in form.items.items():
            if item.auto_from_workflow:
                continue
            if item_code in given:
                out[item_code] = given[item_code]
                continue
            fraction = 0.72 + 0.28 * (zlib.crc32(f"{code}/{item_code}".encode()) % 1000) / 999
            out[item_code] = round(item.max * fraction / form.step) * form.step
        return out

    def decision_for(self, plan, round_index: int, opened_at: dt.datetime) -> tuple[dt.datetime, dict]:
        """When and what the review decides in this round, in its form's fields."""
        review = review_decision(plan)
        if round_index < len(self.review):
            d = self.review[round_index]
            when, value, comment = max(d.at, opened_at), d.decision, d.comment
        else:
            when, value, comment = _two_days_later(plan, opened_at), review.default, None
        return when, {review.field: value, **({review.comment: comment} if review.comment else {})}

    def answer_for(self, plan, form: Form, opened_at: dt.datetime) -> tuple[dt.datetime, dict]:
        """When and how a task on a fields form that decides nothing is done (see the module)."""
        payload = {f.name: next(iter(f.choices)) if f.type == "choice" and f.required and f.choices else None
                   for f in form.fields}
        return _two_days_later(plan, opened_at), payload


def _two_days_later(plan, opened_at: dt.datetime) -> dt.datetime:
    """09:00 on the second working day after ``opened_at``."""
    cal = plan.calendar
    day = cal.add_working_days(opened_at.astimezone(cal.tz).date(), 2)
    return dt.datetime.combine(day, dt.time(9, 0), tzinfo=cal.tz)


def _submit_value(value, file, line, where) -> str | dt.datetime:
    if value in ("on_time", "never"):
        return value
    try:
        when = dt.datetime.fromisoformat(str(value))
    except ValueError:
        raise DefinitionError([Problem(file, line, None,
                                       f"{where}: submit '{value}' must be on_time, never or an ISO 8601 "
                                       "datetime with offset such as 2022-12-05T10:00:00+07:00")]) from None
    if when.tzinfo is None:
        raise DefinitionError([Problem(file, line, None, f"{where}: submit '{value}' needs a UTC offset (+07:00)")])
    return when


SCENARIO_KEYS = ("default", "units", "review", "description")


def load_scenario(path: str | Path, plan) -> Scenario:
    """Load and check a scenario against a plan; unknown units are refused by name."""
    path = Path(path)
    # a scenario of a plan of every year may write its moments with {year} (planflow.plan_years)
    raw, file = load_mapping(path, "scenario", rewrite=lambda text: with_year(text, plan.definition.year))
    problems: list[Problem] = [Problem(file, line_of_key(raw, k) or raw[LINE_KEY], None,
                                       f"unknown key '{k}' (keys: default, units, review)")
                               for k in sorted(set(raw) - {*SCENARIO_KEYS, LINE_KEY}, key=str)]
    form = next((f for f in plan.forms.values() if f.kind == "criteria"), None)
    if form is None:
        raise DefinitionError([Problem(file, raw[LINE_KEY], None, "the plan has no criteria form: a scenario "
                                       "gives scores on one")])
    reader = _UnitPlans(file, raw[LINE_KEY], form, problems)
    default = reader.read(raw.get("default", {"submit": "on_time"}), "default",
                          line_of_key(raw, "default")) or UnitPlan("on_time")
    units = _unit_plans(raw, plan, reader)
    review = _review(raw, file, problems, review_decision(plan))
    if problems:
        raise DefinitionError(problems)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return Scenario(path=path.resolve(), digest=digest, default=default, units=units, review=review)


@dataclass
class _UnitPlans:
    """Reads how a unit behaves (``default`` or one of ``units``), adding what is wrong to ``problems``."""

    file: str
    line: int  # where a unit plan with no line of its own is reported: the scenario's first line
    form: Form  # the plan's criteria form: the scores a unit may be given
    problems: list[Problem]

    def read(self, data, where: str, line: int = 0) -> UnitPlan | None:
        if not isinstance(data, dict):
            self.problems.append(Problem(self.file, line or self.line, None, f"{where}: expected a mapping "
                                         "such as {submit: on_time}"))
            return None
        line = data.get(LINE_KEY, 0) or line
        try:
            submit = _submit_value(data.get("submit", "on_time"), self.file, line, where)
        except DefinitionError as exc:
            self.problems.extend(exc.problems)
            return None
        scores = data.get("scores") or {}
        if not isinstance(scores, dict):
            self.problems.append(Problem(self.file, line, None, f"{where}: scores must be a mapping of criterion "
                                         "code to points, e.g. {g1.1: 5}"))
            return None
        scores = strip_lines(scores)
        self.problems.extend(self._score_problems(scores, line, where))
        return UnitPlan(submit=submit, scores=scores, expect=strip_lines(data.get("expect") or {}), line=line)

    def _score_problems(self, scores: dict, line: int, where: str) -> list[Problem]:
        problems = []
        for code, value in scores.items():
            item = self.form.items.get(code)
            if item is None or item.auto_from_workflow:
                problems.append(Problem(self.file, line, None, f"{where}: '{code}' is not a criterion the unit "
                                        f"scores in form '{self.form.id}'"))
            elif isinstance(value, bool) or not isinstance(value, (int, float)):
                problems.append(Problem(self.file, line, None, f"{where}: score {code}={value!r} is not a number"))
            elif not 0 <= value <= item.max:
                problems.append(Problem(self.file, line, None, f"{where}: score {code}={value} is outside "
                                        f"0–{item.max:g}"))
        return problems


def _unit_plans(raw: dict, plan, reader: _UnitPlans) -> dict[str, UnitPlan]:
    given = raw.get("units") or {}
    if not isinstance(given, dict):
        reader.problems.append(Problem(reader.file, line_of_key(raw, "units") or reader.line, None,
                                       "units must be a mapping of unit code to behaviour, e.g. "
                                       "so-y-te: {submit: never}"))
        return {}
    units = {}
    for code, data in given.items():
        if code == LINE_KEY:
            continue
        line = line_of_key(given, code) or given[LINE_KEY]
        if not isinstance(code, str) or code not in plan.registry:
            reader.problems.append(Problem(reader.file, line, str(code),
                                           f"unknown unit '{code}': not in registry '{plan.registry.id}'", "unit"))
            continue
        up = reader.read(data, f"unit '{code}'", line)
        if up:
            units[code] = up
    return units


def _allowed(spec: ReviewDecision) -> str:
    """The decisions a scenario may give, in words: ``approve or return (form 'x': approve = «…», …)``."""
    values = list(spec.choices)
    words = " or ".join([", ".join(values[:-1]), values[-1]] if len(values) > 1 else values)
    labels = ", ".join(f"{v} = «{label}»" for v, label in spec.choices.items())
    return f"{words} (the choices of the review's form: {labels})"


def _review(raw: dict, file: str, problems: list[Problem], spec: ReviewDecision | None) -> list[Decision]:
    entries = raw.get("review") or []
    example = next(iter(spec.choices), "approve") if spec else "approve"
    if not isinstance(entries, list):
        problems.append(Problem(file, line_of_key(raw, "review") or raw[LINE_KEY], None,
                                f"review must be a list of decisions, e.g. - {{at: ..., decision: {example}}}"))
        return []
    if entries and spec is None:
        problems.append(Problem(file, line_of_key(raw, "review") or raw[LINE_KEY], None,
                                "review: the plan has no review (no user task whose form has a choice field): "
                                "remove 'review'"))
        return []
    review = []
    for i, d in enumerate(entries):
        line = line_of_key(entries, i) or line_of(d)
        if not isinstance(d, dict) or not isinstance(d.get("decision"), str) or d["decision"] not in spec.choices:
            given = f", not '{d.get('decision')}'" if isinstance(d, dict) else ""
            problems.append(Problem(file, line, None, f"review #{i + 1}: decision must be {_allowed(spec)}{given}"))
            continue
        if d.get("at") is None:
            problems.append(Problem(file, line, None, f"review #{i + 1}: 'at' is missing (an ISO 8601 datetime "
                                    "with offset)"))
            continue
        try:
            at = _submit_value(str(d.get("at")), file, line, f"review #{i + 1}")
        except DefinitionError as exc:
            problems.extend(exc.problems)
            continue
        if not isinstance(at, dt.datetime):
            problems.append(Problem(file, line, None, f"review #{i + 1}: 'at' must be a datetime"))
            continue
        if d.get("comment") is not None and not isinstance(d.get("comment"), str):
            problems.append(Problem(file, line, None, f"review #{i + 1}: 'comment' must be text"))
            continue
        review.append(Decision(at=at, decision=d["decision"], comment=d.get("comment")))
    return review


def default_scenario(plan) -> Path:
    """``scenarios/<registry name>.yaml`` next to the plan file: the scenario ``simulate``
    runs when none is given."""
    name = plan.definition.registry.split("/")[-1].removesuffix(".yaml")
    candidate = plan.path.parent / "scenarios" / f"{name}.yaml"
    if not candidate.exists():
        raise FileNotFoundError(f"no --scenario given and no {candidate} to fall back on")
    return candidate
