"""What a letter says: the template context of each kind, built from the store.

Every letter is an outbox row first (``outbox.queue``); this module builds the rows'
``context``: what is particular to each letter (``outbox.render_context`` adds the plan,
the same for all, and the results table of the report a row names, when it is delivered). The contract of each kind's context is documented
in ``notifications/render.py``; this module only gathers the facts. Templates decide nothing.

Who signs a letter, and where a unit's results go, come from the definition and its
registry, never from the templates:

* a sendTask's letter is signed by its lane's body (``scope``: the sub-process's unit, e.g.
  the district that passes the plan on to its communes);
* a unit reports to the unit its sub-process runs for (a commune to its district), or, when
  it is that unit or outside any sub-process, to the plan's issuer through its coordinator
  ("UBND tỉnh (qua Sở Nội vụ)"): ``reporting_line``;
* the reminders and escalations about a unit are signed by the body waiting for its results
  (``chaser``): the district for its communes, the coordinator for the province's units;
  never by the late unit itself, and a letter to the chasing body itself comes from the
  coordinator (or, when that is the addressee too, is marked ``internal``).

* ``rows_for_send``: a sendTask's letters (dissemination, review request and result, …);
* ``rows_for_chases``: the letters of the reminders and escalations a sweep recorded
  (``escalation.sweep``): a reminder or an overdue notice to the unit, and one letter per
  higher body and signer listing every unit that reached an escalation level;
* ``rows_for_incident``: an incident, to the coordinator;
* ``rows_for_link``: a unit's new personal link, after an operator reissued it;
* ``rows_for_receipt``: the receipt of a report a unit sent through its link;
* ``criteria_tasks``: each unit's self-evaluation task, whose personal link its letters carry;
* ``sender_address``: the From of a letter, the body that signs it.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from planflow import store as s
from planflow import units
from planflow.deadlines import plan_deadline, resolve_due
from planflow.expressions import review_decision
from planflow.report import aggregator, issuer_unit, latest_report, plan_words, report_subject

UNIT_LANES = ("unit", "scope")  # lanes whose work each unit of a for_each does itself


def unit_context(unit) -> dict:
    return {"code": unit.code, "name": unit.name, "head": unit.head, "email": unit.email}


def plan_context(plan) -> dict:
    """The plan as every letter sees it (``plan``): the document, and ``words``, the words
    that depend on the plan (``report.plan_words``: "UBND tỉnh" or "UBND thành phố", …)."""
    doc = plan.definition.document
    recipients = plan.registry.group(doc.recipients)
    return {
        "kind": doc.kind, "title": doc.title, "number": doc.number, "issued_on": doc.issued_on,
        "issuer": doc.issuer, "place": doc.place, "basis": doc.basis, "tasks": list(doc.tasks),
        "signer": doc.signer.model_dump(), "recipients": [u.name for u in recipients],
        "words": plan_words(plan),
    }


def sender_address(plan, context: dict, mailbox: str | None = None) -> str | None:
    """The From of a letter: the name of the body that signs it (``context['sender']``) and
    its address (the registry's, so a corrected address is used on retry; ``mailbox`` when a
    deployment sends everything from one mailbox). None when the signer has no address."""
    sender = context.get("sender") or {}
    unit = plan.registry.get(sender.get("code") or "")
    address = mailbox or (unit.email if unit is not None and unit.email else sender.get("email"))
    if not address:
        return None
    name = str(sender.get("name") or "").replace("\\", "\\\\").replace('"', '\\"')
    return f'"{name}" <{address}>' if name else address


def coordinator(plan):
    """The body that coordinates the plan: the one that aggregates (``report.aggregator``:
    the lane of the main process's ``handler: aggregate`` step), else its issuer."""
    return aggregator(plan)


def reporting_line(plan, unit_code: str | None, scope_unit: str | None) -> dict:
    """Where a unit's results go: ``{code, name, via}`` (``via``: the body they go through)."""
    reg = plan.registry
    if scope_unit and unit_code != scope_unit and reg.get(scope_unit) is not None:
        body = reg.get(scope_unit)
        return {"code": body.code, "name": body.name, "via": None}
    issuer, coord = issuer_unit(plan), coordinator(plan)
    if issuer is not None and coord is not None and issuer.code != coord.code:
        return {"code": issuer.code, "name": issuer.name, "via": coord.name}
    body = coord or issuer
    if body is None:
        return {"code": None, "name": plan.definition.document.issuer, "via": None}
    return {"code": body.code, "name": body.name, "via": None}


def chaser(plan, unit_code: str, scope_unit: str | None):
    """The body that chases a late unit: the one waiting for its results, never the unit."""
    reg = plan.registry
    if scope_unit and unit_code != scope_unit and reg.get(scope_unit) is not None:
        return reg.get(scope_unit)
    for body in (coordinator(plan), issuer_unit(plan)):
        if body is not None and body.code != unit_code:
            return body
    return reg.get(unit_code)


def sender_unit(plan, element, scope_unit: str | None):
    reg = plan.registry
    if element.lane == "scope" and scope_unit:
        return reg.get(scope_unit)
    if element.lane and element.lane in reg:
        return reg.get(element.lane)
    return coordinator(plan)


def _report_facts(conn, root_id: int) -> dict:
    report = latest_report(conn, root_id)
    if report is None:
        return {"round": 0, "counts": {"expected": 0, "on_time": 0, "late": 0, "missing": 0},
                "classes": {}, "report_id": None}
    data = report.data
    counts = {k: data["total"]["counts"][k] for k in ("expected", "on_time", "late", "missing")}
    return {"round": data["round"], "counts": counts, "classes": data["total"]["classes"], "report_id": report.id}


def _unit_tasks(plan, process, scope_unit: str | None, as_of) -> dict[str, list]:
    """Per unit: the tasks a process gives it, as (element, scope unit) in definition order —
    a for_each task of a unit lane, a task in the unit's own lane, and the tasks of a
    sub-process called for the unit (those it does as ``scope``)."""
    out: dict[str, list] = {}
    for e in process.elements:
        if e.type == "callActivity" and e.for_each and e.process:
            sub = plan.definition.process(e.process)
            for u in units.in_collection(plan, e.for_each, scope_unit, as_of):
                for code, tasks in _unit_tasks(plan, sub, u.code, as_of).items():
                    if code == u.code:
                        out.setdefault(code, []).extend(tasks)
        elif e.type == "userTask" and e.for_each and e.lane in UNIT_LANES:
            for u in units.in_collection(plan, e.for_each, scope_unit, as_of):
                out.setdefault(u.code, []).append((e, scope_unit))
        elif e.type.endswith("Task") and e.lane:
            code = scope_unit if e.lane == "scope" else e.lane
            if code:
                out.setdefault(code, []).append((e, scope_unit))
    return out


def _duties(plan, tasks: list, unit_code: str, dues: dict) -> dict:
    """What a dissemination letter asks of its recipient: its tasks' names and, for the task
    it reports by, the due moment and where the report goes (None: nothing to report).
    ``dues``: the due moment of each task, filled as they are met (one letter, many recipients)."""
    names: list[str] = []
    report = None
    for element, scope in tasks:
        if report is None and element.type == "userTask" and element.lane in UNIT_LANES and element.due:
            if element.id not in dues:
                dues[element.id] = resolve_due(plan.calendar, element.due)
            report = {"due": dues[element.id], "submit_to": reporting_line(plan, unit_code, scope)}
        elif element.name and element.name not in names:  # the report itself is said apart
            names.append(element.name)
    return {"duties": names, "report": report}


def _dissemination_extra(plan, element, inst, as_of, recipients) -> dict[str, dict]:
    process = plan.definition.process(inst.process_id)
    tasks = _unit_tasks(plan, process, inst.scope_unit, as_of)
    deadline, dues = plan_deadline(plan), {}
    return {u.code: {"due": deadline, **_duties(plan, tasks.get(u.code, []), u.code, dues)} for u in recipients}


def _report_bodies(plan, as_of) -> dict:
    """The aggregate report's trích yếu, whom it goes to and who reviews it (from the definition)."""
    words = plan_words(plan, as_of)
    return {"report_name": report_subject(plan), "report_to": words["report_to"], "reviewers": words["reviewers"]}


def _review_said(plan, variables: dict) -> dict:
    """What the review decided, for the review-result letter: ``decision`` "return" when the
    answer sends the report back, else "approve" (what the templates test), the choice's label
    as the form words it, the comment (the form's text field) and the round."""
    spec = review_decision(plan)
    if spec is None:
        return {}
    answer = variables.get(spec.variable) or {} if spec.variable else {}
    return {"decision": "return" if spec.returned(answer) else "approve",
            "decision_label": spec.label(answer.get(spec.field)),
            "comment": answer.get(spec.comment) if spec.comment else None,
            "round": answer.get("round", 0)}


def rows_for_send(ctx) -> list[dict]:
    """One outbox row per recipient of a sendTask, keyed for exactly-once delivery."""
    plan, element, inst, conn = ctx.plan, ctx.element, ctx.instance, ctx.conn
    recipients = units.in_collection(plan, element.to, inst.scope_unit, ctx.as_of)
    sender = sender_unit(plan, element, inst.scope_unit)
    base = {
        "sent_at": ctx.as_of,
        "sender": sender_context(plan, sender),
    }
    kind = element.template
    extra: dict = {}
    per_unit: dict[str, dict] = {}
    if kind == "dissemination":
        issuer = issuer_unit(plan)
        extra = {"issued_here": sender is not None and issuer is not None and sender.code == issuer.code}
        per_unit = _dissemination_extra(plan, element, inst, ctx.as_of, recipients)
    elif kind in ("review-request", "publication", "report-upward"):
        facts = _report_facts(conn, s.root_of(conn, inst.id))
        # the results table is read from the report row when the letter is rendered
        # (``outbox.render_context``): every recipient's row names the report, none copies it
        extra = {"round": facts["round"], "counts": facts["counts"], "classes": facts["classes"],
                 "report_id": facts["report_id"], **_report_bodies(plan, ctx.as_of)}
    elif kind == "review-result":
        extra = {**_review_said(plan, inst.variables or {}), **_report_bodies(plan, ctx.as_of)}
    rows = []
    for unit in recipients:
        rows.append({
            "key": f"{inst.id}:{element.id}:{ctx.token.id}:{unit.code}:{kind}:0",
            "instance_id": inst.id, "element_id": element.id, "unit_code": None,
            "recipient": unit.code, "kind": kind, "level": 0,
            "context": {**base, **extra, **per_unit.get(unit.code, {}), "recipient": unit_context(unit)},
        })
    return rows


def rows_for_incident(plan, root_id: int | None, incident: dict, as_of) -> list[dict]:
    """An outbox row to the plan's coordinator for an incident (a failed or crashed run)."""
    return [{
        "key": f"incident:{incident['flow_run']}:{incident['state']}:{u.code}", "instance_id": root_id or 0,
        "element_id": incident["step"], "unit_code": None, "recipient": u.code, "kind": "incident", "level": 0,
        "context": {"recipient": unit_context(u), "sent_at": as_of, "sender": {"name": "planflow"},
                    "incident": incident}} for u in [coordinator(plan)] if u is not None]


def criteria_tasks(plan, as_of) -> dict[str, object]:
    """Per unit code, the user task on a criteria form that asks it (its self-evaluation,
    whose personal link its letters carry): in the main process or in a sub-process called
    for it, the first in definition order; the units in force on the day of ``as_of``."""
    found: dict[str, object] = {}

    def walk(process, scope_unit: str | None, depth: int) -> None:
        for e in process.elements:
            if e.type == "userTask" and e.for_each and e.form in plan.forms and plan.forms[e.form].kind == "criteria":
                for u in units.in_collection(plan, e.for_each, scope_unit, as_of):
                    found.setdefault(u.code, e)
            elif e.type == "callActivity" and e.process and depth < 5:
                scopes = ([u.code for u in units.in_collection(plan, e.for_each, scope_unit, as_of)]
                          if e.for_each else [scope_unit])
                for code in scopes:
                    walk(plan.definition.process(e.process), code, depth + 1)

    walk(plan.definition.main, None, 0)
    return found


def user_task(plan, element_id: str):
    """The user task of that id in the plan's processes, or None."""
    return next((e for p in [plan.definition.main, *plan.definition.subprocesses] for e in p.elements
                 if e.id == element_id and e.type == "userTask" and e.form in plan.forms), None)


def decision_task(plan, send_id: str, unit_code: str, as_of):
    """The reviewer's task a letter asks its recipient to act on: the user task on a deciding
    form (``Form.decides``) that the sending step ``send_id`` leads to, when the recipient is
    one of the units it asks (on the day of ``as_of``); else None."""
    for process in [plan.definition.main, *plan.definition.subprocesses]:
        send = next((e for e in process.elements if e.id == send_id), None)
        for task in (process.element(n) for n in (send.next if send is not None else []) if process.has(n)):
            if task.type == "userTask" and task.form in plan.forms \
                    and plan.forms[task.form].decides and task.for_each \
                    and any(u.code == unit_code for u in units.in_collection(plan, task.for_each, None, as_of)):
                return task
    return None


def task_due(plan, element) -> dt.datetime | None:
    """The due moment a task's definition gives; None when it counts from the task's opening."""
    if not element.due or (isinstance(element.due, dict) and "within_working_days" in element.due):
        return None
    return resolve_due(plan.calendar, element.due)


def sender_context(plan, sender) -> dict:
    """The body that signs a letter, as its template reads it; the plan's issuer when none."""
    return unit_context(sender) if sender else {"name": plan.definition.document.issuer}


def _coordinator_letter(plan, key: str, instance_id: int, element, unit, kind: str, as_of, **context) -> list[dict]:
    """A letter of the plan's coordinator to ``unit`` about its task ``element``, no step's."""
    return [{"key": key, "instance_id": instance_id, "element_id": element.id, "unit_code": unit.code,
             "recipient": unit.code, "kind": kind, "level": 0,
             "context": {"sent_at": as_of, "recipient": unit_context(unit), "unit": unit_context(unit),
                         "sender": sender_context(plan, coordinator(plan)),
                         "task": {"name": element.name or element.id}, **context}}]


def rows_for_link(plan, root_id: int, unit, element, *, generation: int, due, as_of) -> list[dict]:
    """The letter that gives ``unit`` its new personal link once an operator has revoked the
    old ones (``planflow links reissue``), signed by the plan's coordinator; keyed by the
    link's generation. The link itself is made when the letter is delivered, never stored."""
    return _coordinator_letter(plan, f"link:{root_id}:{unit.code}:{generation}", root_id, element, unit, "link",
                               as_of, due=due, generation=generation)


def rows_for_receipt(plan, item, element, unit, *, received_at, late: bool, total, receipt: dict,
                     as_of) -> list[dict]:
    """The letter confirming a report a unit sent through its personal link: its receipt
    number, time of receipt (the server's), total and file; signed by the plan's coordinator,
    keyed by the work item and the time of receipt (a corrected report gets its own receipt)."""
    key = f"receipt:{item.id}:{received_at.astimezone(dt.timezone.utc):%Y%m%dT%H%M%S}"
    return _coordinator_letter(plan, key, item.instance_id, element, unit, "receipt", as_of, due=item.due_at,
                               received_at=received_at, late=late, total=total, receipt=receipt)


def rows_for_chases(plan, recorded: list[tuple], as_of) -> list[dict]:
    """Outbox rows for newly recorded rungs, given as (work item, element, rung): one per
    unit notice (a reminder, an overdue notice), one per grouped letter to a higher body."""
    cal, reg = plan.calendar, plan.registry
    rows: list[dict] = []
    grouped: dict[tuple, list] = {}
    for item, element, rung in recorded:
        unit = reg.get(item.unit_code)
        common = _chase_common(plan, item, element, as_of)
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
            signer = _escalation_signer(plan, item, recipient)
            group_key = (item.instance_id if target == "unit.parent" else None, element.id, rung.level,
                         recipient.code, rung.template, signer.code)
            grouped.setdefault(group_key, []).append((item, unit, common, days_over))
    rows += [_to_higher_body(plan, key, members, as_of) for key, members in grouped.items()]
    return rows


def _escalation_signer(plan, item, recipient):
    """Who signs an escalation about ``item``'s unit to ``recipient``: the chasing body; when
    that is the addressee itself, the plan's coordinator (unless the late unit is it)."""
    body = chaser(plan, item.unit_code, item.scope_unit)
    if body.code == recipient.code:
        coord = coordinator(plan)
        if coord is not None and coord.code != item.unit_code:
            return coord
    return body


def _chase_common(plan, item, element, as_of) -> dict:
    """What every letter of a rung carries: when, from whom, which task, its due moment and
    where the unit's results go."""
    sender = chaser(plan, item.unit_code, item.scope_unit)
    return {"sent_at": as_of, "sender": unit_context(sender), "task": {"name": element.name or element.id},
            "due": item.due_at, "submit_to": reporting_line(plan, item.unit_code, item.scope_unit)}


def _to_unit(item, element, unit, key: str, kind: str, level: int, common: dict, extra: dict) -> dict:
    """A letter to the unit itself (a reminder, an overdue notice)."""
    return {"key": f"{item.id}:{key}", "instance_id": item.instance_id, "element_id": element.id,
            "unit_code": unit.code, "recipient": unit.code, "kind": kind, "level": level,
            "context": {**common, "recipient": unit_context(unit), "unit": unit_context(unit), **extra}}


def _to_higher_body(plan, group_key: tuple, members: list, as_of) -> dict:
    """One escalation letter to a higher body, listing every unit that reached the level."""
    iid, element_id, level, recipient_code, template, signer_code = group_key
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
        "context": {**common, "sender": unit_context(plan.registry.get(signer_code)),
                    "internal": signer_code == recipient_code,
                    "recipient": unit_context(plan.registry.get(recipient_code)), "level": level,
                    "units": listed_units}}
