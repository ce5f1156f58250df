"""The units table of a plan instance: one row per unit asked, its first columns what an
operator scans (name, district, status, escalation level), then score, classification,
QĐ 42 status, due and sent times (no district column in a plan without districts). Short headers and values, no code (name and district
tell units apart): at 1440 px the first six columns show without scrolling."""

from __future__ import annotations

import datetime as dt

from planflow.notifications.vn_format import MISSING, short_datetime, vn_number
from planflow.status_words import moment_status
from planflow.unit_labels import district_name, has_districts

REPORTED = ("on_time", "late")


def level_text(level: int) -> str:
    """An escalation level as a table shows it: "—" for none."""
    return str(level) if level else MISSING


def unit_row(registry, code: str, unit: dict | None, as_of: dt.datetime) -> dict:
    """A unit's row: ``unit`` is its entry in the summary, None while its task has not opened."""
    unit = unit or {}
    return {"Đơn vị": registry.get(code).name, "Huyện": district_name(registry, code),
            "Tình trạng": moment_status(unit.get("status"), unit.get("due"), as_of),
            "Đôn đốc": level_text(unit.get("escalation_level", 0)),
            "Điểm": vn_number(unit.get("score"), None), "Xếp loại": unit.get("classification") or MISSING,
            "QĐ 42": unit.get("status_qd42") or MISSING, "Hạn": short_datetime(unit.get("due")),
            "Gửi lúc": short_datetime(unit.get("submitted_at"))}


def unit_rows(registry, codes: list[str], units: dict, as_of: dt.datetime) -> list[dict]:
    """The rows of the units asked; without the "Huyện" column when no unit asked is a district
    or belongs to one (a plan after 1/7/2025 has no district tier)."""
    rows = [unit_row(registry, c, units.get(c), as_of) for c in codes]
    if not has_districts(registry, codes):
        for row in rows:
            del row["Huyện"]
    return rows
