"""Sở Nội vụ's aggregate report: written in Markdown from aggregation's data, recorded,
and read back — the one place that knows the ``reports`` table.

Each aggregation makes a new round (a report sent back by Ban Dân vận Tỉnh ủy is made
again); readers want the latest one: the letters that carry its figures, the operators'
artifact, ``simulate``'s ``report.md``.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from pathlib import Path

import jinja2
from sqlalchemy import func, select

from planflow import store as s
from planflow import audit
from planflow.deadlines import cycle_start
from planflow.notifications.template_cache import compiled_templates
from planflow.notifications.vn_format import MISSING, short_datetime, vn_date, vn_number
from planflow.registry_sources import PROVINCE_WORD
from planflow.status_words import report_status
from planflow.units import in_collection

REPORT_TEMPLATE = "aggregate-report.md.j2"
PACKAGE_TEMPLATES = Path(__file__).parent / "templates"


@lru_cache(maxsize=64)
def _environment(template_dir) -> jinja2.Environment:
    """The report's templates: the plan's ``templates:`` folder first (its own
    ``aggregate-report.md.j2`` wins), then planflow's. One per folder, shared by every plan
    (compiled once): the plan's time zone reaches the filters through the render's
    ``report_tz``."""
    search = [str(template_dir)] if template_dir is not None else []
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([*search, str(PACKAGE_TEMPLATES)], encoding="utf-8"),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True, autoescape=False,
        bytecode_cache=compiled_templates("report"))
    env.filters["score"] = lambda v: vn_number(v, digits=None)
    env.filters["when"] = jinja2.pass_context(lambda ctx, v: moment(v, ctx["report_tz"]))
    env.filters["status_vi"] = report_status
    env.filters["day"] = lambda v: dt.date.fromisoformat(v).strftime("%d/%m/%Y") if v else "—"
    return env


def render_markdown(plan, data: dict, comment: str | None = None) -> str:
    """The report of ``aggregation.build``'s data; ``comment``: the reviewers', when they sent
    the previous round back. Its maker is ``data["maker"]`` (the body that aggregated: a
    district for its own communes), else the plan's aggregator."""
    tz = plan.calendar.tz
    as_of = dt.datetime.fromisoformat(data["as_of"]).astimezone(tz)
    return _environment(plan.template_dir).get_template(REPORT_TEMPLATE).render(
        plan=plan.definition, doc=plan.definition.document, data=data, comment=comment,
        day=vn_date(as_of.date(), pad_month=True), registry=plan.registry, report_tz=tz,
        bodies=report_bodies(plan, data.get("maker"), as_of), words=plan_words(plan, as_of),
        subject=data.get("subject") or report_subject(plan), reference=plan_reference(plan))


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


PARTY_WORD = {"tinh": "Tỉnh ủy", "thanh-pho": "Thành ủy"}  # a root's kind -> its party committee


def issuer_unit(plan):
    """The body that issues the plan: the registry's root unit (``root.unit``); a registry
    written without a ``root`` names it by the group ``issuer``. None when neither does."""
    reg = plan.registry
    if reg.root is not None and reg.get(reg.root.unit) is not None:
        return reg.get(reg.root.unit)
    return (reg.group("issuer") or [None])[0]


def aggregator(plan, process_id: str | None = None, scope_unit: str | None = None):
    """Who aggregates (and so makes the report, coordinates and chases): the lane of the
    process's serviceTask ``handler: aggregate`` (the main process unless ``process_id``;
    lane ``scope``: ``scope_unit``, e.g. a district for its communes); else the issuer."""
    process = plan.definition.process(process_id) if process_id else plan.definition.main
    for e in process.elements:
        if e.type == "serviceTask" and e.handler == "aggregate" and e.lane:
            unit = plan.registry.get(scope_unit if e.lane == "scope" else e.lane)
            if unit is not None:
                return unit
    return issuer_unit(plan)


def _units_of(plan, elements, as_of) -> list:
    """The units the elements name (``for_each``, else ``to``, else their lane), each once."""
    day = as_of or cycle_start(plan.definition)
    out: dict[str, object] = {}
    for e in elements:
        if e.for_each or e.to:
            found = in_collection(plan, e.for_each or e.to, None, day)
        else:
            found = [plan.registry.get(e.lane)] if e.lane and e.lane in plan.registry else []
        out.update((u.code, u) for u in found if u.code not in out)
    return list(out.values())


def review_steps(plan) -> list:
    """The plan's review steps: user tasks whose form decides (``Form.decides``), main process first."""
    return [e for p in [plan.definition.main, *plan.definition.subprocesses] for e in p.elements
            if e.type == "userTask" and e.form and plan.forms[e.form].decides]


def reviewers(plan, as_of: dt.datetime | None = None) -> list:
    """Who reviews the report: the units of the review steps (their ``for_each``)."""
    return _units_of(plan, review_steps(plan), as_of)


def report_recipients(plan, as_of: dt.datetime | None = None) -> list:
    """Whom the report goes up to: the ``to:`` of the main process's report-upward sendTasks."""
    return _units_of(plan, [e for e in plan.definition.main.elements
                            if e.type == "sendTask" and e.template == "report-upward" and e.to], as_of)


def plan_words(plan, as_of: dt.datetime | None = None) -> dict:
    """Every word a reader sees that depends on the plan, computed once: the province-level
    words of the registry's root (a ``tinh``: "UBND tỉnh", "Tỉnh ủy"; a ``thanh-pho``:
    "UBND thành phố", "Thành ủy"; a registry without ``root``: a province's), its name, the
    issuer, who aggregates, who reviews, whom the report goes up to (names, as valid on the
    day of ``as_of``, default the cycle's start) and the plan's subject (its trích yếu)."""
    day = (as_of or cycle_start(plan.definition)).astimezone(plan.calendar.tz).date()
    key = ("plan_words", day)
    if key in plan.memo:
        return plan.memo[key]
    reg, doc = plan.registry, plan.definition.document
    kind = reg.root.kind if reg.root is not None else "tinh"
    province = reg.root.name if reg.root is not None else None
    party = reg.get(reg.root.party) if reg.root is not None and reg.root.party else None
    issuer, coordinator = issuer_unit(plan), aggregator(plan)
    words = {
        "province_kind": kind, "level": PROVINCE_WORD[kind], "ubnd": f"UBND {PROVINCE_WORD[kind]}",
        "party": PARTY_WORD[kind], "province": province,
        "party_body": party.name if party else " ".join(w for w in (PARTY_WORD[kind], province) if w),
        "issuer": issuer.name if issuer else doc.issuer,
        "coordinator": coordinator.name if coordinator else doc.issuer,
        "reviewers": [u.name for u in reviewers(plan, as_of)],
        "report_to": [u.name for u in report_recipients(plan, as_of)],
        "subject": doc.title,
    }
    plan.memo[key] = words
    return words


def report_bodies(plan, maker_code: str | None = None, as_of: dt.datetime | None = None) -> dict:
    """Who makes the report, whom it goes to and who reviews it: the heading's bodies, the
    ký hiệu, the signer's title, Nơi nhận. The maker is the body that aggregated
    (``maker_code``: a district for its communes), by default the plan's aggregator: its
    report goes up to the report-upward letter's addressees and is reviewed; a district's
    goes to the plan's issuer through the aggregator, under its own parent's heading."""
    reg, doc = plan.registry, plan.definition.document
    words = plan_words(plan, as_of)
    coordinator = aggregator(plan)
    maker = reg.get(maker_code) if maker_code else coordinator
    name = maker.name if maker else doc.issuer
    head = maker.head if maker and maker.head else ""
    title = head[: -len(name)].strip() if head.endswith(name) else "Thủ trưởng cơ quan"
    own = maker is None or coordinator is None or maker.code == coordinator.code
    parent = reg.get(maker.parent) if maker is not None and maker.parent else None
    return {
        "issuer": words["issuer"],
        "issuer_heading": doc.issuer.upper() if own or parent is None else parent.name.upper(),
        "maker": name, "maker_heading": name.upper(), "symbol": f"BC-{_initials(name)}",
        "signer_title": title.upper(),
        "report_to": words["report_to"] if own else [words["coordinator"]],
        "reviewers": words["reviewers"] if own else [],
    }


def plan_reference(plan) -> str:
    """The plan as a document is cited: "Kế hoạch số …/KH-UBND ngày 25/3/2022 của UBND tỉnh
    Hải Dương" (its kind, số and ký hiệu, date when known, issuer from the registry)."""
    doc = plan.definition.document
    number = (doc.number or "").strip()
    number = number if "/" in number else f"{number or '…'}/KH-UBND"
    issued = f" ngày {doc.issued_on.strftime('%d/%m/%Y')}" if doc.issued_on else ""
    issuer = issuer_unit(plan)
    return f"{doc.kind.capitalize()} số {number}{issued} của {issuer.name if issuer else doc.issuer}"


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


def results_table(data: dict) -> list[dict]:
    """The results a letter carries (publication, report upward, review request): every unit
    the report rates, as {name, score, classification}: sở, districts, then the communes with
    no district between them and the province."""
    return [{"name": r["name"], "score": r["score"], "classification": r["classification"]}
            for r in [*data["departments"], *data["districts"],
                      *(c for c in data["communes"] if not c.get("district"))]]


def letter_results(db, report_id: int | None, cache: dict | None = None) -> list[dict]:
    """``results_table`` of the report a letter's row names (``report_id``; None: no report
    yet, no results), read when the letter is rendered; ``cache`` (report id -> results) lets
    one delivery run read a report once."""
    if report_id is None:
        return []
    if cache is not None and report_id in cache:
        return cache[report_id]
    if db is None:
        raise ValueError(f"a letter carrying report {report_id}'s results is rendered with its store")
    with db.connect() as conn:
        results = results_table(conn.scalar(select(s.reports.c.data).where(s.reports.c.id == report_id)))
    if cache is not None:
        cache[report_id] = results
    return results


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


def reviews_of(engine, instance_id: int) -> list[dict]:
    """Every review decision of the instance's tree (``reviews``), read through the engine (for
    the portal, which never touches tables)."""
    with engine.db.connect() as conn:
        return reviews(conn, engine.plan, s.tree_ids(conn, instance_id))


def review_elements(plan) -> dict[str, object]:
    """The review steps of the plan (user tasks whose form decides, ``Form.decides``), by id: their form."""
    return {e.id: plan.forms[e.form] for e in review_steps(plan)}


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
    parts = [f"{label}: " + (f"**{answer}**" if choice else "không có" if answer == MISSING else f"“{_typed(answer)}”")
             for label, answer, choice in d["answers"]]
    return f"- **Lần {d['round']}** — {d['by']}, {short_datetime(at)} ({at.isoformat()[-6:]}). " + \
        "".join(f"{p.replace(chr(10), ' ')}. " for p in parts).rstrip()


def _typed(text: str) -> str:
    """What a reviewer typed, as Markdown text: no HTML a renderer would take as markup (the
    report is shown in the Prefect UI and the portal)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def review_heading(plan, form) -> str:
    """The heading of the reviewers' section: the review form's title ("Ý kiến thẩm định"; a
    body named in it after "của" is left out) with the reviewing body the plan names ("… của Ban
    Dân vận Tỉnh ủy", "… của Ban Tuyên giáo và Dân vận Thành ủy"), upper-cased."""
    title = form.title.partition(" của ")[0]
    names = plan_words(plan)["reviewers"]
    return (f"{title} của {', '.join(names)}" if names else form.title).upper()


def review_markdown(plan, decisions: list[dict], round_: int) -> str:
    """The reviewers' decisions as a section after the report: a line for every round, and
    a line when the latest round still waits for one. "" when the plan has no review."""
    forms = list(review_elements(plan).values())
    if not forms:
        return ""
    lines = ["", "---", "", f"## {review_heading(plan, forms[0])}", ""]
    lines += [decision_line(d, plan.calendar.tz) for d in decisions]
    reviewers = ", ".join(plan_words(plan)["reviewers"]) or "cơ quan thẩm định"
    if round_ > max((d["round"] for d in decisions), default=0):
        lines += ["", f"*Báo cáo lần {round_} đang chờ ý kiến thẩm định của {reviewers}.*"]
    return "\n".join(lines) + "\n"
