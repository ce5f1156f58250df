"""The interpreter: BPMN token semantics over the SQL store, behind one ``Engine``.

``Engine`` is what flows, the CLI and the benchmarks call; the parts it is made of are
modules named after what they are:

* ``tokens``: instances and their tokens, the moves every transition is made of;
* ``arrivals``: what a token does when it arrives at an element, one handler per element
  kind in one table (``ON_ARRIVAL``), in the manner of Prefect's orchestration rules;
* ``sibling_arrivals``: the same for a run of sibling tokens at once (``ON_ARRIVAL_MANY``);
* ``submissions``: what units send to their open tasks, checked, claimed, recorded;
* ``timers``: boundary timers; ``escalation``: reminders and the escalation ladder;
* ``units``: the units a collection names on a day.

Every transition claims its token with a conditional UPDATE, so a replay, a retry or a
second worker changes nothing twice. A transaction holds one transition, or a run of
sibling transitions — the consecutive tokens of one ``advance`` batch on one element of one
process (at most ``sibling_arrivals.RUN_LIMIT``), the tokens of one ``run_step`` call (at
most ``STEP_RUN_LIMIT``) — each still claimed and stamped on its own and writing the rows it
writes alone, in the same order; a run that fails is rolled back and redone one transition
per transaction, so what commits and what is raised are as with one per transaction — and
the run's error is raised even if every token then went through alone (the rule since
issue 15: ~600 district sub-processes otherwise cost 1 800 commits a cycle).

Time is always passed in (``as_of``); the engine never reads a clock. Each transition
carries the moment it belongs to, whichever process runs it and whenever: a token arrives
at its element at its ``created_at``; in a replay (an instance started with
``replay=True``, on plan time) a service step completes at the moment it became ready and
a boundary timer acts at its ``fire_at``; a live instance stamps those with the caller's
(real) clock.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Iterable

from sqlalchemy import select, update
from sqlalchemy.engine import Engine as SqlEngine

from planflow import (audit, escalation, letters, outbox, plan_versions, sibling_arrivals, submissions, timers, tokens,
                      units)
from planflow import store as s
from planflow.loader import Plan
from planflow.model import Element, Unit
from planflow.services import HANDLERS, StepContext
from planflow.submissions import Submission


STEP_RUN_LIMIT = 50  # step tokens per transaction: a handler can be heavy (a district's report)


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

    def start(self, key: str, as_of: dt.datetime, variables: dict | None = None, *, replay: bool = False) -> int:
        """Start the plan's main process once per business ``key``; return its id.

        ``replay``: the instance runs on plan time (a simulated or replayed year), so its
        steps and timers are stamped with the moments they belong to, not the clock of
        whoever runs them."""
        with self.db.begin() as conn:
            plan_versions.keep(conn, self.plan, as_of)
            return tokens.create_instances(conn, self.plan, [key], self.plan.definition.id, None, None, [None],
                                           as_of, variables or {}, replay=replay)[0]

    def instance_id(self, key: str) -> int | None:
        with self.db.connect() as conn:
            return conn.scalar(select(s.instances.c.id).where(s.instances.c.key == key))

    def instance(self, iid: int):
        with self.db.connect() as conn:
            return conn.execute(select(s.instances).where(s.instances.c.id == iid)).one()

    def set_clock(self, iid: int, as_of: dt.datetime) -> None:
        with self.db.begin() as conn:
            conn.execute(update(s.instances).where(s.instances.c.id == iid).values(clock_at=as_of))

    def tree(self, root_id: int | None) -> list[int] | None:
        """The ids of an instance and of every sub-process instance below it (None: all)."""
        if root_id is None:
            return None
        with self.db.connect() as conn:
            return s.tree_ids(conn, root_id)

    # --- moving tokens ---------------------------------------------------------------

    def advance(self, as_of: dt.datetime | None = None, root_id: int | None = None) -> int:
        """Interpret every active token until each waits on units, a flow, a timer or a join.

        Each token arrives at the moment it was created (the transition that made it stamped
        it), not at the caller's ``as_of``: a run resumed or driven later writes the same
        moments."""
        moved = 0
        while True:
            with self.db.connect() as conn:
                batch = tokens.in_status(conn, self.plan, "active", root_id).all()
            if not batch:
                return moved
            with self.db.connect() as conn:
                for run in sibling_arrivals.runs(batch):
                    self._arrive(conn, run)
                    moved += len(run)

    def _arrive(self, conn, run: list) -> None:
        """One run of sibling tokens in one transaction (``sibling_arrivals``). If it fails, it
        is redone one transaction per token: a token that fails alone raises its error, as
        before the runs (those before it committed); if none does, the run's error is raised
        all the same — an error is never swallowed, and what is redone is idempotent."""
        failed = None
        if len(run) > 1:
            try:
                with conn.begin():
                    sibling_arrivals.arrive(conn, self.plan, run)
                return
            except Exception as exc:  # noqa: BLE001 - raised below, once the run is redone token by token
                failed = exc
        for row in run:
            with conn.begin():
                sibling_arrivals.arrive(conn, self.plan, [row])
        if failed is not None:
            raise failed

    def units(self, collection: str, scope_unit: str | None, as_of: dt.datetime) -> list[Unit]:
        """The units a collection names, valid on the day of ``as_of``, in registry order."""
        return units.in_collection(self.plan, collection, scope_unit, as_of)

    # --- service steps ---------------------------------------------------------------

    def ready_steps(self, stage: str | None = None, root_id: int | None = None) -> list[ReadyStep]:
        with self.db.connect() as conn:
            rows = tokens.in_status(conn, self.plan, "ready", root_id).all()
        grouped: dict[tuple[str, str], list[int]] = {}
        stages: dict[tuple[str, str], str] = {}
        for token_id, _iid, element_id, process_id, _created_at in rows:
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

        The tokens are run in one transaction per ``STEP_RUN_LIMIT`` of them (the siblings of
        a step, e.g. every district's report, as ``sibling_arrivals`` runs arrivals): the
        handlers' writes and the tokens' completions commit together, each token claimed
        first, so a retry or a second worker runs nothing twice. If a handler fails, that
        transaction is rolled back and its tokens are run one per transaction: those before
        the failing one commit, the failing one records its error (``attempts``,
        ``last_error``) and the error is raised (and if none fails alone, the chunk's error
        is raised once they all went through: an error is never swallowed). In a replay a step completes at the moment
        it became ready, whatever ``as_of`` the caller runs at; in a live instance at
        ``as_of`` (``tokens.moment_of``).
        """
        token_ids, done = list(token_ids), 0
        for k in range(0, len(token_ids), STEP_RUN_LIMIT):
            chunk, failed = token_ids[k:k + STEP_RUN_LIMIT], None
            if len(chunk) > 1:
                try:
                    with self.db.begin() as conn:
                        done += self._steps_together(conn, chunk, as_of)
                    continue
                except Exception as exc:  # noqa: BLE001 - raised below, once redone token by token
                    failed = exc
            done += sum(self._step_alone(token_id, as_of) for token_id in chunk)
            if failed is not None:  # every token went through alone: the chunk's error all the same
                raise failed
        return done

    def _steps_together(self, conn, token_ids: list[int], as_of: dt.datetime) -> int:
        # claim first: a second worker blocks on the rows (PostgreSQL) or the write lock
        # (SQLite), then finds them claimed and runs nothing
        claimed = tokens.claim_many(conn, token_ids, "running", from_status="ready")
        if not claimed:
            return 0
        toks = {t.id: t for t in conn.execute(select(s.tokens).where(s.tokens.c.id.in_(claimed)))}
        # each instance read as its token comes: a handler before it may have changed its variables
        return sum(self._complete_step(conn, toks[t], tokens.instance_row(conn, toks[t].instance_id), as_of)
                   for t in token_ids if t in claimed)

    def _step_alone(self, token_id: int, as_of: dt.datetime) -> int:
        try:
            with self.db.begin() as conn:
                if not tokens.claim(conn, token_id, "running", as_of, from_status="ready"):
                    return 0
                tok = conn.execute(select(s.tokens).where(s.tokens.c.id == token_id)).one()
                return self._complete_step(conn, tok, tokens.instance_row(conn, tok.instance_id), as_of)
        except Exception as exc:
            with self.db.begin() as conn:
                conn.execute(update(s.tokens).where(s.tokens.c.id == token_id).values(
                    attempts=s.tokens.c.attempts + 1, last_error=f"{type(exc).__name__}: {exc}"))
            raise

    def _complete_step(self, conn, tok, inst, as_of: dt.datetime) -> int:
        """The step of one claimed (``running``) token: its handler, then the token moves on."""
        at = tokens.moment_of(self.plan, inst, tok.created_at, as_of)
        element = self.plan.definition.process(inst.process_id).element(tok.element_id)
        handler = HANDLERS["send" if element.type == "sendTask" else element.handler]
        handler(StepContext(self, conn, inst, element, tok, at))
        if not tokens.claim(conn, tok.id, "completed", at, from_status="running"):
            return 0
        tokens.emit(conn, inst.id, str(tok.id), element.next, at)
        audit.record(conn, at, inst.id, audit.ENGINE, "element.completed", element.id)
        return 1

    # --- operating -------------------------------------------------------------------

    def _elements_named(self, element_id: str) -> list[Element]:
        found = [e for p in [self.plan.definition.main, *self.plan.definition.subprocesses]
                 for e in p.elements if e.id == element_id]
        if not found:
            steps = sorted({e.id for p in [self.plan.definition.main, *self.plan.definition.subprocesses]
                            for e in p.elements if e.type in ("serviceTask", "sendTask")})
            raise ValueError(f"'{element_id}' is not a step of '{self.plan.id}'; steps: {', '.join(steps)}")
        return found

    def retrigger(self, root_id: int, element_id: str | None, *, unit: str | None, actor: str, reason: str,
                  as_of: dt.datetime) -> list[dict]:
        """Make stalled steps runnable again and put failed letters back in the outbox.

        ``element_id`` None: every step; ``unit``: only what concerns that unit — its own
        sub-process (a district), the letters to it and the letters about it (a commune's
        escalations go to its district: they are the commune's, not the district's). Records
        who and why in the audit log. What is not stalled is left alone (re-triggering twice
        changes nothing). Returns what was reset, one dict per step token or letter:
        ``{"what": "step" | "letter", "step", "unit", "recipient", "kind", "id"}``.
        """
        if element_id is not None:
            self._elements_named(element_id)
        if unit is not None and unit not in self.plan.registry:
            raise ValueError(f"unit '{unit}' is not in registry '{self.plan.registry.id}'")
        if not reason.strip():
            raise ValueError("give a reason: it is kept in the audit log")
        done: list[dict] = []
        with self.db.begin() as conn:
            tree = s.tree_ids(conn, root_id)
            q = (select(s.tokens.c.id, s.tokens.c.instance_id, s.tokens.c.element_id, s.tokens.c.last_error,
                        s.tokens.c.attempts, s.instances.c.scope_unit)
                 .join(s.instances, s.instances.c.id == s.tokens.c.instance_id)
                 .where(s.tokens.c.instance_id.in_(tree), s.tokens.c.status == "ready"))
            # one step: its ready tokens; every step: those that failed
            q = q.where(s.tokens.c.last_error.is_not(None) if element_id is None
                        else s.tokens.c.element_id == element_id)
            if unit is not None:
                q = q.where(s.instances.c.scope_unit == unit)
            for tok in conn.execute(q).all():
                conn.execute(update(s.tokens).where(s.tokens.c.id == tok.id).values(attempts=0, last_error=None))
                audit.record(conn, as_of, tok.instance_id, actor, "step.retriggered", tok.element_id, unit, detail={
                    "reason": reason, "previous_attempts": tok.attempts, "previous_error": tok.last_error})
                done.append({"what": "step", "step": tok.element_id, "unit": tok.scope_unit, "recipient": None,
                             "kind": None, "id": tok.id})
            q = select(s.outbox.c.id, s.outbox.c.element_id, s.outbox.c.unit_code, s.outbox.c.recipient,
                       s.outbox.c.kind, s.outbox.c.context).where(s.outbox.c.instance_id.in_(tree),
                                                                  s.outbox.c.status == "failed")
            if element_id is not None:
                q = q.where(s.outbox.c.element_id == element_id)
            letters_ = {r.id: r for r in conn.execute(q.order_by(s.outbox.c.id))
                        if unit is None or unit in outbox.units_of_letter(r)}
        for row_id in outbox.requeue_failed(self.db, list(letters_), actor=actor, reason=reason, at=as_of):
            r = letters_[row_id]
            done.append({"what": "letter", "step": r.element_id, "unit": r.unit_code or r.recipient,
                         "recipient": r.recipient, "kind": r.kind, "id": r.id})
        return done

    def record_incident(self, root_id: int | None, *, flow_run: str, state: str, message: str, step: str,
                        as_of: dt.datetime) -> None:
        """An operator-visible incident (a failed or crashed run), with a letter to the coordinators."""
        incident = {"step": step, "flow_run": flow_run, "state": state, "message": message}
        with self.db.begin() as conn:
            audit.record(conn, as_of, root_id, "automation", "incident", step, detail={**incident})
            outbox.queue(conn, letters.rows_for_incident(self.plan, root_id, incident, as_of), as_of)

    def stalled(self, root_id: int) -> list[dict]:
        """What needs an operator: steps that failed after their retries, failed letters,
        units past their final escalation whose task is still open, incidents recorded."""
        out: list[dict] = []
        with self.db.connect() as conn:
            tree = s.tree_ids(conn, root_id)
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
            out += self._past_final_escalation(conn, tree)
            for row in conn.execute(select(s.audit).where(s.audit.c.instance_id.in_(tree),
                                                          s.audit.c.action == "incident")):
                out.append({"kind": "incident", "step": row.element_id, "unit": row.unit_code,
                            "detail": (row.detail or {}).get("message", "")})
        return out

    def _past_final_escalation(self, conn, tree: list[int]) -> list[dict]:
        """Units whose ladder is spent (an escalation was the last rung) and whose task is open."""
        items = conn.execute(select(s.work_items.c.unit_code, s.work_items.c.element_id,
                                    s.work_items.c.ladder_step, s.work_items.c.due_at, s.instances.c.process_id)
                             .join(s.instances, s.instances.c.id == s.work_items.c.instance_id)
                             .where(s.work_items.c.instance_id.in_(tree), s.work_items.c.status == "open",
                                    s.work_items.c.next_notice_at.is_(None), s.work_items.c.ladder_step > 0)).all()
        out = []
        for it in items:
            element = self.plan.definition.process(it.process_id).element(it.element_id)
            if element.escalations:
                out.append({"kind": "past-final-escalation", "step": it.element_id, "unit": it.unit_code,
                            "detail": f"due {it.due_at.isoformat()}"})
        return out

    # --- submissions -----------------------------------------------------------------

    def open_work(self, root_id: int | None = None) -> list:
        """Open work items: (id, unit_code, element_id, opened_at, due_at)."""
        return submissions.open_work(self.db, root_id)

    def unit_items(self, root_id: int, unit_code: str, element_id: str) -> list[submissions.UnitItem]:
        """A unit's rounds of a task in the instance ``root_id`` and what it sent to each
        (``submissions.unit_items``)."""
        return submissions.unit_items(self.db, root_id, unit_code, element_id)

    def submit(self, batch: list[Submission], as_of: dt.datetime, root_id: int | None = None) -> int:
        """Record a batch of submissions in one transaction; return how many were new.

        The whole batch is checked first; any refusal raises ``SubmissionError`` naming
        every unit at fault, and nothing is written. Sending the same submission again
        (same unit, time and answers) is a no-op.
        """
        return submissions.submit(self.db, self.plan, batch, as_of, root_id)

    # --- timers, reminders and escalations -------------------------------------------

    def next_timer_at(self, root_id: int | None = None) -> dt.datetime | None:
        with self.db.connect() as conn:
            return timers.next_at(conn, root_id)

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
        return timers.fire_due(self.db, self.plan, as_of, root_id)
