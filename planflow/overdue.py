"""Overdue units: one row per unit whose report is past its due date and not in, with its
current escalation level, its district and the step in Vietnamese, highest level first.
Commune names repeat across districts ("UBND xã Tân Việt"): the district tells them apart."""

from __future__ import annotations

import datetime as dt

from planflow.aggregation import GROUP_ORDER
from planflow.district_progress import is_overdue
from planflow.notifications.vn_format import MISSING, short_datetime
from planflow.status_words import moment_status
from planflow.unit_labels import district_name, element_name, has_districts
from planflow.units_table import level_text


def overdue_codes(codes: list[str], units: dict, as_of: dt.datetime) -> list[str]:
    """The codes of the overdue units among ``codes`` (the summary's ``units``)."""
    return [c for c in codes if is_overdue(units.get(c), as_of)]


def overdue_rows(plan, codes: list[str], units: dict, as_of: dt.datetime) -> list[dict]:
    """The overdue units among ``codes`` (the summary's ``units``), highest level first, then
    by tier, district and name; a row saying none when no unit is overdue."""
    reg = plan.registry
    late = overdue_codes(codes, units, as_of)
    late.sort(key=lambda c: (-units[c]["escalation_level"], GROUP_ORDER.index(units[c]["group"]),
                             district_name(reg, c), reg.get(c).name))
    rows = [{"Đơn vị": reg.get(c).name, "Huyện": district_name(reg, c),
             "Tình trạng": moment_status(units[c]["status"], units[c]["due"], as_of),
             "Đôn đốc": level_text(units[c]["escalation_level"]), "Hạn": short_datetime(units[c]["due"]),
             "Bước": element_name(plan, units[c].get("element"))} for c in late]
    rows = rows or [{"Đơn vị": "Không có đơn vị quá hạn", "Huyện": MISSING, "Tình trạng": MISSING,
                     "Đôn đốc": MISSING, "Hạn": MISSING, "Bước": MISSING}]
    if not has_districts(reg, codes):  # a plan with no district tier: no "Huyện" column
        rows = [{k: v for k, v in row.items() if k != "Huyện"} for row in rows]
    return rows
