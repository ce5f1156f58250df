"""The annex of Sở Nội vụ's report as a spreadsheet: one sheet per tier of units, one row per
unit asked — its district, when it reported (Vietnam time), its status, every criterion's
score, its total and classification. Headers in Vietnamese, frozen, with filters; scores
are numbers and times are Excel date-times, so a clerk can sort, sum and check.

Built from the stored report's data (``aggregation.build``) and each unit's scores by
criterion (the submissions: ``criterion_scores``).
"""

from __future__ import annotations

import datetime as dt
import io

from sqlalchemy import select

from planflow import store as s
from planflow.aggregation import GROUP_NAMES, GROUP_ORDER
from planflow.status_words import report_status

TIME_FORMAT = "dd/mm/yyyy hh:mm:ss"
SCORE_FORMAT = "0.00"  # shown with the reader's decimal sign (a comma in a Vietnamese Excel)
_FIXED = [("STT", 6), ("Mã đơn vị", 30), ("Đơn vị", 34), ("Thuộc đơn vị cấp huyện", 28),
          ("Hạn báo cáo (giờ Việt Nam, UTC+07:00)", 20), ("Thời điểm báo cáo (giờ Việt Nam, UTC+07:00)", 20),
          ("Tình trạng", 16), ("Văn bản giấy", 22)]
DISTRICT_COLUMN = 3  # "Thuộc đơn vị cấp huyện": left out in a plan without a district tier


def criteria_form(plan):
    return next(f for f in plan.forms.values() if f.kind == "criteria")


def criterion_scores(conn, plan, instance_ids: list[int]) -> dict[str, dict]:
    """Each unit's scores by criterion code, from its latest submission in these instances."""
    form = criteria_form(plan)
    elements = {e.id for p in [plan.definition.main, *plan.definition.subprocesses] for e in p.elements
                if e.type == "userTask" and e.form == form.id}
    rows = conn.execute(
        select(s.work_items.c.unit_code, s.submissions.c.payload)
        .join(s.submissions, s.submissions.c.work_item_id == s.work_items.c.id)
        .where(s.work_items.c.instance_id.in_(instance_ids), s.work_items.c.element_id.in_(elements))
        .order_by(s.work_items.c.id)).all()
    return {r.unit_code: dict((r.payload or {}).get("scores") or {}) for r in rows}


def local_time(value: str | None, tz) -> dt.datetime | None:
    """An ISO time as Excel can hold it: in Vietnam time, without a zone (the header says which)."""
    if not value:
        return None
    return dt.datetime.fromisoformat(value).astimezone(tz).replace(tzinfo=None)


def item_score(item, r: dict, own: dict) -> float | None:
    """A criterion's points: the unit's own, or the engine's (full marks for an on-time report)."""
    if r["status"] not in ("on_time", "late"):
        return None
    if getattr(item, "auto_from_workflow", None) == "on_time":
        return float(item.max) if r["status"] == "on_time" else 0.0
    value = own.get(item.code)
    return float(value) if value is not None else None


def unit_values(plan, r: dict, n: int, scores: dict, items: list, tz) -> list:
    district = plan.registry.get(r["district"]) if r.get("district") else None
    district_name = district.name if district else (r["name"] if r["group"] == "district" else None)
    paper = None
    if r.get("document_number"):
        day = dt.date.fromisoformat(r["document_date"]).strftime("%d/%m/%Y") if r.get("document_date") else ""
        paper = f"{r['document_number']}" + (f" ngày {day}" if day else "")
    own = r.get("scores") or scores.get(r["code"]) or {}
    return [n, r["code"], r["name"], district_name, local_time(r.get("due_at"), tz),
            local_time(r.get("submitted_at"), tz), report_status(r["status"]), paper,
            *[item_score(i, r, own) for i in items], r.get("score"), r.get("classification") or None]


def tier_sheet(wb, plan, title: str, rows: list[dict], scores: dict, tz, districts: bool = True) -> None:
    from openpyxl.styles import Alignment, Font
    from openpyxl.utils import get_column_letter

    form = criteria_form(plan)
    items = list(form.items.values())
    ws = wb.create_sheet(title[:31])
    fixed = _FIXED if districts else [c for i, c in enumerate(_FIXED) if i != DISTRICT_COLUMN]
    header = [*fixed, *((f"{i.code}. {i.title} (tối đa {i.max:g})", 12) for i in items),
              (f"Tổng điểm (tối đa {form.scale_max:g})" if form.scale_max else "Tổng điểm", 12), ("Xếp loại", 26)]
    ws.append([name for name, _ in header])
    for i, (_, width) in enumerate(header, start=1):
        ws.column_dimensions[get_column_letter(i)].width = width
        cell = ws.cell(row=1, column=i)
        cell.font = Font(bold=True)
        cell.alignment = Alignment(wrap_text=True, vertical="center", horizontal="center")
    ws.row_dimensions[1].height = 75
    first_score = len(fixed) + 1
    times = (len(fixed) - 3, len(fixed) - 2)  # due, reported: before status and paper document
    for n, r in enumerate(rows, start=1):
        values = unit_values(plan, r, n, scores, items, tz)
        ws.append(values if districts else [v for i, v in enumerate(values) if i != DISTRICT_COLUMN])
        for col in times:
            ws.cell(row=n + 1, column=col).number_format = TIME_FORMAT
        for col in range(first_score, first_score + len(items) + 1):
            ws.cell(row=n + 1, column=col).number_format = SCORE_FORMAT
    ws.freeze_panes = ws.cell(row=2, column=4)
    ws.auto_filter.ref = f"A1:{get_column_letter(len(header))}{max(len(rows), 1) + 1}"


def tier_rows(data: dict) -> dict[str, list[dict]]:
    """The units asked, per tier (a district rolled up only for its communes is not one)."""
    return {"department": [r for r in data["departments"] if r.get("element")],
            "district": [r for r in data["districts"] if r.get("element")],
            "commune": [r for r in data["communes"] if r.get("element")]}


def render(plan, data: dict, scores: dict[str, dict], created_at: dt.datetime) -> bytes:
    """The annex as an .xlsx file's bytes: a sheet per tier that has units."""
    from openpyxl import Workbook

    wb = Workbook()
    wb.remove(wb.active)
    tz = plan.calendar.tz
    tiers = tier_rows(data)
    districts = bool(tiers["district"]) or any(r.get("district") for r in tiers["commune"])
    for group, rows in tiers.items():
        if rows:
            tier_sheet(wb, plan, GROUP_NAMES[group], rows, scores, tz, districts)
    if not wb.sheetnames:
        wb.create_sheet(GROUP_NAMES[GROUP_ORDER[0]])
    wb.properties.title = f"Phụ lục kết quả đánh giá, {plan.definition.name}"[:250]
    wb.properties.creator = "planflow"
    wb.properties.created = wb.properties.modified = created_at.astimezone(dt.timezone.utc).replace(tzinfo=None)
    buffer = io.BytesIO()
    wb.save(buffer)
    return buffer.getvalue()
