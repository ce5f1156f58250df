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
