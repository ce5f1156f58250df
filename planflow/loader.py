"""Load a process definition (YAML) with its registry, forms and calendar, and validate it.

Every problem names the file, the line and the element (or unit, or criterion), and says
what to change; a referenced file that cannot be read at all is named at the definition's
line that refers to it. Nothing is half-loaded: either ``load_plan`` returns a complete
``Plan`` or it raises ``DefinitionError`` carrying every problem found.

Validation is a table of small named rules (``planflow.definition_rules``,
``planflow.time_rules``, ``planflow.graph_rules``; a registry's and a form's in
``planflow.registry_rules``): the tables below are the one place that says which apply,
and in which order; ``check_definition`` runs them. A rule that fails on odd input is a
located problem too, never a traceback. Each rule is linear in what it looks at, so checking
time grows with the size of the definition, not its square.
"""

from __future__ import annotations

import gc
import hashlib
import os
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from pydantic import ValidationError

from planflow.calendar import BusinessCalendar
from planflow.calendar_file import find_calendar
from planflow.definition_rules import (
    RuleContext, boundaries_are_valid, call_units_exist, calls_known_process, conditions_are_expressions,
    document_recipients_exist, due_is_readable, element_ids_are_unique, end_has_no_next, escalations_are_valid,
    gateway_has_conditions, gateway_has_default, gateway_has_no_next, handler_is_known, has_end_event,
    has_one_start_event, leads_somewhere, next_targets_exist, no_timer_in_subprocess, only_gateway_has_conditions,
    only_start_has_timer, only_user_task_has_boundary, only_user_task_takes_corrections, reminders_are_offsets,
    send_task_has_recipients, send_task_has_template, stage_ids_are_unique, stage_is_declared, task_has_stage,
    user_task_has_form, user_task_has_units,
)
from planflow.graph_rules import every_element_is_reachable, every_loop_has_a_way_out, joins_can_complete
from planflow.model import Definition, Element, Form, Process, Registry
from planflow.plan_years import fixed_year, this_year, with_year
from planflow.problems import CalendarError, CalendarFileError, DefinitionError, Problem
from planflow.registry_rules import FORM_RULES, REGISTRY_RULES, Source, check
from planflow.time_rules import due_is_after_the_start, start_timer_is_valid, timezone_exists
from planflow.yaml_quick import quick_load
from planflow.yaml_reader import LINE_KEY, display_path, line_at, line_of, load_mapping, read_file, strip_lines

__all__ = ["DefinitionError", "Plan", "Problem", "check_definition", "load_form", "load_mapping", "load_plan",
           "load_registry"]


@dataclass(frozen=True)
class Plan:
    """A definition with everything it refers to, loaded and checked."""

    definition: Definition
    registry: Registry
    forms: dict[str, Form]
    calendar: BusinessCalendar
    path: Path
    digest: str
    template_dir: Path | None = None
    every_year: bool = False  # written for every year ({year}, no ``year:``); ``definition.year`` is this one's
    sources: tuple[str, ...] = ()  # the files it was read from (the definition first), for its record
    memo: dict = field(default_factory=dict, compare=False, repr=False)  # values derived once per plan

    @property
    def id(self) -> str:
        return self.definition.id

    @property
    def year(self) -> int:
        return self.definition.year


# --- the rules, in the order they run ---------------------------------------------------

DefinitionRule = Callable[[RuleContext], Iterable[Problem]]
ProcessRule = Callable[[Process, RuleContext], Iterable[Problem]]
ElementRule = Callable[[Element, RuleContext], Iterable[Problem]]

DEFINITION_RULES: list[DefinitionRule] = [stage_ids_are_unique, document_recipients_exist, timezone_exists]
PROCESS_RULES: list[ProcessRule] = [element_ids_are_unique, has_one_start_event, has_end_event]
# the flow graph is walked only once nothing else is wrong
GRAPH_RULES: list[ProcessRule] = [every_element_is_reachable, every_loop_has_a_way_out, joins_can_complete]

_FLOW = [next_targets_exist, stage_is_declared]
_TASK = [task_has_stage, leads_somewhere, only_start_has_timer, no_timer_in_subprocess]
_NOT_TASK = [leads_somewhere, only_start_has_timer, no_timer_in_subprocess]
_BOUNDARY = [only_user_task_has_boundary, only_user_task_takes_corrections, boundaries_are_valid]  # not a userTask

ELEMENT_RULES: dict[str, list[ElementRule]] = {
    "startEvent": [*_FLOW, leads_somewhere, no_timer_in_subprocess, start_timer_is_valid, *_BOUNDARY,
                   only_gateway_has_conditions],
    "endEvent": [*_FLOW, end_has_no_next, only_start_has_timer, no_timer_in_subprocess, *_BOUNDARY,
                 only_gateway_has_conditions],
    "serviceTask": [*_FLOW, *_TASK, handler_is_known, *_BOUNDARY, only_gateway_has_conditions],
    "sendTask": [*_FLOW, *_TASK, send_task_has_template, send_task_has_recipients, *_BOUNDARY,
                 only_gateway_has_conditions],
    "userTask": [*_FLOW, *_TASK, user_task_has_form, user_task_has_units, due_is_readable, due_is_after_the_start,
                 reminders_are_offsets, escalations_are_valid, boundaries_are_valid, only_gateway_has_conditions],
    "callActivity": [*_FLOW, *_TASK, *_BOUNDARY, calls_known_process, call_units_exist, only_gateway_has_conditions],
    "exclusiveGateway": [*_FLOW, *_NOT_TASK, *_BOUNDARY, gateway_has_default, gateway_has_conditions,
                         conditions_are_expressions, gateway_has_no_next],
    "parallelGateway": [*_FLOW, *_NOT_TASK, *_BOUNDARY, only_gateway_has_conditions],
}


def check_definition(ctx: RuleContext) -> list[Problem]:
    """Every problem the rules find, in the order of the tables: the definition, then each
    process (main first) with its elements in file order, then its graph."""
    problems = [p for rule in DEFINITION_RULES for p in _run(rule, None, ctx)]
    for proc in [ctx.definition.main, *ctx.definition.subprocesses]:
        inside = ctx.inside(proc)
        problems += [p for rule in PROCESS_RULES for p in _run(rule, None, proc, inside)]
        for e in proc.elements:
            problems += [p for rule in ELEMENT_RULES[e.type] for p in _run(rule, e, e, inside)]
        if not problems:
            problems += [p for rule in GRAPH_RULES for p in _run(rule, None, proc, inside)]
    return problems


def _run(rule, e: Element | None, *args) -> list[Problem]:
    """A rule's problems; a rule that fails on what it was given says so at the element
    (a located problem, not a traceback) so one odd input cannot hide the others."""
    try:
        return list(rule(*args))
    except Exception as exc:  # noqa: BLE001 - any failure of a check is reported as a problem
        ctx = args[-1]
        return [ctx.problem(e, f"could not be checked ({rule.__name__}: {type(exc).__name__}: {exc}); "
                               "correct what is odd here")]


# --- loading ---------------------------------------------------------------------------


def _lines_to_fields(raw):
    """Turn the loader's ``__line__`` markers into ``line`` fields where the model has one."""

    def with_line(item):
        return {**strip_lines(item), "line": item.get(LINE_KEY, 0)} if isinstance(item, dict) else item

    def element(e):
        if not isinstance(e, dict):
            return e
        out = with_line(e)
        for key in ("boundary", "escalations"):
            if isinstance(e.get(key), list):
                out[key] = [with_line(b) for b in e[key]]
        if isinstance(e.get("timer"), dict):
            out["timer"] = with_line(e["timer"])
        return out

    def process(p):
        if not isinstance(p, dict):
            return p
        out = with_line(p)
        if isinstance(p.get("elements"), list):
            out["elements"] = [element(e) for e in p["elements"]]
        return out

    data = process(raw)
    if isinstance(raw.get("subprocesses"), list):
        data["subprocesses"] = [process(p) for p in raw["subprocesses"]]
    if isinstance(raw.get("stages"), list):
        data["stages"] = [with_line(s) for s in raw["stages"]]
    return data


def _element_at(raw, loc, kind: str = "element") -> str | None:
    """The id of the innermost element on the path ``loc`` (the code of a unit or criterion)."""
    node = raw
    found = None
    for key in loc:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            break
        if not isinstance(node, dict):
            continue
        if kind == "element" and "type" in node and "id" in node:
            found = node.get("id")
        elif kind != "element" and isinstance(node.get("code"), str):
            found = node["code"]
    return found if isinstance(found, str) else None


def _pydantic_problems(exc: ValidationError, raw, file: str, kind: str = "element") -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        if err["type"] == "extra_forbidden":
            msg = f"unknown field '{loc[-1]}' (check its spelling)"
        elif err["type"] == "missing":
            msg = f"missing required field '{loc[-1]}'"
        else:
            msg = f"{'.'.join(str(x) for x in loc)}: {err['msg']}"
        problems.append(Problem(file, line_at(raw, loc), _element_at(raw, loc, kind), msg, kind))
    return problems


def _load_model(model, path: Path, what: str, kind: str, rules: list, quick: bool = False):
    """A registry or form read, validated by its model, then checked by its rules. ``quick``:
    read first without lines (``quick_load``), and again with lines only if that cannot be done
    or anything is wrong, so that every problem is said exactly as it is without ``quick``."""
    text = read_file(path, what)
    if quick:
        loaded = _quick_model(model, text, display_path(path), rules)
        if loaded is not None:
            return loaded
    raw, file = load_mapping(path, what, text=text)
    try:
        loaded = model.model_validate(strip_lines(raw))
    except ValidationError as exc:
        raise DefinitionError(_pydantic_problems(exc, raw, file, kind)) from None
    problems = check(loaded, Source(file, raw), rules)
    if problems:
        raise DefinitionError(problems)
    return loaded


def _quick_model(model, text: str, file: str, rules: list):
    """The model of a text read without lines, or None when it cannot be read so, or the model or
    its rules find anything wrong (the caller then reads it with lines, to say where)."""
    data = quick_load(text)
    if data is None:
        return None
    try:
        loaded = model.model_validate(data)
    except ValidationError:
        return None
    return None if check(loaded, Source(file, data), rules) else loaded


def load_registry(path: Path) -> Registry:
    # quick: a unit's fields are text or dates, and a quoted date means the same as a plain one
    with _gc_paused():
        return _load_model(Registry, path, "registry", "unit", REGISTRY_RULES, quick=True)


@contextmanager
def _gc_paused():
    """The cyclic garbage collector paused while a registry's data and model are built: they hold
    no cycles, and each of its passes walks the whole growing heap (30 000 units: 0.87 s → 0.41–0.61
    s of CPU for ``load_plan``). Left as it was found (another caller may have paused it too)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def load_form(path: Path) -> Form:
    return _load_model(Form, path, "form", "criterion", FORM_RULES)


def _load_forms(definition: Definition, base: Path, ref: _References, problems: list[Problem]) -> dict[str, Form]:
    forms = {}
    for form_id, rel in definition.forms.items():
        form = ref.load(load_form, base / rel, ("forms", form_id), f"form '{form_id}'", problems)
        if form is None:
            continue
        if form.id != form_id:
            problems.append(Problem(ref.file, ref.line("forms", form_id), None,
                                    f"form '{form_id}' points to {rel}, whose id is '{form.id}'"))
        forms[form_id] = form
    return forms


@dataclass(frozen=True)
class _References:
    """The definition's raw mapping, to say a referenced file's problem at the line that names it."""

    file: str
    raw: dict

    def line(self, *path) -> int:
        return line_at(self.raw, path) or line_of(self.raw)

    def load(self, load, target: Path, path: tuple, what: str, problems: list[Problem]):
        """``load(target)``, or None with its problems added: a file that cannot be read at all
        (no line in it) is said at the definition's line that names it."""
        try:
            return load(target)
        except DefinitionError as exc:
            for p in exc.problems:
                said = p.message.removeprefix(f"{path[0].removesuffix('s')}: ")  # "registry: ", "form: "
                problems.append(p if p.line else Problem(self.file, self.line(*path), None, f"{what} ({p.file}): {said}"))
            return None

    def calendar(self, definition: Definition, base: Path, problems: list[Problem]) -> BusinessCalendar | None:
        try:
            return BusinessCalendar.load(definition.calendar, base_dir=base)
        except CalendarFileError as exc:  # a problem inside the calendar file: said there
            problems += [replace(p, file=display_path(Path(p.file))) if p.line else
                         Problem(self.file, self.line("calendar"), None, f"calendar '{definition.calendar}': {exc}")
                         for p in exc.problems]
        except (CalendarError, OSError) as exc:
            problems.append(Problem(self.file, self.line("calendar"), None, f"calendar '{definition.calendar}': {exc}"))
        return None


def _year_rewrite(file: str, year: int | None, chosen: dict):
    """The definition's text for ``year`` (``{year}`` written out); a fixed ``year:`` other than
    the one asked is refused at its line."""
    def rewrite(text: str) -> str:
        fixed, line = fixed_year(text)
        if fixed is not None and year is not None and fixed != year:
            raise DefinitionError([Problem(file, line, None, f"year: this is the plan of {fixed}, not of {year}: "
                                           "leave `year:` out (and write {year} where the year goes) to make "
                                           "it a plan of every year", "definition")])
        chosen.update(year=fixed or year or this_year(), every_year=fixed is None)
        return with_year(text, chosen["year"])
    return rewrite


def load_plan(path: str | Path, year: int | None = None) -> Plan:
    """The plan of ``path`` for ``year``: a definition with a fixed ``year:`` is that year's
    (another year asked is refused); one without is the plan of the year asked, this year when
    none is (``planflow.plan_years``)."""
    path = Path(path)
    chosen: dict = {}
    raw, file = load_mapping(path, "definition", rewrite=_year_rewrite(display_path(path), year, chosen))
    if raw.get("year") is None:
        raw["year"] = chosen["year"]
    try:
        definition = Definition.model_validate(_lines_to_fields(raw))
    except ValidationError as exc:
        raise DefinitionError(_pydantic_problems(exc, raw, file)) from None

    base = path.resolve().parent
    ref = _References(file, raw)
    problems: list[Problem] = []
    registry = ref.load(load_registry, base / definition.registry, ("registry",), "registry", problems)
    forms = _load_forms(definition, base, ref, problems)
    calendar = ref.calendar(definition, base, problems)
    template_dir = (base / definition.templates) if definition.templates else None
    if template_dir is not None and not template_dir.is_dir():
        problems.append(Problem(file, ref.line("templates"), None, f"templates: folder '{definition.templates}' "
                                "not found next to the plan: give the folder that "
                                "holds the plan's own letter templates (<kind>.txt.j2, …), or leave the key out"))

    if not problems:
        lines = getattr(raw, "key_lines", {})
        problems += check_definition(RuleContext(definition, registry, forms, calendar, template_dir, file,
                                                 lines=lines))
    if problems:
        raise DefinitionError(problems)
    sources = _sources(path, definition, base, template_dir)
    try:
        digest = sources_digest(sources)
    except OSError as exc:  # a file went away while it was checked
        raise DefinitionError([Problem(file, 0, None, f"definition: cannot be read: {exc.strerror}")]) from None
    return Plan(definition, registry, forms, calendar, path.resolve(), digest, template_dir,
                every_year=chosen["every_year"], sources=tuple(str(p) for p in sources))


def _sources(path: Path, definition: Definition, base: Path, template_dir: Path | None) -> list[Path]:
    """The files a plan is made of, the definition first: its registry, forms, its own calendar
    (not one planflow ships) and its templates."""
    files = [path.resolve(), (base / definition.registry).resolve(),
             *((base / rel).resolve() for rel in definition.forms.values())]
    calendar = find_calendar(definition.calendar, base)
    if calendar.is_relative_to(base):
        files.append(calendar)
    if template_dir is not None:
        files += sorted(p.resolve() for p in template_dir.rglob("*") if p.is_file())
    return list(dict.fromkeys(files))


def sources_digest(files: list[Path]) -> str:
    """One digest of a plan's files (names relative to the definition's folder, and contents)."""
    h = hashlib.sha256()
    base = files[0].parent
    for p in files:
        h.update(os.path.relpath(p, base).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]
