"""The rules a definition follows, each small and named, each usable alone.

A rule looks at one thing (the definition, a process or an element) with a
``RuleContext`` (what the definition refers to) and yields the ``Problem``s it finds,
each naming the file, the line and the element. Which rules apply to what, and in which
order, is said in one place: the tables of ``planflow.loader``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from planflow.calendar import BusinessCalendar
from planflow.deadlines import resolve_due, sample_start
from planflow.expressions import ExpressionError, compile_condition, parse_collection
from planflow.model import SERVICE_HANDLERS, Definition, Element, Form, Process, Registry
from planflow.notifications import KINDS, check_template
from planflow.problems import CalendarError, Problem, listed

Problems = Iterator[Problem]

# who an escalation may write to, besides the units of the registry
ESCALATION_ROLES = ("unit.head", "unit.parent")


@dataclass
class RuleContext:
    """What the rules may look at: the definition, what it refers to, the process being checked."""

    definition: Definition
    registry: Registry
    forms: dict[str, Form]
    calendar: BusinessCalendar
    template_dir: Path | None
    file: str
    process: Process | None = None
    template_problems: dict[str, list] = field(default_factory=dict)  # template -> its problems, checked once
    memos: dict = field(default_factory=dict)  # values the rules derive once per definition (shared)
    lines: dict = field(default_factory=dict)  # top-level key -> the line it is written on

    @property
    def in_subprocess(self) -> bool:
        return self.process is not None and self.process is not self.definition.main

    def inside(self, process: Process) -> RuleContext:
        """The same context, checking ``process`` (the template cache is shared)."""
        return replace(self, process=process)

    def memo(self, key: str, compute):
        """``compute()``, once per definition (every process's context shares the answer)."""
        if key not in self.memos:
            self.memos[key] = compute()
        return self.memos[key]

    def process_line(self, proc: Process) -> int:
        """The line a process starts on (the main one: its ``elements:``)."""
        return proc.line or self.lines.get("elements") or self.definition.line

    def problem(self, e: Element | None, message: str, line: int | None = None) -> Problem:
        """A problem at ``e`` (at ``line`` inside it when given), or at the definition when no element."""
        return Problem(self.file, line or (e.line if e else self.definition.line), e.id if e else None, message)


# --- what several rules share ----------------------------------------------------------


def collection_problems(ctx: RuleContext, e: Element | None, text: str, what: str) -> Problems:
    """A collection of units (``departments + districts``, ``communes of scope``) names known groups."""
    try:
        terms = parse_collection(text)
    except ExpressionError as exc:
        yield ctx.problem(e, str(exc))
        return
    groups = ctx.registry.group_names
    for t in terms:
        if (t.group is None or t.of_scope) and not ctx.in_subprocess:
            yield ctx.problem(e, f"{what} '{text}' uses 'scope', which only exists inside a sub-process")
        if t.group is not None and t.group not in groups:
            yield ctx.problem(e, f"{what} '{text}': unknown registry group '{t.group}'; the registry "
                                 f"has {listed(sorted(groups))}")


def template_problems(ctx: RuleContext, e: Element, name: str, line: int | None = None) -> Problems:
    """A template is shipped or in the plan's ``templates`` folder, and renders its sample."""
    if name not in KINDS:
        own = ctx.template_dir is not None and (ctx.template_dir / f"{name}.txt.j2").exists()
        note = (f" (the plan's templates folder has {name}.txt.j2, but a plan restyles the kinds planflow sends; "
                "it cannot add one)") if own else ""
        yield ctx.problem(e, f"unknown template '{name}'{note}: known templates are {', '.join(sorted(KINDS))}", line)
        return
    if name not in ctx.template_problems:
        ctx.template_problems[name] = check_template(name, template_dir=ctx.template_dir)
    for tp in ctx.template_problems[name]:
        yield ctx.problem(e, f"template {tp.template} line {tp.line}: {tp.message}", line)


def offset_problems(ctx: RuleContext, e: Element, spec: str, what: str, line: int | None = None) -> Problems:
    """An offset (``-5wd``, ``P7D``) the calendar can read."""
    try:
        ctx.calendar.parse_offset(spec)
    except CalendarError as exc:
        yield ctx.problem(e, f"{what}: {exc}", line)


# --- the definition --------------------------------------------------------------------


def stage_ids_are_unique(ctx: RuleContext) -> Problems:
    counts = Counter(s.id for s in ctx.definition.stages)
    for s in ctx.definition.stages:
        if counts[s.id] > 1:
            yield ctx.problem(None, f"stage '{s.id}' is declared twice", s.line)


def document_recipients_exist(ctx: RuleContext) -> Problems:
    yield from collection_problems(ctx, None, ctx.definition.document.recipients, "document recipients")


# --- a process -------------------------------------------------------------------------


def element_ids_are_unique(proc: Process, ctx: RuleContext) -> Problems:
    seen = set()
    for e in proc.elements:
        if e.id in seen:
            yield ctx.problem(e, f"id '{e.id}' is used twice in process '{proc.id}'")
        seen.add(e.id)


def has_one_start_event(proc: Process, ctx: RuleContext) -> Problems:
    """One startEvent; when there are more, each is named at its line."""
    starts = [e for e in proc.elements if e.type == "startEvent"]
    if not starts:
        yield Problem(ctx.file, ctx.process_line(proc), None, f"process '{proc.id}' needs exactly one startEvent, has 0")
        return
    if len(starts) > 1:
        where = listed(f"'{e.id}' (line {e.line})" for e in starts)
        for e in starts:
            yield ctx.problem(e, f"process '{proc.id}' has {len(starts)} startEvents ({where}): "
                                 "a process starts at exactly one; keep one")


def has_end_event(proc: Process, ctx: RuleContext) -> Problems:
    if not any(e.type == "endEvent" for e in proc.elements):
        yield Problem(ctx.file, ctx.process_line(proc), None, f"process '{proc.id}' has no endEvent")


# --- every element ---------------------------------------------------------------------


def next_targets_exist(e: Element, ctx: RuleContext) -> Problems:
    for target in e.targets():
        if not ctx.process.has(target):
            known = listed(ctx.memo(f"ids of {ctx.process.id}", lambda: [x.id for x in ctx.process.elements]))
            yield ctx.problem(e, f"'{target}' is not an element of process '{ctx.process.id}' (known: {known})")


def stage_is_declared(e: Element, ctx: RuleContext) -> Problems:
    stage_ids = ctx.memo("stage_ids", lambda: {s.id for s in ctx.definition.stages})
    if e.stage and e.stage not in stage_ids:
        yield ctx.problem(e, f"unknown stage '{e.stage}': declare it under stages ({listed(sorted(stage_ids))})")


def task_has_stage(e: Element, ctx: RuleContext) -> Problems:
    """For the tasks and call activities: a flow of the plan drives them."""
    if not e.stage:
        yield ctx.problem(e, f"a {e.type} needs a 'stage' so a flow of the plan drives it")


def leads_somewhere(e: Element, ctx: RuleContext) -> Problems:
    """For every kind but an endEvent."""
    if not e.targets():
        yield ctx.problem(e, "has no 'next': every element but an endEvent must lead somewhere")


def end_has_no_next(e: Element, ctx: RuleContext) -> Problems:
    if e.next:
        yield ctx.problem(e, "an endEvent cannot have 'next'")


def only_start_has_timer(e: Element, ctx: RuleContext) -> Problems:
    """For every kind but a startEvent."""
    if e.timer:
        yield ctx.problem(e, "only a startEvent can have a 'timer'")


def no_timer_in_subprocess(e: Element, ctx: RuleContext) -> Problems:
    if e.timer and ctx.in_subprocess:
        yield ctx.problem(e, "a sub-process starts when it is called, not on a timer")


def only_user_task_has_boundary(e: Element, ctx: RuleContext) -> Problems:
    """For every kind but a userTask."""
    if e.boundary:
        yield ctx.problem(e, "timer boundary events attach to a userTask")


def only_user_task_takes_corrections(e: Element, ctx: RuleContext) -> Problems:
    """For every kind but a userTask."""
    if e.corrections != "none":
        yield ctx.problem(e, "only a userTask takes 'corrections' (a unit's corrected answer)")


def boundaries_are_valid(e: Element, ctx: RuleContext) -> Problems:
    for b in e.boundary:
        yield from offset_problems(ctx, e, b.after, f"boundary '{b.id}' after '{b.after}'", b.line)
        if b.anchor == "due" and e.due is None:
            yield ctx.problem(e, f"boundary '{b.id}' is anchored on 'due' but the element has no due", b.line)
        if not b.interrupting and not b.next:
            yield ctx.problem(e, f"non-interrupting boundary '{b.id}' needs a 'next'", b.line)


def only_gateway_has_conditions(e: Element, ctx: RuleContext) -> Problems:
    """For every kind but an exclusiveGateway."""
    if e.conditions or e.default:
        yield ctx.problem(e, "only an exclusiveGateway has 'conditions' and 'default'")


# --- service and send tasks ------------------------------------------------------------


def handler_is_known(e: Element, ctx: RuleContext) -> Problems:
    if e.handler not in SERVICE_HANDLERS:
        yield ctx.problem(e, f"unknown handler '{e.handler}': known handlers are {', '.join(sorted(SERVICE_HANDLERS))}")


def send_task_has_template(e: Element, ctx: RuleContext) -> Problems:
    if not e.template:
        yield ctx.problem(e, "a sendTask needs a 'template'")
    else:
        yield from template_problems(ctx, e, e.template)


def send_task_has_recipients(e: Element, ctx: RuleContext) -> Problems:
    if not e.to:
        yield ctx.problem(e, "a sendTask needs 'to' (a collection of units)")
    else:
        yield from collection_problems(ctx, e, e.to, "to")


# --- user tasks ------------------------------------------------------------------------


def user_task_has_form(e: Element, ctx: RuleContext) -> Problems:
    if not e.form:
        yield ctx.problem(e, "a userTask needs a 'form'")
    elif e.form not in ctx.forms:
        yield ctx.problem(e, f"unknown form '{e.form}': forms are {listed(sorted(ctx.forms))}")


def user_task_has_units(e: Element, ctx: RuleContext) -> Problems:
    if not e.for_each:
        yield ctx.problem(e, "a userTask needs 'for_each' (the units that must do it, e.g. 'departments')")
    else:
        yield from collection_problems(ctx, e, e.for_each, "for_each")


def due_is_readable(e: Element, ctx: RuleContext) -> Problems:
    """A userTask's ``due`` resolves on the plan's calendar (relative ones from early in the plan's year)."""
    if e.due is None:
        yield ctx.problem(e, "a userTask needs 'due' (e.g. {before: \"2022-12-10\"})")
        return
    try:
        resolve_due(ctx.calendar, e.due, start=sample_start(ctx.definition.year, ctx.calendar))
    except CalendarError as exc:
        yield ctx.problem(e, f"due: {exc}")


def reminders_are_offsets(e: Element, ctx: RuleContext) -> Problems:
    for r in e.reminders:
        yield from offset_problems(ctx, e, r, f"reminder '{r}'")


def escalations_are_valid(e: Element, ctx: RuleContext) -> Problems:
    """Each rung: an offset, a template, and units of the registry (or the unit's head or parent)."""
    for esc in e.escalations:
        yield from offset_problems(ctx, e, esc.after, f"escalation after '{esc.after}'", esc.line)
        yield from template_problems(ctx, e, esc.template, esc.line)
        for who in esc.to:
            if who not in ESCALATION_ROLES and who not in ctx.registry:
                yield ctx.problem(e, f"escalation to '{who}': not a unit of the registry "
                                     "(or 'unit.head', 'unit.parent')", esc.line)


# --- call activities -------------------------------------------------------------------


def calls_known_process(e: Element, ctx: RuleContext) -> Problems:
    sub_ids = ctx.memo("subprocess_ids", lambda: {p.id for p in ctx.definition.subprocesses})
    if e.process not in sub_ids:
        yield ctx.problem(e, f"calls unknown process '{e.process}': sub-processes are "
                             f"{listed(sorted(sub_ids)) or 'none'}")


def call_units_exist(e: Element, ctx: RuleContext) -> Problems:
    if e.for_each:
        yield from collection_problems(ctx, e, e.for_each, "for_each")


# --- exclusive gateways ----------------------------------------------------------------


def gateway_has_default(e: Element, ctx: RuleContext) -> Problems:
    if not e.default:
        yield ctx.problem(e, "an exclusiveGateway needs a 'default' flow, taken when no condition holds")


def gateway_has_conditions(e: Element, ctx: RuleContext) -> Problems:
    if not e.conditions:
        yield ctx.problem(e, "an exclusiveGateway needs 'conditions'")


def conditions_are_expressions(e: Element, ctx: RuleContext) -> Problems:
    for c in e.conditions:
        try:
            compile_condition(c.when)
        except ExpressionError as exc:
            yield ctx.problem(e, str(exc))


def gateway_has_no_next(e: Element, ctx: RuleContext) -> Problems:
    if e.next:
        yield ctx.problem(e, "an exclusiveGateway leaves by 'conditions' and 'default', not 'next'")
