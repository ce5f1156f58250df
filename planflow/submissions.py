"""Submissions: what a unit sends to its open user task, checked, claimed and recorded.

A batch is one transaction. It is checked whole first (the unit, its open task, the form's
criteria or fields); any refusal raises ``SubmissionError`` naming every unit at fault and
nothing is written. Sending the same submission again (same unit, time and answers) is a
no-op. Each accepted submission then *claims* its work item (``open`` -> ``submitted``),
every item of the batch in one ``UPDATE ... RETURNING``: the first submission of an item in
the batch wins it, and a second worker that lost the race to the same item finds it claimed
and records nothing. A submission after the due moment is recorded and marked late; the
ladder of reminders stops either way. When every unit of a task has answered, the task
completes (``tokens.settle``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from operator import itemgetter
from typing import NamedTuple

from sqlalchemy import select, update

from planflow import audit, bulk_rows, corrections, letters, outbox, tokens
from planflow import store as s
from planflow.model import Element
from planflow.scores import ScoreError, score_payload  # noqa: F401 - ScoreError: the portal's, through here


class SubmissionError(ValueError):
    """One or more submissions were refused; nothing was recorded."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class Submission:
    unit: str
    submitted_at: dt.datetime
    payload: dict
    element: str | None = None  # which user task; default: the unit's only open one
    actor: str = "unit"
    # a paper report entered by an operator (the actor): the document's number and date, and why
    document_number: str | None = None
    document_date: dt.date | None = None
    entry_reason: str | None = None
    # a report sent through the unit's personal link: its receipt ({number, file}), sent back
    # to the unit as a letter queued in the same transaction as the report
    receipt: dict | None = None

    def paper(self) -> dict:
        """The paper report's columns of the submissions row (None for a report its unit sent)."""
        on_paper = self.document_number is not None
        return {"document_number": self.document_number, "document_date": self.document_date,
                "entered_by": self.actor if on_paper else None, "entry_reason": self.entry_reason}


class _Known(NamedTuple):
    """What the store holds for the batch's units: their work items (by unit, in id order),
    earlier submissions to items no longer open, and the process of each instance."""
    items: dict[str, list]
    earlier: dict[int, object]
    process_of: dict[int, str]
    waiting: set[int]  # tokens of answered items still waiting on other units (a correction's condition)
    elements: dict  # (instance, element id) -> the element, looked up once per batch

    def element(self, plan, w) -> Element:
        """The element (a user task) of the work item ``w``."""
        key = (w.instance_id, w.element_id)
        found = self.elements.get(key)
        if found is None:
            found = self.elements[key] = plan.definition.process(self.process_of[w.instance_id]).element(w.element_id)
        return found


_SUBMISSION_COLUMNS = ("work_item_id", "unit_code", "submitted_at", "recorded_at", "payload", "total",
                       "document_number", "document_date", "entered_by", "entry_reason")
_SUBMISSION_VALUES = itemgetter(*_SUBMISSION_COLUMNS)  # a row of _Accepted.row, in that order


class _Accepted(NamedTuple):
    item: object  # the work item row
    submission: Submission
    late: bool
    element: Element
    row: dict  # for the submissions table
    correction: bool = False  # a corrected answer to an item answered before (``corrections``)


def open_work(db, root_id: int | None = None) -> list:
    """Open work items: (id, unit_code, element_id, opened_at, due_at), in id order."""
    with db.connect() as conn:
        q = select(s.work_items.c.id, s.work_items.c.unit_code, s.work_items.c.element_id,
                   s.work_items.c.opened_at, s.work_items.c.due_at).where(s.work_items.c.status == "open")
        if root_id is None:
            return conn.execute(q.order_by(s.work_items.c.id)).all()
        return conn.execute(q.where(s.work_items.c.instance_id.in_(s.IN_TREE)).order_by(s.work_items.c.id),
                            {"root_id": root_id}).all()


class UnitItem(NamedTuple):
    """A unit's work item of a task (one round of it) and what it sent, if it did: the item's
    status (open, submitted, missing), its opening and due moments, the report's time,
    answers, total and lateness (None, {}, None, None before it is sent), and whether the
    task still waits on units (a corrected answer may then be sent, where the task takes one)."""
    work_item_id: int
    status: str
    opened_at: dt.datetime
    due_at: dt.datetime
    submitted_at: dt.datetime | None
    payload: dict
    total: float | None
    late: bool | None
    task_waiting: bool  # the task still waits on units (it has not completed)


def unit_items(db, root_id: int, unit_code: str, element_id: str) -> list[UnitItem]:
    """The work items of ``unit_code`` for the task ``element_id`` in the plan instance
    ``root_id`` (its tree), with what it sent to each, oldest first (a task asked again after
    a return is a new round)."""
    w, sub = s.work_items.c, s.submissions.c
    with db.connect() as conn:
        rows = conn.execute(
            select(w.id, w.status, w.opened_at, w.due_at, sub.submitted_at, sub.payload, sub.total, w.late,
                   s.tokens.c.status.label("token_status"))
            .join(s.tokens, s.tokens.c.id == w.token_id)
            .outerjoin(s.submissions, sub.work_item_id == w.id)
            .where(w.instance_id.in_(s.tree_ids(conn, root_id)), w.unit_code == unit_code,
                   w.element_id == element_id).order_by(w.id)).all()
    return [UnitItem(r.id, r.status, r.opened_at, r.due_at, r.submitted_at, r.payload or {}, r.total, r.late,
                     r.token_status == "waiting") for r in rows]


def submit(db, plan, batch: list[Submission], as_of: dt.datetime, root_id: int | None = None) -> int:
    """Record a batch of submissions in one transaction; return how many were new."""
    with db.begin() as conn:
        known = _known(conn, {b.unit for b in batch}, root_id, _takes_corrections(plan))
        accepted, problems = [], []
        for sub in batch:
            entry = _check(plan, known, sub, as_of, problems)
            if entry is not None:
                accepted.append(entry)
        if problems:
            raise SubmissionError(problems)
        won = _claim(conn, [a for a in accepted if not a.correction])
        fixed = corrections.claim(conn, [a for a in accepted if a.correction])
        if won:
            _record(conn, plan, won, as_of)
        if fixed:
            corrections.record(conn, fixed, known.earlier, as_of)
            _keep_outputs(conn, fixed, new_round=False)
            _queue_receipts(conn, plan, fixed, as_of)
        return len(won) + len(fixed)


def _takes_corrections(plan) -> bool:
    return any(e.corrections != "none" for p in [plan.definition.main, *plan.definition.subprocesses]
               for e in p.elements)


def _known(conn, unit_codes: set[str], root_id: int | None, corrected: bool) -> _Known:
    q = select(s.work_items).where(s.work_items.c.unit_code.in_(sorted(unit_codes)))
    if root_id is not None:  # the tree as a subquery: a district plan's 600 instances are not 600 parameters
        q = q.where(s.work_items.c.instance_id.in_(s.IN_TREE))
    items: dict[str, list] = {}
    for row in conn.execute(q.order_by(s.work_items.c.id), {"root_id": root_id} if root_id is not None else {}):
        items.setdefault(row.unit_code, []).append(row)
    # earlier submissions matter only for work items no longer open (a re-sent answer)
    closed_ids = [r.id for rows in items.values() for r in rows if r.status != "open"]
    earlier = {r.work_item_id: r for i in range(0, len(closed_ids), 1000) for r in conn.execute(select(
        s.submissions.c.work_item_id, s.submissions.c.submitted_at, s.submissions.c.payload, s.submissions.c.total)
        .where(s.submissions.c.work_item_id.in_(closed_ids[i:i + 1000])))}
    instance_ids = sorted({r.instance_id for rows in items.values() for r in rows})
    process_of = dict(conn.execute(select(s.instances.c.id, s.instances.c.process_id)
                                   .where(s.instances.c.id.in_(instance_ids))).all())
    waiting = corrections.waiting_tokens(conn, sorted({r.token_id for rows in items.values() for r in rows
                                                       if r.status == "submitted"})) if corrected else set()
    return _Known(items, earlier, process_of, waiting, {})


def _check(plan, known: _Known, sub: Submission, as_of, problems: list[str]) -> _Accepted | None:
    """The submission, ready to record; None when it is refused (the reason added to
    ``problems``) or when it was recorded before as it is."""
    reg = plan.registry
    unit = reg.get(sub.unit)
    if unit is None:
        problems.append(f"unit '{sub.unit}': not in registry '{reg.id}'")
        return None
    if sub.submitted_at.tzinfo is None:
        problems.append(f"unit '{sub.unit}': submitted_at {sub.submitted_at} has no time zone")
        return None
    candidates = [w for w in known.items.get(sub.unit, []) if sub.element is None or w.element_id == sub.element]
    open_items = [w for w in candidates if w.status == "open"]
    if not open_items:
        problem = _no_open_item(known, unit, sub, candidates)
        if problem and candidates and candidates[-1].status == "submitted":
            return _correction(plan, known, unit, sub, candidates[-1], problem, problems)
        if problem:
            problems.append(problem)
        return None
    if len(open_items) > 1:
        problems.append(f"unit '{unit.code}': several open tasks "
                        f"({', '.join(w.element_id for w in open_items)}); name the element")
        return None
    w = open_items[0]
    element = known.element(plan, w)
    late = sub.submitted_at.replace(microsecond=0) > w.due_at
    try:
        total = score_payload(plan.forms[element.form], sub.payload, late)
    except ValueError as exc:
        problems.append(f"unit '{unit.code}' ({unit.name}): {exc}")
        return None
    return _Accepted(w, sub, late, element, dict(work_item_id=w.id, unit_code=unit.code,
                                                  submitted_at=sub.submitted_at, recorded_at=as_of,
                                                  payload=sub.payload, total=total, **sub.paper()))


def _correction(plan, known: _Known, unit, sub: Submission, w, problem: str, problems: list[str]):
    """A corrected answer to the answered item ``w``, when its task takes corrections now;
    else the refusal (``problem`` when the task takes none)."""
    element = known.element(plan, w)
    if element.corrections == "none":
        problems.append(problem)
        return None
    why = corrections.allowed(element, w, sub.submitted_at, known.waiting)
    try:
        total = score_payload(plan.forms[element.form], sub.payload, False)
    except ValueError as exc:
        why = why or str(exc)
    if why:
        problems.append(f"unit '{unit.code}' ({unit.name}): correction refused — {why}")
        return None
    return _Accepted(w, sub, False, element, dict(payload=sub.payload, total=total), correction=True)


def _no_open_item(known: _Known, unit, sub: Submission, candidates: list) -> str | None:
    """Why a unit with no open task cannot submit; None when it re-sends what it sent."""
    resent = [w for w in candidates if w.id in known.earlier
              and known.earlier[w.id].submitted_at == sub.submitted_at.astimezone(dt.timezone.utc)
              and known.earlier[w.id].payload == sub.payload]
    if resent:
        return None
    closed = [w for w in candidates if w.status == "missing"]
    if closed:
        return (f"unit '{unit.code}' ({unit.name}): submission after close — "
                f"'{closed[-1].element_id}' was closed as not reported")
    if candidates:
        return (f"unit '{unit.code}' ({unit.name}): '{candidates[-1].element_id}' "
                "was already submitted with other answers")
    return f"unit '{unit.code}' ({unit.name}): has no open task to submit to"


def _claim(conn, accepted: list[_Accepted]) -> list[_Accepted]:
    """Claim each work item (open -> submitted) before writing anything else, every item of
    the batch at once, with its time and lateness, its ladder stopped; the first submission
    of an item in the batch wins it."""
    first: dict[int, _Accepted] = {}
    for a in accepted:
        first.setdefault(a.item.id, a)
    claimed = bulk_rows.claim_rows(conn, s.work_items, "id", ("open", "submitted"),
                                   ("submitted_at", "late", "next_notice_at"),
                                   [(a.item.id, a.submission.submitted_at, a.late, None) for a in first.values()])
    return [a for a in first.values() if a.item.id in claimed]


def _record(conn, plan, won: list[_Accepted], as_of) -> None:
    """The submissions, the answers a task keeps in its instance (``output``), the audit
    rows; then the tasks every unit has answered complete. Each item of ``won`` was claimed open ->
    submitted in this transaction, and an open item has no submission (only a claim writes one): no
    row can be refused, so they go as plain rows (PostgreSQL: ``COPY``)."""
    bulk_rows.insert_rows(conn, s.submissions, _SUBMISSION_COLUMNS, map(_SUBMISSION_VALUES, (a.row for a in won)))
    _keep_outputs(conn, won, new_round=True)
    details: dict[tuple, dict] = {}  # submissions at one moment share their audit detail (encoded once)
    audit.record_all(conn, [audit.entry(
        as_of, a.item.instance_id, a.submission.actor, "task.submitted", a.item.element_id, a.submission.unit,
        detail=_detail(details, a)) for a in won])
    _queue_receipts(conn, plan, won, as_of)
    tokens.settle(conn, plan, {a.item.token_id for a in won}, as_of)


def _keep_outputs(conn, accepted: list[_Accepted], *, new_round: bool) -> None:
    """A single-unit task's answer in its instance's variable (``output``), with its round
    (a corrected answer keeps the round of the one it replaces)."""
    for a in accepted:
        if a.element.output:
            inst = conn.execute(select(s.instances).where(s.instances.c.id == a.item.instance_id)).one()
            rounds = (inst.variables or {}).get(a.element.output, {}).get("round", 0) + (1 if new_round else 0)
            variables = {**(inst.variables or {}), a.element.output: {**a.submission.payload, "round": max(rounds, 1)}}
            conn.execute(update(s.instances).where(s.instances.c.id == inst.id).values(variables=variables))


def _queue_receipts(conn, plan, accepted: list[_Accepted], as_of) -> None:
    """The receipt letters of the answers sent through a unit's personal link."""
    outbox.queue(conn, [row for a in accepted if a.submission.receipt is not None for row in letters.rows_for_receipt(
        plan, a.item, a.element, plan.registry.get(a.submission.unit), received_at=a.submission.submitted_at,
        late=a.late, total=a.row["total"], receipt=a.submission.receipt, as_of=as_of)], as_of)


def _detail(details: dict[tuple, dict], a: _Accepted) -> dict:
    """The audit detail of an accepted submission; equal details are one dict."""
    sub = a.submission
    at = sub.submitted_at.isoformat()
    key = (at, a.late, sub.document_number, sub.document_date, sub.actor, sub.entry_reason)  # all it holds
    detail = details.get(key)
    if detail is None:
        detail = details[key] = {"submitted_at": at, "late": a.late, **_paper_detail(sub)}
    return detail


def _paper_detail(sub: Submission) -> dict:
    if sub.document_number is None:
        return {}
    return {**sub.paper(), "document_date": sub.document_date.isoformat() if sub.document_date else None}
