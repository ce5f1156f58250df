"""The check of a submission's answers against its form: every criterion scored within its
range and step (a criteria form), or the fields given and their choices kept (a fields form).
Each refusal names the criterion or field at fault. A form's criteria are read once.
"""

from __future__ import annotations

from functools import reduce
from operator import add


class ScoreError(ValueError):
    """A score the form does not take; ``code`` is the criterion at fault."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def score_payload(form, payload: dict, late: bool) -> float | None:
    """Check a submission against its form; return the total score (criteria forms).

    Raises ``ValueError`` naming the field at fault, ``ScoreError`` (its ``code``) the criterion.
    """
    if form.kind == "fields":
        _check_fields(form, payload)
        return None
    scores = payload.get("scores")
    if not isinstance(scores, dict):
        raise ValueError(f"form '{form.id}': a submission needs 'scores' (criterion code -> points)")
    rows, codes, scored, fast = _criteria(form)
    if scores.keys() == scored:  # the usual case, checked at once: every score one the form takes
        total = _fast_total(fast, scores, late)
        if total is not None:
            return total
    unknown = sorted(set(scores) - codes)
    if unknown:
        raise ValueError(f"form '{form.id}' has no criterion {', '.join(unknown)}")
    total = 0.0
    step = form.step
    for code, on_time, top, title in rows:
        if on_time:
            if code in scores:
                raise ScoreError(code, f"criterion {code} is scored by the workflow (on-time report), not by the unit")
            total += 0.0 if late else top
            continue
        if code not in scores:
            raise ScoreError(code, f"criterion {code} ({title}) has no score")
        value = scores[code]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ScoreError(code, f"criterion {code}: score '{value}' is not a number")
        if not 0 <= value <= top:
            raise ScoreError(code, f"criterion {code}: score {value} is outside 0–{top:g}")
        steps = value / step
        if abs(steps - round(steps)) > 1e-9:
            raise ScoreError(code, f"criterion {code}: score {value} is not a multiple of {step:g}")
        total += value
    return round(total, 2)


def _check_fields(form, payload: dict) -> None:
    """A fields form (e.g. a review decision): known fields, required ones given, choices kept."""
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


_NUMBERS = frozenset((int, float))


def _fast_total(fast: tuple, scores: dict, late: bool) -> float | None:
    """The total of scores that are each one of the values the form takes (``valid``: its
    multiples of the step from 0 to the max), added in the order ``score_payload`` adds them
    (the form's order, the on-time criteria at their places); None when a score is not among
    them (``score_payload`` then says which and why)."""
    order, auto, valid = fast
    if not (valid.issuperset(scores.items()) and _NUMBERS.issuperset(map(type, scores.values()))):
        return None
    return round(reduce(add, map({**auto[bool(late)], **scores}.__getitem__, order), 0.0), 2)


_CRITERIA: dict[int, tuple] = {}


def _criteria(form) -> tuple[tuple, frozenset, frozenset, tuple]:
    """``form.items`` as (code, scored by the workflow on time, max, title) rows, its codes,
    the codes a unit scores and what ``_fast_total`` needs (the codes in order, the on-time
    criteria's points on time and late, every (code, score) the form takes), built once per
    form (a form is immutable)."""
    cached = _CRITERIA.get(id(form))
    if cached is None or cached[0] is not form:
        items = form.items
        rows = tuple((code, item.auto_from_workflow == "on_time", item.max, item.title)
                     for code, item in items.items())
        scored = frozenset(code for code, on_time, _top, _title in rows if not on_time)
        valid = frozenset((code, k * form.step) for code, on_time, top, _title in rows
                          if not on_time and form.step > 0 and top >= 0
                          for k in range(int(top / form.step) + 1) if _takes(k * form.step, top, form.step))
        auto = {late: {code: 0.0 if late else top for code, on_time, top, _title in rows if on_time}
                for late in (False, True)}
        fast = (tuple(items), auto, valid)
        cached = _CRITERIA[id(form)] = (form, rows, frozenset(items), scored, fast)
    return cached[1:]


def _takes(value: float, top: float, step: float) -> bool:
    """The rule of ``score_payload`` for one score: from 0 to the max, a multiple of the step."""
    steps = value / step
    return 0 <= value <= top and abs(steps - round(steps)) <= 1e-9
