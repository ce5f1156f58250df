"""Calendars that say what they know (issue 11): make-up working days honoured, 2023-2026 checked
against the official notices, the years whose notice is missing named with their file and line,
``planflow calendar YEAR``, and plan-local calendars read and checked the same way."""

from __future__ import annotations

import shutil
from datetime import date, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from planflow import BusinessCalendar, load_plan
from planflow.calendar_report import calendar_gaps, year_calendar

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "tests" / "broken" / "base"


@pytest.fixture(scope="module")
def cal() -> BusinessCalendar:
    return BusinessCalendar.load("vn-civil-service")


def off_days(cal: BusinessCalendar, first: date, last: date) -> bool:
    return all(not cal.is_working_day(first + timedelta(days=i)) for i in range((last - first).days + 1))


def periods(cal: BusinessCalendar, year: int) -> list[tuple[str, str, int]]:
    return [(f"{p.first:%d/%m/%Y}", f"{p.last:%d/%m/%Y}", p.days) for p in year_calendar(cal, year).periods]


# --- make-up working days ------------------------------------------------------------------


def test_a_saturday_worked_for_a_bridge_day_is_a_working_day_and_the_bridge_day_is_off(cal):
    saturday, bridge = date(2026, 8, 22), date(2026, 8, 31)  # Quốc khánh 2026: Monday 31/8 off, worked on 22/8
    assert saturday.weekday() == 5 and bridge.weekday() == 0
    assert cal.is_working_day(saturday) and cal.day_off_reason(saturday) is None
    assert not cal.is_working_day(bridge)
    assert cal.add_working_days(date(2026, 8, 21), 1) == saturday  # Friday -> the make-up Saturday
    assert cal.add_working_days(date(2026, 8, 28), 1) == date(2026, 9, 3)  # 29/8-2/9 off, 5 days
    assert cal.count_working_days(date(2026, 8, 17), date(2026, 8, 23)) == 5  # Tue..Sat: 4 weekdays + Saturday


@pytest.mark.parametrize("worked, bridge", [
    (date(2024, 5, 4), date(2024, 4, 29)),   # Công văn 2450/VPCP-KGVX
    (date(2025, 4, 26), date(2025, 5, 2)),   # 30/4 - 1/5/2025
    (date(2026, 1, 10), date(2026, 1, 2)),   # 12729/VPCP-KGVX: not in holidays 0.109, written in the calendar
    (date(2026, 8, 22), date(2026, 8, 31)),
])
def test_every_make_up_day_2024_2026_is_worked_and_listed(cal, worked, bridge):
    assert cal.is_working_day(worked) and not cal.is_working_day(bridge)
    listed = {d: (name, origin) for d, name, origin in cal.make_up_days_in(worked.year)}
    assert listed[worked][0].startswith(f"Làm bù cho ngày {bridge:%d/%m/%Y}")
    assert listed[worked][1] == ("notice" if worked == date(2026, 1, 10) else "holidays")


def test_a_year_the_file_does_not_hold_still_honours_the_packages_make_up_days(tmp_path):
    path = tmp_path / "bare.yaml"  # no years: at all, as a plan-local calendar may be written
    path.write_text("id: bare\ntimezone: Asia/Ho_Chi_Minh\nstatutory: {package: holidays, country: VN}\n",
                    encoding="utf-8")
    bare = BusinessCalendar.load(path)
    assert bare.is_working_day(date(2026, 8, 22)) and not bare.is_working_day(date(2026, 8, 31))
    assert bare.is_working_day(date(2025, 4, 26)) and not bare.is_working_day(date(2025, 5, 2))
    assert not bare.has_official_notice(2026)
    (gap,) = calendar_gaps(bare, [2026])
    assert "năm 2026" in gap and "chưa có thông báo chính thức" in gap and str(path) in gap


def test_the_file_wins_over_the_package_both_ways(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "id: c\ntimezone: Asia/Ho_Chi_Minh\nstatutory: {package: holidays, country: VN}\nyears:\n  2026:\n"
        "    notice: thử\n    days_off:\n      - {name: Nghỉ thử, date: 2026-08-22, source: thử}\n"
        "    working_days:\n      - {name: Làm thử, date: 2026-09-01}\n", encoding="utf-8")
    c = BusinessCalendar.load(path)
    assert not c.is_working_day(date(2026, 8, 22)) and c.day_off_reason(date(2026, 8, 22)) == "Nghỉ thử"
    assert c.is_working_day(date(2026, 9, 1))  # Quốc khánh in the package, worked by the file


# --- 2023-2026 against the official notices ------------------------------------------------

NOTICES = {  # every period of consecutive days off, as the notices (or the Labour Code) give it
    2023: [("31/12/2022", "02/01/2023", 3), ("20/01/2023", "26/01/2023", 7), ("29/04/2023", "03/05/2023", 5),
           ("01/09/2023", "04/09/2023", 4)],
    2024: [("30/12/2023", "01/01/2024", 3), ("08/02/2024", "14/02/2024", 7), ("18/04/2024", "18/04/2024", 1),
           ("27/04/2024", "01/05/2024", 5), ("31/08/2024", "03/09/2024", 4)],
    2025: [("01/01/2025", "01/01/2025", 1), ("25/01/2025", "02/02/2025", 9), ("05/04/2025", "07/04/2025", 3),
           ("30/04/2025", "04/05/2025", 5), ("30/08/2025", "02/09/2025", 4)],
    2026: [("01/01/2026", "04/01/2026", 4), ("14/02/2026", "22/02/2026", 9), ("25/04/2026", "27/04/2026", 3),
           ("30/04/2026", "03/05/2026", 4), ("29/08/2026", "02/09/2026", 5),
           ("24/11/2026", "24/11/2026", 1)],  # from the holidays package only: flagged as missing
}


@pytest.mark.parametrize("year", sorted(NOTICES))
def test_official_notices_give_these_periods_off(cal, year):
    assert periods(cal, year) == NOTICES[year]


def test_each_year_says_its_source_and_whether_it_is_complete(cal):
    for year, complete in {2022: True, 2023: False, 2024: True, 2025: True, 2026: False}.items():
        notice = cal.notice(year)
        assert notice.complete is complete, year
        assert notice.source or year == 2022, year  # 2022 names a source on each day off
        assert (notice.missing is None) is complete, year
    assert "6150/TB-BLĐTBXH" in cal.notice(2025).text and "2450/VPCP-KGVX" in cal.notice(2024).text
    assert "24/11/2026" in cal.notice(2026).missing
    assert cal.notice(2027) is None


# --- the years a plan touches that the data lacks ---------------------------------------------


def test_calendar_gaps_name_the_year_the_file_and_the_line(cal):
    assert calendar_gaps(cal, [2022, 2024, 2025]) == []
    gaps = calendar_gaps(cal, [2027, 2023, 2026, 2023])
    assert [g.split(": năm ")[1][:4] for g in gaps] == ["2023", "2026", "2027"]
    lines = Path(cal.source).read_text(encoding="utf-8").splitlines()
    for gap, year_line in zip(gaps, ["  2023:", "  2026:", "years:"]):
        file, line = gap.split(": ")[0].rsplit(":", 1)
        assert file.endswith("definitions/calendars/vn-civil-service.yaml")
        assert lines[int(line) - 1] == year_line, gap
    assert "Tết Nguyên đán Quý Mão" in gaps[0] and "24/11/2026" in gaps[1]
    assert "thêm years.2027" in gaps[2]


# --- plan-local calendars, and `planflow calendar YEAR` ------------------------------------------


@pytest.fixture
def local_plan(tmp_path) -> Path:
    """The broken-corpus's valid mini plan, with its calendar as ``calendars/mini-calendar.yaml``."""
    shutil.copytree(BASE, tmp_path / "plan")
    folder = tmp_path / "plan"
    (folder / "calendars").mkdir()
    text = (folder / "calendar.yaml").read_text(encoding="utf-8")
    (folder / "calendars" / "mini-calendar.yaml").write_text(
        text + "  2026:\n    notice: Lịch thử 2026.\n    complete: true\n    working_days:\n"
               "      - {name: Làm bù thử, date: 2026-03-07}\n", encoding="utf-8")
    plan = folder / "plan.yaml"
    plan.write_text(plan.read_text(encoding="utf-8").replace("year: 2022\n", "year: 2022\ncalendar: mini-calendar\n"),
                    encoding="utf-8")
    return plan


def test_a_plan_local_calendar_is_used_and_checked_the_same_way(local_plan):
    cal = load_plan(local_plan).calendar
    assert Path(cal.source) == (local_plan.parent / "calendars" / "mini-calendar.yaml").resolve()
    assert cal.title == "Lịch thử"
    assert cal.is_working_day(date(2026, 3, 7)) and cal.is_working_day(date(2026, 8, 22))  # its own + the package's
    (gap,) = calendar_gaps(cal, [2022, 2023, 2026])
    assert "mini-calendar.yaml:" in gap and "năm 2023" in gap


def cli(*args: str):
    from planflow.flows import cli_calendar  # noqa: F401  (registers the command)
    from planflow.flows.cli import app

    return CliRunner().invoke(app, ["calendar", *args])


def test_planflow_calendar_prints_days_off_make_up_days_source_and_status():
    result = cli("2026")
    assert result.exit_code == 0, result.output
    text = result.output
    assert text.startswith("Năm 2026: 6 đợt nghỉ lễ, Tết; 2 ngày làm bù; thông báo chính thức: CHƯA ĐỦ")
    assert "Thứ Bảy 29/08/2026 – Thứ Tư 02/09/2026 (5 ngày)" in text
    assert "Thứ Bảy 14/02/2026 – Chủ nhật 22/02/2026 (9 ngày)" in text
    assert "Thứ Bảy 22/08/2026: Làm bù cho ngày 31/08/2026 [gói holidays]" in text
    assert "Thứ Bảy 10/01/2026: Làm bù cho ngày 02/01/2026 (Tết Dương lịch) [thông báo]" in text
    assert "Nguồn: 12729/VPCP-KGVX" in text and "Còn thiếu: văn bản quy định ngày 24/11/2026" in text


def test_planflow_calendar_of_a_year_without_a_notice_says_so():
    result = cli("2027")
    assert result.exit_code == 0, result.output
    assert "thông báo chính thức: CHƯA CÓ trong dữ liệu" in result.output
    assert "Nguồn: gói holidays (chưa có thông báo chính thức năm 2027 trong lịch)" in result.output


def test_planflow_calendar_of_a_plan_reads_its_local_calendar(local_plan):
    result = cli("2026", "--plan", str(local_plan))
    assert result.exit_code == 0, result.output
    assert "lịch 'Lịch thử'" in result.output and "mini-calendar.yaml" in result.output
    assert "Thứ Bảy 07/03/2026: Làm bù thử [thông báo]" in result.output
    assert "thông báo chính thức: đủ" in result.output


@pytest.mark.parametrize("args, said", [(("0",), "year 0 is outside the calendar"),
                                        (("2026", "--plan", "nope.yaml"), "nope.yaml")])
def test_planflow_calendar_refuses_bad_input_in_one_line(args, said):
    result = cli(*args)
    assert result.exit_code == 1 and said in result.output and "Traceback" not in result.output


def test_a_year_written_without_its_notice_is_a_gap_and_complete_with_missing_is_refused(tmp_path):
    from planflow import CalendarError

    path = tmp_path / "c.yaml"
    head = "id: c\ntimezone: Asia/Ho_Chi_Minh\nyears:\n  2027:\n"
    path.write_text(head + "    working_days: []\n", encoding="utf-8")
    (gap,) = calendar_gaps(BusinessCalendar.load(path), [2027])
    assert gap.startswith(f"{path}:4: năm 2027:") and "thiếu thông báo (years.2027.notice)" in gap
    path.write_text(head + "    notice: n\n    complete: true\n    missing: Tết\n", encoding="utf-8")
    with pytest.raises(CalendarError, match=r"line 5: years.2027: 'missing' .* 'complete' must be false"):
        BusinessCalendar.load(path)
