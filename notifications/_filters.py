"""Formatting filters for the notification templates.

Filters only format; they never decide. Dates follow Nghị định 30/2020/NĐ-CP
(Phụ lục I): a day below 10 and the months 1 and 2 take a leading zero, so
"ngày 09 tháng 12 năm 2022" and "ngày 02 tháng 3 năm 2022".
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import date, datetime
from zoneinfo import ZoneInfo

import jinja2

VN_TZ = ZoneInfo("Asia/Ho_Chi_Minh")

ELLIPSIS = "…"

# Words naming an administrative level; written in lower case inside a sentence
# ("UBND TỈNH HẢI DƯƠNG" -> "UBND tỉnh Hải Dương").
_LEVEL_WORDS = ("thành phố", "thị xã", "thị trấn", "tỉnh", "huyện", "quận", "xã", "phường")
_ACRONYMS = frozenset({"UBND", "HĐND", "MTTQ"})


def _local(value: datetime) -> datetime:
    """An aware datetime in Vietnam time; a naive one is taken as Vietnam time already."""
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        return value
    return value.astimezone(VN_TZ)


def _day_month_year(value: date) -> str:
    day = f"{value.day:02d}"
    month = f"{value.month:02d}" if value.month < 3 else str(value.month)
    return f"ngày {day} tháng {month} năm {value.year}"


def vn_date(value: date | datetime) -> str:
    """``date(2022, 12, 9)`` -> ``"ngày 09 tháng 12 năm 2022"``."""
    if isinstance(value, datetime):
        value = _local(value).date()
    if not isinstance(value, date):
        raise TypeError(f"vn_date expects a date or datetime, not {type(value).__name__}: {value!r}")
    return _day_month_year(value)


def vn_datetime(value: date | datetime) -> str:
    """An aware datetime -> ``"17 giờ 00 ngày 09 tháng 12 năm 2022"`` (Vietnam time).

    A plain date has no time of day and is written as :func:`vn_date`.
    """
    if not isinstance(value, datetime):
        return vn_date(value)
    local = _local(value)
    return f"{local.hour:02d} giờ {local.minute:02d} {_day_month_year(local.date())}"


def doc_number(number: object, kind_code: str = "KH-UBND") -> str:
    """Số, ký hiệu of a document.

    ``None`` -> ``"…/KH-UBND"`` (number not yet given); a bare number such as
    ``118`` or ``"118"`` -> ``"118/KH-UBND"``; a full "118/KH-UBND" is kept as is.
    """
    if number is None or (isinstance(number, str) and not number.strip()):
        return f"{ELLIPSIS}/{kind_code}"
    text = str(number).strip()
    if "/" in text:
        return text
    return f"{text}/{kind_code}"


def lcfirst(value: str) -> str:
    """Lower-case the first letter, to use a title inside a sentence."""
    value = str(value)
    return value[:1].lower() + value[1:]


def in_text(value: str) -> str:
    """An upper-case heading name as written inside a sentence.

    ``"UBND TỈNH HẢI DƯƠNG"`` -> ``"UBND tỉnh Hải Dương"``,
    ``"UBND HUYỆN KIM THÀNH"`` -> ``"UBND huyện Kim Thành"``: leading acronyms
    stay upper case, the level word after them goes lower case, the other words
    are capitalised. A name that is not all upper case is returned unchanged.
    """
    value = str(value)
    if value != value.upper():
        return value
    words = value.split()
    i = 0
    out: list[str] = []
    while i < len(words) and words[i] in _ACRONYMS:
        out.append(words[i])
        i += 1
    rest = [w.lower() for w in words[i:]]
    for level in sorted(_LEVEL_WORDS, key=lambda s: -len(s.split())):
        size = len(level.split())
        if " ".join(rest[:size]) == level:
            out.extend(rest[:size])
            rest = rest[size:]
            break
    out.extend(w[:1].upper() + w[1:] for w in rest)
    return " ".join(out)


def vn_number(value: float | int | None, digits: int = 2) -> str:
    """``92.5`` -> ``"92,5"`` (decimal comma, no trailing zeros); ``None`` -> ``"—"``."""
    if value is None:
        return "—"
    if isinstance(value, int):
        return str(value)
    text = f"{value:.{digits}f}".rstrip("0").rstrip(".")
    return text.replace(".", ",")


def _strict(fn: Callable) -> Callable:
    """Given an undefined value, fail the way jinja2 does ("'x' is undefined")."""

    @functools.wraps(fn)
    def wrapper(value, *args, **kwargs):
        if isinstance(value, jinja2.Undefined):
            value._fail_with_undefined_error()
        return fn(value, *args, **kwargs)

    return wrapper


FILTERS = {
    fn.__name__: _strict(fn)
    for fn in (vn_date, vn_datetime, doc_number, lcfirst, in_text, vn_number)
}
