"""Load a process definition (YAML) with its registry, forms and calendar, and validate it.

Every problem names the file, the line and the element, and says what to change.
Nothing is half-loaded: either ``load_plan`` returns a complete ``Plan`` or it raises
``DefinitionError`` carrying every problem found.
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from planflow.yaml_reader import LINE_KEY, YamlError, line_at, load_with_lines, strip_lines
from planflow.calendar import BusinessCalendar, CalendarError
from planflow.deadlines import resolve_due, sample_start
from planflow.expressions import ExpressionError, compile_condition, parse_collection
from planflow.model import SERVICE_HANDLERS, Definition, Element, Form, Process, Registry


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    element: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        what = f" element '{self.element}':" if self.element else ""
        return f"{where}:{what} {self.message}"


class DefinitionError(ValueError):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


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
    memo: dict = field(default_factory=dict, compare=False, repr=False)  # values derived once per plan

    @property
    def id(self) -> str:
        return self.definition.id


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _lines_to_fields(raw):
    """Turn the loader's ``__line__`` markers into ``line`` fields where the model has one."""

    def element(e):
        if not isinstance(e, dict):
            return e
        out = {k: v for k, v in strip_lines(e).items()}
        out["line"] = e.get(LINE_KEY, 0)
        for key in ("boundary", "escalations"):
            if isinstance(e.get(key), list):
                out[key] = [
                    {**strip_lines(b), "line": b.get(LINE_KEY, 0)} if isinstance(b, dict) else b
                    for b in e[key]
                ]
        return out

    def process(p):
        if not isinstance(p, dict):
            return p
        out = strip_lines(p)
        out["line"] = p.get(LINE_KEY, 0)
        if isinstance(p.get("elements"), list):
            out["elements"] = [element(e) for e in p["elements"]]
        return out

    data = process(raw)
    if isinstance(raw.get("subprocesses"), list):
        data["subprocesses"] = [process(p) for p in raw["subprocesses"]]
    if isinstance(raw.get("stages"), list):
        data["stages"] = [
            {**strip_lines(s), "line": s.get(LINE_KEY, 0)} if isinstance(s, dict) else s
            for s in raw["stages"]
        ]
    return data


def _element_at(raw, loc) -> str | None:
    node = raw
    found = None
    for key in loc:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            break
        if isinstance(node, dict) and "type" in node and "id" in node:
            found = node.get("id")
    return found


def _pydantic_problems(exc: ValidationError, raw, file: str) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        where = ".".join(str(x) for x in loc)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = f"unknown field '{loc[-1]}' (check its spelling)"
        elif err["type"] == "missing":
            msg = f"missing required field '{loc[-1]}'"
        elif err["type"] == "literal_error":
            msg = f"{where}: {msg}"
        else:
            msg = f"{where}: {msg}"
        problems.append(Problem(file, line_at(raw, loc), _element_at(raw, loc), msg))
    return problems


def load_mapping(path: Path, what: str) -> tuple[dict, str]:
    """A YAML file that must hold a mapping (lines kept), and the name errors give it."""
    file = _display(path)
    try:
        raw = load_with_lines(path)
    except YamlError as exc:
        raise DefinitionError([Problem(file, exc.line, None, f"{what}: {exc.message}")]) from None
    if not isinstance(raw, dict):
        raise DefinitionError([Problem(file, 1, None, f"a {what} must be a YAML mapping")])
    return raw, file


def _load_model(model, path: Path, what: str):
    raw, file = load_mapping(path, what)
    try:
        return model.model_validate(strip_lines(raw))
    except ValidationError as exc:
        raise DefinitionError(_pydantic_problems(exc, raw, file)) from None


def load_registry(path: Path) -> Registry:
    return _load_model(Registry, path, "registry")


def load_form(path: Path) -> Form:
    return _load_model(Form, path, "form")


def load_plan(path: str | Path) -> Plan:
    path = Path(path)
    raw, file = load_mapping(path, "definition")
    try:
        definition = Definition.model_validate(_lines_to_fields(raw))
    except ValidationError as exc:
        raise DefinitionError(_pydantic_problems(exc, raw, file)) from None

    base = path.resolve().parent
    problems: list[Problem] = []
    registry = forms = calendar = None
    try:
        registry = load_registry(base / definition.registry)
    except DefinitionError as exc:
        problems += exc.problems
    forms = {}
    for form_id, rel in definition.forms.items():
        try:
            form = load_form(base / rel)
        except DefinitionError as exc:
            problems += exc.problems
            continue
        if form.id != form_id:
            problems.append(Problem(file, definition.line, None,
                                    f"form '{form_id}' points to {rel}, whose id is '{form.id}'"))
        forms[form_id] = form
    try:
        calendar = BusinessCalendar.load(definition.calendar, base_dir=base)
    except (CalendarError, FileNotFoundError) as exc:
        problems.append(Problem(file, definition.line, None, f"calendar '{definition.calendar}': {exc}"))
    template_dir = (base / definition.templates) if definition.templates else None

    if not problems:
        problems += _check(definition, registry, forms, calendar, template_dir, file)
    if problems:
        raise DefinitionError(problems)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return Plan(definition, registry, forms, calendar, path.resolve(), digest, template_dir)


# --- semantic checks -------------------------------------------------------------


def _check(d: Definition, registry: Registry, forms, calendar, template_dir, file) -> list[Problem]:
    from planflow.notifications import KINDS, check_template

    problems: list[Problem] = []
    stage_ids = {s.id for s in d.stages}
    sub_ids = {p.id for p in d.subprocesses}
    checked_templates: dict[str, list] = {}

    def bad(e: Element | None, message: str, line: int | None = None):
        problems.append(Problem(file, line or (e.line if e else d.line), e.id if e else None, message))

    def check_template_name(e, name, line=None):
        if name not in KINDS and not (template_dir and (template_dir / f"{name}.txt.j2").exists()):
            bad(e, f"unknown template '{name}': known templates are {', '.join(sorted(KINDS))}", line)
            return
        if name not in checked_templates:
            checked_templates[name] = check_template(name, template_dir=template_dir)
        for tp in checked_templates[name]:
            bad(e, f"template {tp.template} line {tp.line}: {tp.message}", line)

    def check_collection(e, text, in_sub, what):
        try:
            terms = parse_collection(text)
        except ExpressionError as exc:
            bad(e, str(exc))
            return
        for t in terms:
            if t.group is None or t.of_scope:
                if not in_sub:
                    bad(e, f"{what} '{text}' uses 'scope', which only exists inside a sub-process")
            if t.group is not None and t.group not in registry.group_names:
                bad(e, f"{what} '{text}': unknown registry group '{t.group}'; the registry "
                       f"has {', '.join(sorted(registry.group_names))}")

    def check_offset(e, spec, what, line=None):
        try:
            calendar.parse_offset(spec)
        except CalendarError as exc:
            bad(e, f"{what}: {exc}", line)

    for s in d.stages:
        if list(stage_ids).count(s.id) > 1:
            bad(None, f"stage '{s.id}' is declared twice", s.line)
    check_collection(None, d.document.recipients, False, "document recipients")

    for proc in [d.main, *d.subprocesses]:
        in_sub = proc is not d.main
        ids = [e.id for e in proc.elements]
        seen = set()
        for e in proc.elements:
            if e.id in seen:
                bad(e, f"id '{e.id}' is used twice in process '{proc.id}'")
            seen.add(e.id)
        starts = [e for e in proc.elements if e.type == "startEvent"]
        if len(starts) != 1:
            problems.append(Problem(file, proc.line or d.line, None,
                                    f"process '{proc.id}' needs exactly one startEvent, has {len(starts)}"))
        if not any(e.type == "endEvent" for e in proc.elements):
            problems.append(Problem(file, proc.line or d.line, None, f"process '{proc.id}' has no endEvent"))

        for e in proc.elements:
            for target in e.targets():
                if target not in ids:
                    bad(e, f"'{target}' is not an element of process '{proc.id}' (known: {', '.join(ids)})")
            if e.stage and e.stage not in stage_ids:
                bad(e, f"unknown stage '{e.stage}': declare it under stages ({', '.join(sorted(stage_ids))})")
            if e.type in ("serviceTask", "sendTask", "userTask", "callActivity") and not e.stage:
                bad(e, f"a {e.type} needs a 'stage' so a flow of the plan drives it")
            if e.type != "endEvent" and not e.targets():
                bad(e, "has no 'next': every element but an endEvent must lead somewhere")
            if e.type == "endEvent" and e.next:
                bad(e, "an endEvent cannot have 'next'")
            if e.timer and e.type != "startEvent":
                bad(e, "only a startEvent can have a 'timer'")
            if e.timer and in_sub:
                bad(e, "a sub-process starts when it is called, not on a timer")
            if e.type == "serviceTask":
                if e.handler not in SERVICE_HANDLERS:
                    bad(e, f"unknown handler '{e.handler}': known handlers are {', '.join(sorted(SERVICE_HANDLERS))}")
            if e.type == "sendTask":
                if not e.template:
                    bad(e, "a sendTask needs a 'template'")
                else:
                    check_template_name(e, e.template)
                if not e.to:
                    bad(e, "a sendTask needs 'to' (a collection of units)")
                else:
                    check_collection(e, e.to, in_sub, "to")
            if e.type == "userTask":
                if not e.form:
                    bad(e, "a userTask needs a 'form'")
                elif e.form not in forms:
                    bad(e, f"unknown form '{e.form}': forms are {', '.join(sorted(forms))}")
                if not e.for_each:
                    bad(e, "a userTask needs 'for_each' (the units that must do it, e.g. 'departments')")
                else:
                    check_collection(e, e.for_each, in_sub, "for_each")
                if e.due is None:
                    bad(e, "a userTask needs 'due' (e.g. {before: \"2022-12-10\"})")
                else:
                    try:
                        resolve_due(calendar, e.due, start=sample_start(d.year, calendar))
                    except CalendarError as exc:
                        bad(e, f"due: {exc}")
                for r in e.reminders:
                    check_offset(e, r, f"reminder '{r}'")
                for esc in e.escalations:
                    check_offset(e, esc.after, f"escalation after '{esc.after}'", esc.line)
                    check_template_name(e, esc.template, esc.line)
                    for who in esc.to:
                        if who not in ("unit.head", "unit.parent") and who not in registry:
                            bad(e, f"escalation to '{who}': not a unit of the registry "
                                   "(or 'unit.head', 'unit.parent')", esc.line)
            if e.boundary and e.type != "userTask":
                bad(e, "timer boundary events attach to a userTask")
            for b in e.boundary:
                check_offset(e, b.after, f"boundary '{b.id}' after '{b.after}'", b.line)
                if b.anchor == "due" and e.due is None:
                    bad(e, f"boundary '{b.id}' is anchored on 'due' but the element has no due", b.line)
                if not b.interrupting and not b.next:
                    bad(e, f"non-interrupting boundary '{b.id}' needs a 'next'", b.line)
            if e.type == "callActivity":
                if e.process not in sub_ids:
                    bad(e, f"calls unknown process '{e.process}': sub-processes are {', '.join(sorted(sub_ids)) or 'none'}")
                if e.for_each:
                    check_collection(e, e.for_each, in_sub, "for_each")
            if e.type == "exclusiveGateway":
                if not e.default:
                    bad(e, "an exclusiveGateway needs a 'default' flow, taken when no condition holds")
                if not e.conditions:
                    bad(e, "an exclusiveGateway needs 'conditions'")
                for c in e.conditions:
                    try:
                        compile_condition(c.when)
                    except ExpressionError as exc:
                        bad(e, str(exc))
                if e.next:
                    bad(e, "an exclusiveGateway leaves by 'conditions' and 'default', not 'next'")
            elif e.conditions or e.default:
                bad(e, "only an exclusiveGateway has 'conditions' and 'default'")

        if problems:
            continue
        problems += _check_graph(proc, file)
    return problems


def _check_graph(proc: Process, file: str) -> list[Problem]:
    problems = []
    by_id = {e.id: e for e in proc.elements}
    start = proc.start
    reached = {start.id}
    queue = deque([start.id])
    while queue:
        for t in by_id[queue.popleft()].targets():
            if t not in reached:
                reached.add(t)
                queue.append(t)
    for e in proc.elements:
        if e.id not in reached:
            problems.append(Problem(file, e.line, e.id,
                                    f"unreachable: no path from '{start.id}' leads here"))

    preds: dict[str, list[tuple[str, str]]] = {e.id: [] for e in proc.elements}
    for e in proc.elements:
        for t in e.targets():
            preds[t].append((e.id, t))

    def split_of(edge_src: str, edge_dst: str) -> tuple[str, str]:
        """Walk back from an incoming edge to the split it leaves: (split id, branch)."""
        src, branch, seen = edge_src, edge_dst, set()
        while src not in seen:
            seen.add(src)
            el = by_id[src]
            if len(el.targets()) > 1 or len(preds[src]) != 1:
                return src, branch
            branch = src
            src = preds[src][0][0]
        return src, branch

    def downstream(start_id: str) -> set[str]:
        seen, queue = set(), deque(by_id[start_id].targets())
        while queue:
            node = queue.popleft()
            if node not in seen:
                seen.add(node)
                queue.extend(by_id[node].targets())
        return seen

    for e in proc.elements:
        if e.type == "parallelGateway" and proc.incoming(e.id) > 1:
            after = downstream(e.id)
            loops = sorted({src for src, _ in preds[e.id] if src in after})
            if loops:
                problems.append(Problem(
                    file, e.line, e.id,
                    f"this join waits for {proc.incoming(e.id)} tokens, but the flow from "
                    f"{', '.join(loops)} can only arrive after the join itself has fired: the join can "
                    "never complete. Lead that flow to an element after the join."))
                continue
            origins = [split_of(src, dst) for src, dst in preds[e.id]]
            by_split: dict[str, set[str]] = {}
            for split, branch in origins:
                by_split.setdefault(split, set()).add(branch)
            for split, branches in by_split.items():
                if by_id[split].type == "exclusiveGateway" and len(branches) > 1:
                    problems.append(Problem(
                        file, e.line, e.id,
                        f"this join waits for {proc.incoming(e.id)} tokens, but branches "
                        f"{', '.join(sorted(branches))} leave exclusive gateway '{split}', which "
                        "takes only one of them: the join can never complete. Join them with an "
                        "exclusiveGateway, or split with a parallelGateway."))
    return problems
