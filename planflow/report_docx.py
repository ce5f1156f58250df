"""Sở Nội vụ's aggregate report as a Word document in the layout of Nghị định 30/2020/NĐ-CP.

The layout is a template (``report.docx``, docxtpl: Jinja2 inside a .docx a clerk edits in
Word); this module fills it from the stored report's data (``aggregation.build``) and the
plan: the issuing body is the aggregating step's lane under its parent in the registry, its
ký hiệu the body's initials, the signer its head's title, Nơi nhận the parent and every
body its letters go to. Template lookup: the plan's ``templates:`` folder, then
``templates/`` next to the plan, then the shipped ``planflow.definitions/templates``.
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass
from pathlib import Path

from planflow.aggregation import GROUP_NAMES, GROUP_ORDER
from planflow.definitions import shipped
from planflow.report import aggregator, issuer_unit, plan_words
from planflow.notifications.vn_format import MISSING, vn_date, vn_number
from planflow.status_words import report_status

TEMPLATE = "report.docx"
_NOT_INITIALS = {"và", "của", "các"}


@dataclass(frozen=True)
class Body:
    """The body that issues the report: its name, its parent's, its ký hiệu, its unit."""

    name: str
    parent: str
    symbol: str
    unit: object


def template_path(plan, name: str = TEMPLATE) -> Path:
    """The plan's own template when it has one, else the shipped one."""
    for folder in (plan.template_dir, plan.path.parent / "templates"):
        if folder is not None and (Path(folder) / name).is_file():
            return Path(folder) / name
    return shipped("templates", name)


def element_of(plan, element_id: str):
    for process in [plan.definition.main, *plan.definition.subprocesses]:
        for element in process.elements:
            if element.id == element_id:
                return element
    return None


def symbol_of(name: str) -> str:
    """The ký hiệu of a body: "Sở Nội vụ" -> "SNV"; a name led by an acronym keeps it ("UBND …")."""
    words = name.replace(",", " ").split()
    if words and len(words[0]) > 1 and words[0].isupper():
        return words[0]
    return "".join(w[0].upper() for w in words if w[0].isalpha() and w not in _NOT_INITIALS)


def issuing_body(plan, element_id: str, scope_unit: str | None = None) -> Body:
    reg = plan.registry
    element = element_of(plan, element_id)
    lane = element.lane if element is not None else None
    unit = reg.get(scope_unit) if lane == "scope" and scope_unit else reg.get(lane) if lane else None
    unit = unit or aggregator(plan)
    if unit is None:
        issuer = plan.definition.document.issuer
        return Body(issuer.upper(), "", symbol_of(issuer), None)
    parent = reg.get(unit.parent) if unit.parent else None
    return Body(unit.name.upper(), parent.name.upper() if parent else "", symbol_of(unit.name), unit)


def signer_of(body: Body) -> dict:
    """The signer's title from the body's head ("Giám đốc Sở Nội vụ" -> "GIÁM ĐỐC"); a
    people's committee signs "TM. ỦY BAN NHÂN DÂN / CHỦ TỊCH". The name is the clerk's to fill."""
    unit = body.unit
    if unit is not None and unit.name.startswith("UBND"):
        return {"line1": "TM. ỦY BAN NHÂN DÂN", "line2": "CHỦ TỊCH", "name": ""}
    head = (unit.head or "") if unit is not None else ""
    title = head[: -len(unit.name)].strip() if unit is not None and head.endswith(unit.name) else head
    return {"line1": (title or "Thủ trưởng cơ quan").upper(), "line2": "", "name": ""}


def recipients_of(plan, body: Body, as_of: dt.datetime) -> list[str]:
    """Nơi nhận: the body's parent, every body its own letters go to, then the archive."""
    from planflow.units import in_collection

    names: list[str] = []
    unit = body.unit
    if unit is not None and unit.parent and plan.registry.get(unit.parent):
        names.append(plan.registry.get(unit.parent).name)
    lane = unit.code if unit is not None else None
    for element in plan.definition.main.elements:
        if element.type == "sendTask" and element.lane == lane and element.to:
            for u in in_collection(plan, element.to, None, as_of):
                if u.name not in names and u.code != lane:
                    names.append(u.name)
    return [f"{n};" for n in names] + ["Lưu: VT."]


def lcfirst(text: str) -> str:
    return text[:1].lower() + text[1:]


def plan_topic(plan) -> str:
    """The plan's trích yếu without its kind, lower-cased first: "triển khai thực hiện …"
    (a title written "Kế hoạch triển khai …" loses its kind, so no word is doubled)."""
    doc = plan.definition.document
    title = doc.title.strip()
    if title.lower().startswith(doc.kind.lower() + " "):
        title = title[len(doc.kind) + 1:]
    return lcfirst(title)


def subject_of(plan) -> str:
    """The report's trích yếu: "Kết quả triển khai thực hiện …"."""
    return f"Kết quả {plan_topic(plan)}"


def when(value: str | None, tz) -> str:
    """A submission time in Vietnam time, "09/12/2022 10:00"; with seconds when it has some
    ("10/12/2022 00:00:30"), so a time that decides on time or late is never rounded."""
    if not value:
        return MISSING
    local = dt.datetime.fromisoformat(value).astimezone(tz)
    return local.strftime("%d/%m/%Y %H:%M:%S" if local.second else "%d/%m/%Y %H:%M")


def asked(rows: list[dict]) -> list[dict]:
    """The rows of units asked (a district rolled up for its communes only is not one)."""
    return [r for r in rows if r.get("element")]


def unit_row(n: int, r: dict, tz) -> dict:
    if r.get("document_number"):
        day = dt.date.fromisoformat(r["document_date"]).strftime("%d/%m/%Y") if r.get("document_date") else ""
        moment = f"Văn bản số {r['document_number']}" + (f" ngày {day}" if day else "")
    else:
        moment = when(r.get("submitted_at"), tz)
    return {"stt": str(n), "name": r["name"], "when": moment, "status": report_status(r["status"]),
            "score": vn_number(r.get("score"), digits=None), "classification": r.get("classification") or ""}


def tier_rows(data: dict) -> dict[str, list[dict]]:
    return {"department": asked(data["departments"]), "district": asked(data["districts"]),
            "commune": asked(data["communes"])}


def commune_groups(plan, data: dict, tz) -> list[dict]:
    """Communes under their district, in the order of the districts' table."""
    by_district: dict[str | None, list[dict]] = {}
    for r in asked(data["communes"]):
        by_district.setdefault(r.get("district"), []).append(r)
    order = [d["code"] for d in data["districts"]] + [k for k in by_district if k not in
                                                      {d["code"] for d in data["districts"]}]
    groups, n = [], 0
    for code in order:
        rows = by_district.get(code)
        if not rows:
            continue
        district = plan.registry.get(code) if code else None
        reported = sum(r["status"] in ("on_time", "late") for r in rows)
        title = "" if district is None and not data["districts"] else \
            f"{district.name if district else 'Không thuộc đơn vị cấp huyện'}: {reported}/{len(rows)} đơn vị đã báo cáo"
        groups.append({"title": title, "rows": [unit_row(n := n + 1, r, tz) for r in rows]})
    return groups


def results_tiers(plan, data: dict, tz) -> list[dict]:
    tiers = []
    rows = tier_rows(data)
    for group in GROUP_ORDER:
        if not rows[group]:
            continue
        if group == "commune":
            groups = commune_groups(plan, data, tz)
        else:
            groups = [{"title": "", "rows": [unit_row(i, r, tz) for i, r in enumerate(rows[group], start=1)]}]
        tiers.append({"heading": f"{len(tiers) + 1}. {GROUP_NAMES[group]} ({len(rows[group])} đơn vị)",
                      "groups": groups})
    return tiers


def reporting_table(data: dict) -> list[dict]:
    rows = tier_rows(data)
    out = []
    for group in [g for g in GROUP_ORDER if rows[g]]:  # the tiers the plan asks
        counts = {k: sum(r["status"] == k for r in rows[group]) for k in ("on_time", "late", "missing")}
        out.append({"title": GROUP_NAMES[group], "expected": len(rows[group]), **counts})
    total = data["total"]["counts"]
    out.append({"title": "Tổng cộng", **{k: total[k] for k in ("expected", "on_time", "late", "missing")}})
    return out


def classes_table(data: dict) -> list[dict]:
    rows = tier_rows(data)
    return [{"label": label, "total": n,
             **{g: sum(r.get("classification") == label for r in rows[g]) for g in GROUP_ORDER}}
            for label, n in data["total"]["classes"].items()]


def average_note(data: dict) -> str:
    parts = []
    for group, rows in tier_rows(data).items():
        scored = [r["score"] for r in rows if r.get("score") is not None]
        if scored:
            parts.append(f"{GROUP_NAMES[group]} {vn_number(sum(scored) / len(scored))}")
    overall = data["total"]["average"]
    return (f"Điểm bình quân chung: {vn_number(overall)} điểm" + (f" ({'; '.join(parts)})." if parts else ".")
            if overall is not None else "Chưa có đơn vị nào được chấm điểm.")


def lines_not_classified(plan, data: dict) -> list[str]:
    by_group: dict[str, list[str]] = {}
    for r in data["not_classified"]:
        district = plan.registry.get(r["district"]) if r.get("district") else None
        by_group.setdefault(r["group"], []).append(r["name"] + (f" ({district.name})" if district else ""))
    lines = [f"{GROUP_NAMES[g]}: {', '.join(by_group[g])}." for g in GROUP_ORDER if g in by_group]
    if lines:
        lines.insert(0, "Các đơn vị sau không gửi báo cáo tự đánh giá đến hết thời hạn nhận báo cáo, "
                        "không đủ điều kiện xếp loại:")
    return lines or ["Không có."]


def lines_paper(data: dict, tz) -> list[str]:
    out = []
    for r in data.get("paper_reports") or []:
        day = dt.date.fromisoformat(r["document_date"]).strftime("%d/%m/%Y") if r.get("document_date") else ""
        out.append(f"{r['name']}: văn bản số {r['document_number']}" + (f" ngày {day}" if day else "")
                   + f", nhận vào hệ thống lúc {when(r.get('submitted_at'), tz)}"
                   + (f", do {r['entered_by']} nhập." if r.get("entered_by") else "."))
    return out


def intro_of(plan, body: Body, data: dict, tz) -> str:
    doc = plan.definition.document
    issuer = issuer_unit(plan)
    issuer = issuer.name if issuer else doc.issuer
    kind = doc.kind.capitalize()
    if doc.number:
        day = f" ngày {doc.issued_on:%d/%m/%Y}" if doc.issued_on else ""
        plan_name = f"{kind} số {doc.number}{day} của {issuer} về {plan_topic(plan)}"
    else:
        plan_name = f"{kind} {plan_topic(plan)} của {issuer}"
    as_of = dt.datetime.fromisoformat(data["as_of"]).astimezone(tz)
    return (f"Căn cứ {plan_name}, "
            f"{body.unit.name if body.unit is not None else body.name.title()} tổng hợp kết quả tự đánh giá của "
            f"{data['total']['counts']['expected']} cơ quan, đơn vị, địa phương (số liệu đến "
            f"{as_of:%H} giờ {as_of:%M} {vn_date(as_of)}) như sau:")


def round_note_of(plan, data: dict) -> str:
    if data["round"] <= 1:
        return ""
    reviewers = ", ".join(plan_words(plan)["reviewers"]) or "cơ quan thẩm định"
    comment = data.get("comment")
    return (f"(Báo cáo lần {data['round']}, đã bổ sung, hoàn thiện theo ý kiến của {reviewers}"
            + (f": “{comment}”)" if comment else ")"))


def context(plan, data: dict, element_id: str, created_at: dt.datetime, scope_unit: str | None = None) -> dict:
    """What the template is filled with (see ``definitions/templates/make_report_template.py``)."""
    tz = plan.calendar.tz
    body = issuing_body(plan, element_id, scope_unit)
    subject = subject_of(plan)
    unit_name = body.unit.name if body.unit is not None else body.name
    return {
        "body": {"name": body.name, "parent": body.parent, "symbol": body.symbol},
        "place": plan.definition.document.place, "day": vn_date(created_at.astimezone(tz)),
        "subject": subject, "round_note": round_note_of(plan, data), "intro": intro_of(plan, body, data, tz),
        "reporting": reporting_table(data), "classes": classes_table(data), "average_note": average_note(data),
        "reporting_note": "Đơn vị không gửi báo cáo đến hết thời hạn nhận báo cáo không đủ điều kiện xếp loại "
                          "(mục IV).",
        "tiers": results_tiers(plan, data, tz), "not_classified": lines_not_classified(plan, data),
        "paper_reports": lines_paper(data, tz),
        "closing": f"Trên đây là báo cáo {lcfirst(subject)} của {unit_name}./.",
        "signer": signer_of(body), "recipients": recipients_of(plan, body, created_at),
    }


def render(plan, data: dict, element_id: str, created_at: dt.datetime, scope_unit: str | None = None) -> bytes:
    """The report as a .docx file's bytes."""
    from docxtpl import DocxTemplate

    tpl = DocxTemplate(str(template_path(plan)))
    tpl.render(context(plan, data, element_id, created_at, scope_unit), autoescape=True)
    drop_columns(tpl.docx, [GROUP_NAMES[g] for g, rows in tier_rows(data).items() if not rows])
    props = tpl.docx.core_properties
    props.title = subject_of(plan)
    props.created = props.modified = created_at.astimezone(dt.timezone.utc).replace(tzinfo=None)
    buffer = io.BytesIO()
    tpl.save(buffer)
    return buffer.getvalue()


def drop_columns(document, headers: list[str]) -> None:
    """Remove from the document's tables each column headed by one of ``headers`` (the names
    of the tiers the plan does not ask: a two-tier plan has no "UBND cấp huyện" column); its
    width goes to the first column, so the table keeps its width. Tables with merged cells
    are left as they are."""
    from docx.oxml.ns import qn

    for table in document.element.body.iter(qn("w:tbl")):
        grid = table.find(qn("w:tblGrid"))
        if grid is None:
            continue
        cols = grid.findall(qn("w:gridCol"))
        rows = [tr.findall(qn("w:tc")) for tr in table.findall(qn("w:tr"))]
        if not rows or any(len(cells) != len(cols) for cells in rows):
            continue
        heads = ["".join(x.text or "" for x in tc.iter(qn("w:t"))).strip() for tc in rows[0]]
        for i in sorted((i for i, h in enumerate(heads) if h in headers and i > 0), reverse=True):
            _widen(cols[0], cols[i], qn("w:w"))
            for cells in rows:
                _widen(cells[0].find(f"{qn('w:tcPr')}/{qn('w:tcW')}"), cells[i].find(f"{qn('w:tcPr')}/{qn('w:tcW')}"),
                       qn("w:w"))
                table_row = cells[i].getparent()
                table_row.remove(cells.pop(i))
            grid.remove(cols.pop(i))


def _widen(keep, gone, key: str) -> None:
    """Add ``gone``'s width (its attribute ``key``, in twips) to ``keep``'s."""
    if keep is not None and gone is not None and keep.get(key) and gone.get(key):
        keep.set(key, str(int(keep.get(key)) + int(gone.get(key))))
