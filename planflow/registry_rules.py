"""The rules a unit registry and a form follow, each small and named.

They run on the model once it is read (``planflow.loader``), with the file's raw mapping
beside it for the lines: a problem names the file, the line and the unit or criterion.
``REGISTRY_RULES`` and ``FORM_RULES`` are the tables, in the order they run.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from planflow.model import Form, Registry
from planflow.problems import Problem
from planflow.yaml_reader import line_of

Problems = Iterator[Problem]
TOLERANCE = 1e-9  # points are floats: 0.25 steps add up exactly, thirds do not


@dataclass(frozen=True)
class Source:
    """The file a registry or form was read from: its name in problems, and its raw mapping."""

    file: str
    raw: dict

    def line(self, *path) -> int:
        """The line of the mapping at ``path`` (keys and list indexes), or of the nearest one above it."""
        node, line = self.raw, line_of(self.raw)
        for key in path:
            try:
                node = node[key]
            except (KeyError, IndexError, TypeError):
                break
            line = line_of(node) or line
        return line


# --- the registry ----------------------------------------------------------------------


def unit_codes_are_unique(reg: Registry, src: Source) -> Problems:
    first: dict[str, int] = {}  # code -> index of its first unit (lines looked up for a problem only)
    for i, u in enumerate(reg.units):
        if u.code in first:
            yield Problem(src.file, src.line("units", i), u.code, f"code '{u.code}' is used twice (first on line "
                          f"{src.line('units', first[u.code])}): every unit needs a code of its own", "unit")
        else:
            first[u.code] = i


def parents_exist(reg: Registry, src: Source) -> Problems:
    for i, u in enumerate(reg.units):
        if u.parent is not None and u.parent not in reg:
            yield Problem(src.file, src.line("units", i), u.code,
                          f"parent '{u.parent}' is not a unit of registry '{reg.id}'", "unit")
        elif u.parent == u.code:
            yield Problem(src.file, src.line("units", i), u.code, "a unit cannot be its own parent", "unit")


def parents_do_not_loop(reg: Registry, src: Source) -> Problems:
    """Going up from parent to parent ends at a unit with none (no unit is its own ancestor)."""
    # code -> parent (None: none, or itself), the last unit of a code winning as in ``reg.get``
    parent_of = {u.code: (u.parent if u.parent != u.code else None) for u in reg.units}
    settled: set[str] = set()
    for u in reg.units:
        if u.code in settled:  # reached from a unit below it: nothing new above
            continue
        path: list[str] = []
        on_path: set[str] = set()
        code: str | None = u.code
        while code is not None and code not in settled and code not in on_path:
            path.append(code)
            on_path.add(code)
            code = parent_of.get(code)
        if code is not None and code in on_path:
            loop = path[path.index(code):]
            first = next(i for i, unit in enumerate(reg.units) if unit.code == code)
            yield Problem(src.file, src.line("units", first), code,
                          f"its parents go round in a loop: {' → '.join(loop[:10])} → {code}", "unit")
        settled.update(path)


def root_is_a_unit(reg: Registry, src: Source) -> Problems:
    """``root`` (the province-level body) and its ``party`` name units of the registry."""
    if reg.root is None:
        return
    for key in ("unit", "party"):
        code = getattr(reg.root, key)
        if code is not None and code not in reg:
            yield Problem(src.file, src.line("root", key), code,
                          f"root.{key} '{code}' is not a unit of registry '{reg.id}'", "unit")


def validity_is_ordered(reg: Registry, src: Source) -> Problems:
    for i, u in enumerate(reg.units):
        if u.valid_from and u.valid_to and u.valid_to < u.valid_from:
            yield Problem(src.file, src.line("units", i), u.code, f"valid_to {u.valid_to.isoformat()} is before "
                          f"valid_from {u.valid_from.isoformat()}", "unit")


EMAIL = re.compile(r"[^@\s<>(),;:\"\[\]\\]+@[^@\s<>(),;:\"\[\]\\]+")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def units_can_be_written_to(reg: Registry, src: Source) -> Problems:
    """A unit's email is one plain address, its name and head one line: they go into letters' headers."""
    for i, u in enumerate(reg.units):
        if u.email is not None and not EMAIL.fullmatch(u.email):
            yield Problem(src.file, src.line("units", i), u.code, f"email {u.email!r} is not one plain address "
                          "such as so-noi-vu@example.org", "unit")
        for what, text in (("name", u.name), ("head", u.head)):
            if text is not None and CONTROL.search(text):
                yield Problem(src.file, src.line("units", i), u.code, f"{what} {text[:80]!r} holds a line break or "
                              "another control character: write it on one line", "unit")


# --- a form ----------------------------------------------------------------------------


def criteria_form_has_items(form: Form, src: Source) -> Problems:
    if form.kind == "criteria" and not form.groups:
        yield Problem(src.file, src.line(), None, f"criteria form '{form.id}' has no groups of criteria")
    for gi, g in enumerate(form.groups):
        if not g.items:
            yield Problem(src.file, src.line("groups", gi), g.code, "a group needs at least one criterion (items)",
                          "criterion")


def criteria_codes_are_unique(form: Form, src: Source) -> Problems:
    first: dict[str, int] = {}
    for where, code in _codes(form, src):
        if code in first:
            yield Problem(src.file, where, code, f"code '{code}' is used twice in form '{form.id}' (first on line "
                                                 f"{first[code]})", "criterion")
        else:
            first[code] = where


def maxima_are_positive(form: Form, src: Source) -> Problems:
    if form.scale_max is not None and not form.scale_max > 0:
        yield Problem(src.file, src.line(), None, f"scale_max {form.scale_max:g} must be more than 0")
    if not form.step > 0:
        yield Problem(src.file, src.line(), None, f"step {form.step:g} must be more than 0 (e.g. 0.25)")
    for gi, g in enumerate(form.groups):
        if not g.max > 0:
            yield Problem(src.file, src.line("groups", gi), g.code, f"max {g.max:g} must be more than 0", "criterion")
        for ii, item in enumerate(g.items):
            if not item.max > 0:
                yield Problem(src.file, src.line("groups", gi, "items", ii), item.code,
                              f"max {item.max:g} must be more than 0", "criterion")


def maxima_add_up(form: Form, src: Source) -> Problems:
    """A group's max is the sum of its criteria; the form's ``scale_max`` the sum of its groups."""
    for gi, g in enumerate(form.groups):
        total = sum(i.max for i in g.items)
        if g.items and abs(total - g.max) > TOLERANCE:
            yield Problem(src.file, src.line("groups", gi), g.code, f"max {g.max:g}, but its criteria add up to "
                          f"{total:g}", "criterion")
    if form.groups and form.scale_max is not None:
        total = sum(g.max for g in form.groups)
        if abs(total - form.scale_max) > TOLERANCE:
            yield Problem(src.file, src.line(), None, f"scale_max {form.scale_max:g}, but the groups add up to "
                                                      f"{total:g}")


def bands_are_ordered(form: Form, src: Source) -> Problems:
    """Bands (xếp loại) have distinct labels and minimums, within the scale."""
    seen_labels, seen_mins = set(), set()
    for bi, b in enumerate(form.bands):
        line = src.line("bands", bi)
        if b.label in seen_labels or b.min in seen_mins:
            yield Problem(src.file, line, None, f"band '{b.label}' (min {b.min:g}) repeats a label or a minimum")
        if b.min < 0 or (form.scale_max is not None and b.min > form.scale_max):
            yield Problem(src.file, line, None, f"band '{b.label}': min {b.min:g} is outside 0–"
                                                f"{form.scale_max if form.scale_max is not None else '∞'}")
        seen_labels.add(b.label)
        seen_mins.add(b.min)


def fields_are_complete(form: Form, src: Source) -> Problems:
    """A fields form: distinct names; a choice lists its choices."""
    seen: set[str] = set()
    for fi, f in enumerate(form.fields):
        line = src.line("fields", fi)
        if f.name in seen:
            yield Problem(src.file, line, None, f"field '{f.name}' is declared twice")
        if f.type == "choice" and not f.choices:
            yield Problem(src.file, line, None, f"field '{f.name}' is a choice but lists no choices")
        seen.add(f.name)
    if form.kind == "fields" and not form.fields:
        yield Problem(src.file, src.line(), None, f"fields form '{form.id}' has no fields")


def _codes(form: Form, src: Source) -> Iterable[tuple[int, str]]:
    for gi, g in enumerate(form.groups):
        yield src.line("groups", gi), g.code
        for ii, item in enumerate(g.items):
            yield src.line("groups", gi, "items", ii), item.code


REGISTRY_RULES: list[Callable[[Registry, Source], Problems]] = [
    unit_codes_are_unique, parents_exist, parents_do_not_loop, root_is_a_unit, validity_is_ordered,
    units_can_be_written_to]
FORM_RULES: list[Callable[[Form, Source], Problems]] = [
    criteria_form_has_items, criteria_codes_are_unique, maxima_are_positive, maxima_add_up, bands_are_ordered,
    fields_are_complete]


def check(model, src: Source, rules: list) -> list[Problem]:
    """Every problem the rules find in a registry or a form, in the order of the table."""
    return [p for rule in rules for p in rule(model, src)]
