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
from planflow import audit
from planflow.notifications.vn_format import MISSING, short_datetime, vn_date, vn_number
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
    (``engine``: a :class:`planflow.Engine`; for flows, which never touch tables); followed
    by the reviewers' decisions of every round (``review_markdown``), read when asked: a
    decision recorded after the report was made shows in it."""
    with engine.db.connect() as conn:
        report = latest_report(conn, instance_id)
        decisions = reviews(conn, engine.plan, s.tree_ids(conn, instance_id)) if report is not None else []
    if report is None:
        return None
    section = review_markdown(engine.plan, decisions, report.data.get("round", 1))
    return report.markdown.rstrip("\n") + "\n" + section if section else report.markdown


def review_elements(plan) -> dict[str, object]:
    """The review steps of the plan (user tasks whose form decides, ``Form.decides``), by id: their form."""
    return {e.id: plan.forms[e.form] for p in [plan.definition.main, *plan.definition.subprocesses]
            for e in p.elements if e.type == "userTask" and e.form and plan.forms[e.form].decides}


def reviews(conn, plan, tree: list[int]) -> list[dict]:
    """Every review decision recorded in these instances, in order: its round, who decided
    (the actor of its "task.submitted" audit row; the reviewing unit's name when that is the
    default "unit"), when (``submitted_at``), and the form's answers in the form's words."""
    forms = review_elements(plan)
    where = (s.work_items.c.instance_id.in_(tree), s.work_items.c.element_id.in_(list(forms)))
    rows = conn.execute(
        select(s.work_items.c.instance_id, s.work_items.c.element_id, s.work_items.c.unit_code,
               s.submissions.c.submitted_at, s.submissions.c.payload)
        .join(s.submissions, s.submissions.c.work_item_id == s.work_items.c.id)
        .where(*where).order_by(s.work_items.c.id)).all()
    actors: dict[tuple, list[str]] = {}
    for a in audit.read(conn, tree, ("task.submitted",)):
        if a.element_id in forms:
            actors.setdefault((a.instance_id, a.element_id, a.unit_code), []).append(a.actor)
    out, seen = [], {}
    for r in rows:  # the n-th decision of a reviewer is its n-th "task.submitted"
        key = (r.instance_id, r.element_id, r.unit_code)
        n = seen[key] = seen.get(key, 0) + 1
        named = actors.get(key, [])
        out.append({"round": n, "unit": r.unit_code, "at": r.submitted_at,
                    "by": reviewer_name(plan, r.unit_code, named[n - 1] if n <= len(named) else None),
                    "answers": form_answers(forms[r.element_id], r.payload or {})})
    return out


def reviewer_name(plan, unit_code: str, actor: str | None) -> str:
    """Who decided: the person the operator named, with their body ("Nguyễn Văn B (Ban Dân
    vận Tỉnh ủy)"; an actor written "unit-code:person" names its unit's body); the body
    alone when the decision was recorded under the default actor (a simulation)."""
    unit = plan.registry.get(unit_code)
    body = unit.name if unit is not None else unit_code
    if not actor or actor in ("unit", audit.ENGINE, unit_code) or actor == body:
        return body
    prefix, _, person = actor.partition(":")
    named = plan.registry.get(prefix) if person else None
    if named is not None:
        actor, body = person.strip(), named.name
    return actor if body in actor else f"{actor} ({body})"


def form_answers(form, payload: dict) -> list[tuple[str, str, bool]]:
    """(label, answer, is a choice) of each field of a "fields" form: a choice by its label
    in the form."""
    out = []
    for f in form.fields:
        value = payload.get(f.name)
        if f.type == "choice":
            out.append((f.label or "Kết luận", (f.choices or {}).get(value, value or MISSING), True))
        else:
            out.append((f.label or f.name, str(value).strip() if value else MISSING, False))
    return out


def decision_line(d: dict, tz) -> str:
    """"- **Lần 1** — Ban Dân vận Tỉnh ủy, 20/12/2022 09:00 (+07:00). Kết luận: **Trả lại, đề
    nghị bổ sung**. Ý kiến: “…”." — a line that wraps (a table cell would be cut off)."""
    at = d["at"].astimezone(tz)
    parts = [f"{label}: " + (f"**{answer}**" if choice else "không có" if answer == MISSING else f"“{answer}”")
             for label, answer, choice in d["answers"]]
    return f"- **Lần {d['round']}** — {d['by']}, {short_datetime(at)} ({at.isoformat()[-6:]}). " + \
        "".join(f"{p.replace(chr(10), ' ')}. " for p in parts).rstrip()


def review_markdown(plan, decisions: list[dict], round_: int) -> str:
    """The reviewers' decisions as a section after the report: a line for every round, and
    a line when the latest round still waits for one. "" when the plan has no review."""
    forms = list(review_elements(plan).values())
    if not forms:
        return ""
    lines = ["", "---", "", f"## {forms[0].title.upper()}", ""]
    lines += [decision_line(d, plan.calendar.tz) for d in decisions]
    reviewers = ", ".join(u.name for u in plan.registry.group("reviewers")) or "cơ quan thẩm định"
    if round_ > max((d["round"] for d in decisions), default=0):
        lines += ["", f"*Báo cáo lần {round_} đang chờ ý kiến thẩm định của {reviewers}.*"]
    return "\n".join(lines) + "\n"
