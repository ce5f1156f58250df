"""What an operator picks from in the Prefect UI, built from the plan (never typed as an id).

- the units that report, one choice each, "name — district (code)": the units of the plan's
  user tasks on a criteria form, by tier as the definition nests them (sở, ban, ngành; UBND
  cấp huyện; UBND cấp xã: ``expressions.units_that_report``) and, for a commune, by its district;
- the steps an operator can re-trigger, by their Vietnamese names;
- the review decisions, from the choices of the form that decides (``expressions.review_decision``;
  ``definitions/forms/review-decision.yaml`` in the shipped plan);
- the score sheet: one number per criterion, titled as the form shows it.

Each is built by :func:`choices_of` from a definition, when a flow or a deployment asks (the
flows are built on first use, see ``operations.__getattr__``): importing this module reads
no plan. Prefect renders an Enum as a list and, with ``enforce_parameter_schema``, refuses
anything else when the run is created. A flow run with that check off (the API with
enforcement off, a caller in process) gets the same refusal from :func:`unit_code` and
:func:`check_scores`, in Vietnamese, naming the unit and the criterion as the form shows it.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from planflow.plan_cache import cached_plan
from planflow.expressions import review_decision, units_that_report
from planflow.flows.instance import OperatorError, definition_path
from planflow.notifications.vn_format import vn_number
from planflow.unit_labels import step_label, unit_label

ALL_STEPS = "— Mọi bước bị lỗi, mọi thư chưa gửi được —"
ALL_UNITS = "— Mọi đơn vị —"
RETRIGGERABLE = ("serviceTask", "sendTask", "userTask")  # a userTask's chasing letters can fail too


def reporting_units(plan) -> list:
    """The units that report, by tier; communes grouped by their district (registry order);
    every unit of the registry when the plan asks none."""
    return units_that_report(plan) or list(plan.registry.units)


@dataclass(frozen=True)
class Choices:
    """The choices of one definition: label -> code, and the Enums Prefect renders."""

    units: dict[str, str]
    any_units: dict[str, str]  # every unit of the registry: letters to Sở Nội vụ can fail too
    steps: dict[str, str]
    decisions: dict[str, str]
    review: object  # the plan's review (``expressions.review_decision``), None without one
    reviewer: str  # the name of the unit that decides (the review task's ``for_each``), "" without one
    unit_enum: type = field(repr=False)
    any_unit_enum: type = field(repr=False)
    step_enum: type = field(repr=False)
    decision_enum: type = field(repr=False)
    score_sheet: type = field(repr=False)


def _enum(name: str, labels) -> type:
    return enum.Enum(name, {label: label for label in labels}, type=str)


def _steps(plan) -> dict[str, str]:
    found: dict[str, str] = {}
    for process in [plan.definition.main, *plan.definition.subprocesses]:
        for element in process.elements:
            if element.type in RETRIGGERABLE and element.id not in found.values():
                found[step_label(plan, element.id)] = element.id
    return found


def _decisions(review) -> dict[str, str]:
    """Label -> code of the review's decisions, in the form's order (none without a review)."""
    return {label: code for code, label in review.choices.items()} if review else {}


def note_tasks(plan) -> dict[str, tuple[object, object]]:
    """The user tasks whose form is a note that decides nothing (Sở Nội vụ completing a returned
    report), by id: (element, form)."""
    return {e.id: (e, plan.forms[e.form]) for p in [plan.definition.main, *plan.definition.subprocesses]
            for e in p.elements if e.type == "userTask" and e.form and plan.forms[e.form].kind == "fields"
            and not plan.forms[e.form].decides}


def score_sheet_of(plan) -> type[BaseModel]:
    """One field per criterion of the plan's form, titled as the form shows it (``g1.1. <title>``).
    Strict: a criterion the form does not have is refused, a score must be a number."""
    form = next(f for f in plan.forms.values() if f.kind == "criteria")
    fields = {}
    for code, item in form.items.items():
        if item.auto_from_workflow:
            continue
        # the criterion's code as the form writes it ("g1.1") is the field's key in the form and
        # in the server's refusal ("scores.g1.1"); g1_1 is its Python name
        fields[code.replace(".", "_")] = (float, Field(
            alias=code, ge=0, le=item.max, multiple_of=form.step, title=f"{code}. {item.title}",
            description=f"Từ 0 đến {vn_number(item.max)} điểm, bước {vn_number(form.step)}"))
    return create_model("ScoreSheet", __doc__=form.title, __config__=ConfigDict(extra="forbid", strict=True, populate_by_name=True),
                        **fields)


@lru_cache(maxsize=4)
def _choices(path: str) -> Choices:
    plan = cached_plan(path)  # the plan the run's engine has (engine_for): loaded once a process
    units = {unit_label(plan.registry, u.code): u.code for u in reporting_units(plan)}
    any_units = {**units, **{unit_label(plan.registry, u.code): u.code for u in plan.registry.units
                             if u.code not in units.values()}}
    review = review_decision(plan)
    steps, decisions = _steps(plan), _decisions(review)
    # retrigger-step's lists start with "all" (its default): an optional list would show Prefect's
    # type switcher ("Buoc | None") instead of the list
    reviewer = plan.registry.get(review.units[0]).name if review and review.units else ""
    return Choices(units, any_units, steps, decisions, review, reviewer, _enum("DonVi", units),
                   _enum("DonViBatKy", [ALL_UNITS, *any_units]), _enum("Buoc", [ALL_STEPS, *steps]),
                   _enum("YKien", decisions), score_sheet_of(plan))


def choices_of(definition: str | None = None) -> Choices:
    return _choices(str(definition or definition_path()))


def _picked(value, table: dict[str, str], what: str) -> str:
    """The code of a choice given as its Enum member, its label or (in process, CLI) its code."""
    value = getattr(value, "value", value)
    text = str(value or "").strip()
    if text in table:
        return table[text]
    if text in table.values():
        return text
    raise OperatorError(f"{what} «{text}» không có trong danh sách của Kế hoạch: chọn trong danh sách")


def unit_code(value, choices: Choices) -> str:
    return _picked(value, choices.units, "Đơn vị")


def any_unit_code(value, choices: Choices) -> str | None:
    """A unit of retrigger-step's list; None for "all" (or nothing given)."""
    if getattr(value, "value", value) in (None, "", ALL_UNITS):
        return None
    return _picked(value, choices.any_units, "Đơn vị")


def step_id(value, choices: Choices) -> str | None:
    """A step of retrigger-step's list; None for "all" (or nothing given)."""
    if getattr(value, "value", value) in (None, "", ALL_STEPS):
        return None
    return _picked(value, choices.steps, "Bước")


def decision_code(value, choices: Choices) -> str:
    return _picked(value, choices.decisions, "Ý kiến")


def _criterion_problem(sheet: type[BaseModel], error: dict, given: dict) -> str:
    name = str(error["loc"][0]).replace(".", "_") if error["loc"] else ""
    spec = sheet.model_fields.get(name)
    if spec is None:
        return f"tiêu chí «{name.replace('_', '.')}» không có trong biểu mẫu"
    title, value = spec.title, given.get(name, given.get(spec.alias))
    top = next((m.le for m in spec.metadata if hasattr(m, "le")), None)
    kind = error["type"]
    if kind == "less_than_equal":
        return f"{title}: {vn_number(value)} điểm, vượt mức tối đa {vn_number(top)}"
    if kind == "greater_than_equal":
        return f"{title}: {vn_number(value)} điểm, không được âm"
    if kind == "multiple_of":
        return f"{title}: {vn_number(value)} điểm, phải là bội số của {vn_number(next(m.multiple_of for m in spec.metadata if hasattr(m, 'multiple_of')))}"
    if kind == "missing":
        return f"{title}: chưa nhập điểm"
    return f"{title}: «{value}» không phải là số điểm"


def check_scores(scores, sheet: type[BaseModel], unit_name: str) -> dict[str, float]:
    """The scores by criterion code (``g1.1``), or a refusal naming the unit and each criterion."""
    given = scores.model_dump() if isinstance(scores, BaseModel) else dict(scores or {})
    try:
        checked = sheet.model_validate(given)
    except ValidationError as exc:
        problems = [_criterion_problem(sheet, e, given) for e in exc.errors()]
        raise OperatorError(f"Báo cáo của {unit_name} không được ghi nhận: " + "; ".join(problems)) from None
    return {k.replace("_", "."): v for k, v in checked.model_dump().items()}


class PaperReport(BaseModel):
    """A report a unit sent on paper, entered by an operator (the run's ``actor``)."""

    document_number: str = Field(min_length=1, max_length=100, pattern=r"\S", title="Số văn bản",
                                 description="Số, ký hiệu của văn bản, ví dụ 12/BC-STP")
    document_date: dt.date = Field(title="Ngày văn bản")
    reason: str = Field(min_length=1, pattern=r"\S", title="Lý do nhập thay đơn vị")


def paper_report(value) -> PaperReport | None:
    if value is None or isinstance(value, PaperReport):
        return value
    try:
        return PaperReport.model_validate(value)
    except ValidationError as exc:
        names = {n: f.title for n, f in PaperReport.model_fields.items()}
        wrong = ", ".join(names.get(str(e["loc"][0]), str(e["loc"][0])) for e in exc.errors() if e["loc"])
        raise OperatorError(f"Văn bản giấy: thiếu hoặc sai {wrong}") from None


def vietnam_moment(day, time: str, tz) -> dt.datetime:
    """A date and a time "HH:MM" in Vietnam's time (the calendar's zone) as one moment."""
    try:
        when = day if isinstance(day, dt.date) else dt.date.fromisoformat(str(day))
        hour, minute = (int(p) for p in str(time).strip().split(":"))
        return dt.datetime.combine(when, dt.time(hour, minute), tzinfo=tz)
    except (ValueError, TypeError):
        raise OperatorError(f"Ngày «{day}», giờ «{time}»: ghi ngày dạng yyyy-mm-dd và giờ dạng HH:MM "
                            "(giờ Việt Nam), ví dụ 2022-12-12 và 08:00") from None
