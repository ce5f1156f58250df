"""What operators watch of a plan instance: how many units reported (overall and per
tier), and the tables of units, districts, overdue units, stalled steps and operator
actions, in the words they read — each table built by its own module (``units_table``,
``district_progress``, ``overdue``, ``stalled_actions``, ``operator_log``).

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
from planflow.district_progress import district_rows
from planflow.operator_log import operator_rows
from planflow.overdue import overdue_codes, overdue_rows
from planflow.report import latest_markdown
from planflow.stalled_actions import stalled_rows
from planflow.summary import build_summary
from planflow.units_table import unit_rows

REPORTED = ("on_time", "late")


@dataclass(frozen=True)
class Progress:
    """A plan instance as its artifacts show it."""

    summary: dict  # build_summary's, at the moment asked
    as_of: dt.datetime  # the moment asked: the instance's clock (the plan's time in a replay)
    overall: TierProgress  # every unit asked (``units_asked``), also those whose task has not opened
    tiers: dict[str, TierProgress]  # per tier (``GROUP_ORDER``)
    units: list[dict]  # planflow.units_table
    districts: list[dict]  # planflow.district_progress
    overdue: list[dict]  # planflow.overdue
    overdue_count: int
    stalled: list[dict]  # planflow.stalled_actions
    stalled_count: int
    actions: list[dict]  # planflow.operator_log
    report: str | None  # the latest aggregate report (Markdown), once aggregated

    @property
    def reported(self) -> int:
        return self.overall.reported

    @property
    def expected(self) -> int:
        return self.overall.expected

    @property
    def percent(self) -> float:
        return self.overall.percent


def units_per_element(engine, as_of: dt.datetime) -> dict[tuple[str, str], set[str]]:
    """The units each criteria-form user task asks, keyed (process id, element id), through
    the call activities (a district's sub-process over its communes), as valid on ``as_of``
    (the day the instance started)."""
    plan = engine.plan
    found: dict[tuple[str, str], set[str]] = {}

    def walk(process, scope: str | None, depth: int = 0) -> None:
        for e in process.elements:
            if e.type == "userTask" and e.form and plan.forms[e.form].kind == "criteria" and e.for_each:
                found.setdefault((process.id, e.id), set()).update(u.code for u in engine.units(e.for_each, scope, as_of))
            elif e.type == "callActivity" and depth < 5:
                scopes = [u.code for u in engine.units(e.for_each, scope, as_of)] if e.for_each else [scope]
                for sub_scope in scopes:
                    walk(plan.definition.process(e.process), sub_scope, depth + 1)

    walk(plan.definition.main, None)
    return found


def reporting_units(engine, as_of: dt.datetime) -> list[str]:
    """The codes of every unit the plan asks for a self-evaluation (a criteria form), in
    registry order: the units of every task of :func:`units_per_element`."""
    plan = engine.plan
    found = set().union(*units_per_element(engine, as_of).values())
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


@dataclass(frozen=True)
class TierProgress:
    """How many units of one tier reported, of those asked: a progress bar and its words."""

    name: str  # "Sở, ban, ngành", "UBND cấp huyện", "UBND cấp xã"; the plan's name for all
    reported: int
    expected: int

    @property
    def percent(self) -> float:
        return round(100.0 * self.reported / self.expected, 1) if self.expected else 0.0

    @property
    def description(self) -> str:
        """"<name>: N/M đơn vị đã báo cáo (P%)", P as the Prefect UI shows the bar's value
        (truncated), so that the words and the bar agree."""
        return f"{self.name}: {self.reported}/{self.expected} đơn vị đã báo cáo ({int(self.percent)}%)"


def tier_progress(registry, codes: list[str], units: dict) -> dict[str, TierProgress]:
    """Per tier (``GROUP_ORDER``, the tiers asked), reported of asked."""
    out = {}
    for group in GROUP_ORDER:
        asked = [c for c in codes if group_of(registry.get(c)) == group]
        if asked:
            out[group] = TierProgress(GROUP_NAMES[group], sum(1 for c in asked if units.get(c, {}).get("status")
                                                              in REPORTED), len(asked))
    return out


def instance_progress(engine, root_id: int, as_of: dt.datetime) -> Progress:
    """The instance ``root_id`` at ``as_of``, read for its artifacts."""
    summary = build_summary(engine, root_id, as_of=as_of)
    plan, reg = engine.plan, engine.plan.registry
    units = summary["units"]
    # every unit asked, also those whose task has not opened yet (a district's own
    # self-evaluation opens once its communes are aggregated): the table has one row per
    # unit from the start and the progress does not jump back when a tier opens
    codes = units_asked(engine, root_id, units)
    stalled = engine.stalled(root_id)
    return Progress(
        summary=summary, as_of=as_of,
        overall=TierProgress("Tất cả đơn vị", sum(1 for u in units.values() if u["status"] in REPORTED), len(codes)),
        tiers=tier_progress(reg, codes, units), units=unit_rows(reg, codes, units, as_of),
        districts=district_rows(reg, codes, units, as_of), overdue=overdue_rows(plan, codes, units, as_of),
        overdue_count=len(overdue_codes(codes, units, as_of)),
        stalled=stalled_rows(plan, stalled), stalled_count=len(stalled),
        actions=operator_rows(engine, root_id), report=latest_markdown(engine, root_id))
