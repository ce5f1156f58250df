"""The interpreter: BPMN token semantics over the SQL store.

One small handler per element kind (``_ON_ARRIVAL``), in the manner of Prefect's
orchestration rules. Every transition runs in one transaction and claims its token with
a conditional UPDATE, so a replay, a retry or a second worker changes nothing twice.
Time is always passed in (``as_of``); the engine never reads a clock.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Callable, Iterable

from sqlalchemy import and_, func, select, update
from sqlalchemy.engine import Connection, Engine as SqlEngine

from engine import store as s
from engine.expressions import evaluate_condition, parse_collection
from engine.loader import Plan, _resolve_due
from engine.model import Element, Process, Unit
from engine.services import HANDLERS, StepContext

ACTOR = "engine"


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


@dataclass(frozen=True)
class ReadyStep:
    element_id: str
    stage: str
    token_ids: tuple[int, ...]


class Engine:
    def __init__(self, plan: Plan, db: SqlEngine):
        self.plan = plan
        self.db = db

    # --- instances -------------------------------------------------------------------

    def start(self, key: str, as_of: dt.datetime, variables: dict | None = None) -> int:
        """Start the plan's main process once per business ``key``; return its id."""
        with self.db.begin() as conn:
            iid = self._create_instance(conn, key, self.plan.definition.id, None, None, None,
                                        as_of, variables or {})
        return iid

    def instance_id(self, key: str) -> int | None:
        with self.db.connect() as conn:
            return conn.scalar(select(s.instances.c.id).where(s.instances.c.key == key))

    def instance(self, iid: int):
        with self.db.connect() as conn:
            return conn.execute(select(s.instances).where(s.instances.c.id == iid)).one()

    def set_clock(self, iid: int, as_of: dt.datetime) -> None:
        with self.db.begin() as conn:
            conn.execute(update(s.instances).where(s.instances.c.id == iid).values(clock_at=as_of))

    def _create_instance(self, conn, key, process_id, parent_id, parent_token_id, scope_unit,
                         as_of, variables) -> int:
        conn.execute(s.insert_ignore(conn, s.instances).values(
            key=key, definition_id=self.plan.id, definition_digest=self.plan.digest,
            process_id=process_id, parent_id=parent_id, parent_token_id=parent_token_id,
            scope_unit=scope_unit, status="running", started_at=as_of, variables=variables))
        iid = conn.scalar(select(s.instances.c.id).where(s.instances.c.key == key))
        start = self.plan.definition.process(process_id).start
        conn.execute(s.insert_ignore(conn, s.tokens).values(
            key=f"{iid}:{start.id}", instance_id=iid, element_id=start.id, status="active",
            created_at=as_of))
        _audit(conn, as_of, iid, ACTOR, "instance.started", detail={"key": key, "process": process_id})
        return iid

    def tree(self, root_id: int) -> list[int]:
        """The ids of an instance and of every sub-process instance below it."""
        with self.db.connect() as conn:
            return self._tree(conn, root_id)

    def _tree(self, conn, root_id: int) -> list[int]:
        ids, frontier = [root_id], [root_id]
        while frontier:
            frontier = list(conn.scalars(select(s.instances.c.id).where(s.instances.c.parent_id.in_(frontier))))
            ids += frontier
        return ids

    # --- moving tokens ---------------------------------------------------------------

    def advance(self, as_of: dt.datetime, root_id: int | None = None) -> int:
        """Interpret every active token until each waits on units, a flow, a timer or a join."""
        moved = 0
        while True:
            with self.db.connect() as conn:
                q = (select(s.tokens.c.id, s.tokens.c.instance_id, s.tokens.c.element_id)
                     .join(s.instances, s.instances.c.id == s.tokens.c.instance_id)
                     .where(s.tokens.c.status == "active", s.instances.c.definition_id == self.plan.id)
                     .order_by(s.tokens.c.id))
                if root_id is not None:
                    q = q.where(s.tokens.c.instance_id.in_(self._tree(conn, root_id)))
                batch = conn.execute(q).all()
            if not batch:
                return moved
            for token_id, iid, element_id in batch:
                with self.db.begin() as conn:
                    inst = conn.execute(select(s.instances).where(s.instances.c.id == iid)).one()
                    proc = self.plan.definition.process(inst.process_id)
                    element = proc.element(element_id)
                    _ON_ARRIVAL[element.type](self, conn, inst, proc, element, token_id, as_of)
                moved += 1

    def _claim(self, conn, token_id: int, new_status: str, as_of, *, from_status="active") -> bool:
        values = {"status": new_status}
        if new_status in ("completed", "cancelled"):
            values["completed_at"] = as_of
        res = conn.execute(update(s.tokens).where(s.tokens.c.id == token_id,
                                                  s.tokens.c.status == from_status).values(**values))
        return res.rowcount == 1

    def _emit(self, conn, iid: int, key_prefix: str, targets: Iterable[str], as_of) -> None:
        rows = [dict(key=f"{key_prefix}>{t}", instance_id=iid, element_id=t, status="active",
                     created_at=as_of) for t in targets]
        if rows:
            conn.execute(s.insert_ignore(conn, s.tokens), rows)

    def _pass_through(self, conn, inst, proc, element, token_id, as_of, targets=None):
        if self._claim(conn, token_id, "completed", as_of):
            self._emit(conn, inst.id, str(token_id), element.next if targets is None else targets, as_of)
            _audit(conn, as_of, inst.id, ACTOR, "element.completed", element.id)

    def _on_start(self, conn, inst, proc, element, token_id, as_of):
        self._pass_through(conn, inst, proc, element, token_id, as_of)

    def _on_end(self, conn, inst, proc, element, token_id, as_of):
        if not self._claim(conn, token_id, "completed", as_of):
            return
        open_tokens = conn.scalar(select(func.count()).select_from(s.tokens).where(
            s.tokens.c.instance_id == inst.id, s.tokens.c.status.in_(("active", "waiting", "ready"))))
        if open_tokens:
            return
        done = conn.execute(update(s.instances).where(s.instances.c.id == inst.id,
                                                      s.instances.c.status == "running")
                            .values(status="completed", ended_at=as_of)).rowcount
        if not done:
            return
        _audit(conn, as_of, inst.id, ACTOR, "instance.completed")
        if inst.parent_token_id is not None:
            left = conn.scalar(select(func.count()).select_from(s.instances).where(
                s.instances.c.parent_token_id == inst.parent_token_id,
                s.instances.c.status != "completed"))
            if left == 0:
                self._finish_waiting(conn, inst.parent_id, inst.parent_token_id, as_of)

    def _finish_waiting(self, conn, iid: int, token_id: int, as_of, targets=None) -> bool:
        """Complete a token that waited (on units, children or a timer) and move on."""
        if not self._claim(conn, token_id, "completed", as_of, from_status="waiting"):
            return False
        inst = conn.execute(select(s.instances).where(s.instances.c.id == iid)).one()
        element_id = conn.scalar(select(s.tokens.c.element_id).where(s.tokens.c.id == token_id))
        element = self.plan.definition.process(inst.process_id).element(element_id)
        conn.execute(update(s.timers).where(s.timers.c.token_id == token_id,
                                            s.timers.c.fired_at.is_(None)).values(cancelled=True))
        self._emit(conn, iid, str(token_id), element.next if targets is None else targets, as_of)
        _audit(conn, as_of, iid, ACTOR, "element.completed", element.id)
        return True

    def _on_parallel(self, conn, inst, proc, element, token_id, as_of):
        needed = proc.incoming(element.id)
        if needed <= 1:
            return self._pass_through(conn, inst, proc, element, token_id, as_of)
        if not self._claim(conn, token_id, "waiting", as_of):
            return
        waiting = list(conn.scalars(select(s.tokens.c.id).where(
            s.tokens.c.instance_id == inst.id, s.tokens.c.element_id == element.id,
            s.tokens.c.status == "waiting").order_by(s.tokens.c.id).limit(needed)))
        if len(waiting) < needed:
            return
        conn.execute(update(s.tokens).where(s.tokens.c.id.in_(waiting))
                     .values(status="completed", completed_at=as_of))
        self._emit(conn, inst.id, f"join:{waiting[0]}", element.next, as_of)
        _audit(conn, as_of, inst.id, ACTOR, "element.completed", element.id)

    def _on_exclusive(self, conn, inst, proc, element, token_id, as_of):
        chosen = element.default
        for cond in element.conditions:
            if evaluate_condition(cond.when, inst.variables or {}):
                chosen = cond.next
                break
        self._pass_through(conn, inst, proc, element, token_id, as_of, targets=[chosen])

    def _on_service(self, conn, inst, proc, element, token_id, as_of):
        if self._claim(conn, token_id, "ready", as_of):
            _audit(conn, as_of, inst.id, ACTOR, "step.ready", element.id)

    def _on_user(self, conn, inst, proc, element, token_id, as_of):
        units = self.units(element.for_each, inst.scope_unit, as_of)
        due = _resolve_due(self.plan.calendar, element.due, start=as_of)
        if not units:
            return self._pass_through(conn, inst, proc, element, token_id, as_of)
        if not self._claim(conn, token_id, "waiting", as_of):
            return
        conn.execute(update(s.tokens).where(s.tokens.c.id == token_id).values(due_at=due))
        conn.execute(s.insert_ignore(conn, s.work_items), [
            dict(token_id=token_id, instance_id=inst.id, element_id=element.id, unit_code=u.code,
                 status="open", opened_at=as_of, due_at=due) for u in units])
        cal = self.plan.calendar
        timers = []
        for b in element.boundary:
            anchor = due if b.anchor == "due" else as_of
            fire_at = cal.shift(anchor, b.after, at=b.at)
            timers.append(dict(token_id=token_id, boundary_id=b.id, fire_at=fire_at, cancelled=False))
        if timers:
            conn.execute(s.insert_ignore(conn, s.timers), timers)
        _audit(conn, as_of, inst.id, ACTOR, "task.opened", element.id,
               detail={"units": len(units), "due": due.isoformat()})

    def _on_call(self, conn, inst, proc, element, token_id, as_of):
        scopes = ([u.code for u in self.units(element.for_each, inst.scope_unit, as_of)]
                  if element.for_each else [inst.scope_unit])
        if not scopes:
            return self._pass_through(conn, inst, proc, element, token_id, as_of)
        if not self._claim(conn, token_id, "waiting", as_of):
            return
        for scope in scopes:
            self._create_instance(conn, f"{inst.key}/{element.id}/{scope}", element.process, inst.id,
                                  token_id, scope, as_of, {})

    # --- units -----------------------------------------------------------------------

    def units(self, collection: str, scope_unit: str | None, as_of: dt.datetime) -> list[Unit]:
        """The units a collection names, valid on the day of ``as_of``, in registry order."""
        reg = self.plan.registry
        day = as_of.astimezone(self.plan.calendar.tz).date()
        out: dict[str, Unit] = {}
        for term in parse_collection(collection):
            if term.group is None:
                members = [reg.get(scope_unit)] if scope_unit else []
            elif term.of_scope:
                members = [u for u in reg.group(term.group) if u.parent == scope_unit]
            else:
                members = reg.group(term.group)
            for u in members:
                if u is not None and u.valid_on(day):
                    out.setdefault(u.code, u)
        return list(out.values())

    # --- service steps ---------------------------------------------------------------

    def ready_steps(self, stage: str | None = None, root_id: int | None = None) -> list[ReadyStep]:
        with self.db.connect() as conn:
            q = (select(s.tokens.c.id, s.tokens.c.element_id, s.instances.c.process_id)
                 .join(s.instances, s.instances.c.id == s.tokens.c.instance_id)
                 .where(s.tokens.c.status == "ready", s.instances.c.definition_id == self.plan.id)
                 .order_by(s.tokens.c.id))
            if root_id is not None:
                q = q.where(s.tokens.c.instance_id.in_(self._tree(conn, root_id)))
            rows = conn.execute(q).all()
        grouped: dict[tuple[str, str], list[int]] = {}
        stages: dict[tuple[str, str], str] = {}
        for token_id, element_id, process_id in rows:
            el = self.plan.definition.process(process_id).element(element_id)
            if stage is not None and el.stage != stage:
                continue
            grouped.setdefault((process_id, element_id), []).append(token_id)
            stages[(process_id, element_id)] = el.stage
        return [ReadyStep(eid, stages[(pid, eid)], tuple(ids)) for (pid, eid), ids in grouped.items()]

    def element_of_token(self, token_id: int) -> Element:
        with self.db.connect() as conn:
            row = conn.execute(select(s.tokens.c.element_id, s.instances.c.process_id)
                               .join(s.instances, s.instances.c.id == s.tokens.c.instance_id)
                               .where(s.tokens.c.id == token_id)).one()
        return self.plan.definition.process(row.process_id).element(row.element_id)

    def run_step(self, token_ids: Iterable[int], as_of: dt.datetime) -> int:
        """Run the service or send step each token waits on; return how many completed.

        Each token is one transaction: the handler's writes and the token's completion
        commit together, so a retry after a failure redoes only what did not commit.
        """
        done = 0
        for token_id in token_ids:
            try:
                with self.db.begin() as conn:
                    tok = conn.execute(select(s.tokens).where(s.tokens.c.id == token_id)).one()
                    if tok.status != "ready":
                        continue
                    inst = conn.execute(select(s.instances).where(s.instances.c.id == tok.instance_id)).one()
                    element = self.plan.definition.process(inst.process_id).element(tok.element_id)
                    handler = HANDLERS["send" if element.type == "sendTask" else element.handler]
                    handler(StepContext(self, conn, inst, element, tok, as_of))
                    if not self._claim(conn, token_id, "completed", as_of, from_status="ready"):
                        continue
                    self._emit(conn, inst.id, str(token_id), element.next, as_of)
                    _audit(conn, as_of, inst.id, ACTOR, "element.completed", element.id)
                    done += 1
            except Exception as exc:
                with self.db.begin() as conn:
                    conn.execute(update(s.tokens).where(s.tokens.c.id == token_id).values(
                        attempts=s.tokens.c.attempts + 1, last_error=f"{type(exc).__name__}: {exc}"))
                raise
        return done

    # --- submissions -----------------------------------------------------------------

    def open_work(self, root_id: int | None = None) -> list:
        """Open work items: (id, unit_code, element_id, opened_at, due_at)."""
        with self.db.connect() as conn:
            q = select(s.work_items.c.id, s.work_items.c.unit_code, s.work_items.c.element_id,
                       s.work_items.c.opened_at, s.work_items.c.due_at).where(s.work_items.c.status == "open")
            if root_id is not None:
                q = q.where(s.work_items.c.instance_id.in_(self._tree(conn, root_id)))
            return conn.execute(q.order_by(s.work_items.c.id)).all()

    def submit(self, batch: list[Submission], as_of: dt.datetime, root_id: int | None = None) -> int:
        """Record a batch of submissions in one transaction; return how many were new.

        The whole batch is checked first; any refusal raises ``SubmissionError`` naming
        every unit at fault, and nothing is written. Sending the same submission again
        (same unit, time and answers) is a no-op.
        """
        problems: list[str] = []
        reg = self.plan.registry
        with self.db.begin() as conn:
            tree = self._tree(conn, root_id) if root_id is not None else None
            codes = sorted({b.unit for b in batch})
            q = select(s.work_items).where(s.work_items.c.unit_code.in_(codes))
            if tree is not None:
                q = q.where(s.work_items.c.instance_id.in_(tree))
            items: dict[str, list] = {}
            for row in conn.execute(q.order_by(s.work_items.c.id)):
                items.setdefault(row.unit_code, []).append(row)
            existing = {r.work_item_id: r for r in conn.execute(select(
                s.submissions.c.work_item_id, s.submissions.c.submitted_at, s.submissions.c.payload)
                .where(s.submissions.c.unit_code.in_(codes)))}
            inserts, accepted = [], []
            for sub in batch:
                unit = reg.get(sub.unit)
                if unit is None:
                    problems.append(f"unit '{sub.unit}': not in registry '{reg.id}'")
                    continue
                if sub.submitted_at.tzinfo is None:
                    problems.append(f"unit '{sub.unit}': submitted_at {sub.submitted_at} has no time zone")
                    continue
                candidates = [w for w in items.get(sub.unit, [])
                              if sub.element is None or w.element_id == sub.element]
                open_items = [w for w in candidates if w.status == "open"]
                if not open_items:
                    dup = [w for w in candidates if w.id in existing
                           and existing[w.id].submitted_at == sub.submitted_at.astimezone(dt.timezone.utc)
                           and existing[w.id].payload == sub.payload]
                    if dup:
                        continue
                    closed = [w for w in candidates if w.status == "missing"]
                    if closed:
                        problems.append(f"unit '{unit.code}' ({unit.name}): submission after close — "
                                        f"'{closed[-1].element_id}' was closed as not reported")
                    elif candidates:
                        problems.append(f"unit '{unit.code}' ({unit.name}): '{candidates[-1].element_id}' "
                                        "was already submitted with other answers")
                    else:
                        problems.append(f"unit '{unit.code}' ({unit.name}): has no open task to submit to")
                    continue
                if len(open_items) > 1:
                    problems.append(f"unit '{unit.code}': several open tasks "
                                    f"({', '.join(w.element_id for w in open_items)}); name the element")
                    continue
                w = open_items[0]
                inst = conn.execute(select(s.instances.c.process_id).where(s.instances.c.id == w.instance_id)).one()
                element = self.plan.definition.process(inst.process_id).element(w.element_id)
                late = sub.submitted_at.replace(microsecond=0) > w.due_at
                try:
                    total = score_payload(self.plan.forms[element.form], sub.payload, late)
                except ValueError as exc:
                    problems.append(f"unit '{unit.code}' ({unit.name}): {exc}")
                    continue
                inserts.append(dict(work_item_id=w.id, unit_code=unit.code, submitted_at=sub.submitted_at,
                                    recorded_at=as_of, payload=sub.payload, total=total))
                accepted.append((w, sub, late, element))
            if problems:
                raise SubmissionError(problems)
            if not inserts:
                return 0
            conn.execute(s.insert_ignore(conn, s.submissions), inserts)
            for w, sub, late, element in accepted:
                conn.execute(update(s.work_items).where(s.work_items.c.id == w.id, s.work_items.c.status == "open")
                             .values(status="submitted", submitted_at=sub.submitted_at, late=late))
                if element.output:
                    inst = conn.execute(select(s.instances).where(s.instances.c.id == w.instance_id)).one()
                    rounds = (inst.variables or {}).get(element.output, {}).get("round", 0) + 1
                    variables = {**(inst.variables or {}), element.output: {**sub.payload, "round": rounds}}
                    conn.execute(update(s.instances).where(s.instances.c.id == inst.id).values(variables=variables))
            conn.execute(s.audit.insert(), [dict(
                at=as_of, instance_id=w.instance_id, actor=sub.actor, action="task.submitted",
                element_id=w.element_id, unit_code=sub.unit,
                detail={"submitted_at": sub.submitted_at.isoformat(), "late": late}) for w, sub, late, _ in accepted])
            self._settle(conn, {w.token_id for w, *_ in accepted}, as_of)
            return len(inserts)

    def _settle(self, conn, token_ids: set[int], as_of) -> None:
        """Complete the user tasks whose every work item is closed."""
        if not token_ids:
            return
        still_open = set(conn.scalars(select(s.work_items.c.token_id).where(
            s.work_items.c.token_id.in_(token_ids), s.work_items.c.status == "open").distinct()))
        for token_id in sorted(token_ids - still_open):
            iid = conn.scalar(select(s.tokens.c.instance_id).where(s.tokens.c.id == token_id))
            self._finish_waiting(conn, iid, token_id, as_of)

    # --- timers ----------------------------------------------------------------------

    def next_timer_at(self, root_id: int | None = None) -> dt.datetime | None:
        with self.db.connect() as conn:
            q = (select(func.min(s.timers.c.fire_at))
                 .join(s.tokens, s.tokens.c.id == s.timers.c.token_id)
                 .where(s.timers.c.fired_at.is_(None), s.timers.c.cancelled.is_(False),
                        s.tokens.c.status == "waiting"))
            if root_id is not None:
                q = q.where(s.tokens.c.instance_id.in_(self._tree(conn, root_id)))
            return conn.scalar(q)

    def fire_timers(self, as_of: dt.datetime, root_id: int | None = None) -> int:
        """Fire every boundary timer due at ``as_of``; each fires once, whoever calls."""
        with self.db.connect() as conn:
            q = (select(s.timers.c.id, s.timers.c.token_id, s.timers.c.boundary_id, s.tokens.c.instance_id)
                 .join(s.tokens, s.tokens.c.id == s.timers.c.token_id)
                 .where(s.timers.c.fired_at.is_(None), s.timers.c.cancelled.is_(False),
                        s.timers.c.fire_at <= as_of, s.tokens.c.status == "waiting")
                 .order_by(s.timers.c.fire_at, s.timers.c.id))
            if root_id is not None:
                q = q.where(s.tokens.c.instance_id.in_(self._tree(conn, root_id)))
            due = conn.execute(q).all()
        fired = 0
        for timer_id, token_id, boundary_id, iid in due:
            with self.db.begin() as conn:
                claimed = conn.execute(update(s.timers).where(s.timers.c.id == timer_id,
                                                              s.timers.c.fired_at.is_(None))
                                       .values(fired_at=as_of)).rowcount
                if not claimed:
                    continue
                inst = conn.execute(select(s.instances).where(s.instances.c.id == iid)).one()
                element_id = conn.scalar(select(s.tokens.c.element_id).where(s.tokens.c.id == token_id))
                element = self.plan.definition.process(inst.process_id).element(element_id)
                boundary = next(b for b in element.boundary if b.id == boundary_id)
                _audit(conn, as_of, iid, ACTOR, "timer.fired", element.id, detail={"boundary": boundary_id})
                if boundary.interrupting:
                    closed = conn.execute(update(s.work_items).where(
                        s.work_items.c.token_id == token_id, s.work_items.c.status == "open")
                        .values(status="missing")).rowcount
                    _audit(conn, as_of, iid, ACTOR, "task.closed", element.id, detail={"not_reported": closed})
                    self._finish_waiting(conn, iid, token_id, as_of,
                                         targets=[boundary.next] if boundary.next else None)
                else:
                    self._emit(conn, iid, f"{token_id}:{boundary_id}", [boundary.next], as_of)
                fired += 1
        return fired


_ON_ARRIVAL: dict[str, Callable] = {
    "startEvent": Engine._on_start,
    "endEvent": Engine._on_end,
    "parallelGateway": Engine._on_parallel,
    "exclusiveGateway": Engine._on_exclusive,
    "serviceTask": Engine._on_service,
    "sendTask": Engine._on_service,
    "userTask": Engine._on_user,
    "callActivity": Engine._on_call,
}


def _audit(conn: Connection, at, instance_id, actor, action, element_id=None, unit_code=None, detail=None):
    conn.execute(s.audit.insert().values(at=at, instance_id=instance_id, actor=actor, action=action,
                                         element_id=element_id, unit_code=unit_code, detail=detail))


def score_payload(form, payload: dict, late: bool) -> float | None:
    """Check a submission against its form; return the total score (criteria forms).

    Raises ``ValueError`` naming the criterion or field at fault.
    """
    if form.kind == "fields":
        names = {f.name for f in form.fields}
        unknown = set(payload) - names
        if unknown:
            raise ValueError(f"form '{form.id}' has no field {', '.join(sorted(unknown))} "
                             f"(fields: {', '.join(sorted(names))})")
        for f in form.fields:
            value = payload.get(f.name)
            if f.required and value in (None, ""):
                raise ValueError(f"form '{form.id}': field '{f.name}' is required")
            if f.type == "choice" and value is not None and value not in (f.choices or {}):
                raise ValueError(f"form '{form.id}': field '{f.name}' must be one of "
                                 f"{', '.join(f.choices or {})}, not '{value}'")
        return None
    scores = payload.get("scores")
    if not isinstance(scores, dict):
        raise ValueError(f"form '{form.id}': a submission needs 'scores' (criterion code -> points)")
    items = form.items
    unknown = sorted(set(scores) - set(items))
    if unknown:
        raise ValueError(f"form '{form.id}' has no criterion {', '.join(unknown)}")
    total = 0.0
    for code, item in items.items():
        if item.auto_from_workflow == "on_time":
            if code in scores:
                raise ValueError(f"criterion {code} is scored by the workflow (on-time report), not by the unit")
            total += 0.0 if late else item.max
            continue
        if code not in scores:
            raise ValueError(f"criterion {code} ({item.title}) has no score")
        value = scores[code]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"criterion {code}: score '{value}' is not a number")
        if not 0 <= value <= item.max:
            raise ValueError(f"criterion {code}: score {value} is outside 0–{item.max:g}")
        if abs(value / form.step - round(value / form.step)) > 1e-9:
            raise ValueError(f"criterion {code}: score {value} is not a multiple of {form.step:g}")
        total += value
    return round(total, 2)
