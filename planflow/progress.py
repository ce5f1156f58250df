"""What operators watch of a plan instance: how many units reported, and the tables of
units, districts, escalations and stalled steps, in the words they read.

The engine's read model for the Prefect artifacts (``flows/artifacts.py`` publishes
them; flows never read tables). Every table has at least one row: an empty table
artifact shows nothing at all.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Iterable

from planflow import store as s
from planflow.aggregation import GROUP_NAMES, GROUP_ORDER, group_of, unit_results
from planflow.notifications.vn_format import MISSING, short_datetime
from planflow.report import latest_markdown
from planflow.status_words import NOT_OPEN
from planflow.summary import build_summary

REPORTED = ("on_time", "late")


@dataclass(frozen=True)
class Progress:
    """A plan instance as its artifacts show it."""

    summary: dict  # build_summary's, at the moment asked
    reported: int  # units that sent their self-evaluation
    expected: int  # units asked (``units_asked``), also those whose task has not opened yet
    units: list[dict]
    districts: list[dict]
    escalations: list[dict]
    stalled: list[dict]
    report: str | None  # the latest aggregate report (Markdown), once aggregated

    @property
    def percent(self) -> float:
        return round(100.0 * self.reported / self.expected, 1) if self.expected else 0.0


def reporting_units(engine, as_of: dt.datetime) -> list[str]:
    """The codes of every unit the plan asks for a self-evaluation (a criteria form), in
    registry order: each user task's units, through the call activities (a district's
    sub-process over its communes), as valid on the day the instance started."""
    plan = engine.plan
    found: dict[str, None] = {}

    def walk(process, scope: str | None, depth: int = 0) -> None:
        for e in process.elements:
            if e.type == "userTask" and e.form and plan.forms[e.form].kind == "criteria" and e.for_each:
                found.update(dict.fromkeys(u.code for u in engine.units(e.for_each, scope, as_of)))
            elif e.type == "callActivity" and depth < 5:
                scopes = [u.code for u in engine.units(e.for_each, scope, as_of)] if e.for_each else [scope]
                for sub_scope in scopes:
                    walk(plan.definition.process(e.process), sub_scope, depth + 1)

    walk(plan.definition.main, None)
    order = {u.code: i for i, u in enumerate(plan.registry.units)}
    return sorted(found, key=lambda c: (GROUP_ORDER.index(group_of(plan.registry.get(c))), order.get(c, 0)))


def units_asked(engine, root_id: int, stored: Iterable[str] | None = None) -> list[str]:
    """The units asked in instance ``root_id`` — the one definition of the counts operators
    read (``planflow status``, the progress artifact and its units table): each unit a
    criteria-form user task asks, through the call activities, as valid on the day the
    instance started (``reporting_units``), also those whose task has not opened yet; then
    any unit the store holds such a task for beyond those. Never a review (a "fields" form).
    Once every task has opened these are the units the summary and the report count
    (``aggregation.unit_results``: 265 in the shipped plan).
    ``stored``: the codes of the units the store holds such a task for, when the caller
    has them (the summary's units); read from the store otherwise."""
    if stored is None:
        with engine.db.connect() as conn:
            stored = [r.code for r in unit_results(conn, engine.plan, s.tree_ids(conn, root_id))]
    asked = reporting_units(engine, engine.instance(root_id).started_at)
    known = set(asked)
    return [*asked, *(c for c in stored if c not in known)]


def unit_counts(engine, root_id: int) -> tuple[int, int]:
    """(units that sent their self-evaluation, units asked) of instance ``root_id``: what
    ``planflow status`` and the progress artifact show as "reported N/M"."""
    with engine.db.connect() as conn:
        results = unit_results(conn, engine.plan, s.tree_ids(conn, root_id))
    asked = units_asked(engine, root_id, [r.code for r in results])
    return sum(1 for r in results if r.status in REPORTED), len(asked)


def unit_row(registry, code: str, unit: dict | None) -> dict:
    """A unit's row: ``unit`` is its entry in the summary, None while its task has not opened."""
    name = registry.get(code).name
    if unit is None:
        return {"Đơn vị": name, "Mã": code, "Cấp": GROUP_NAMES[group_of(registry.get(code))], "Hạn": MISSING,
                "Gửi lúc": MISSING, "Tình trạng": NOT_OPEN, "Điểm": None, "Xếp loại": "", "Cấp đôn đốc": 0}
    return {"Đơn vị": name, "Mã": code, "Cấp": GROUP_NAMES[unit["group"]], "Hạn": short_datetime(unit["due"]),
            "Gửi lúc": short_datetime(unit["submitted_at"]), "Tình trạng": unit["status_qd42"],
            "Điểm": unit["score"], "Xếp loại": unit["classification"], "Cấp đôn đốc": unit["escalation_level"]}


def district_rows(registry, codes: list[str], units: dict) -> list[dict]:
    """Per district: its own status and how many of its communes reported."""
    rows = []
    for code in codes:
        if group_of(registry.get(code)) != "district":
            continue
        communes = [c for c in codes if group_of(registry.get(c)) == "commune" and registry.get(c).parent == code]
        rows.append({"UBND cấp huyện": registry.get(code).name,
                     "Tình trạng": unit_row(registry, code, units.get(code))["Tình trạng"],
                     "Cấp xã đã báo cáo": sum(1 for c in communes if units.get(c, {}).get("status") in REPORTED),
                     "Cấp xã phải báo cáo": len(communes)})
    return rows or [{"UBND cấp huyện": MISSING}]


def escalation_rows(registry, escalations: list[dict]) -> list[dict]:
    return [{"Đơn vị": registry.get(e["unit"]).name, "Cấp": e["level"], "Lúc": short_datetime(e["at"])}
            for e in escalations] or [{"Đơn vị": MISSING, "Cấp": 0, "Lúc": MISSING}]


def stalled_rows(stalled: list[dict]) -> list[dict]:
    return [{"Loại": x["kind"], "Bước": x["step"], "Đơn vị": x["unit"] or MISSING, "Chi tiết": x["detail"]}
            for x in stalled] or [{"Loại": MISSING, "Bước": MISSING, "Đơn vị": MISSING, "Chi tiết": "Không có"}]


def instance_progress(engine, root_id: int, as_of: dt.datetime) -> Progress:
    """The instance ``root_id`` at ``as_of``, read for its artifacts."""
    summary = build_summary(engine, root_id, as_of=as_of)
    reg = engine.plan.registry
    units = summary["units"]
    # every unit asked, also those whose task has not opened yet (a district's own
    # self-evaluation opens once its communes are aggregated): the table has one row per
    # unit from the start and the progress does not jump back when a tier opens
    codes = units_asked(engine, root_id, units)
    return Progress(
        summary=summary, reported=sum(1 for u in units.values() if u["status"] in REPORTED), expected=len(codes),
        units=[unit_row(reg, c, units.get(c)) for c in codes], districts=district_rows(reg, codes, units),
        escalations=escalation_rows(reg, summary["escalations"]), stalled=stalled_rows(engine.stalled(root_id)),
        report=latest_markdown(engine, root_id))
