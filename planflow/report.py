"""Sở Nội vụ's aggregate report: written in Markdown from aggregation's data, recorded,
and read back — the one place that knows the ``reports`` table.

Each aggregation makes a new round (a report sent back by Ban Dân vận Tỉnh ủy is made
again); readers want the latest one: the letters that carry its figures, the operators'
artifact, ``simulate``'s ``report.md``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import jinja2
from sqlalchemy import func, select

from planflow import store as s
from planflow.notifications.vn_format import short_datetime, vn_date, vn_number
from planflow.status_words import report_status

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True, autoescape=False)


def render_markdown(plan, data: dict, comment: str | None = None) -> str:
    """The report of ``aggregation.build``'s data; ``comment``: Ban Dân vận's, when it sent
    the previous round back."""
    tz = plan.calendar.tz
    env = _ENV.overlay()
    env.filters["score"] = lambda v: vn_number(v, digits=None)
    env.filters["when"] = lambda v: moment(v, tz)
    env.filters["status_vi"] = report_status
    env.filters["day"] = lambda v: dt.date.fromisoformat(v).strftime("%d/%m/%Y") if v else "—"
    as_of = dt.datetime.fromisoformat(data["as_of"]).astimezone(tz)
    return env.get_template("aggregate-report.md.j2").render(
        plan=plan.definition, doc=plan.definition.document, data=data, comment=comment,
        day=vn_date(as_of.date(), pad_month=True), registry=plan.registry, bodies=report_bodies(plan),
        subject=data.get("subject") or report_subject(plan),
        reference=plan_reference(plan))


def moment(value, tz) -> str:
    """A moment of a table, "09/12/2022 17:00", with its seconds when it has some: a report
    at 00:00:30 on 10/12 reads "10/12/2022 00:00:30", not "00:00" (the status turns on them)."""
    if not value:
        return short_datetime(value)
    when = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    when = when.astimezone(tz)
    return when.strftime("%d/%m/%Y %H:%M:%S" if when.second or when.microsecond else "%d/%m/%Y %H:%M")


def _initials(name: str) -> str:
    return "".join(w[0] for w in name.split() if w[:1].isalpha()).upper()


def report_bodies(plan) -> dict:
    """Who makes the report, whom it goes to and who reviews it, from the registry's groups:
    the heading's bodies, the ký hiệu, the signer's title, Nơi nhận."""
    reg, doc = plan.registry, plan.definition.document
    issuer = (reg.group("issuer") or [None])[0]
    maker = (reg.group("coordinators") or [issuer])[0]
    name = maker.name if maker else doc.issuer
    head = maker.head if maker and maker.head else ""
    title = head[: -len(name)].strip() if head.endswith(name) else "Thủ trưởng cơ quan"
    return {
        "issuer": issuer.name if issuer else doc.issuer, "issuer_heading": doc.issuer.upper(),
        "maker": name, "maker_heading": name.upper(), "symbol": f"BC-{_initials(name)}",
        "signer_title": title.upper(), "report_to": [u.name for u in reg.group("report_to")],
        "reviewers": [u.name for u in reg.group("reviewers")],
    }


def plan_reference(plan) -> str:
    """The plan as a document is cited: "Kế hoạch số …/KH-UBND ngày 25/3/2022 của UBND tỉnh
    Hải Dương" (its kind, số and ký hiệu, date when known, issuer from the registry)."""
    doc = plan.definition.document
    number = (doc.number or "").strip()
    number = number if "/" in number else f"{number or '…'}/KH-UBND"
    issued = f" ngày {doc.issued_on.strftime('%d/%m/%Y')}" if doc.issued_on else ""
    issuers = plan.registry.group("issuer")
    issuer = issuers[0].name if issuers else doc.issuer
    return f"{doc.kind.capitalize()} số {number}{issued} của {issuer}"


def report_subject(plan) -> str:
    """Trích yếu of the aggregate report (and of the letters that carry it): what it reports
    on, named by the plan it reports on, e.g. "Kết quả đánh giá, xếp loại việc thực hiện Kế
    hoạch số …/KH-UBND của UBND tỉnh Hải Dương về triển khai thực hiện công tác dân vận …"."""
    title = plan.definition.document.title
    return f"Kết quả đánh giá, xếp loại việc thực hiện {plan_reference(plan)} về {title[:1].lower()}{title[1:]}"


def next_round(conn, instance_id: int) -> int:
    """The round the instance's next report is: 1, then 2 after a return, and so on."""
    return 1 + conn.scalar(select(func.count()).select_from(s.reports).where(
        s.reports.c.instance_id == instance_id))


def save(conn, *, key: str, instance_id: int, element_id: str, at: dt.datetime, data: dict,
         markdown: str) -> None:
    """Record a report once: a step run again with the same ``key`` records nothing more."""
    conn.execute(s.insert_ignore(conn, s.reports).values(
        key=key, instance_id=instance_id, element_id=element_id, created_at=at, data=data, markdown=markdown))


def latest_report(conn, instance_id: int):
    """The instance's newest report (its row: ``data``, ``markdown``, ``created_at``), or None."""
    return conn.execute(select(s.reports).where(s.reports.c.instance_id == instance_id)
                        .order_by(s.reports.c.id.desc()).limit(1)).first()


def latest_markdown(engine, instance_id: int) -> str | None:
    """The Markdown of the instance's newest report, or None before the first aggregation
    (``engine``: a :class:`planflow.Engine`; for flows, which never touch tables)."""
    with engine.db.connect() as conn:
        report = latest_report(conn, instance_id)
    return report.markdown if report is not None else None
