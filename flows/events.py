"""The events the plan emits, readable in Prefect's Event Feed and filterable by automations.

``planflow.unit.submitted`` and ``planflow.unit.overdue`` name their resource after the unit
(``prefect.resource.name``) and label it with its plan's id (``planflow.plan``), its code,
tier, district, level and due date in Vietnam's time (``dd/mm/yyyy HH:MM``, +07:00); the
district and the plan's instance are related resources. Labels are strings, as Prefect keeps
them. The resource id stays ``planflow.unit.<code>``; each plan's automations match it and
their plan's id (``planflow.flows.serve``), so one plan's events never move another plan.
"""

from __future__ import annotations

import datetime as dt

from prefect.events import emit_event

from planflow.aggregation import GROUP_NAMES, group_of
from planflow.notifications.vn_format import short_datetime
from planflow.unit_labels import district_name, element_name

PLAN_LABEL = "planflow.plan"  # the label every planflow event's resource carries: the plan's id


def unit_resources(plan, code: str, key: str) -> tuple[dict, list[dict]]:
    """The resource of a unit, labelled with its plan's id, and its related resources (its
    district, the plan's instance)."""
    unit = plan.registry.get(code)
    parent = plan.registry.get(unit.parent) if unit is not None and unit.parent else None
    tier = GROUP_NAMES.get(group_of(unit), "") if unit is not None else ""
    district = district_name(plan.registry, code) if unit is not None else ""
    resource = {"prefect.resource.id": f"planflow.unit.{code}",
                "prefect.resource.name": unit.name if unit else code, PLAN_LABEL: plan.id,
                "planflow.unit.code": code, "planflow.unit.tier": tier, "planflow.unit.district": district}
    related = [{"prefect.resource.id": f"planflow.plan.{key}", "prefect.resource.role": "plan",
                "prefect.resource.name": f"{plan.definition.name[:80]}…" if len(plan.definition.name) > 80
                else plan.definition.name}]
    if parent is not None:
        related.append({"prefect.resource.id": f"planflow.unit.{parent.code}", "prefect.resource.role": "district",
                        "prefect.resource.name": parent.name})
    return resource, related


def emit_submitted(plan, key: str, code: str, element: str | None, at: dt.datetime, actor: str) -> None:
    resource, related = unit_resources(plan, code, key)
    tz = plan.calendar.tz
    resource |= {"planflow.at": short_datetime(at, tz), "planflow.actor": actor}
    emit_event(event="planflow.unit.submitted", resource=resource, related=related,
               payload={"instance": key, "element": element, "at": at.astimezone(tz).isoformat(), "actor": actor})


def emit_overdue(plan, key: str, notice: dict, as_of: dt.datetime) -> None:
    """One escalation recorded by a sweep: the unit, its level, its due date (+07:00)."""
    resource, related = unit_resources(plan, notice["unit"], key)
    tz = plan.calendar.tz
    resource |= {"planflow.level": str(notice["level"]), "planflow.due": short_datetime(notice["due"], tz),
                 "planflow.step": element_name(plan, notice["element"]), "planflow.at": short_datetime(as_of, tz)}
    payload = {**notice, "due": dt.datetime.fromisoformat(notice["due"]).astimezone(tz).isoformat(),
               "at": dt.datetime.fromisoformat(notice["at"]).astimezone(tz).isoformat(),
               "plan": plan.id, "as_of": as_of.astimezone(tz).isoformat()}
    emit_event(event="planflow.unit.overdue", resource=resource, related=related, payload=payload)
