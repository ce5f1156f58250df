"""A calendar file: where it is found, how it is read, and the rules it must follow.

A calendar is a YAML file under ``calendars/`` (next to the plan, or shipped with planflow);
``definitions/calendars/vn-civil-service.yaml`` documents the rules in plain words.
``CALENDAR_PARTS`` reads the file part by part, in order; the first problem stops the
reading with a ``CalendarFileError`` naming the file and the line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, time
from pathlib import Path
from typing import Any, Callable, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


from planflow.definitions import shipped
from planflow.due_phrases import check_rules, parse_date
from planflow.problems import CalendarError, CalendarFileError, Problem
from planflow.yaml_reader import LINE_KEY, YamlError, line_of, line_of_key, load_with_lines, strip_lines

DEFAULT_CALENDAR_DIR = shipped("calendars")

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
CALENDAR_KEYS = {"id", "name", "description", "note", "timezone", "weekly_rest", "office_hours",
                 "statutory", "rules", "years"}
YEAR_KEYS = ("notice", "complete", "missing", "days_off", "working_days", "source", "note")
ENTRY_KEYS = {"name", "date", "dates", "from", "to", "source", "status", "note"}


@dataclass(frozen=True)
class Notice:
    """A year's official days-off notice: its text, whether the file holds all of it, where it was
    read (``source``), what the data still lacks (``missing``) and the line of the year in the file."""

    text: str | None
    complete: bool
    source: str | None = None
    missing: str | None = None
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class CalendarSource:
    """The calendar file being read: its name in messages, and the name a calendar without ``id`` takes."""

    file: str
    default_name: str | None = None

    def problem(self, message: str, node: Any = None) -> CalendarFileError:
        """The error for a problem at ``node`` (a mapping of the file, which knows its line)."""
        return CalendarFileError(Problem(self.file, line_of(node), None, message))


# --------------------------------------------------------------------------- finding and reading


def find_calendar(name_or_path: str | Path, base_dir: str | Path | None) -> Path:
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


def read_calendar_file(path: Path) -> dict[str, Any]:
    """The settings of the calendar in a file (see :func:`calendar_settings`)."""
    try:
        data = load_with_lines(path, dates_as_text=True)  # a bad unquoted date is refused with its line
    except YamlError as exc:
        said = f"invalid YAML: {exc.problem}" if exc.message.startswith("not valid YAML") else exc.message
        raise CalendarFileError(Problem(str(path), exc.line, None, said)) from None
    return calendar_settings(data, source=str(path), default_name=path.stem)


def calendar_settings(data: Any, *, source: str = "<dict>", default_name: str | None = None) -> dict[str, Any]:
    """The keyword arguments of a ``BusinessCalendar``, read from a calendar file's mapping."""
    src = CalendarSource(source, default_name)
    if not isinstance(data, Mapping):
        raise src.problem("a calendar must be a mapping with id, timezone, years, ...")
    settings: dict[str, Any] = {"source": source}
    for read in CALENDAR_PARTS:
        settings.update(read(data, src))
    return settings


# --------------------------------------------------------------------------- the parts, in order


def read_keys(data: Mapping, src: CalendarSource) -> dict:
    unknown = sorted(set(map(str, data)) - CALENDAR_KEYS - {LINE_KEY})
    if unknown:
        raise src.problem(f"unknown key(s) {', '.join(unknown)}: allowed are {', '.join(sorted(CALENDAR_KEYS))}", data)
    return {}


def read_name(data: Mapping, src: CalendarSource) -> dict:
    name = str(strip_lines(data.get("id")) or src.default_name or "")
    if not name:
        raise src.problem("missing 'id' (the calendar's name, e.g. vn-civil-service)", data)
    return {"name": name, "title": str(strip_lines(data.get("name")) or name)}


def read_timezone(data: Mapping, src: CalendarSource) -> dict:
    tz_name = data.get("timezone")
    if not isinstance(tz_name, str):
        raise src.problem("missing 'timezone' (an IANA name such as Asia/Ho_Chi_Minh)", data)
    try:
        return {"tz": ZoneInfo(tz_name)}
    except (ZoneInfoNotFoundError, ValueError):
        raise src.problem(f"unknown timezone '{tz_name}': use an IANA name such as Asia/Ho_Chi_Minh", data) from None


def read_weekly_rest(data: Mapping, src: CalendarSource) -> dict:
    rest_raw = strip_lines(data.get("weekly_rest", ["saturday", "sunday"]))
    if not isinstance(rest_raw, list):
        raise src.problem("weekly_rest must be a list of weekday names, e.g. [saturday, sunday]", data)
    rest: set[int] = set()
    for day in rest_raw:
        if not isinstance(day, str) or day.strip().lower() not in WEEKDAYS:
            raise src.problem(f"weekly_rest: unknown weekday {day!r}: use {', '.join(WEEKDAYS)}", data)
        rest.add(WEEKDAYS.index(day.strip().lower()))
    if len(rest) == 7:
        raise src.problem("weekly_rest lists every day of the week: no day would be a working day", data)
    return {"weekly_rest": frozenset(rest)}


def read_office_hours(data: Mapping, src: CalendarSource) -> dict:
    hours = data.get("office_hours", {"open": "08:00", "close": "17:00"})
    if not isinstance(hours, Mapping):
        raise src.problem("office_hours must be a mapping {open: \"08:00\", close: \"17:00\"}", data)
    office_open, office_close = _office_time(hours, "open", src), _office_time(hours, "close", src)
    if office_open >= office_close:
        raise src.problem("office_hours: open must be earlier than close", hours)
    return {"office_open": office_open, "office_close": office_close}


def _office_time(hours: Mapping, key: str, src: CalendarSource) -> time:
    value = strip_lines(hours.get(key))
    if isinstance(value, str):
        try:
            return time.fromisoformat(value.strip())
        except ValueError:
            pass
    raise src.problem(f"office_hours.{key}: bad time {value!r}: write it quoted as \"HH:MM\", e.g. \"08:00\"", hours)


def read_statutory(data: Mapping, src: CalendarSource) -> dict:
    statutory = data.get("statutory")
    if not strip_lines(statutory):
        return {"statutory": None}
    if not isinstance(statutory, Mapping) or statutory.get("package") != "holidays" or not statutory.get("country"):
        raise src.problem("statutory must be {package: holidays, country: VN} (optionally language, subdiv) or empty",
                          statutory)
    plain = strip_lines(statutory)
    return {"statutory": {"country": str(plain["country"]), "language": plain.get("language", "vi"),
                          "subdiv": plain.get("subdiv")}}


def read_rules(data: Mapping, src: CalendarSource) -> dict:
    rules_raw = data.get("rules") or {}
    try:
        return {"rules": check_rules(strip_lines(rules_raw), where="rules")}
    except CalendarError as exc:
        raise src.problem(str(exc), rules_raw) from None


def read_years(data: Mapping, src: CalendarSource) -> dict:
    years = data.get("years") or {}
    if not isinstance(years, Mapping):
        raise src.problem("years must be a mapping of year -> {notice, days_off, working_days}", data)
    found = {"days_off": {}, "working_days": set(), "working_names": {}, "notices": {}}
    for year_key, ydata in years.items():
        if year_key != LINE_KEY:
            _read_year(year_key, ydata, years, src, found)
    days_off, working = found["days_off"], found["working_days"]
    clash = sorted(working & days_off.keys())
    if clash:
        d = date.fromordinal(clash[0])
        raise src.problem(f"{d.isoformat()} is both a working day and a day off ('{days_off[clash[0]]}')", years)
    return {**found, "working_days": frozenset(working), "years_line": line_of_key(data, "years")}


CALENDAR_PARTS: tuple[Callable[[Mapping, CalendarSource], dict], ...] = (
    read_keys, read_name, read_timezone, read_weekly_rest, read_office_hours, read_statutory, read_rules, read_years,
)


# --------------------------------------------------------------------------- one year


def _read_year(year_key: Any, ydata: Any, years: Mapping, src: CalendarSource, found: dict) -> None:
    try:
        year = int(year_key)
    except (TypeError, ValueError):
        raise src.problem(f"years: bad year {year_key!r}: use a number such as 2022", years) from None
    here = f"years.{year}"
    if ydata is None:
        ydata = {}
    if not isinstance(ydata, Mapping):
        raise src.problem(f"{here} must be a mapping with notice, days_off, working_days", years)
    unknown = sorted(set(map(str, ydata)) - set(YEAR_KEYS) - {LINE_KEY})
    if unknown:
        raise src.problem(f"{here}: unknown key(s) {', '.join(unknown)}: allowed are {', '.join(YEAR_KEYS)}", ydata)
    notice = strip_lines(ydata.get("notice"))
    complete = ydata.get("complete", notice is not None)
    if not isinstance(complete, bool):
        raise src.problem(f"{here}.complete must be true or false", ydata)
    if complete and _text(ydata.get("missing")):
        raise src.problem(f"{here}: 'missing' says what the data lacks, so 'complete' must be false", ydata)
    found["notices"][year] = Notice(text=str(notice) if notice is not None else None,
                                    complete=bool(complete and notice is not None),
                                    source=_text(ydata.get("source")), missing=_text(ydata.get("missing")),
                                    line=line_of_key(years, year_key) or line_of(ydata))
    for i, entry in enumerate(_listed(ydata.get("days_off"))):
        _read_day_off(entry, f"{here}.days_off[{i}]", ydata, src, found["days_off"])
    for i, entry in enumerate(_listed(ydata.get("working_days"))):
        where = f"{here}.working_days[{i}]"
        if isinstance(entry, Mapping):
            dates = _entry_dates(entry, where, src)
        else:
            dates = [_located_date(entry, where, ydata, src)]
        found["working_days"].update(d.toordinal() for d in dates)
        if isinstance(entry, Mapping) and _text(entry.get("name")):
            found["working_names"].update((d.toordinal(), _text(entry.get("name"))) for d in dates)


def _read_day_off(entry: Any, where: str, ydata: Mapping, src: CalendarSource, days_off: dict[int, str]) -> None:
    if not isinstance(entry, Mapping):
        raise src.problem(f"{where} must be a mapping {{name, from, to, source}}", ydata)
    entry_name = entry.get("name")
    if not isinstance(entry_name, str) or not entry_name.strip():
        raise src.problem(f"{where}: missing 'name' (the Vietnamese name of the day off)", entry)
    if not strip_lines(entry.get("source")):
        raise src.problem(f"{where} ('{entry_name}'): missing 'source' (where the notice was read)", entry)
    for d in _entry_dates(entry, where, src):
        o = d.toordinal()
        if o in days_off and days_off[o] != entry_name:
            raise src.problem(f"{where}: {d.isoformat()} is already a day off as '{days_off[o]}'", entry)
        days_off[o] = entry_name.strip()


def _entry_dates(entry: Mapping[str, Any], where: str, src: CalendarSource) -> list[date]:
    unknown = sorted(set(map(str, entry)) - ENTRY_KEYS - {LINE_KEY})
    if unknown:
        raise src.problem(f"{where}: unknown key(s) {', '.join(unknown)}: allowed are {', '.join(sorted(ENTRY_KEYS))}",
                          entry)
    forms = [k for k in ("date", "dates", "from") if k in entry]
    if len(forms) != 1 or ("from" in entry) != ("to" in entry):
        raise src.problem(f"{where}: give exactly one of date: D, dates: [D, ...], or from: D + to: D", entry)
    if "date" in entry:
        return [_located_date(entry["date"], where, entry, src)]
    if "dates" in entry:
        if not isinstance(entry["dates"], list) or not entry["dates"]:
            raise src.problem(f"{where}: dates must be a non-empty list", entry)
        return [_located_date(v, where, entry, src) for v in entry["dates"]]
    first, last = _located_date(entry["from"], where, entry, src), _located_date(entry["to"], where, entry, src)
    if last < first:
        raise src.problem(f"{where}: 'to' ({last.isoformat()}) is before 'from' ({first.isoformat()})", entry)
    return [date.fromordinal(o) for o in range(first.toordinal(), last.toordinal() + 1)]


def _located_date(value: Any, where: str, node: Any, src: CalendarSource) -> date:
    try:
        return parse_date(strip_lines(value), context=where)
    except CalendarError as exc:
        raise src.problem(str(exc), node) from None


def _text(value: Any) -> str | None:
    """A free-text value of the file, stripped; None when absent or empty."""
    value = strip_lines(value)
    return (str(value).strip() or None) if value is not None else None


def _listed(value: Any) -> Any:
    """The entries a YAML value lists (a mapping lists its keys, as a for-loop reads it)."""
    if isinstance(value, dict):
        return [k for k in value if k != LINE_KEY]
    return value or []
