"""What a letter says: the template context of each kind, built from the store.

Every letter is an outbox row first (``outbox.queue``); this module builds the rows'
``context``: what is particular to each letter (``outbox.render_context`` adds the plan,
the same for all, when it is delivered). The contract of each kind's context is documented
in ``notifications/render.py``; this module only gathers the facts. Templates decide nothing.

* ``rows_for_send``: a sendTask's letters (dissemination, review request and result, …);
* ``rows_for_chases``: the letters of the reminders and escalations a sweep recorded
  (``escalation.sweep``): a reminder or an overdue notice to the unit, and one letter per
  higher body listing every unit that reached an escalation level;
* ``rows_for_incident``: an incident, to the coordinators.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from planflow import store as s
from planflow import units
from planflow.deadlines import plan_deadline
from planflow.report import latest_report


def unit_context(unit) -> dict:
    return {"code": unit.code, "name": unit.name, "head": unit.head, "email": unit.email}


def plan_context(plan) -> dict:
    doc = plan.definition.document
    recipients = plan.registry.group(doc.recipients)
    return {
        "title": doc.title, "number": doc.number, "issued_on": doc.issued_on, "issuer": doc.issuer,
        "place": doc.place, "basis": doc.basis, "tasks": list(doc.tasks),
        "signer": doc.signer.model_dump(), "recipients": [u.name for u in recipients],
    }


def sender_unit(plan, element, scope_unit: str | None):
    reg = plan.registry
    if element.lane == "scope" and scope_unit:
        return reg.get(scope_unit)
    if element.lane and element.lane in reg:
        return reg.get(element.lane)
    coordinators = reg.group("coordinators")
    return coordinators[0] if coordinators else None


def _report_facts(conn, root_id: int) -> dict:
    report = latest_report(conn, root_id)
    if report is None:
        return {"round": 0, "counts": {"expected": 0, "on_time": 0, "late": 0, "missing": 0},
                "classes": {}, "results": []}
    data = report.data
    counts = {k: data["total"]["counts"][k] for k in ("expected", "on_time", "late", "missing")}
    results = [{"name": r["name"], "score": r["score"], "classification": r["classification"]}
               for r in [*data["departments"], *data["districts"]]]
    return {"round": data["round"], "counts": counts, "classes": data["total"]["classes"], "results": results}


def rows_for_send(ctx) -> list[dict]:
    """One outbox row per recipient of a sendTask, keyed for exactly-once delivery."""
    plan, element, inst, conn = ctx.plan, ctx.element, ctx.instance, ctx.conn
    recipients = units.in_collection(plan, element.to, inst.scope_unit, ctx.as_of)
    sender = sender_unit(plan, element, inst.scope_unit)
    base = {
        "sent_at": ctx.as_of,
        "sender": {"name": sender.name if sender else plan.definition.document.issuer},
    }
    kind = element.template
    extra: dict = {}
    if kind == "dissemination":
        extra = {"due": plan_deadline(plan)}
    elif kind in ("review-request", "publication", "report-upward"):
        facts = _report_facts(conn, s.root_of(conn, inst.id))
        extra = {"round": facts["round"], "counts": facts["counts"], "classes": facts["classes"],
                 "report_name": f"Báo cáo kết quả đánh giá công tác dân vận năm {plan.definition.year}",
                 "results": facts["results"]}
    elif kind == "review-result":
        review = (inst.variables or {}).get("review") or {}
        extra = {"decision": review.get("decision"), "comment": review.get("comment"),
                 "round": review.get("round", 0)}
    rows = []
    for unit in recipients:
        rows.append({
            "key": f"{inst.id}:{element.id}:{ctx.token.id}:{unit.code}:{kind}:0",
            "instance_id": inst.id, "element_id": element.id, "unit_code": None,
            "recipient": unit.code, "kind": kind, "level": 0,
            "context": {**base, **extra, "recipient": unit_context(unit)},
        })
    return rows


def rows_for_incident(plan, root_id: int | None, incident: dict, as_of) -> list[dict]:
    """One outbox row per coordinator for an incident (a failed or crashed run)."""
    return [{
        "key": f"incident:{incident['flow_run']}:{incident['state']}:{u.code}", "instance_id": root_id or 0,
        "element_id": incident["step"], "unit_code": None, "recipient": u.code, "kind": "incident", "level": 0,
        "context": {"recipient": unit_context(u), "sent_at": as_of, "sender": {"name": "planflow"},
                    "incident": incident}} for u in plan.registry.group("coordinators")]


def rows_for_chases(plan, recorded: list[tuple], as_of) -> list[dict]:
    """Outbox rows for newly recorded rungs, given as (work item, element, rung): one per
    unit notice (a reminder, an overdue notice), one per grouped letter to a higher body."""
    cal, reg = plan.calendar, plan.registry
    rows: list[dict] = []
    grouped: dict[tuple, list] = {}
    for item, element, rung in recorded:
        unit = reg.get(item.unit_code)
        common = _chase_common(plan, item, element, unit, as_of)
        if rung.kind == "reminder":
            rows.append(_to_unit(item, element, unit, f"reminder:{rung.level}", "reminder", 0, common, {
                "working_days_left": max(cal.count_working_days(as_of, item.due_at), 0)}))
            continue
        days_over = cal.count_working_days(item.due_at, as_of)
        for target in rung.to:
            if target in ("unit", "unit.head"):
                rows.append(_to_unit(item, element, unit, f"overdue:{rung.level}", "overdue", rung.level, common, {
                    "working_days_overdue": days_over, "level": rung.level}))
                continue
            recipient = reg.get(unit.parent) if target == "unit.parent" else reg.get(target)
            if recipient is None:
                continue
            group_key = (item.instance_id if target == "unit.parent" else None, element.id, rung.level,
                         recipient.code, rung.template)
            grouped.setdefault(group_key, []).append((item, unit, common, days_over))
    rows += [_to_higher_body(plan, key, members, as_of) for key, members in grouped.items()]
    return rows


def _chase_common(plan, item, element, unit, as_of) -> dict:
    """What every letter of a rung carries: when, from whom, which task and its due moment."""
    sender = sender_unit(plan, element, item.scope_unit) if element.lane not in (None, "unit") else None
    sender = sender or (plan.registry.group("coordinators") or [unit])[0]
    return {"sent_at": as_of, "sender": {"name": sender.name}, "task": {"name": element.name or element.id},
            "due": item.due_at}


def _to_unit(item, element, unit, key: str, kind: str, level: int, common: dict, extra: dict) -> dict:
    """A letter to the unit itself (a reminder, an overdue notice)."""
    return {"key": f"{item.id}:{key}", "instance_id": item.instance_id, "element_id": element.id,
            "unit_code": unit.code, "recipient": unit.code, "kind": kind, "level": level,
            "context": {**common, "recipient": unit_context(unit), "unit": unit_context(unit), **extra}}


def _to_higher_body(plan, group_key: tuple, members: list, as_of) -> dict:
    """One escalation letter to a higher body, listing every unit that reached the level."""
    iid, element_id, level, recipient_code, template = group_key
    item, _, common, _ = members[0]
    listed_units = [{"name": u.name, "code": u.code, "due": it.due_at, "working_days_overdue": d}
                    for it, u, _, d in members]
    # the key names the units the letter lists: sweeps racing at the same moment that
    # split the due units between them each send their own letter, none is dropped; the
    # moment is written in UTC, so the same moment given in another zone is the same letter
    listed = hashlib.sha1(",".join(sorted(u["code"] for u in listed_units)).encode()).hexdigest()[:12]
    moment = as_of.astimezone(dt.timezone.utc).isoformat()
    return {
        "key": f"{plan.id}:{element_id}:escalation:{level}:{recipient_code}:{iid or 0}:{moment}:{listed}",
        "instance_id": item.instance_id, "element_id": element_id, "unit_code": None,
        "recipient": recipient_code, "kind": template, "level": level,
        "context": {**common, "recipient": unit_context(plan.registry.get(recipient_code)), "level": level,
                    "units": listed_units}}
