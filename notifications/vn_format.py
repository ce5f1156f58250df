"""Vietnamese dates and numbers as people read them: one module for every reader — the
letters (the templates' filters), Sở Nội vụ's aggregate report and operators' tables.

Formatting only; nothing here decides. Dates follow Nghị định 30/2020/NĐ-CP (Phụ lục I):
a day below 10 and the months 1 and 2 take a leading zero, so "ngày 09 tháng 12 năm 2022"
and "ngày 02 tháng 3 năm 2022". Numbers take a decimal comma: "92,5". A missing value is
written "—".

It lives with the notifications (no Prefect, no SQL, standard library only) and the
engine imports it from here, so the notifications never import the engine.
"""

from __future__ import annotations

from datetime import date, datetime, tzinfo
from zoneinfo import ZoneInfo

VN_TZ = ZoneInfo("Asia/Ho_Chi_Minh")

MISSING = "—"


def _local(value: datetime) -> datetime:
    """An aware datetime in Vietnam time; a naive one is taken as Vietnam time already."""
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        return value
    return value.astimezone(VN_TZ)


def _day_month_year(value: date, pad_month: bool) -> str:
    day = f"{value.day:02d}"
    month = f"{value.month:02d}" if value.month < 3 or pad_month else str(value.month)
    return f"ngày {day} tháng {month} năm {value.year}"


def vn_date(value: date | datetime, *, pad_month: bool = False) -> str:
    """``date(2022, 12, 9)`` -> ``"ngày 09 tháng 12 năm 2022"`` (a datetime: its day in Vietnam time).

    ``pad_month`` writes every month with two digits ("tháng 05"), as the aggregate
    report's heading always has; Nghị định 30 pads only the months 1 and 2.
    """
    if isinstance(value, datetime):
        value = _local(value).date()
    if not isinstance(value, date):
        raise TypeError(f"vn_date expects a date or datetime, not {type(value).__name__}: {value!r}")
    return _day_month_year(value, pad_month)


def vn_datetime(value: date | datetime) -> str:
    """An aware datetime -> ``"17 giờ 00 ngày 09 tháng 12 năm 2022"`` (Vietnam time).

    A plain date has no time of day and is written as :func:`vn_date`.
    """
    if not isinstance(value, datetime):
        return vn_date(value)
    local = _local(value)
    return f"{local.hour:02d} giờ {local.minute:02d} {_day_month_year(local.date(), False)}"


def vn_number(value: float | int | None, digits: int | None = 2) -> str:
    """``92.5`` -> ``"92,5"`` (decimal comma, no trailing zeros); ``None`` -> ``"—"``.

    ``digits``: the decimals kept (rounded; an int is written as it is); ``None``: as many
    as the value has (Python's ``g`` format, 6 significant digits), as the report writes scores.
    """
    if value is None:
        return MISSING
    if digits is None:
        return f"{value:g}".replace(".", ",")
    if isinstance(value, int):
        return str(value)
    text = f"{value:.{digits}f}".rstrip("0").rstrip(".")
    return text.replace(".", ",")


def short_datetime(value: datetime | str | None, tz: tzinfo | None = None) -> str:
    """``"09/12/2022 17:00"``, the short form of tables; in ``tz`` when given, else as the
    value is. An ISO 8601 string is read first; ``None`` or ``""`` -> ``"—"``."""
    if not value:
        return MISSING
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if tz is not None:
        value = value.astimezone(tz)
    return value.strftime("%d/%m/%Y %H:%M")
