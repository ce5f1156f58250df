"""Sở Nội vụ's aggregation: each unit's status, score and classification, rolled up.

Scores come from the submissions (checked against the form when they were recorded);
bands and the "không đủ điều kiện xếp loại" label come from the form, never from code.
The report written from this data is ``planflow.report``'s.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields
from functools import partial
from operator import attrgetter

from sqlalchemy import select

from planflow import store as s
from planflow.report import aggregator, report_subject

# the tiers of units, in the order every table lists them, with the names people read
GROUP_NAMES = {"department": "Sở, ban, ngành", "district": "UBND cấp huyện", "commune": "UBND cấp xã"}
GROUP_ORDER = tuple(GROUP_NAMES)


@dataclass(frozen=True)
class UnitResult:
    code: str
    name: str
    group: str  # department | district | commune
    district: str | None  # the district a commune belongs to
    element: str
    due_at: dt.datetime
    submitted_at: dt.datetime | None
    status: str  # on_time | late | missing | open
    score: float | None
    classification: str
    # a paper report entered by an operator: its document's number and date (what the report shows)
    document_number: str | None = None
    document_date: dt.date | None = None
    entered_by: str | None = None  # the operator who entered it


# the registry ``kind`` of the units of a tier; any other kind is a department (sở, ban, ngành)
TIER_OF_KIND = {"ubnd-cap-huyen": "district", "ubnd-cap-xa": "commune"}


def group_of(unit) -> str:
    """The tier of a registry unit (``department`` | ``district`` | ``commune``), from its
    ``kind``: ``ubnd-cap-huyen`` a district, ``ubnd-cap-xa`` a commune, anything else a
    department. Every caller asks this one function."""
    return TIER_OF_KIND.get(unit.kind, "department")


def commune_district(registry, unit, scope_unit: str | None = None) -> str | None:
    """The district a commune belongs to: the unit its sub-process runs for, else its parent,
    when that is a district; None in a plan without a district tier (a commune under the
    province or city itself) and for any unit that is not a commune."""
    if group_of(unit) != "commune":
        return None
    parent = registry.get(scope_unit or unit.parent or "")
    return parent.code if parent is not None and group_of(parent) == "district" else None


def unit_results(conn, plan, instance_ids: list[int]) -> list[UnitResult]:
    """One result per unit evaluated with a criteria form in these instances (latest task wins)."""
    criteria_elements = {
        e.id for p in [plan.definition.main, *plan.definition.subprocesses] for e in p.elements
        if e.type == "userTask" and e.form and plan.forms[e.form].kind == "criteria"}
    rows = conn.execute(
        select(s.work_items.c.unit_code, s.work_items.c.element_id, s.work_items.c.status,
               s.work_items.c.due_at, s.work_items.c.submitted_at, s.work_items.c.late,
               s.submissions.c.total, s.submissions.c.document_number, s.submissions.c.document_date,
               s.submissions.c.entered_by, s.instances.c.scope_unit, s.instances.c.process_id)
        .join(s.instances, s.instances.c.id == s.work_items.c.instance_id)
        .outerjoin(s.submissions, s.submissions.c.work_item_id == s.work_items.c.id)
        .where(s.work_items.c.instance_id.in_(instance_ids),
               s.work_items.c.element_id.in_(criteria_elements))
        .order_by(s.work_items.c.id)).all()
    latest = {r.unit_code: r for r in rows}  # in id order: the latest task of a unit wins
    forms: dict[tuple[str, str], object] = {}  # (process, element) -> its form, looked up once
    districts: dict[tuple[str, str | None], str | None] = {}  # (parent, scope) -> commune_district
    out = []
    for (code, element_id, item_status, due_at, submitted_at, late, total, document_number, document_date,
         entered_by, scope_unit, process_id) in latest.values():
        unit = plan.registry.get(code)
        form = forms.get((process_id, element_id))
        if form is None:
            form = forms[process_id, element_id] = plan.forms[
                plan.definition.process(process_id).element(element_id).form]
        status = _STATUS.get(item_status) or ("late" if late else "on_time")
        score = total if status in ("on_time", "late") else None
        group = group_of(unit)
        district = None
        if group == "commune":
            key = (unit.parent, scope_unit)
            district = districts.get(key, districts)
            if district is districts:
                district = districts[key] = commune_district(plan.registry, unit, scope_unit)
        out.append(UnitResult(
            code, unit.name, group, district, element_id, due_at, submitted_at, status, score,
            form.classify(score) if status != "open" else "", document_number, document_date, entered_by))
    return out


_STATUS = {"open": "open", "missing": "missing"}  # a work item's status -> the result's; else sent


def _result_row(r: UnitResult, iso: dict[int, str]) -> dict:
    """A result as JSON-safe data (times and dates as ISO 8601; ``iso``: the text of each
    moment by ``id``, for one report: its results share a handful of moments)."""
    # fields are flat values: no need for asdict's deep copy, which cost ~0.1 ms a row
    row = dict(zip(_FIELDS, _VALUES(r)))
    for f in _TIMES:
        value = row[f]
        if isinstance(value, dt.date):
            text = iso.get(id(value))
            if text is None:
                text = iso[id(value)] = value.isoformat()
            row[f] = text
    return row


_FIELDS = [f.name for f in fields(UnitResult)]
_VALUES = attrgetter(*_FIELDS)
_TIMES = [f.name for f in fields(UnitResult) if "dt.date" in str(f.type)]  # the fields that hold a date or moment


def summarize(results: list[UnitResult], form) -> dict:
    counts = {"expected": len(results), "on_time": 0, "late": 0, "missing": 0, "open": 0}
    classes = {b.label: 0 for b in sorted(form.bands, key=lambda b: -b.min)}
    classes[form.not_classifiable] = 0
    for r in results:
        counts[r.status] += 1
        if r.classification:
            classes[r.classification] = classes.get(r.classification, 0) + 1
    scored = [r.score for r in results if r.score is not None]
    return {"counts": counts, "classes": classes,
            "average": round(sum(scored) / len(scored), 2) if scored else None}


def maker_of(conn, plan, instance_id: int) -> str | None:
    """The code of the body that aggregates in this instance (``report.aggregator`` of its
    process: Sở Nội vụ, or a district for its communes)."""
    inst = conn.execute(select(s.instances.c.process_id, s.instances.c.scope_unit)
                        .where(s.instances.c.id == instance_id)).first()
    if inst is None:
        return None
    unit = aggregator(plan, inst.process_id, inst.scope_unit)
    return unit.code if unit is not None else None


def build(conn, plan, instance_ids: list[int], round_: int, as_of: dt.datetime) -> dict:
    """The aggregate report's data: units by tier, communes rolled up into their district."""
    results = unit_results(conn, plan, instance_ids)
    row_of = partial(_result_row, iso={})  # the results' moments written once each
    form = next(f for f in plan.forms.values() if f.kind == "criteria")
    by_group = {g: [r for r in results if r.group == g] for g in GROUP_ORDER}
    communes_of: dict[str | None, list[UnitResult]] = {}
    for r in by_group["commune"]:
        communes_of.setdefault(r.district, []).append(r)
    districts = []
    for d in by_group["district"]:
        communes = communes_of.get(d.code, [])
        districts.append({**row_of(d), "communes": summarize(communes, form)})
    maker = maker_of(conn, plan, instance_ids[0])
    known = {d.code for d in by_group["district"]} | {maker}
    # a commune with no district (a plan after 1/7/2025 has no district tier) stays a commune,
    # as do the communes of the district that makes this report (its own, listed one by one)
    orphans = sorted({r.district for r in by_group["commune"]
                      if r.district not in known and plan.registry.get(r.district) is not None})
    for code in orphans:  # a district whose own task never opened still rolls up its communes
        communes = communes_of[code]
        districts.append({"code": code, "name": plan.registry.get(code).name, "status": "missing",
                          "score": None, "classification": form.not_classifiable, "submitted_at": None,
                          "communes": summarize(communes, form)})
    return {
        "round": round_,
        "as_of": as_of.isoformat(),
        "maker": maker,  # who aggregated: its report's heading
        "subject": report_subject(plan),  # trích yếu (issue 12)
        "form": form.id,
        "total": summarize(results, form),
        # added for issue 12: each tier on its own (only the tiers the plan asked), in order
        "tiers": {g: {"name": GROUP_NAMES[g], **summarize(by_group[g], form)} for g in GROUP_ORDER if by_group[g]},
        "departments": [row_of(r) for r in by_group["department"]],
        "districts": districts,
        "communes": [row_of(r) for r in by_group["commune"]],
        "not_classified": [row_of(r) for r in results if r.status == "missing"],
        "paper_reports": [row_of(r) for r in results if r.document_number],
    }
