"""Business calendar: working days, and the moments deadlines and offsets fall on.

Pure Python (no Prefect).  A calendar is a YAML file under ``definitions/calendars/``
(read and checked by ``planflow.calendar_file``); the plan's words for deadlines and
offsets are read by ``planflow.due_phrases``.

    cal = BusinessCalendar.load("vn-civil-service")
    cal.is_working_day(date(2022, 9, 2))                  # False: Quốc khánh
    cal.shift(due, "-5wd", at=cal.office_open)            # reminder 08:00, 5 working days before
    cal.resolve_due({"before": "2022-12-10"})             # 2022-12-09 23:59:59+07:00

A day is decided in this order: the file's make-up working day -> working; the file's days off
(the year's official notice) -> off; the ``holidays`` package's make-up working day
(``weekend_workdays``, a Saturday worked for a bridge day) -> working; its holidays (statutory,
observed "nghỉ bù" and substituted days) -> off; weekly rest -> off; else working.
What a year holds, and which years the data lacks, is said by ``planflow.calendar_report``.
Working days are precomputed lazily per calendar year as a sorted list of ordinals, so
``add_working_days`` is a bisect plus an index, not a day-by-day walk.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any, Mapping
from zoneinfo import ZoneInfo

from planflow.calendar_file import DEFAULT_CALENDAR_DIR, Notice, calendar_settings, find_calendar, read_calendar_file
from planflow.due_phrases import OFFSET_HELP, Offset, add_months, check_rules, effective_rules, parse_offset, read_due
from planflow.country_holidays import country_holidays
from planflow.problems import CalendarError

__all__ = ["BusinessCalendar", "CalendarError", "Offset", "DEFAULT_CALENDAR_DIR", "WEEKDAY_VI"]

END_OF_DAY = time(23, 59, 59)

WEEKDAY_VI = ("Thứ Hai", "Thứ Ba", "Thứ Tư", "Thứ Năm", "Thứ Sáu", "Thứ Bảy", "Chủ nhật")


@dataclass(frozen=True)
class _YearIndex:
    working: tuple[int, ...]  # sorted ordinals of the working days of one calendar year
    working_set: frozenset[int]


_LOAD_CACHE: dict[tuple[str, int, int], "BusinessCalendar"] = {}


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
        notices: Mapping[int, Notice],
        source: str = "<dict>",
        working_names: Mapping[int, str] | None = None,
        years_line: int = 0,
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
        self._working_names = dict(working_names or {})  # ordinal -> name of a make-up day (file)
        self._notices = dict(notices)
        self.years_line = years_line  # the line of ``years:`` in the file (0: unknown)
        self._years: dict[int, _YearIndex] = {}
        self._statutory_years: dict[int, tuple[dict[date, str], frozenset[date]]] = {}

    def __repr__(self) -> str:
        return f"BusinessCalendar({self.name!r}, tz={self.tz.key!r}, source={self.source!r})"

    # ----------------------------------------------------------------- loading

    @classmethod
    def load(cls, name_or_path: str | Path, *, base_dir: str | Path | None = None) -> "BusinessCalendar":
        """Load a calendar by name (plan-local ``calendars/``, then shipped) or by path.

        A file that breaks a rule of calendar files raises ``CalendarError`` naming the file and line.
        """
        path = find_calendar(name_or_path, base_dir)
        try:
            st = path.stat()
        except OSError as exc:
            raise CalendarError(f"cannot read calendar file {path}: {exc.strerror}") from None
        key = (str(path), st.st_mtime_ns, st.st_size)
        cal = _LOAD_CACHE.get(key)
        if cal is None:
            cal = cls(**read_calendar_file(path))
            _LOAD_CACHE[key] = cal
        return cal

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<dict>", default_name: str | None = None) -> "BusinessCalendar":
        """Build a calendar from a calendar file's mapping (validated; errors name file and line)."""
        return cls(**calendar_settings(data, source=source, default_name=default_name))

    # ----------------------------------------------------------------- days

    def _package(self, year: int) -> tuple[dict[date, str], frozenset[date]]:
        """The ``holidays`` package's days off of a year, and its make-up (weekend) working days."""
        found = self._statutory_years.get(year)
        if found is None:
            found = ({}, frozenset())
            if self._statutory_cfg is not None:
                cfg = self._statutory_cfg
                try:
                    hols = country_holidays(cfg["country"], subdiv=cfg["subdiv"], years=year,
                                            language=cfg["language"])
                    workdays = getattr(hols, "weekend_workdays", ())
                    found = ({d: n for d, n in hols.items() if d.year == year},
                             frozenset(d for d in workdays if d.year == year))
                except (NotImplementedError, KeyError, ValueError) as exc:
                    raise CalendarError(f"{self.source}: statutory holidays for {cfg} {year}: {exc}") from None
            self._statutory_years[year] = found
        return found

    def _statutory(self, year: int) -> dict[date, str]:
        return self._package(year)[0]

    def _year(self, year: int) -> _YearIndex:
        idx = self._years.get(year)
        if idx is None:
            if not 1 <= year <= 9999:
                raise CalendarError(f"year {year} is outside the calendar (1..9999)")
            package_off, package_work = self._package(year)
            statutory = {d.toordinal() for d in package_off}
            made_up = {d.toordinal() for d in package_work}
            rest, off, extra = self.weekly_rest, self._days_off, self._extra_working
            first, last = date(year, 1, 1).toordinal(), date(year, 12, 31).toordinal()
            working = tuple(
                o for o in range(first, last + 1)
                if o in extra or (o not in off and (o in made_up or not (o in statutory or (o - 1) % 7 in rest)))
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
        return self._days_off.get(o) or self._statutory(d.year).get(d) or WEEKDAY_VI[d.weekday()]

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

    def notice(self, year: int) -> Notice | None:
        """What the file says of a year's notice (text, complete, source, missing, line); None: nothing."""
        return self._notices.get(year)

    def holidays_in(self, year: int) -> list[tuple[date, str, str]]:
        """The year's days off other than plain weekly rest: (day, Vietnamese name, origin), origin
        ``"notice"`` (the file's official notice) or ``"holidays"`` (the package)."""
        working, statutory = self._year(year).working_set, self._statutory(year)
        days = []
        for o in range(date(year, 1, 1).toordinal(), date(year, 12, 31).toordinal() + 1):
            if o in working:
                continue
            d = date.fromordinal(o)
            if o in self._days_off:
                days.append((d, self._days_off[o], "notice"))
            elif d in statutory:
                days.append((d, statutory[d], "holidays"))
        return days

    def make_up_days_in(self, year: int) -> list[tuple[date, str, str]]:
        """The year's make-up working days on a weekly rest day: (day, name, origin) as in :meth:`holidays_in`."""
        working, package_work = self._year(year).working_set, self._package(year)[1]
        found = {o: (self._working_names.get(o, "Ngày làm bù"), "notice") for o in self._extra_working}
        for d in package_work:
            # the package names the bridge day "Ngày nghỉ (thay cho ngày 22/08/2026)"
            swapped = [h for h, n in self._statutory(year).items() if f"{d:%d/%m/%Y}" in n]
            name = f"Làm bù cho ngày {swapped[0]:%d/%m/%Y}" if swapped else "Ngày làm bù"
            found.setdefault(d.toordinal(), (name, "holidays"))
        return [(date.fromordinal(o), name, origin) for o, (name, origin) in sorted(found.items())
                if o in working and date.fromordinal(o).year == year and (o - 1) % 7 in self.weekly_rest]

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
            raise CalendarError(f"bad offset {spec!r}: {OFFSET_HELP}")
        return parse_offset(spec)

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
                result = add_months(result, off.months)
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
        kind, value, spec_rules, shown = read_due(spec)
        layers = [self.rules]
        if rules is not None:
            layers.append(check_rules(rules, where="rules="))
        layers.append(spec_rules)
        eff = effective_rules(kind, layers)
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
