"""The plan's words for time: deadlines ("trước ngày 10/12/2022", "đến ngày ...",
"trong N ngày làm việc" or ``{before: ...}``), their rules, and offsets (``-5wd``, ``P7D``).

Reading, and saying back in words (``due_words``, ``offset_words``): what a phrase says, not
which day it falls on (``BusinessCalendar`` decides that).
"""

from __future__ import annotations

import re
import unicodedata
from calendar import monthrange
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any, Mapping, NamedTuple

from planflow.notifications.vn_format import vn_number
from planflow.problems import CalendarError

KINDS = ("before", "by", "within_working_days")
RULE_KEYS = ("inclusive", "end_of", "roll")
END_OF = ("day", "office")
ROLL = ("back", "forward", "none")

SPEC_HELP = (
    "use {before: 'YYYY-MM-DD'}, {by: 'YYYY-MM-DD'}, {within_working_days: N} "
    "(optionally with inclusive, end_of: day|office, roll: back|forward|none), "
    "or a phrase: 'trước ngày DD/MM/YYYY', 'đến ngày DD/MM/YYYY', 'trong N ngày làm việc'"
)
DATE_HELP = "use DD/MM/YYYY (e.g. 10/12/2022) or YYYY-MM-DD (e.g. 2022-12-10)"
OFFSET_HELP = "use +Nwd, -Nwd or an ISO 8601 duration such as P7D"
MAX_WORKING_DAYS = 1000  # about four years of working days: an offset or a deadline beyond is a mistake
MAX_DAYS = 3660  # ten years, for a duration
YEARS = (1900, 2200)  # the years a date may fall in


# --------------------------------------------------------------------------- offsets


@dataclass(frozen=True)
class Offset:
    """A parsed offset: either ``working_days`` (``+3wd``) or an ISO 8601 duration.

    For a duration, ``months`` and ``days`` move the local wall-clock date (P1M, P7D keep the
    time of day); ``time`` (the T part) is elapsed time.
    """

    spec: str
    working_days: int | None = None
    months: int = 0
    days: int = 0
    time: timedelta = timedelta(0)

    @property
    def is_working_days(self) -> bool:
        return self.working_days is not None

    def __str__(self) -> str:
        return self.spec


_WD_RE = re.compile(r"^([+-]?)(\d+)\s*wd$", re.IGNORECASE)
_NUM = r"(\d+(?:[.,]\d+)?)"
_ISO_RE = re.compile(
    r"^([+-]?)P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?"
    rf"(T(?:{_NUM}H)?(?:{_NUM}M)?(?:{_NUM}S)?)?$"
)


@lru_cache(maxsize=1024)
def parse_offset(spec: str) -> Offset:
    """'+3wd', '-5wd', '0wd' (working days) or an ISO 8601 duration ('P7D', '-P2D', 'PT4H')."""
    bad = CalendarError(f"bad offset '{spec}': {OFFSET_HELP}")
    if not isinstance(spec, str):
        raise bad
    text = spec.strip()
    m = _WD_RE.match(text)
    if m:
        n = int(m.group(2))
        if n > MAX_WORKING_DAYS:
            raise CalendarError(f"bad offset '{spec}': more than {MAX_WORKING_DAYS} working days")
        return Offset(spec=spec, working_days=-n if m.group(1) == "-" else n)
    m = _ISO_RE.match(text.upper())
    if not m:
        raise bad
    sign_s, y, mo, w, d, tpart, h, mi, s = m.groups()
    if not any((y, mo, w, d, h, mi, s)) or (tpart is not None and not any((h, mi, s))):
        raise bad  # "P", "PT", "P1DT"
    sign = -1 if sign_s == "-" else 1

    def num(x: str | None) -> float:
        return float(x.replace(",", ".")) if x else 0.0

    months = int(y or 0) * 12 + int(mo or 0)
    days = int(w or 0) * 7 + int(d or 0)
    seconds = num(h) * 3600 + num(mi) * 60 + num(s)
    if months * 30.5 + days + seconds / 86400 > MAX_DAYS:
        raise CalendarError(f"bad offset '{spec}': longer than {MAX_DAYS // 366} years")
    elapsed = timedelta(seconds=seconds)
    return Offset(spec=spec, months=sign * months, days=sign * days, time=sign * elapsed)


def add_months(d: datetime, months: int) -> datetime:
    """The same day and time ``months`` later (the month's last day when it is shorter)."""
    idx = d.year * 12 + (d.month - 1) + months
    y, m = divmod(idx, 12)
    m += 1
    day = min(d.day, monthrange(y, m)[1])
    return d.replace(year=y, month=m, day=day)


# --------------------------------------------------------------------------- days and phrases

_DATE_PATTERNS = (
    re.compile(r"^(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})$"),
    re.compile(r"^(?P<d>\d{1,2})[/.-](?P<m>\d{1,2})[/.-](?P<y>\d{4})$"),
    re.compile(r"^(?P<d>\d{1,2})\s+tháng\s+(?P<m>\d{1,2})\s+năm\s+(?P<y>\d{4})$"),
)
_BEFORE_RE = re.compile(r"^trước\s+(?:ngày\s+)?(?P<date>.+)$")
_BY_RE = re.compile(
    r"^(?:đến\s+hết|đến|chậm\s+nhất\s+là|chậm\s+nhất|hạn\s+chót\s+là|hạn\s+chót)"
    r"\s+(?:ngày\s+)?(?P<date>.+)$"
)
_WITHIN_RE = re.compile(
    r"^trong(?:\s+vòng|\s+thời\s+hạn)?\s+(?P<n>\d+)\s+ngày\s+làm\s+việc(?:\s+kể\s+từ\b.*)?$"
)


def parse_date(value: Any, *, context: str) -> date:
    """A day written 10/12/2022, 2022-12-10, "ngày 10 tháng 12 năm 2022", or a date already."""
    if isinstance(value, datetime):
        raise CalendarError(
            f"bad date {value.isoformat()!r} in {context}: give a day, not a moment; {DATE_HELP}"
        )
    if isinstance(value, date):
        return _in_range(value, value, context)
    if isinstance(value, str):
        text = unicodedata.normalize("NFC", value).strip().lower()
        if text.startswith("ngày "):
            text = text[5:].strip()
        for pat in _DATE_PATTERNS:
            m = pat.match(text)
            if m:
                try:
                    day = date(int(m["y"]), int(m["m"]), int(m["d"]))
                except ValueError:
                    raise CalendarError(
                        f"bad date '{value}' in {context}: no such day; {DATE_HELP}"
                    ) from None
                return _in_range(day, value, context)
    raise CalendarError(f"bad date {value!r} in {context}: {DATE_HELP}")


def _in_range(day: date, value: Any, context: str) -> date:
    if not YEARS[0] <= day.year <= YEARS[1]:
        raise CalendarError(f"bad date '{value}' in {context}: the year must be between {YEARS[0]} and {YEARS[1]}")
    return day


class Due(NamedTuple):
    """A deadline as written: its kind, its day (or number of working days), its own rules."""

    kind: str
    value: Any  # a date, or the number of working days
    rules: dict[str, Any]
    shown: str  # the spec as the user wrote it, for messages


def read_due(spec: Any) -> Due:
    """What a deadline in the plan's words says; a phrase or a mapping."""
    if isinstance(spec, str):
        return _read_phrase(spec)
    if isinstance(spec, Mapping):
        return _read_mapping(spec)
    raise CalendarError(f"cannot read deadline {spec!r}: {SPEC_HELP}")


def _read_phrase(spec: str) -> Due:
    shown = repr(spec)
    text = _normalize_phrase(spec)
    m = _WITHIN_RE.match(text)
    if m:
        return Due("within_working_days", _positive(int(m["n"]), shown), {}, shown)
    for kind, pat in (("before", _BEFORE_RE), ("by", _BY_RE)):
        m = pat.match(text)
        if m:
            return Due(kind, parse_date(m["date"], context=f"deadline {shown}"), {}, shown)
    raise CalendarError(f"cannot read deadline {shown}: {SPEC_HELP}")


def _read_mapping(spec: Mapping) -> Due:
    shown = repr(dict(spec))
    keys = set(map(str, spec))
    unknown = sorted(keys - set(KINDS) - set(RULE_KEYS))
    if unknown:
        raise CalendarError(f"unknown key(s) {', '.join(repr(k) for k in unknown)} in deadline {shown}: {SPEC_HELP}")
    kinds = [k for k in KINDS if k in keys]
    if len(kinds) != 1:
        what = "no" if not kinds else "more than one"
        raise CalendarError(f"deadline {shown} has {what} kind: give exactly one of {', '.join(KINDS)}; {SPEC_HELP}")
    kind = kinds[0]
    spec_rules = check_rules({k: spec[k] for k in RULE_KEYS if k in spec}, where=f"deadline {shown}")
    if kind == "within_working_days":
        if "inclusive" in spec_rules:
            raise CalendarError(f"deadline {shown}: 'inclusive' applies to before/by only")
        n = spec[kind]
        if isinstance(n, bool) or not isinstance(n, int):
            raise CalendarError(f"deadline {shown}: within_working_days must be a whole number of days, e.g. 5")
        return Due(kind, _positive(n, shown), spec_rules, shown)
    return Due(kind, parse_date(spec[kind], context=f"deadline {shown}"), spec_rules, shown)


def _normalize_phrase(text: str) -> str:
    text = unicodedata.normalize("NFC", text).strip().lower()
    text = re.sub(r"\s+", " ", text)
    return text.rstrip(" .;,")


def _positive(n: int, shown: str) -> int:
    if n < 1:
        raise CalendarError(f"deadline {shown}: the number of working days must be at least 1")
    if n > MAX_WORKING_DAYS:
        raise CalendarError(f"deadline {shown}: more than {MAX_WORKING_DAYS} working days")
    return n


# --------------------------------------------------------------------------- rules of reading


def effective_rules(kind: str, layers: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The rules that apply to a deadline of ``kind``: later layers win, per-kind keys over flat ones."""
    eff: dict[str, Any] = {}
    for layer in layers:
        eff.update({k: layer[k] for k in RULE_KEYS if k in layer})
        eff.update(layer.get(kind) or {})
    return eff


def check_rules(rules: Any, *, where: str) -> dict[str, Any]:
    """Validate a rules layer: {inclusive, end_of, roll} plus per-kind {before: {...}, by: {...}}."""
    if not isinstance(rules, Mapping):
        raise CalendarError(f"{where}: rules must be a mapping, e.g. {{end_of: office, roll: forward}}")
    out: dict[str, Any] = {}
    flat = {}
    for key, value in rules.items():
        if key in KINDS:
            if not isinstance(value, Mapping):
                raise CalendarError(f"{where}.{key} must be a mapping such as {{inclusive: true}}")
            out[key] = _check_rule_values(value, f"{where}.{key}")
        elif key in RULE_KEYS:
            flat[key] = value
        else:
            raise CalendarError(
                f"{where}: unknown rule {key!r}: use {', '.join(RULE_KEYS)} or per-kind "
                f"{', '.join(KINDS)}: {{...}}"
            )
    out.update(_check_rule_values(flat, where))
    return out


def _check_rule_values(layer: Mapping[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in layer.items():
        if key == "inclusive":
            if not isinstance(value, bool):
                raise CalendarError(f"{where}: inclusive must be true or false, got {value!r}")
        elif key == "end_of":
            if value not in END_OF:
                raise CalendarError(f"{where}: end_of must be one of {', '.join(END_OF)}, got {value!r}")
        elif key == "roll":
            if value not in ROLL:
                raise CalendarError(f"{where}: roll must be one of {', '.join(ROLL)}, got {value!r}")
        else:
            raise CalendarError(f"{where}: unknown rule {key!r}: use {', '.join(RULE_KEYS)}")
        out[key] = value
    return out


# --------------------------------------------------------------------------- in words

DUE_WORDS = {"before": "trước ngày", "by": "đến ngày"}


def split_offset(spec: Any) -> tuple[Any, Any]:
    """A due spec and the offset applied after it: ``{before: ..., offset: -5wd}`` ->
    ``({before: ...}, "-5wd")``; without one, ``(spec, None)``."""
    if isinstance(spec, Mapping) and "offset" in spec:
        return {k: v for k, v in spec.items() if k != "offset"}, spec["offset"]
    return spec, None


def due_words(spec: Any) -> str:
    """A deadline in words: ``{before: 2022-12-10}`` -> "trước ngày 10/12/2022",
    ``{within_working_days: 5}`` -> "trong 5 ngày làm việc"; with an offset, e.g.
    "trước ngày 10/12/2022 (5 ngày làm việc trước hạn đó)"."""
    plain, offset = split_offset(spec)
    due = read_due(plain)
    if due.kind == "within_working_days":
        words = f"trong {due.value} ngày làm việc"
    else:
        words = f"{DUE_WORDS[due.kind]} {due.value.day}/{due.value.month}/{due.value.year}"
    return words if offset is None else f"{words} ({offset_words(offset)} hạn đó)"


def offset_words(spec: str | Offset) -> str:
    """An offset in words: ``-5wd`` -> "5 ngày làm việc trước", ``+1wd`` -> "1 ngày làm việc sau",
    ``P30D`` -> "30 ngày sau", ``-P1M2DT4H`` -> "1 tháng 2 ngày 4 giờ trước"."""
    off = spec if isinstance(spec, Offset) else parse_offset(spec)
    if off.is_working_days:
        return f"{abs(off.working_days)} ngày làm việc {'trước' if off.working_days < 0 else 'sau'}"
    years, months = divmod(abs(off.months), 12)
    seconds = abs(off.time.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    amounts = ((years, "năm"), (months, "tháng"), (abs(off.days), "ngày"),
               (hours, "giờ"), (minutes, "phút"), (seconds, "giây"))
    words = " ".join(f"{vn_number(n, None)} {unit}" for n, unit in amounts if n)
    negative = off.months < 0 or off.days < 0 or off.time < timedelta(0)
    return f"{words} {'trước' if negative else 'sau'}"
