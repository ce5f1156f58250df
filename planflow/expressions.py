"""The two small languages of a definition: gateway conditions and unit collections.

Conditions are a safe subset of Python expressions over the instance's variables
(``review.decision == 'return'``); nothing is ever passed to ``eval``.
Collections name registry groups: ``departments``, ``departments + districts``,
``communes of scope`` (the communes whose parent is the unit a sub-process runs for),
and ``scope`` (that unit itself).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

_ALLOWED = (
    ast.Expression, ast.Compare, ast.BoolOp, ast.UnaryOp, ast.Name, ast.Attribute,
    ast.Constant, ast.Load, ast.And, ast.Or, ast.Not, ast.Eq, ast.NotEq, ast.Lt,
    ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn, ast.List, ast.Tuple,
)


class ExpressionError(ValueError):
    pass


MAX_CONDITION = 1000  # characters: a condition compares a few variables


def compile_condition(text: str) -> ast.Expression:
    if not isinstance(text, str) or len(text) > MAX_CONDITION:
        raise ExpressionError(f"condition '{str(text)[:80]}…' is longer than {MAX_CONDITION} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError) as exc:  # ValueError: a NUL character
        raise ExpressionError(f"condition '{text[:200]}' is not an expression: {getattr(exc, 'msg', exc)}") from None
    except (RecursionError, MemoryError):
        raise ExpressionError(f"condition '{text[:80]}…' is nested too deeply") from None
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED):
            raise ExpressionError(
                f"condition '{text}' uses {type(node).__name__}: only comparisons, and/or/not, "
                "names, dotted names and literals are allowed"
            )
    return tree


def evaluate_condition(text: str, variables: dict) -> bool:
    return bool(_eval(compile_condition(text).body, variables))


_MISSING = object()


def _eval(node, env):
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return env.get(node.id, None)
    if isinstance(node, ast.Attribute):
        base = _eval(node.value, env)
        return base.get(node.attr) if isinstance(base, dict) else None
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_eval(e, env) for e in node.elts]
    if isinstance(node, ast.UnaryOp):
        return not _eval(node.operand, env)
    if isinstance(node, ast.BoolOp):
        values = (_eval(v, env) for v in node.values)
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.Compare):
        left = _eval(node.left, env)
        for op, comp in zip(node.ops, node.comparators):
            right = _eval(comp, env)
            ok = {
                ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b,
                ast.Lt: lambda a, b: a is not None and b is not None and a < b,
                ast.LtE: lambda a, b: a is not None and b is not None and a <= b,
                ast.Gt: lambda a, b: a is not None and b is not None and a > b,
                ast.GtE: lambda a, b: a is not None and b is not None and a >= b,
                ast.In: lambda a, b: b is not None and a in b,
                ast.NotIn: lambda a, b: b is None or a not in b,
            }[type(op)](left, right)
            if not ok:
                return False
            left = right
        return True
    raise ExpressionError(f"unsupported expression {type(node).__name__}")


@dataclass(frozen=True)
class Term:
    group: str | None  # None means the scope unit itself
    of_scope: bool = False


def parse_collection(text: str) -> list[Term]:
    terms = []
    for raw in text.split("+"):
        words = raw.split()
        if words == ["scope"]:
            terms.append(Term(None))
        elif len(words) == 1:
            terms.append(Term(words[0]))
        elif len(words) == 3 and words[1:] == ["of", "scope"]:
            terms.append(Term(words[0], of_scope=True))
        else:
            raise ExpressionError(
                f"collection '{text}': write a registry group ('departments'), groups joined by '+', "
                "'<group> of scope' or 'scope'"
            )
    return terms


# --- what the plan's review decides, and who reports: read from the definition ----------------


@dataclass(frozen=True)
class ReviewDecision:
    """The plan's review, as its definition says it: the user task whose form decides
    (``Form.decides``), the instance variable its answer goes to (the task's ``output``), the
    form's choice field and its choices (value -> label, in the form's order), its text field
    (the comment), the values whose branch of the exclusive gateway sends the report back
    (to the revision, and on to the review again), the value the gateway's default branch
    stands for (else the first choice), and the codes of the units that decide (its
    ``for_each`` groups)."""

    element: str
    variable: str | None
    field: str
    choices: dict[str, str]
    comment: str | None
    returning: tuple[str, ...]
    default: str
    units: tuple[str, ...]

    def returned(self, answer: dict | None) -> bool:
        """Whether an answer sends the report back."""
        return (answer or {}).get(self.field) in self.returning

    def label(self, value: str | None) -> str | None:
        return self.choices.get(value, value) if value is not None else None


def review_decision(plan) -> ReviewDecision | None:
    """The plan's review (see :class:`ReviewDecision`); None when no user task's form decides.
    Read once per plan."""
    if ("review_decision",) not in plan.memo:
        plan.memo[("review_decision",)] = _read_review(plan)
    return plan.memo[("review_decision",)]


def _processes(plan) -> list:
    return [plan.definition.main, *plan.definition.subprocesses]


def _read_review(plan) -> ReviewDecision | None:
    found = next(((p, e) for p in _processes(plan) for e in p.elements
                  if e.type == "userTask" and e.form in plan.forms and plan.forms[e.form].decides), None)
    if found is None:
        return None
    process, element = found
    form = plan.forms[element.form]
    choice = next(f for f in form.fields if f.type == "choice")
    values = list(choice.choices or {})
    comment = next((f.name for f in form.fields if f.type == "text"), None)
    branches = _branches(process, element, choice.name, values)
    notes = {e.id for e in process.elements if e.type == "userTask" and e.form in plan.forms
             and plan.forms[e.form].kind == "fields" and not plan.forms[e.form].decides}
    returning = tuple(v for v in values if branches.get(v) and _reaches(process, branches[v], {element.id, *notes}))
    gateway_default = branches.get(None)
    default = next((v for v in values if gateway_default and branches.get(v) == gateway_default),
                   next((v for v in values if v not in returning), values[0] if values else ""))
    units = tuple(u.code for term in parse_collection(element.for_each or "") if term.group and not term.of_scope
                  for u in plan.registry.group(term.group))
    return ReviewDecision(element=element.id, variable=element.output, field=choice.name,
                          choices=dict(choice.choices or {}), comment=comment, returning=returning,
                          default=default, units=tuple(dict.fromkeys(units)))


def _reaches(process, start: str, targets: set[str]) -> bool:
    """Whether a path from element ``start`` leads to one of ``targets`` (``start`` included)."""
    seen, todo = set(), [start]
    while todo:
        current = todo.pop()
        if current in targets:
            return True
        if current in seen or not process.has(current):
            continue
        seen.add(current)
        todo += process.element(current).targets()
    return False


def _branches(process, element, field: str, values: list[str]) -> dict:
    """Where each choice leaves the first exclusive gateway after the review that reads its
    answer (value -> element id; None -> the gateway's default branch); {} without one."""
    if not element.output:
        return {}
    seen, todo = set(), list(element.targets())
    while todo:
        current = todo.pop(0)
        if current in seen or not process.has(current):
            continue
        seen.add(current)
        gateway = process.element(current)
        if gateway.type == "exclusiveGateway" and any(_reads(c.when, element.output) for c in gateway.conditions):
            out = {None: gateway.default}
            for value in values:
                answer = {element.output: {field: value}}
                out[value] = next((c.next for c in gateway.conditions if evaluate_condition(c.when, answer)),
                                  gateway.default)
            return out
        todo += gateway.targets()
    return {}


def _reads(condition: str, variable: str) -> bool:
    try:
        tree = compile_condition(condition)
    except ExpressionError:
        return False
    return any(isinstance(n, ast.Name) and n.id == variable for n in ast.walk(tree))


def units_that_report(plan) -> list:
    """Every unit a user task on a criteria form asks, by tier as the definition nests them:
    each process's own units before those of its call activities, the unit a sub-process runs
    for (``scope``: a district) before the members it runs over (``communes of scope``), these
    in the order of their parents, then registry order. Any
    unit of the registry's groups, whatever its validity dates."""
    found: dict[str, object] = {}

    def walk(process, scope: list, depth: int) -> None:
        terms = [t for e in process.elements if e.type == "userTask" and e.for_each and e.form in plan.forms
                 and plan.forms[e.form].kind == "criteria" for t in parse_collection(e.for_each)]
        for term in sorted(terms, key=lambda t: t.group is not None):  # the unit itself, then its members
            found.update((u.code, u) for u in _members(plan, term, scope))
        for e in process.elements:
            if e.type == "callActivity" and e.process and depth < 5:
                units = [u for t in parse_collection(e.for_each) for u in _members(plan, t, scope)] if e.for_each \
                    else scope
                walk(plan.definition.process(e.process), units, depth + 1)

    walk(plan.definition.main, [], 0)
    return list(found.values())


def _members(plan, term: Term, scope: list) -> list:
    if term.group is None:
        return list(scope)
    members = plan.registry.group(term.group)
    if not term.of_scope:
        return list(members)
    order = {u.code: i for i, u in enumerate(scope)}
    return sorted((u for u in members if u.parent in order), key=lambda u: order[u.parent])
