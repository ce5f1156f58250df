"""What a notification says: the template context for each kind, built from the store.

The contract of each kind's context is documented in ``notifications/render.py``; this
module only gathers the facts. Templates decide nothing.
"""

from __future__ import annotations

from sqlalchemy import select

from planflow import store as s
from planflow.deadlines import plan_deadline


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


def _latest_report(conn, root_id: int):
    return conn.execute(select(s.reports).where(s.reports.c.instance_id == root_id)
                        .order_by(s.reports.c.id.desc()).limit(1)).first()


def _report_facts(conn, root_id: int) -> dict:
    report = _latest_report(conn, root_id)
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
    recipients = ctx.engine.units(element.to, inst.scope_unit, ctx.as_of)
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
        facts = _report_facts(conn, ctx.root_id())
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
