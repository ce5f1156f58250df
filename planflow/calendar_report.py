"""What a calendar knows of a year: its days off and make-up working days, where they come from,
and whether the year's official days-off notice is in the data.

    cal = BusinessCalendar.load("vn-civil-service")
    year_calendar(cal, 2026).periods[0]          # 01/01/2026 - 04/01/2026, Tết Dương lịch (4 ngày)
    calendar_gaps(cal, [2022, 2023, 2027])       # ["…vn-civil-service.yaml:101: năm 2023: …", "…:53: năm 2027: …"]
    print("\\n".join(year_lines(year_calendar(cal, 2026))))   # what ``planflow calendar 2026`` prints

A day comes from the calendar file's notice ("thông báo") or from the ``holidays`` package
("gói holidays"); see the order of the rules in ``planflow.calendar``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Iterable

from planflow.calendar import WEEKDAY_VI, BusinessCalendar
from planflow.calendar_file import Notice
from planflow.yaml_reader import display_path

__all__ = ["HolidayPeriod", "YearCalendar", "calendar_gaps", "year_calendar", "year_lines"]

ORIGIN_VI = {"notice": "thông báo", "holidays": "gói holidays"}


@dataclass(frozen=True)
class HolidayPeriod:
    """Consecutive days off holding at least one holiday (the weekends next to it included)."""

    first: date
    last: date
    names: tuple[str, ...]  # the holidays' Vietnamese names, in order, each once
    origins: tuple[str, ...]  # "notice" and/or "holidays"

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1


@dataclass(frozen=True)
class YearCalendar:
    """One year of a calendar, as ``planflow calendar YEAR`` shows it."""

    year: int
    calendar: str
    title: str
    file: str
    periods: tuple[HolidayPeriod, ...]
    make_up_days: tuple[tuple[date, str, str], ...]  # (Saturday/Sunday worked, name, origin)
    notice: Notice | None

    @property
    def complete(self) -> bool:
        return bool(self.notice and self.notice.complete)


def year_calendar(calendar: BusinessCalendar, year: int) -> YearCalendar:
    """The days off (as periods) and the make-up working days of ``year`` in ``calendar``."""
    holidays = calendar.holidays_in(year)
    periods: list[HolidayPeriod] = []
    for day, name, origin in holidays:
        if periods and periods[-1].first <= day <= periods[-1].last:
            last = periods[-1]
            periods[-1] = HolidayPeriod(last.first, last.last, _once(last.names, name), _once(last.origins, origin))
            continue
        first, end = day, day
        while not calendar.is_working_day(first - timedelta(days=1)):
            first -= timedelta(days=1)
        while not calendar.is_working_day(end + timedelta(days=1)):
            end += timedelta(days=1)
        periods.append(HolidayPeriod(first, end, (name,), (origin,)))
    return YearCalendar(year, calendar.name, calendar.title, display_path(calendar.source), tuple(periods),
                        tuple(calendar.make_up_days_in(year)), calendar.notice(year))


def calendar_gaps(calendar: BusinessCalendar, years: Iterable[int]) -> list[str]:
    """One message per year of ``years`` whose official days-off notice is not (fully) in the
    calendar's data, naming the year and the calendar file and line; [] when every year is known.

    For ``planflow validate`` (a warning; ``--strict`` fails on any)."""
    messages = []
    file = display_path(calendar.source)
    for year in sorted(set(years)):
        notice = calendar.notice(year)
        if notice is not None and notice.complete:
            continue
        fallback = "gói holidays" if calendar.holidays_in(year) else "ngày nghỉ hằng tuần"
        if notice is None:
            where = f"{file}:{calendar.years_line}" if calendar.years_line else file
            messages.append(f"{where}: năm {year}: lịch '{calendar.name}' chưa có thông báo chính thức về ngày "
                            f"nghỉ năm {year}; ngày nghỉ và ngày làm bù chỉ lấy theo {fallback}: thêm years.{year} "
                            f"(notice, source, complete) vào lịch")
        else:
            where = f"{file}:{notice.line}" if notice.line else file
            lacking = notice.missing or ("thông báo (years.{0}.notice)" if notice.text is None
                                         else "phần chưa thu thập (năm này ghi complete: false)").format(year)
            messages.append(f"{where}: năm {year}: thông báo ngày nghỉ năm {year} trong lịch '{calendar.name}' "
                            f"chưa đủ: thiếu {lacking}")
    return messages


def year_lines(yc: YearCalendar) -> list[str]:
    """What ``planflow calendar YEAR`` prints, in Vietnamese."""
    status = "đủ" if yc.complete else "CHƯA ĐỦ" if yc.notice else "CHƯA CÓ trong dữ liệu"
    lines = [f"Năm {yc.year}: {len(yc.periods)} đợt nghỉ lễ, Tết; {len(yc.make_up_days)} ngày làm bù; "
             f"thông báo chính thức: {status} — lịch '{yc.title}' ({yc.file})", "",
             "Ngày nghỉ (kể cả ngày nghỉ hằng tuần liền kề):"]
    for p in yc.periods:
        span = _day(p.first) if p.days == 1 else f"{_day(p.first)} – {_day(p.last)}"
        origins = ", ".join(ORIGIN_VI[o] for o in p.origins)
        lines.append(f"  {span} ({p.days} ngày): {'; '.join(p.names)} [{origins}]")
    lines += ["", "Ngày làm bù:"]
    lines += [f"  {_day(d)}: {name} [{ORIGIN_VI[origin]}]" for d, name, origin in yc.make_up_days] or ["  không có"]
    lines.append("")
    if yc.notice is None:
        lines.append(f"Nguồn: gói holidays (chưa có thông báo chính thức năm {yc.year} trong lịch)")
    else:
        lines.append(f"Thông báo: {yc.notice.text}")
        lines.append(f"Nguồn: {yc.notice.source or 'xem từng ngày nghỉ trong lịch'}")
        if not yc.complete:
            lines.append(f"Còn thiếu: {yc.notice.missing or 'chưa ghi (năm này ghi complete: false)'}")
    return lines


def _day(d: date) -> str:
    return f"{WEEKDAY_VI[d.weekday()]} {d:%d/%m/%Y}"


def _once(items: tuple[str, ...], item: str) -> tuple[str, ...]:
    return items if item in items else (*items, item)
