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

from sqlalchemy import bindparam, exists, func, or_, select, update
from sqlalchemy.engine import Connection, Engine as SqlEngine

from planflow import escalation
from planflow import store as s
from planflow.expressions import evaluate_condition, parse_collection
from planflow.deadlines import resolve_due
from planflow.loader import Plan
from planflow.model import Element, Unit
from planflow.services import HANDLERS, StepContext

ACTOR = "engine"

# Statements of the hot paths, built once: a transition runs a handful of them, a plan
# cycle thousands, and building a statement costs more than executing its cached compile.
_INSTANCE = select(s.instances).where(s.instances.c.id == bindparam("_iid"))
_CLAIM = (update(s.tokens).where(s.tokens.c.id == bindparam("_tid"), s.tokens.c.status == bindparam("_from"))
          .values(status=bindparam("_to")))
_CLAIM_CLOSING = (update(s.tokens).where(s.tokens.c.id == bindparam("_tid"), s.tokens.c.status == bindparam("_from"))
                  .values(status=bindparam("_to"), completed_at=bindparam("_at")))
_OPEN_TOKENS = select(func.count()).select_from(s.tokens).where(
    s.tokens.c.instance_id == bindparam("_iid"), s.tokens.c.status.in_(("active", "waiting", "ready")))
# "is a sibling instance not completed?" as two range lookups on ix_instances_parent_token
# (status < or > 'completed', i.e. != for a NOT NULL column), not a count over every sibling:
# a call activity over N units otherwise costs O(N^2) as its children end
_SIBLINGS_LEFT = select(or_(
    exists().where(s.instances.c.parent_token_id == bindparam("_ptid"), s.instances.c.status < "completed"),
    exists().where(s.instances.c.parent_token_id == bindparam("_ptid"), s.instances.c.status > "completed")))
_AUDIT = s.audit.insert()


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
        return self._create_instances(conn, [key], process_id, parent_id, parent_token_id, [scope_unit],
                                      as_of, variables)[0]

    def _create_instances(self, conn, keys: list[str], process_id, parent_id, parent_token_id,
                          scope_units: list, as_of, variables) -> list[int]:
        """One instance of ``process_id`` per key, each with its start token; a key started
        before is left as it is. The same rows, in the same order, as one key at a time, in
        three statements (plus one to look up keys started before)."""
        created = {key: iid for iid, key in conn.execute(
            s.insert_ignore(conn, s.instances).returning(s.instances.c.id, s.instances.c.key),
            [dict(key=key, definition_id=self.plan.id, definition_digest=self.plan.digest,
                  process_id=process_id, parent_id=parent_id, parent_token_id=parent_token_id,
                  scope_unit=scope_unit, status="running", started_at=as_of, variables=variables)
             for key, scope_unit in zip(keys, scope_units)])}
        before = [key for key in keys if key not in created]  # started before: nothing to do again
        known = {}
        for i in range(0, len(before), 1000):
            known.update(conn.execute(select(s.instances.c.key, s.instances.c.id)
                                      .where(s.instances.c.key.in_(before[i:i + 1000]))).all())
        new = [(key, created[key]) for key in keys if key in created]
        if new:
            start = self.plan.definition.process(process_id).start
            conn.execute(s.insert_ignore(conn, s.tokens), [dict(
                key=f"{iid}:{start.id}", instance_id=iid, element_id=start.id, status="active",
                created_at=as_of) for _, iid in new])
            conn.execute(_AUDIT, [_audit_row(as_of, iid, ACTOR, "instance.started",
                                             detail={"key": key, "process": process_id}) for key, iid in new])
        return [created.get(key) or known.get(key) for key in keys]

    def tree(self, root_id: int | None) -> list[int] | None:
        """The ids of an instance and of every sub-process instance below it (None: all)."""
        if root_id is None:
            return None
        with self.db.connect() as conn:
            return self._tree(conn, root_id)

    def _tree(self, conn, root_id: int) -> list[int]:
        return s.tree_ids(conn, root_id)

    # --- moving tokens ---------------------------------------------------------------

    def advance(self, as_of: dt.datetime, root_id: int | None = None) -> int:
        """Interpret every active token until each waits on units, a flow, a timer or a join."""
        moved = 0
        while True:
            with self.db.connect() as conn:
                batch = self._tokens(conn, "active", root_id).all()
            if not batch:
                return moved
            with self.db.connect() as conn:
                for token_id, iid, element_id, _process_id in batch:
                    with conn.begin():  # one transaction per transition
                        inst = conn.execute(_INSTANCE, {"_iid": iid}).one()
                        proc = self.plan.definition.process(inst.process_id)
                        element = proc.element(element_id)
                        _ON_ARRIVAL[element.type](self, conn, inst, proc, element, token_id, as_of)
                    moved += 1

    def _tokens(self, conn, status: str, root_id: int | None):
        """(id, instance_id, element_id, process_id) of this plan's tokens in ``status``, oldest first."""
        q = (select(s.tokens.c.id, s.tokens.c.instance_id, s.tokens.c.element_id, s.instances.c.process_id)
             .join(s.instances, s.instances.c.id == s.tokens.c.instance_id)
             .where(s.tokens.c.status == status, s.instances.c.definition_id == self.plan.id)
             .order_by(s.tokens.c.id))
        if root_id is not None:
            q = q.where(s.tokens.c.instance_id.in_(self._tree(conn, root_id)))
        return conn.execute(q)

    def _claim(self, conn, token_id: int, new_status: str, as_of, *, from_status="active") -> bool:
        params = {"_tid": token_id, "_from": from_status, "_to": new_status}
        if new_status in ("completed", "cancelled"):
            res = conn.execute(_CLAIM_CLOSING, {**params, "_at": as_of})
        else:
            res = conn.execute(_CLAIM, params)
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
        open_tokens = conn.scalar(_OPEN_TOKENS, {"_iid": inst.id})
        if open_tokens:
            return
        done = conn.execute(update(s.instances).where(s.instances.c.id == inst.id,
                                                      s.instances.c.status == "running")
                            .values(status="completed", ended_at=as_of)).rowcount
        if not done:
            return
        _audit(conn, as_of, inst.id, ACTOR, "instance.completed")
        if inst.parent_token_id is not None:
            if not conn.scalar(_SIBLINGS_LEFT, {"_ptid": inst.parent_token_id}):
                self._finish_waiting(conn, inst.parent_id, inst.parent_token_id, as_of)

    def _finish_waiting(self, conn, iid: int, token_id: int, as_of, targets=None) -> bool:
        """Complete a token that waited (on units, children or a timer) and move on."""
        if not self._claim(conn, token_id, "completed", as_of, from_status="waiting"):
            return False
        inst = conn.execute(_INSTANCE, {"_iid": iid}).one()
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
        due = resolve_due(self.plan.calendar, element.due, start=as_of)
        if not units:
            return self._pass_through(conn, inst, proc, element, token_id, as_of)
        if not self._claim(conn, token_id, "waiting", as_of):
            return
        conn.execute(update(s.tokens).where(s.tokens.c.id == token_id).values(due_at=due))
        step, next_notice = escalation.start(self.plan, element, due, as_of)
        conn.execute(s.insert_ignore(conn, s.work_items), [
            dict(token_id=token_id, instance_id=inst.id, element_id=element.id, unit_code=u.code,
                 status="open", opened_at=as_of, due_at=due, ladder_step=step, next_notice_at=next_notice)
            for u in units])
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
        self._create_instances(conn, [f"{inst.key}/{element.id}/{scope}" for scope in scopes], element.process,
                               inst.id, token_id, scopes, as_of, {})

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
                members = self._children(term.group).get(scope_unit, [])
            else:
                members = reg.group(term.group)
            for u in members:
                if u is not None and u.valid_on(day):
                    out.setdefault(u.code, u)
        return list(out.values())

    def _children(self, group: str) -> dict[str | None, list[Unit]]:
        """The members of a registry group by parent, in registry order (built once per plan)."""
        key = ("children", group)
        index = self.plan.memo.get(key)
        if index is None:
            index = {}
            for u in self.plan.registry.group(group):
                index.setdefault(u.parent, []).append(u)
            self.plan.memo[key] = index
        return index

    # --- service steps ---------------------------------------------------------------

    def ready_steps(self, stage: str | None = None, root_id: int | None = None) -> list[ReadyStep]:
        with self.db.connect() as conn:
            rows = self._tokens(conn, "ready", root_id).all()
        grouped: dict[tuple[str, str], list[int]] = {}
        stages: dict[tuple[str, str], str] = {}
        for token_id, _iid, element_id, process_id in rows:
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
                    # claim first: a second worker blocks on the row (PostgreSQL) or the write
                    # lock (SQLite), then finds it claimed and runs nothing
                    if not self._claim(conn, token_id, "running", as_of, from_status="ready"):
                        continue
                    tok = conn.execute(select(s.tokens).where(s.tokens.c.id == token_id)).one()
                    inst = conn.execute(_INSTANCE, {"_iid": tok.instance_id}).one()
                    element = self.plan.definition.process(inst.process_id).element(tok.element_id)
                    handler = HANDLERS["send" if element.type == "sendTask" else element.handler]
                    handler(StepContext(self, conn, inst, element, tok, as_of))
                    if not self._claim(conn, token_id, "completed", as_of, from_status="running"):
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

    # --- operating -------------------------------------------------------------------

    def _elements_named(self, element_id: str) -> list[Element]:
        found = [e for p in [self.plan.definition.main, *self.plan.definition.subprocesses]
                 for e in p.elements if e.id == element_id]
        if not found:
            steps = sorted({e.id for p in [self.plan.definition.main, *self.plan.definition.subprocesses]
                            for e in p.elements if e.type in ("serviceTask", "sendTask")})
            raise ValueError(f"'{element_id}' is not a step of '{self.plan.id}'; steps: {', '.join(steps)}")
        return found

    def retrigger(self, root_id: int, element_id: str, *, unit: str | None, actor: str, reason: str,
                  as_of: dt.datetime) -> int:
        """Make a stalled step runnable again and put its failed letters back in the outbox.

        Records who and why in the audit log. A step that is not stalled is left alone
        (re-triggering twice changes nothing); returns how many tokens and letters were reset.
        """
        from planflow import outbox

        self._elements_named(element_id)
        if unit is not None and unit not in self.plan.registry:
            raise ValueError(f"unit '{unit}' is not in registry '{self.plan.registry.id}'")
        if not reason.strip():
            raise ValueError("give a reason: it is kept in the audit log")
        with self.db.begin() as conn:
            tree = self._tree(conn, root_id)
            q = (select(s.tokens.c.id, s.tokens.c.instance_id, s.tokens.c.last_error, s.tokens.c.attempts)
                 .join(s.instances, s.instances.c.id == s.tokens.c.instance_id)
                 .where(s.tokens.c.instance_id.in_(tree), s.tokens.c.element_id == element_id,
                        s.tokens.c.status == "ready"))
            if unit is not None:
                q = q.where(s.instances.c.scope_unit == unit)
            stalled = conn.execute(q).all()
            for tok in stalled:
                conn.execute(update(s.tokens).where(s.tokens.c.id == tok.id).values(attempts=0, last_error=None))
                _audit(conn, as_of, tok.instance_id, actor, "step.retriggered", element_id, unit,
                       detail={"reason": reason, "previous_attempts": tok.attempts, "previous_error": tok.last_error})
            q = select(s.outbox.c.id).where(s.outbox.c.instance_id.in_(tree), s.outbox.c.element_id == element_id,
                                            s.outbox.c.status == "failed")
            if unit is not None:
                q = q.where(s.outbox.c.recipient == unit)
            failed_letters = list(conn.scalars(q))
        requeued = outbox.requeue_failed(self.db, failed_letters, actor=actor, reason=reason, at=as_of)
        return len(stalled) + len(requeued)

    def record_incident(self, root_id: int | None, *, flow_run: str, state: str, message: str, step: str,
                        as_of: dt.datetime) -> None:
        """An operator-visible incident (a failed or crashed run), with a letter to the coordinators."""
        from planflow import outbox
        from planflow.letters import unit_context

        coordinators = self.plan.registry.group("coordinators")
        incident = {"step": step, "flow_run": flow_run, "state": state, "message": message}
        with self.db.begin() as conn:
            _audit(conn, as_of, root_id, "automation", "incident", step, detail={**incident})
            outbox.queue(conn, [{
                "key": f"incident:{flow_run}:{state}:{u.code}", "instance_id": root_id or 0, "element_id": step,
                "unit_code": None, "recipient": u.code, "kind": "incident", "level": 0,
                "context": {"recipient": unit_context(u), "sent_at": as_of,
                            "sender": {"name": "planflow"}, "incident": incident}} for u in coordinators], as_of)

    def stalled(self, root_id: int) -> list[dict]:
        """What needs an operator: steps that failed after their retries, failed letters,
        units past their final escalation whose task is still open, incidents recorded."""
        out: list[dict] = []
        with self.db.connect() as conn:
            tree = self._tree(conn, root_id)
            for tok in conn.execute(select(s.tokens.c.id, s.tokens.c.element_id, s.tokens.c.attempts,
                                           s.tokens.c.last_error, s.instances.c.scope_unit)
                                    .join(s.instances, s.instances.c.id == s.tokens.c.instance_id)
                                    .where(s.tokens.c.instance_id.in_(tree), s.tokens.c.status == "ready",
                                           s.tokens.c.last_error.is_not(None))):
                out.append({"kind": "step-failed", "step": tok.element_id, "unit": tok.scope_unit,
                            "detail": f"{tok.attempts} attempt(s): {tok.last_error}"})
            for row in conn.execute(select(s.outbox.c.element_id, s.outbox.c.recipient, s.outbox.c.kind,
                                           s.outbox.c.last_error)
                                    .where(s.outbox.c.instance_id.in_(tree), s.outbox.c.status == "failed")):
                out.append({"kind": "notification-failed", "step": row.element_id, "unit": row.recipient,
                            "detail": f"{row.kind}: {row.last_error}"})
            items = conn.execute(select(s.work_items.c.unit_code, s.work_items.c.element_id,
                                        s.work_items.c.ladder_step, s.work_items.c.due_at, s.instances.c.process_id)
                                 .join(s.instances, s.instances.c.id == s.work_items.c.instance_id)
                                 .where(s.work_items.c.instance_id.in_(tree), s.work_items.c.status == "open",
                                        s.work_items.c.next_notice_at.is_(None), s.work_items.c.ladder_step > 0)).all()
            for it in items:
                element = self.plan.definition.process(it.process_id).element(it.element_id)
                if element.escalations:
                    out.append({"kind": "past-final-escalation", "step": it.element_id, "unit": it.unit_code,
                                "detail": f"due {it.due_at.isoformat()}"})
            for row in conn.execute(select(s.audit).where(s.audit.c.instance_id.in_(tree),
                                                          s.audit.c.action == "incident")):
                out.append({"kind": "incident", "step": row.element_id, "unit": row.unit_code,
                            "detail": (row.detail or {}).get("message", "")})
        return out

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
            # earlier submissions matter only for work items no longer open (a re-sent answer)
            closed_ids = [r.id for rows in items.values() for r in rows if r.status != "open"]
            existing = {r.work_item_id: r for i in range(0, len(closed_ids), 1000) for r in conn.execute(select(
                s.submissions.c.work_item_id, s.submissions.c.submitted_at, s.submissions.c.payload)
                .where(s.submissions.c.work_item_id.in_(closed_ids[i:i + 1000])))}
            instance_ids = sorted({r.instance_id for rows in items.values() for r in rows})
            process_of = dict(conn.execute(select(s.instances.c.id, s.instances.c.process_id)
                                           .where(s.instances.c.id.in_(instance_ids))).all())
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
                element = self.plan.definition.process(process_of[w.instance_id]).element(w.element_id)
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
            # claim each work item (open -> submitted) before writing anything else: a worker
            # that lost the race to the same item finds it claimed and records nothing
            won = []
            if conn.dialect.update_returning:
                # the same claims in two statements, not one per item: every open item of the
                # batch at once (the first submission of an item in the batch wins it), then
                # each won item gets its time and lateness
                ids = [w.id for w, *_ in accepted]
                claimed: set[int] = set()
                for i in range(0, len(ids), 1000):
                    claimed.update(conn.scalars(
                        update(s.work_items).where(s.work_items.c.id.in_(ids[i:i + 1000]),
                                                   s.work_items.c.status == "open")
                        .values(status="submitted").returning(s.work_items.c.id)))
                for row, entry in zip(inserts, accepted):
                    if entry[0].id in claimed:
                        claimed.discard(entry[0].id)
                        won.append((row, entry))
                if won:
                    conn.execute(update(s.work_items).where(s.work_items.c.id == bindparam("_wid"))
                                 .values(submitted_at=bindparam("_submitted_at"), late=bindparam("_late"),
                                         next_notice_at=None),
                                 [{"_wid": w.id, "_submitted_at": sub.submitted_at, "_late": late}
                                  for _, (w, sub, late, _e) in won])
            else:  # an SQLite older than 3.35: one claim per item
                for row, entry in zip(inserts, accepted):
                    w, sub, late, _ = entry
                    claimed = conn.execute(
                        update(s.work_items).where(s.work_items.c.id == w.id, s.work_items.c.status == "open")
                        .values(status="submitted", submitted_at=sub.submitted_at, late=late, next_notice_at=None)
                    ).rowcount
                    if claimed:
                        won.append((row, entry))
            if not won:
                return 0
            inserts, accepted = [r for r, _ in won], [e for _, e in won]
            conn.execute(s.insert_ignore(conn, s.submissions), inserts)
            for w, sub, late, element in accepted:
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
        done = sorted(token_ids - still_open)
        if len(done) > 1 and conn.dialect.update_returning:
            return self._finish_waiting_many(conn, done, as_of)
        for token_id in done:
            iid = conn.scalar(select(s.tokens.c.instance_id).where(s.tokens.c.id == token_id))
            self._finish_waiting(conn, iid, token_id, as_of)

    def _finish_waiting_many(self, conn, token_ids: list[int], as_of) -> None:
        """``_finish_waiting`` for many tokens in a few statements: the same rows, in the same
        order, as finishing them one by one (ascending token id)."""
        claimed = set(conn.scalars(update(s.tokens).where(s.tokens.c.id.in_(token_ids),
                                                          s.tokens.c.status == "waiting")
                                   .values(status="completed", completed_at=as_of).returning(s.tokens.c.id)))
        if not claimed:
            return
        rows = {r.id: r for r in conn.execute(
            select(s.tokens.c.id, s.tokens.c.instance_id, s.tokens.c.element_id, s.instances.c.process_id)
            .join(s.instances, s.instances.c.id == s.tokens.c.instance_id).where(s.tokens.c.id.in_(claimed)))}
        conn.execute(update(s.timers).where(s.timers.c.token_id.in_(claimed), s.timers.c.fired_at.is_(None))
                     .values(cancelled=True))
        emitted, audits = [], []
        for token_id in token_ids:
            if token_id not in claimed:
                continue
            r = rows[token_id]
            element = self.plan.definition.process(r.process_id).element(r.element_id)
            emitted += [dict(key=f"{token_id}>{t}", instance_id=r.instance_id, element_id=t, status="active",
                             created_at=as_of) for t in element.next]
            audits.append(_audit_row(as_of, r.instance_id, ACTOR, "element.completed", element.id))
        if emitted:
            conn.execute(s.insert_ignore(conn, s.tokens), emitted)
        conn.execute(_AUDIT, audits)

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

    def next_deadline_at(self, root_id: int | None = None) -> dt.datetime | None:
        """The next moment something falls due: a reminder, an escalation or a timer."""
        moments = [m for m in (self.next_timer_at(root_id), escalation.next_notice_at(self, root_id)) if m]
        return min(moments, default=None)

    def sweep(self, as_of: dt.datetime, root_id: int | None = None) -> list[escalation.Chase]:
        """Everything due at ``as_of``: reminders and escalations first, then boundary timers
        (so a unit reaches its final escalation level before its task closes)."""
        chases = escalation.sweep(self, as_of, root_id)
        self.fire_timers(as_of, root_id)
        return chases

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
    conn.execute(_AUDIT, _audit_row(at, instance_id, actor, action, element_id, unit_code, detail))


def _audit_row(at, instance_id, actor, action, element_id=None, unit_code=None, detail=None) -> dict:
    return dict(at=at, instance_id=instance_id, actor=actor, action=action, element_id=element_id,
                unit_code=unit_code, detail=detail)


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
    items, codes = _criteria(form)
    unknown = sorted(set(scores) - codes)
    if unknown:
        raise ValueError(f"form '{form.id}' has no criterion {', '.join(unknown)}")
    total = 0.0
    step = form.step
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
        if abs(value / step - round(value / step)) > 1e-9:
            raise ValueError(f"criterion {code}: score {value} is not a multiple of {step:g}")
        total += value
    return round(total, 2)


_CRITERIA: dict[int, tuple] = {}


def _criteria(form) -> tuple[dict, frozenset]:
    """``form.items`` and its codes, built once per form (a form is immutable)."""
    cached = _CRITERIA.get(id(form))
    if cached is None or cached[0] is not form:
        items = form.items
        cached = _CRITERIA[id(form)] = (form, items, frozenset(items))
    return cached[1], cached[2]
