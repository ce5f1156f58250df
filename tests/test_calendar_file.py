"""Reading a calendar file part by part (planflow/calendar_file.py), and the plan's words for
deadlines and offsets (planflow/due_phrases.py), each rule called alone."""

from __future__ import annotations

from datetime import date, time

import pytest

from planflow import calendar_file as cf
from planflow.calendar import BusinessCalendar
from planflow.due_phrases import Due, check_rules, effective_rules, parse_date, parse_offset, read_due
from planflow.problems import CalendarError, CalendarFileError
from planflow.yaml_reader import LINE_KEY, load_with_lines

SRC = cf.CalendarSource("cal.yaml", default_name="cal")


def problem_of(read, data):
    with pytest.raises(CalendarFileError) as info:
        read(data, SRC)
    (p,) = info.value.problems
    return p


# --- the parts of a calendar file --------------------------------------------------------


def test_parts_are_read_in_order():
    assert cf.CALENDAR_PARTS == (cf.read_keys, cf.read_name, cf.read_timezone, cf.read_weekly_rest,
                                 cf.read_office_hours, cf.read_statutory, cf.read_rules, cf.read_years)


def test_a_problem_names_file_line_and_reads_as_before():
    p = problem_of(cf.read_timezone, {"timezone": "Asia/Nowhere", LINE_KEY: 3})
    assert (p.file, p.line, p.element) == ("cal.yaml", 3, None)
    assert p.message == "unknown timezone 'Asia/Nowhere': use an IANA name such as Asia/Ho_Chi_Minh"
    assert str(CalendarFileError(p)) == f"cal.yaml, line 3: {p.message}"
    assert isinstance(CalendarFileError(p), CalendarError)


def test_a_mapping_not_read_from_a_file_has_no_line():
    with pytest.raises(CalendarError) as info:
        BusinessCalendar.from_dict({"id": "x"}, source="here")
    assert str(info.value) == "here: missing 'timezone' (an IANA name such as Asia/Ho_Chi_Minh)"


def test_unknown_keys_ignore_the_line_marker():
    assert cf.read_keys({"id": "x", LINE_KEY: 1}, SRC) == {}
    assert problem_of(cf.read_keys, {"yaers": {}, LINE_KEY: 1}).message.startswith("unknown key(s) yaers: allowed are")


def test_name_falls_back_on_the_file_name():
    assert cf.read_name({}, SRC) == {"name": "cal", "title": "cal"}
    assert cf.read_name({"id": "a", "name": "Lịch"}, SRC) == {"name": "a", "title": "Lịch"}


def test_weekly_rest_and_office_hours_have_defaults():
    assert cf.read_weekly_rest({}, SRC) == {"weekly_rest": frozenset({5, 6})}
    assert cf.read_office_hours({}, SRC) == {"office_open": time(8), "office_close": time(17)}
    everything = {"weekly_rest": list(cf.WEEKDAYS)}
    assert "no day would be a working day" in problem_of(cf.read_weekly_rest, everything).message
    late = {"office_hours": {"open": "18:00", "close": "17:00", LINE_KEY: 4}}
    assert problem_of(cf.read_office_hours, late).line == 4


def test_statutory_empty_is_none():
    assert cf.read_statutory({"statutory": {LINE_KEY: 5}}, SRC) == {"statutory": None}
    assert cf.read_statutory({"statutory": {"package": "holidays", "country": "VN", LINE_KEY: 5}}, SRC) == {
        "statutory": {"country": "VN", "language": "vi", "subdiv": None}}


def test_years_days_off_and_swapped_working_days(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("years:\n  2022:\n    notice: n\n    days_off:\n"
                    "      - {name: Nghỉ, from: 2022-12-05, to: 2022-12-06, source: s}\n"
                    "    working_days: [2022-12-10]\n", encoding="utf-8")
    found = cf.read_years(load_with_lines(path, dates_as_text=True), SRC)
    assert found["days_off"] == {date(2022, 12, 5).toordinal(): "Nghỉ", date(2022, 12, 6).toordinal(): "Nghỉ"}
    assert found["working_days"] == frozenset({date(2022, 12, 10).toordinal()})
    assert found["notices"] == {2022: cf.Notice("n", True)}


def test_a_day_both_off_and_working_is_refused_at_years():
    data = {"years": {2022: {"days_off": [{"name": "N", "date": "2022-12-07", "source": "s", LINE_KEY: 5}],
                             "working_days": ["7/12/2022"], LINE_KEY: 3}, LINE_KEY: 2}, LINE_KEY: 1}
    p = problem_of(cf.read_years, data)
    assert (p.line, p.message) == (2, "2022-12-07 is both a working day and a day off ('N')")


def test_unquoted_dates_stay_text_so_a_bad_one_is_located(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("d: 2022-02-30\n", encoding="utf-8")
    assert load_with_lines(path, dates_as_text=True) == {"d": "2022-02-30", LINE_KEY: 1}


def test_find_calendar_by_name_or_path(tmp_path):
    assert cf.find_calendar("vn-civil-service", None) == (cf.DEFAULT_CALENDAR_DIR / "vn-civil-service.yaml").resolve()
    assert cf.find_calendar("x/y.yaml", tmp_path) == (tmp_path / "x" / "y.yaml").resolve()
    with pytest.raises(CalendarError, match="bad calendar name"):
        cf.find_calendar("a b", tmp_path)


# --- the plan's words --------------------------------------------------------------------


def test_read_due_says_what_a_deadline_is():
    assert read_due("trước ngày 10/12/2022") == Due("before", date(2022, 12, 10), {}, "'trước ngày 10/12/2022'")
    assert read_due("đến hết ngày 9/12/2022").kind == "by"
    assert read_due("trong 5 ngày làm việc").value == 5
    assert read_due({"by": "2022-12-09", "roll": "forward"}).rules == {"roll": "forward"}
    with pytest.raises(CalendarError, match="cannot read deadline"):
        read_due("sau ngày 10/12/2022")


def test_effective_rules_later_layers_and_per_kind_keys_win():
    layers = [{"inclusive": False, "before": {"end_of": "office"}}, {"end_of": "day"}, {"roll": "none"}]
    assert effective_rules("before", layers) == {"inclusive": False, "end_of": "day", "roll": "none"}
    assert effective_rules("by", layers[:1]) == {"inclusive": False}
    with pytest.raises(CalendarError, match="roll must be one of back, forward, none"):
        check_rules({"roll": "up"}, where="rules")


def test_dates_and_offsets():
    assert parse_date("ngày 10 tháng 12 năm 2022", context="x") == date(2022, 12, 10)
    assert parse_offset("-5wd").working_days == -5
    assert parse_offset("P1W").days == 7
    with pytest.raises(CalendarError, match="bad offset 'P'"):
        parse_offset("P")
