"""Districts with their communes' progress: per UBND cấp huyện, how many of its communes
reported of those asked, how many are overdue, and the district's own status."""

from __future__ import annotations

import datetime as dt

from planflow.aggregation import commune_district, group_of
from planflow.notifications.vn_format import MISSING
from planflow.status_words import moment_status
from planflow.unit_labels import district_name, has_districts

REPORTED = ("on_time", "late")


def is_overdue(unit: dict | None, as_of: dt.datetime) -> bool:
    """Whether a unit (its summary entry) has not reported and its due date has passed."""
    if not unit or unit["status"] in REPORTED or not unit.get("due"):
        return False
    return unit["status"] == "missing" or as_of > dt.datetime.fromisoformat(unit["due"])


def district_rows(registry, codes: list[str], units: dict, as_of: dt.datetime) -> list[dict]:
    """One row per district asked, in the order of ``codes``; a row saying none while a plan
    with districts has none asked; no row at all in a plan without a district tier (no unit
    asked is a district or belongs to one)."""
    if not has_districts(registry, codes):
        return []
    communes_of: dict[str, list[str]] = {}
    for c in codes:
        district = commune_district(registry, registry.get(c))
        if district is not None:
            communes_of.setdefault(district, []).append(c)
    rows = []
    for code in codes:
        if group_of(registry.get(code)) != "district":
            continue
        communes = communes_of.get(code, [])
        reported = sum(1 for c in communes if units.get(c, {}).get("status") in REPORTED)
        own = units.get(code)
        rows.append({"Huyện": district_name(registry, code),
                     "Cấp xã báo cáo": f"{reported}/{len(communes)}",
                     "Cấp xã quá hạn": sum(1 for c in communes if is_overdue(units.get(c), as_of)),
                     "Huyện tự đánh giá": moment_status(own and own["status"], own and own["due"], as_of)})
    return rows or [{"Huyện": MISSING, "Cấp xã báo cáo": MISSING, "Cấp xã quá hạn": 0,
                     "Huyện tự đánh giá": MISSING}]
