"""Business calendar: working days, offsets and deadlines in the plan's own words.

Pure Python (no Prefect).  A calendar is a YAML file under ``definitions/calendars/``;
``definitions/calendars/vn-civil-service.yaml`` documents the rules in plain words.

    cal = BusinessCalendar.load("vn-civil-service")
    cal.is_working_day(date(2022, 9, 2))                  # False: Quốc khánh
    cal.shift(due, "-5wd", at=cal.office_open)            # reminder 08:00, 5 working days before
    cal.resolve_due({"before": "2022-12-10"})             # 2022-12-09 23:59:59+07:00

A day is decided in this order: swapped (make-up) working day -> working; the year's official
days off -> off; statutory holiday (``holidays`` package) -> off; weekly rest -> off; else working.
Working days are precomputed lazily per calendar year as a sorted list of ordinals, so
``add_working_days`` is a bisect plus an index, not a day-by-day walk.
"""

from __future__ import annotations

import calendar as _stdcal
import re
import unicodedata
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from planflow.definitions import shipped

__all__ = ["BusinessCalendar", "CalendarError", "Offset", "DEFAULT_CALENDAR_DIR"]

DEFAULT_CALENDAR_DIR = shipped("calendars")

END_OF_DAY = time(23, 59, 59)

_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_WEEKDAY_VI = ("Thứ Hai", "Thứ Ba", "Thứ Tư", "Thứ Năm", "Thứ Sáu", "Thứ Bảy", "Chủ nhật")

_KINDS = ("before", "by", "within_working_days")
_RULE_KEYS = ("inclusive", "end_of", "roll")
_END_OF = ("day", "office")
_ROLL = ("back", "forward", "none")

_SPEC_HELP = (
    "use {before: 'YYYY-MM-DD'}, {by: 'YYYY-MM-DD'}, {within_working_days: N} "
    "(optionally with inclusive, end_of: day|office, roll: back|forward|none), "
    "or a phrase: 'trước ngày DD/MM/YYYY', 'đến ngày DD/MM/YYYY', 'trong N ngày làm việc'"
)
_DATE_HELP = "use DD/MM/YYYY (e.g. 10/12/2022) or YYYY-MM-DD (e.g. 2022-12-10)"


class CalendarError(ValueError):
    """A calendar file, an offset or a deadline could not be read; the message says what to change."""


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
def _parse_offset(spec: str) -> Offset:
    bad = CalendarError(
        f"bad offset '{spec}': use +Nwd, -Nwd or an ISO 8601 duration such as P7D"
    )
    if not isinstance(spec, str):
        raise bad
    text = spec.strip()
    m = _WD_RE.match(text)
    if m:
        n = int(m.group(2))
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
    elapsed = timedelta(hours=num(h), minutes=num(mi), seconds=num(s))
    return Offset(spec=spec, months=sign * months, days=sign * days, time=sign * elapsed)


def _add_months(d: datetime, months: int) -> datetime:
    idx = d.year * 12 + (d.month - 1) + months
    y, m = divmod(idx, 12)
    m += 1
    day = min(d.day, _stdcal.monthrange(y, m)[1])
    return d.replace(year=y, month=m, day=day)


# --------------------------------------------------------------------------- deadline phrases

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


def _normalize_phrase(text: str) -> str:
    text = unicodedata.normalize("NFC", text).strip().lower()
    text = re.sub(r"\s+", " ", text)
    return text.rstrip(" .;,")


def _parse_date(value: Any, *, context: str) -> date:
    if isinstance(value, datetime):
        raise CalendarError(
            f"bad date {value.isoformat()!r} in {context}: give a day, not a moment; {_DATE_HELP}"
        )
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        text = unicodedata.normalize("NFC", value).strip().lower()
        if text.startswith("ngày "):
            text = text[5:].strip()
        for pat in _DATE_PATTERNS:
            m = pat.match(text)
            if m:
                try:
                    return date(int(m["y"]), int(m["m"]), int(m["d"]))
                except ValueError:
                    raise CalendarError(
                        f"bad date '{value}' in {context}: no such day; {_DATE_HELP}"
                    ) from None
    raise CalendarError(f"bad date {value!r} in {context}: {_DATE_HELP}")


# --------------------------------------------------------------------------- YAML with line numbers


class _LineDict(dict):
    line: int | None = None


class _LineLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> _LineDict:
    loader.flatten_mapping(node)
    out = _LineDict(loader.construct_pairs(node, deep=True))
    out.line = node.start_mark.line + 1
    return out


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
# Keep unquoted dates as text: they are parsed (with a helpful error and a line) by _parse_date.
_LineLoader.add_constructor("tag:yaml.org,2002:timestamp", lambda loader, node: loader.construct_scalar(node))


@dataclass(frozen=True)
class _YearIndex:
    working: tuple[int, ...]  # sorted ordinals of the working days of one calendar year
    working_set: frozenset[int]


@dataclass(frozen=True)
class _Notice:
    text: str | None
    complete: bool


_LOAD_CACHE: dict[tuple[str, int, int], "BusinessCalendar"] = {}


# --------------------------------------------------------------------------- the calendar


class BusinessCalendar:
    """Working days and deadlines of one organisation; build with :meth:`load`."""

    def __init__(
        self,
        *,
        name: str,
        title: str,
        tz: ZoneInfo,
        weekly_rest: frozenset[int],
        office_open: time,
        office_close: time,
        statutory: Mapping[str, Any] | None,
        rules: Mapping[str, Any],
        days_off: Mapping[int, str],
        working_days: frozenset[int],
        notices: Mapping[int, _Notice],
        source: str = "<dict>",
    ) -> None:
        self.name = name
        self.id = name
        self.title = title
        self.tz = tz
        self.weekly_rest = weekly_rest
        self.office_open = office_open
        self.office_close = office_close
        self.rules = rules
        self.source = source
        self._statutory_cfg = statutory
        self._days_off = dict(days_off)  # ordinal -> Vietnamese name (official notices)
        self._extra_working = working_days  # ordinals of swapped (make-up) working days
        self._notices = dict(notices)
        self._years: dict[int, _YearIndex] = {}
        self._statutory_years: dict[int, dict[date, str]] = {}

    def __repr__(self) -> str:
        return f"BusinessCalendar({self.name!r}, tz={self.tz.key!r}, source={self.source!r})"

    # ----------------------------------------------------------------- loading

    @classmethod
    def load(cls, name_or_path: str | Path, *, base_dir: str | Path | None = None) -> "BusinessCalendar":
        """Load a calendar by name (plan-local ``calendars/``, then shipped) or by path."""
        path = cls._resolve_path(name_or_path, base_dir)
        try:
            st = path.stat()
        except OSError as exc:
            raise CalendarError(f"cannot read calendar file {path}: {exc.strerror}") from None
        key = (str(path), st.st_mtime_ns, st.st_size)
        cal = _LOAD_CACHE.get(key)
        if cal is None:
            try:
                data = yaml.load(path.read_text(encoding="utf-8"), Loader=_LineLoader)
            except yaml.MarkedYAMLError as exc:
                mark = exc.problem_mark
                where = f", line {mark.line + 1}" if mark is not None else ""
                raise CalendarError(f"{path}{where}: invalid YAML: {exc.problem}") from None
            except (yaml.YAMLError, ValueError) as exc:
                raise CalendarError(f"{path}: invalid YAML: {exc}") from None
            cal = cls.from_dict(data, source=str(path), default_name=path.stem)
            _LOAD_CACHE[key] = cal
        return cal

    @staticmethod
    def _resolve_path(name_or_path: str | Path, base_dir: str | Path | None) -> Path:
        """A path is read relative to ``base_dir`` (the plan's folder); a bare name is looked
        up in ``<base_dir>/calendars/`` first, then among the calendars planflow ships."""
        if isinstance(name_or_path, Path) or (
            isinstance(name_or_path, str)
            and ("/" in name_or_path or "\\" in name_or_path or name_or_path.endswith((".yaml", ".yml")))
        ):
            p = Path(name_or_path)
            if not p.is_absolute() and base_dir is not None:
                p = Path(base_dir) / p
            return p.resolve()
        if not isinstance(name_or_path, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name_or_path):
            raise CalendarError(
                f"bad calendar name {name_or_path!r}: use a file name without extension "
                f"(e.g. 'vn-civil-service') or a path to a .yaml file"
            )
        folders = ([Path(base_dir) / "calendars"] if base_dir is not None else []) + [DEFAULT_CALENDAR_DIR]
        for folder in folders:
            for ext in (".yaml", ".yml"):
                p = folder / f"{name_or_path}{ext}"
                if p.exists():
                    return p.resolve()
        available = sorted({p.stem for f in folders if f.is_dir() for p in f.glob("*.y*ml")})
        raise CalendarError(
            f"calendar '{name_or_path}' not found: looked for {name_or_path}.yaml in "
            f"{' and '.join(str(f) for f in folders)}; "
            f"available: {', '.join(available) or 'none'}"
        )

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<dict>", default_name: str | None = None) -> "BusinessCalendar":
        """Build a calendar from the parsed YAML mapping (validated; errors name file and line)."""

        def err(msg: str, node: Any = None) -> CalendarError:
            line = getattr(node, "line", None)
            return CalendarError(f"{source}{f', line {line}' if line else ''}: {msg}")

        if not isinstance(data, Mapping):
            raise err("a calendar must be a mapping with id, timezone, years, ...")
        allowed = {"id", "name", "description", "note", "timezone", "weekly_rest", "office_hours",
                   "statutory", "rules", "years"}
        unknown = sorted(set(map(str, data)) - allowed)
        if unknown:
            raise err(f"unknown key(s) {', '.join(unknown)}: allowed are {', '.join(sorted(allowed))}", data)

        name = str(data.get("id") or default_name or "")
        if not name:
            raise err("missing 'id' (the calendar's name, e.g. vn-civil-service)", data)

        tz_name = data.get("timezone")
        if not isinstance(tz_name, str):
            raise err("missing 'timezone' (an IANA name such as Asia/Ho_Chi_Minh)", data)
        try:
            tz = ZoneInfo(tz_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise err(f"unknown timezone '{tz_name}': use an IANA name such as Asia/Ho_Chi_Minh", data) from None

        rest_raw = data.get("weekly_rest", ["saturday", "sunday"])
        if not isinstance(rest_raw, list):
            raise err("weekly_rest must be a list of weekday names, e.g. [saturday, sunday]", data)
        rest: set[int] = set()
        for day in rest_raw:
            if not isinstance(day, str) or day.strip().lower() not in _WEEKDAYS:
                raise err(f"weekly_rest: unknown weekday {day!r}: use {', '.join(_WEEKDAYS)}", data)
            rest.add(_WEEKDAYS.index(day.strip().lower()))
        if len(rest) == 7:
            raise err("weekly_rest lists every day of the week: no day would be a working day", data)

        hours = data.get("office_hours", {"open": "08:00", "close": "17:00"})
        if not isinstance(hours, Mapping):
            raise err("office_hours must be a mapping {open: \"08:00\", close: \"17:00\"}", data)

        def hhmm(key: str) -> time:
            value = hours.get(key)
            if isinstance(value, str):
                try:
                    return time.fromisoformat(value.strip())
                except ValueError:
                    pass
            raise err(f"office_hours.{key}: bad time {value!r}: write it quoted as \"HH:MM\", e.g. \"08:00\"", hours)

        office_open, office_close = hhmm("open"), hhmm("close")
        if office_open >= office_close:
            raise err("office_hours: open must be earlier than close", hours)

        statutory = data.get("statutory")
        if statutory:
            if not isinstance(statutory, Mapping) or statutory.get("package") != "holidays" or not statutory.get("country"):
                raise err("statutory must be {package: holidays, country: VN} (optionally language, subdiv) or empty", statutory)
            statutory = {"country": str(statutory["country"]), "language": statutory.get("language", "vi"),
                         "subdiv": statutory.get("subdiv")}
        else:
            statutory = None

        rules_raw = data.get("rules") or {}
        try:
            rules = _check_rules(rules_raw, where="rules")
        except CalendarError as exc:
            raise err(str(exc), rules_raw) from None

        years = data.get("years") or {}
        if not isinstance(years, Mapping):
            raise err("years must be a mapping of year -> {notice, days_off, working_days}", data)
        days_off: dict[int, str] = {}
        working: set[int] = set()
        notices: dict[int, _Notice] = {}
        for year_key, ydata in years.items():
            try:
                year = int(year_key)
            except (TypeError, ValueError):
                raise err(f"years: bad year {year_key!r}: use a number such as 2022", years) from None
            here = f"years.{year}"
            if ydata is None:
                ydata = {}
            if not isinstance(ydata, Mapping):
                raise err(f"{here} must be a mapping with notice, days_off, working_days", years)
            unknown = sorted(set(map(str, ydata)) - {"notice", "complete", "days_off", "working_days", "source", "note"})
            if unknown:
                raise err(f"{here}: unknown key(s) {', '.join(unknown)}: allowed are notice, complete, "
                          f"days_off, working_days, source, note", ydata)
            notice = ydata.get("notice")
            complete = ydata.get("complete", notice is not None)
            if not isinstance(complete, bool):
                raise err(f"{here}.complete must be true or false", ydata)
            notices[year] = _Notice(text=str(notice) if notice is not None else None,
                                    complete=bool(complete and notice is not None))
            for i, entry in enumerate(ydata.get("days_off") or []):
                where = f"{here}.days_off[{i}]"
                if not isinstance(entry, Mapping):
                    raise err(f"{where} must be a mapping {{name, from, to, source}}", ydata)
                entry_name = entry.get("name")
                if not isinstance(entry_name, str) or not entry_name.strip():
                    raise err(f"{where}: missing 'name' (the Vietnamese name of the day off)", entry)
                if not entry.get("source"):
                    raise err(f"{where} ('{entry_name}'): missing 'source' (where the notice was read)", entry)
                for d in _entry_dates(entry, where, err):
                    o = d.toordinal()
                    if o in days_off and days_off[o] != entry_name:
                        raise err(f"{where}: {d.isoformat()} is already a day off as '{days_off[o]}'", entry)
                    days_off[o] = entry_name.strip()
            for i, entry in enumerate(ydata.get("working_days") or []):
                where = f"{here}.working_days[{i}]"
                if isinstance(entry, Mapping):
                    dates = _entry_dates(entry, where, err)
                else:
                    dates = [_wrap(err, lambda: _parse_date(entry, context=where), ydata)]
                working.update(d.toordinal() for d in dates)
        clash = sorted(working & days_off.keys())
        if clash:
            d = date.fromordinal(clash[0])
            raise err(f"{d.isoformat()} is both a working day and a day off ('{days_off[clash[0]]}')", years)

        return cls(
            name=name, title=str(data.get("name") or name), tz=tz, weekly_rest=frozenset(rest),
            office_open=office_open, office_close=office_close, statutory=statutory, rules=rules,
            days_off=days_off, working_days=frozenset(working), notices=notices, source=source,
        )

    # ----------------------------------------------------------------- days

    def _statutory(self, year: int) -> dict[date, str]:
        found = self._statutory_years.get(year)
        if found is None:
            found = {}
            if self._statutory_cfg is not None:
                import holidays  # lazy: only the first time a year is needed

                cfg = self._statutory_cfg
                try:
                    hols = holidays.country_holidays(
                        cfg["country"], subdiv=cfg["subdiv"], years=year, language=cfg["language"]
                    )
                    found = {d: n for d, n in hols.items() if d.year == year}
                except (NotImplementedError, KeyError, ValueError) as exc:
                    raise CalendarError(f"{self.source}: statutory holidays for {cfg} {year}: {exc}") from None
            self._statutory_years[year] = found
        return found

    def _year(self, year: int) -> _YearIndex:
        idx = self._years.get(year)
        if idx is None:
            if not 1 <= year <= 9999:
                raise CalendarError(f"year {year} is outside the calendar (1..9999)")
            statutory = {d.toordinal() for d in self._statutory(year)}
            rest, off, extra = self.weekly_rest, self._days_off, self._extra_working
            first, last = date(year, 1, 1).toordinal(), date(year, 12, 31).toordinal()
            working = tuple(
                o for o in range(first, last + 1)
                if o in extra or not (o in off or o in statutory or (o - 1) % 7 in rest)
            )  # (o - 1) % 7 == date.fromordinal(o).weekday()
            idx = _YearIndex(working=working, working_set=frozenset(working))
            self._years[year] = idx
        return idx

    def _local_date(self, d: date) -> date:
        if isinstance(d, datetime):
            return self._localize(d).date()
        if not isinstance(d, date):
            raise CalendarError(f"expected a date, got {d!r}")
        return d

    def is_working_day(self, d: date) -> bool:
        d = self._local_date(d)
        return d.toordinal() in self._year(d.year).working_set

    def day_off_reason(self, d: date) -> str | None:
        """Vietnamese reason a day is off ("Tết Nguyên đán Nhâm Dần", "Thứ Bảy"), None if working."""
        d = self._local_date(d)
        o = d.toordinal()
        if o in self._year(d.year).working_set:
            return None
        return self._days_off.get(o) or self._statutory(d.year).get(d) or _WEEKDAY_VI[d.weekday()]

    def add_working_days(self, d: date, n: int) -> date:
        """n>0: the n-th working day after d; n<0: before d; n==0: d if working, else the next one."""
        d = self._local_date(d)
        o, year = d.toordinal(), d.year
        idx = self._year(year)
        if n == 0:
            if o in idx.working_set:
                return d
            n = 1
        if n > 0:
            i = bisect_right(idx.working, o) + n - 1
            while i >= len(idx.working):
                i -= len(idx.working)
                year += 1
                idx = self._year(year)
        else:
            i = bisect_left(idx.working, o) + n
            while i < 0:
                year -= 1
                idx = self._year(year)
                i += len(idx.working)
        return date.fromordinal(idx.working[i])

    def next_working_day(self, d: date) -> date:
        return self.add_working_days(d, 1)

    def previous_working_day(self, d: date) -> date:
        return self.add_working_days(d, -1)

    def count_working_days(self, start: date, end: date) -> int:
        """Working days d with start < d <= end (negative when end < start): 'late by N working days'."""
        start, end = self._local_date(start), self._local_date(end)
        if end < start:
            return -self.count_working_days(end, start)
        total = 0
        for year in range(start.year, end.year + 1):
            w = self._year(year).working
            lo = bisect_right(w, start.toordinal()) if year == start.year else 0
            hi = bisect_right(w, end.toordinal()) if year == end.year else len(w)
            total += hi - lo
        return total

    def has_official_notice(self, year: int) -> bool:
        """True when the YAML holds that year's complete official days-off notice for civil servants."""
        notice = self._notices.get(year)
        return bool(notice and notice.complete)

    def official_notice(self, year: int) -> str | None:
        notice = self._notices.get(year)
        return notice.text if notice else None

    # ----------------------------------------------------------------- moments

    def _localize(self, dt: datetime | date) -> datetime:
        if not isinstance(dt, datetime):
            if isinstance(dt, date):
                return datetime.combine(dt, time(0), tzinfo=self.tz)
            raise CalendarError(f"expected a datetime, got {dt!r}")
        if dt.tzinfo is None or dt.utcoffset() is None:
            return dt.replace(tzinfo=self.tz)  # naive = local time of the calendar
        return dt.astimezone(self.tz)

    def parse_offset(self, spec: str) -> Offset:
        """'+3wd', '-5wd', '0wd' (working days) or an ISO 8601 duration ('P7D', '-P2D', 'PT4H')."""
        if isinstance(spec, Offset):
            return spec
        if not isinstance(spec, str):
            raise CalendarError(f"bad offset {spec!r}: use +Nwd, -Nwd or an ISO 8601 duration such as P7D")
        return _parse_offset(spec)

    def shift(self, dt: datetime, spec: str | Offset, *, at: time | None = None) -> datetime:
        """Move dt by an offset; ``at`` replaces the local time of day of the result.

        Working days count from dt's local date (time of day kept); durations are calendar time.
        A naive dt is read as local time of the calendar.  The result is aware, in ``self.tz``.
        """
        off = self.parse_offset(spec)
        local = self._localize(dt)
        if off.working_days is not None:
            d = self.add_working_days(local.date(), off.working_days)
            result = local.replace(year=d.year, month=d.month, day=d.day)
        else:
            result = local
            if off.months:
                result = _add_months(result, off.months)
            if off.days:
                result = result + timedelta(days=off.days)  # wall-clock arithmetic
            if off.time:
                result = (result.astimezone(timezone.utc) + off.time).astimezone(self.tz)
        if at is not None:
            result = result.replace(hour=at.hour, minute=at.minute, second=at.second, microsecond=at.microsecond)
        return result

    def resolve_due(
        self,
        spec: str | Mapping[str, Any],
        *,
        start: datetime | None = None,
        rules: Mapping[str, Any] | None = None,
    ) -> datetime:
        """The last moment (aware, local) that is still on time for a deadline in the plan's words.

        On time iff ``submitted_at.replace(microsecond=0) <= due`` (see :meth:`is_on_time`).
        Rules: yaml ``rules:`` < ``rules=`` < keys in the spec; see the calendar YAML header.
        """
        kind, value, spec_rules, shown = self._read_spec(spec)
        layers = [self.rules]
        if rules is not None:
            layers.append(_check_rules(rules, where="rules="))
        layers.append(spec_rules)
        eff: dict[str, Any] = {}
        for layer in layers:
            eff.update({k: layer[k] for k in _RULE_KEYS if k in layer})
            eff.update(layer.get(kind) or {})
        inclusive = eff.get("inclusive", kind != "before")
        end_of = eff.get("end_of", "day")
        roll = eff.get("roll", "back")

        if kind == "within_working_days":
            if start is None:
                raise CalendarError(
                    f"deadline {shown} counts working days from a start: pass start=<datetime> "
                    f"(day 1 is the first working day after start's date, BLDS 2015 Điều 147)"
                )
            last = self.add_working_days(self._localize(start).date(), value)
        else:
            last = value if inclusive else value - timedelta(days=1)
            if not self.is_working_day(last):
                if roll == "back":
                    last = self.add_working_days(last, -1)
                elif roll == "forward":
                    last = self.add_working_days(last, 1)
        cutoff = self.office_close if end_of == "office" else END_OF_DAY
        return datetime.combine(last, cutoff, tzinfo=self.tz)

    def is_on_time(self, submitted_at: datetime, due: datetime) -> bool:
        """The one comparison rule: receipt time truncated to the second <= due."""
        return self._localize(submitted_at).replace(microsecond=0) <= due

    def _read_spec(self, spec: Any) -> tuple[str, Any, dict[str, Any], str]:
        if isinstance(spec, str):
            shown = repr(spec)
            text = _normalize_phrase(spec)
            m = _WITHIN_RE.match(text)
            if m:
                return "within_working_days", _positive(int(m["n"]), shown), {}, shown
            for kind, pat in (("before", _BEFORE_RE), ("by", _BY_RE)):
                m = pat.match(text)
                if m:
                    return kind, _parse_date(m["date"], context=f"deadline {shown}"), {}, shown
            raise CalendarError(f"cannot read deadline {shown}: {_SPEC_HELP}")
        if isinstance(spec, Mapping):
            shown = repr(dict(spec))
            keys = set(map(str, spec))
            unknown = sorted(keys - set(_KINDS) - set(_RULE_KEYS))
            if unknown:
                raise CalendarError(f"unknown key(s) {', '.join(repr(k) for k in unknown)} in deadline {shown}: {_SPEC_HELP}")
            kinds = [k for k in _KINDS if k in keys]
            if len(kinds) != 1:
                what = "no" if not kinds else "more than one"
                raise CalendarError(f"deadline {shown} has {what} kind: give exactly one of {', '.join(_KINDS)}; {_SPEC_HELP}")
            kind = kinds[0]
            spec_rules = _check_rules({k: spec[k] for k in _RULE_KEYS if k in spec}, where=f"deadline {shown}")
            if kind == "within_working_days":
                if "inclusive" in spec_rules:
                    raise CalendarError(f"deadline {shown}: 'inclusive' applies to before/by only")
                n = spec[kind]
                if isinstance(n, bool) or not isinstance(n, int):
                    raise CalendarError(f"deadline {shown}: within_working_days must be a whole number of days, e.g. 5")
                return kind, _positive(n, shown), spec_rules, shown
            return kind, _parse_date(spec[kind], context=f"deadline {shown}"), spec_rules, shown
        raise CalendarError(f"cannot read deadline {spec!r}: {_SPEC_HELP}")


# --------------------------------------------------------------------------- helpers


def _positive(n: int, shown: str) -> int:
    if n < 1:
        raise CalendarError(f"deadline {shown}: the number of working days must be at least 1")
    return n


def _check_rule_values(layer: Mapping[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in layer.items():
        if key == "inclusive":
            if not isinstance(value, bool):
                raise CalendarError(f"{where}: inclusive must be true or false, got {value!r}")
        elif key == "end_of":
            if value not in _END_OF:
                raise CalendarError(f"{where}: end_of must be one of {', '.join(_END_OF)}, got {value!r}")
        elif key == "roll":
            if value not in _ROLL:
                raise CalendarError(f"{where}: roll must be one of {', '.join(_ROLL)}, got {value!r}")
        else:
            raise CalendarError(f"{where}: unknown rule {key!r}: use {', '.join(_RULE_KEYS)}")
        out[key] = value
    return out


def _check_rules(rules: Any, *, where: str) -> dict[str, Any]:
    """Validate a rules layer: {inclusive, end_of, roll} plus per-kind {before: {...}, by: {...}}."""
    if not isinstance(rules, Mapping):
        raise CalendarError(f"{where}: rules must be a mapping, e.g. {{end_of: office, roll: forward}}")
    out: dict[str, Any] = {}
    flat = {}
    for key, value in rules.items():
        if key in _KINDS:
            if not isinstance(value, Mapping):
                raise CalendarError(f"{where}.{key} must be a mapping such as {{inclusive: true}}")
            out[key] = _check_rule_values(value, f"{where}.{key}")
        elif key in _RULE_KEYS:
            flat[key] = value
        else:
            raise CalendarError(
                f"{where}: unknown rule {key!r}: use {', '.join(_RULE_KEYS)} or per-kind "
                f"{', '.join(_KINDS)}: {{...}}"
            )
    out.update(_check_rule_values(flat, where))
    return out


def _wrap(err, fn, at):
    try:
        return fn()
    except CalendarError as exc:
        raise err(str(exc), at) from None


def _entry_dates(entry: Mapping[str, Any], where: str, err) -> list[date]:
    allowed = {"name", "date", "dates", "from", "to", "source", "status", "note"}
    unknown = sorted(set(map(str, entry)) - allowed)
    if unknown:
        raise err(f"{where}: unknown key(s) {', '.join(unknown)}: allowed are {', '.join(sorted(allowed))}", entry)

    def parse(v: Any) -> date:
        return _wrap(err, lambda: _parse_date(v, context=where), entry)

    forms = [k for k in ("date", "dates", "from") if k in entry]
    if len(forms) != 1 or ("from" in entry) != ("to" in entry):
        raise err(f"{where}: give exactly one of date: D, dates: [D, ...], or from: D + to: D", entry)
    if "date" in entry:
        return [parse(entry["date"])]
    if "dates" in entry:
        if not isinstance(entry["dates"], list) or not entry["dates"]:
            raise err(f"{where}: dates must be a non-empty list", entry)
        return [parse(v) for v in entry["dates"]]
    first, last = parse(entry["from"]), parse(entry["to"])
    if last < first:
        raise err(f"{where}: 'to' ({last.isoformat()}) is before 'from' ({first.isoformat()})", entry)
    return [date.fromordinal(o) for o in range(first.toordinal(), last.toordinal() + 1)]
