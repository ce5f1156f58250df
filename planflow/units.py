"""Units of a collection: which units of the registry a ``for_each`` or a ``to`` names.

A collection names registry groups (``departments + districts``, ``communes of scope``,
``scope``); a unit counts on a day when it is valid then (``valid_from`` / ``valid_to``),
so a plan run after the district level was abolished finds no district.
"""

from __future__ import annotations

import datetime as dt

from planflow.expressions import parse_collection
from planflow.model import Unit


def in_collection(plan, collection: str, scope_unit: str | None, as_of: dt.datetime) -> list[Unit]:
    """The units a collection names, valid on the day of ``as_of``, in registry order.

    ``scope_unit`` is the unit the instance runs for (a district's sub-process): ``scope``
    is that unit, ``communes of scope`` its members of the group.
    """
    reg = plan.registry
    day = as_of.astimezone(plan.calendar.tz).date()
    out: dict[str, Unit] = {}
    for term in parse_collection(collection):
        if term.group is None:
            members = [reg.get(scope_unit)] if scope_unit else []
        elif term.of_scope:
            members = _children(plan, term.group).get(scope_unit, [])
        else:
            members = reg.group(term.group)
        for u in members:
            if u is not None and u.valid_on(day):
                out.setdefault(u.code, u)
    return list(out.values())


def _children(plan, group: str) -> dict[str | None, list[Unit]]:
    """The members of a registry group by parent, in registry order (built once per plan)."""
    key = ("children", group)
    index = plan.memo.get(key)
    if index is None:
        index = {}
        for u in plan.registry.group(group):
            index.setdefault(u.parent, []).append(u)
        plan.memo[key] = index
    return index
