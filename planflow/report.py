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
    env.filters["when"] = lambda v: short_datetime(v, tz)
    env.filters["status_vi"] = report_status
    env.filters["day"] = lambda v: dt.date.fromisoformat(v).strftime("%d/%m/%Y") if v else "—"
    as_of = dt.datetime.fromisoformat(data["as_of"]).astimezone(tz)
    return env.get_template("aggregate-report.md.j2").render(
        plan=plan.definition, doc=plan.definition.document, data=data, comment=comment,
        day=vn_date(as_of.date(), pad_month=True), registry=plan.registry)


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
