"""How a unit and a step are named where an operator reads or picks them: a commune with
its district (commune names repeat across districts: "UBND xã Tân Việt"), a step by its
Vietnamese name with its id, as the operator forms offer them."""

from __future__ import annotations

from planflow.aggregation import commune_district, group_of
from planflow.notifications.vn_format import MISSING


def district_of(registry, code: str) -> str | None:
    """The code of the district a unit belongs to: a commune's parent when that is a district,
    a district itself; None for a department, for a commune of a plan without a district tier
    (under the province or city itself) and for a unit the registry does not know."""
    unit = registry.get(code)
    if unit is None:
        return None
    return code if group_of(unit) == "district" else commune_district(registry, unit)


def has_districts(registry, codes) -> bool:
    """Whether any of these units is a district or belongs to one (a two-tier plan: none)."""
    return any(district_of(registry, c) is not None for c in codes)


def district_name(registry, code: str) -> str:
    """The short name of a unit's district, as a table's column shows it ("huyện Thanh Hà",
    "thành phố Hải Dương"); "—" for a department."""
    district = registry.get(district_of(registry, code) or "")
    if district is None:
        return MISSING
    name = district.name
    return name[len("UBND "):] if name.startswith("UBND ") else name


def unit_name(registry, code: str | None) -> str:
    """A unit's name; the code itself for one the registry does not know."""
    unit = registry.get(code or "")
    return unit.name if unit is not None else (code or MISSING)


def unit_label(registry, code: str) -> str:
    """A unit as the operator forms offer it: "UBND xã Tân Việt — huyện Bình Giang (<code>)"
    for a commune (its district's short name, as ``district_name``),
    "<name> (<code>)" for a department or a district."""
    district = district_of(registry, code)
    if district is None or district == code:
        return f"{unit_name(registry, code)} ({code})"
    return f"{unit_name(registry, code)} — {district_name(registry, code)} ({code})"


def element_name(plan, element_id: str | None) -> str:
    """A step's Vietnamese name (its id when it has none)."""
    if not element_id:
        return MISSING
    for process in [plan.definition.main, *plan.definition.subprocesses]:
        if process.has(element_id) and process.element(element_id).name:
            return process.element(element_id).name
    return element_id


def step_label(plan, element_id: str) -> str:
    """A step as retrigger-step's list offers it: "<name> (<id>)"."""
    return f"{element_name(plan, element_id)} ({element_id})"
