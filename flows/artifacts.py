"""Artifacts of a plan instance, refreshed whenever a flow moves it: what operators watch.

Keys are derived from the instance key (lower-case letters, digits and dashes), so each
artifact is one evolving object in the Prefect UI: progress, units, districts,
escalations, stalled steps, and the aggregate report.
"""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import select

from planflow import store as s
from planflow.aggregation import group_of
from planflow.summary import build_summary
from planflow.flows.runtime import RunRef, engine_for, root_id

GROUP_VI = {"department": "Sở, ban, ngành", "district": "UBND cấp huyện", "commune": "UBND cấp xã"}
GROUPS = tuple(GROUP_VI)
NOT_OPEN = "chưa đến bước báo cáo"


def artifact_key(root_key: str, what: str) -> str:
    return f"{re.sub(r'[^a-z0-9]+', '-', root_key.lower()).strip('-')}-{what}"


def _reporting_units(engine, as_of: dt.datetime) -> list[str]:
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
    return sorted(found, key=lambda c: (GROUPS.index(group_of(plan.registry.get(c))), order.get(c, 0)))


def _when(value: str | None) -> str:
    return dt.datetime.fromisoformat(value).strftime("%d/%m/%Y %H:%M") if value else "—"


async def publish_artifacts(ref: RunRef, as_of: dt.datetime) -> dict:
    from prefect.artifacts import (
        acreate_markdown_artifact, acreate_progress_artifact, acreate_table_artifact,
    )

    engine = engine_for(ref)
    root = root_id(ref)
    if root is None:
        return {}
    summary = build_summary(engine, root, as_of=as_of)
    reg = engine.plan.registry
    units = summary["units"]
    # every unit that reports, also those whose task has not opened yet (a district's own
    # self-evaluation opens once its communes are aggregated): the table has one row per
    # unit from the start and the progress does not jump back when a tier opens
    expected = _reporting_units(engine, engine.instance(root).started_at)
    codes = [*expected, *(c for c in units if c not in expected)]
    reported = sum(1 for u in units.values() if u["status"] in ("on_time", "late"))
    key = ref.root_key
    await acreate_progress_artifact(
        progress=round(100.0 * reported / len(codes), 1) if codes else 0.0, key=artifact_key(key, "progress"),
        description=f"Đơn vị đã báo cáo: {reported}/{len(codes)} ({key})")

    def row(code: str) -> dict:
        u = units.get(code)
        if u is None:
            return {"Đơn vị": reg.get(code).name, "Mã": code, "Cấp": GROUP_VI[group_of(reg.get(code))], "Hạn": "—",
                    "Gửi lúc": "—", "Tình trạng": NOT_OPEN, "Điểm": None, "Xếp loại": "", "Cấp đôn đốc": 0}
        return {"Đơn vị": reg.get(code).name, "Mã": code, "Cấp": GROUP_VI[u["group"]], "Hạn": _when(u["due"]),
                "Gửi lúc": _when(u["submitted_at"]), "Tình trạng": u["status_qd42"],
                "Điểm": u["score"], "Xếp loại": u["classification"], "Cấp đôn đốc": u["escalation_level"]}

    await acreate_table_artifact(
        key=artifact_key(key, "units"), description=f"Tình trạng báo cáo của từng đơn vị ({key})",
        table=[row(c) for c in codes])
    districts = []
    for code in codes:
        if group_of(reg.get(code)) != "district":
            continue
        communes = [c for c in codes if group_of(reg.get(c)) == "commune" and reg.get(c).parent == code]
        districts.append({"UBND cấp huyện": reg.get(code).name, "Tình trạng": row(code)["Tình trạng"],
                          "Cấp xã đã báo cáo": sum(1 for c in communes
                                                   if units.get(c, {}).get("status") in ("on_time", "late")),
                          "Cấp xã phải báo cáo": len(communes)})
    await acreate_table_artifact(key=artifact_key(key, "districts"), table=districts or [{"UBND cấp huyện": "—"}],
                                 description=f"Tiến độ theo huyện ({key})")
    await acreate_table_artifact(
        key=artifact_key(key, "escalations"), description=f"Đơn vị quá hạn và cấp đôn đốc ({key})",
        table=[{"Đơn vị": reg.get(e["unit"]).name, "Cấp": e["level"], "Lúc": _when(e["at"])}
               for e in summary["escalations"]] or [{"Đơn vị": "—", "Cấp": 0, "Lúc": "—"}])
    stalled = engine.stalled(root)
    await acreate_table_artifact(
        key=artifact_key(key, "stalled"), description=f"Bước bị đình trệ ({key})",
        table=[{"Loại": x["kind"], "Bước": x["step"], "Đơn vị": x["unit"] or "—", "Chi tiết": x["detail"]}
               for x in stalled] or [{"Loại": "—", "Bước": "—", "Đơn vị": "—", "Chi tiết": "Không có"}])
    with engine.db.connect() as conn:
        report = conn.scalar(select(s.reports.c.markdown).where(s.reports.c.instance_id == root)
                             .order_by(s.reports.c.id.desc()).limit(1))
    if report:
        await acreate_markdown_artifact(key=artifact_key(key, "report"), markdown=report,
                                        description=f"Báo cáo tổng hợp ({key})")
    return summary
