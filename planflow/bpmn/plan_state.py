"""Where a plan instance stands, element by element, for its diagram (``planflow.bpmn.diagram``).

Each element of each process is *done* (every token that reached it moved on, in every
sub-process instance), *active* (a token is at it: a task open, a join waiting), *overdue*
(active, and some of its units are past their due moment without a report), *stalled*
(something an operator must handle: ``Engine.stalled``) or *not reached*. A user task with
a criteria form counts its units as the summary does ("187/265 đã báo cáo"); an element of
a sub-process run per district counts the districts that are past it ("7/12 đã xong").

Read only, through the engine's functions: the summary (``planflow.summary``), the units
each task asks (``planflow.progress.units_per_element``), the tokens in each status (``planflow.tokens.in_status``)
and ``Engine.stalled``. Nothing here writes.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

from planflow import tokens
from planflow.progress import REPORTED, unit_counts, units_per_element
from planflow.summary import build_summary

DONE, ACTIVE, OVERDUE, STALLED, NOT_REACHED = "done", "active", "overdue", "stalled", "not_reached"
OPEN_TOKENS = ("active", "waiting", "ready", "running")
FINISHED_TOKENS = ("completed", "cancelled")


@dataclass(frozen=True)
class ElementState:
    """One element's state and the counts drawn beside it."""

    status: str  # DONE | ACTIVE | OVERDUE | STALLED | NOT_REACHED
    done: int | None = None  # units reported, or sub-process instances past the element
    total: int | None = None  # units asked, or sub-process instances
    noun: str = "đã xong"  # what ``done`` counts: "đã báo cáo" for units
    overdue: int = 0  # units past due, not reported, task still open
    missing: int = 0  # units whose task closed without their report
    stalled: int = 0  # items ``Engine.stalled`` names at this element

    def badges(self) -> list[str]:
        """The lines of the element's count badge, in Vietnamese (none: no badge)."""
        lines = [f"{self.done}/{self.total} {self.noun}"] if self.total else []
        lines += [f"{self.overdue} quá hạn"] if self.overdue else []
        lines += [f"{self.missing} không báo cáo"] if self.missing else []
        lines += [f"{self.stalled} cần xử lý"] if self.stalled else []
        return lines


@dataclass(frozen=True)
class PlanState:
    """A plan instance at a moment, element by element (keys: (process id, element id))."""

    key: str
    as_of: dt.datetime  # in the plan's time zone
    reported: int  # units that sent their self-evaluation, as ``planflow status`` counts them
    expected: int  # units asked
    elements: dict[tuple[str, str], ElementState] = field(default_factory=dict)

    def of(self, process_id: str, element_id: str) -> ElementState:
        return self.elements.get((process_id, element_id), ElementState(NOT_REACHED))


def _tokens(engine, root_id: int) -> tuple[dict, dict, dict]:
    """(open, finished) instance ids per (process, element), and every instance id per process."""
    open_: dict[tuple[str, str], set[int]] = {}
    finished: dict[tuple[str, str], set[int]] = {}
    instances: dict[str, set[int]] = {}
    with engine.db.connect() as conn:
        for status in (*OPEN_TOKENS, *FINISHED_TOKENS):
            into = open_ if status in OPEN_TOKENS else finished
            for _token, iid, element_id, process_id, _at in tokens.in_status(conn, engine.plan, status, root_id):
                into.setdefault((process_id, element_id), set()).add(iid)
                instances.setdefault(process_id, set()).add(iid)
    return open_, finished, instances


def _unit_counts(units: dict, element_id: str, asked: set[str], as_of: dt.datetime) -> dict:
    """Reported of asked, overdue (open, past due) and missing (closed unreported) units of a task."""
    mine = {c: u for c, u in units.items() if u["element"] == element_id and c in asked}
    overdue = sum(1 for u in mine.values() if u["status"] == "open" and u["due"]
                  and as_of > dt.datetime.fromisoformat(u["due"]))
    return {"done": sum(1 for u in mine.values() if u["status"] in REPORTED), "total": len(asked),
            "noun": "đã báo cáo", "overdue": overdue,
            "missing": sum(1 for u in mine.values() if u["status"] == "missing")}


def _status(open_: set, finished: set, instances: set, counts: dict, stalled: int) -> str:
    if stalled:
        return STALLED
    if open_:
        return OVERDUE if counts.get("overdue") else ACTIVE
    if finished:
        return DONE if finished >= instances else ACTIVE  # some instances not past it yet
    return NOT_REACHED


def _element_state(process, e, ctx) -> ElementState:
    key = (process.id, e.id)
    open_, finished = ctx["open"].get(key, set()), ctx["finished"].get(key, set()) - ctx["open"].get(key, set())
    instances = ctx["instances"].get(process.id, set())
    if key in ctx["asked"]:
        counts = _unit_counts(ctx["units"], e.id, ctx["asked"][key], ctx["as_of"])
    elif e.type == "callActivity":
        sub = ctx["engine"].plan.definition.process(e.process)
        ended = set().union(*(ctx["finished"].get((sub.id, x.id), set()) for x in sub.elements if x.type == "endEvent"))
        counts = {"done": len(ended), "total": len(ctx["instances"].get(sub.id, set()))}
    elif len(instances) > 1 and (open_ or finished) and len(finished) < len(instances):
        counts = {"done": len(finished), "total": len(instances)}  # some districts past it, others not
    else:
        counts = {}
    stalled = ctx["stalled"].get(e.id, 0)
    return ElementState(_status(open_, finished, instances, counts, stalled), stalled=stalled, **counts)


def plan_state(engine, root_id: int, as_of: dt.datetime, progress=None) -> PlanState:
    """Where instance ``root_id`` stands at ``as_of``, every element of every process;
    ``progress``: the instance's ``planflow.progress.Progress`` at that moment when the caller
    has it (its summary and counts are not built again)."""
    plan = engine.plan
    summary = progress.summary if progress is not None else build_summary(engine, root_id, as_of=as_of)
    open_, finished, instances = _tokens(engine, root_id)
    ctx = {"engine": engine, "as_of": as_of, "units": summary["units"], "open": open_, "finished": finished,
           "instances": instances, "asked": units_per_element(engine, engine.instance(root_id).started_at),
           "stalled": Counter(item["step"] for item in engine.stalled(root_id))}
    states: dict[tuple[str, str], ElementState] = {}
    for process in [plan.definition.main, *plan.definition.subprocesses]:
        for e in process.elements:
            state = states[(process.id, e.id)] = _element_state(process, e, ctx)
            for b in e.boundary:  # an interrupting timer that closed the task left units unreported
                states[(process.id, b.id)] = ElementState(DONE if state.missing else NOT_REACHED)
    reported, expected = ((progress.reported, progress.expected) if progress is not None
                          else unit_counts(engine, root_id))
    return PlanState(key=summary["instance"], as_of=as_of.astimezone(plan.calendar.tz), reported=reported,
                     expected=expected, elements=states)
