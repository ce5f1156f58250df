"""Business calendar of Vietnamese civil servants (planflow/calendar.py), on real 2022 dates."""

import sys
import time as _time
import unicodedata
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the repo is not installed into the venv
    sys.path.insert(0, str(ROOT))

from planflow.calendar import BusinessCalendar, CalendarError, Offset  # noqa: E402

VN = ZoneInfo("Asia/Ho_Chi_Minh")


def vn(*args) -> datetime:
    return datetime(*args, tzinfo=VN)


@pytest.fixture(scope="module")
def cal() -> BusinessCalendar:
    return BusinessCalendar.load("vn-civil-service")


# ----------------------------------------------------------------- loading


def test_load_by_name_reads_the_yaml(cal):
    assert cal.name == "vn-civil-service"
    assert cal.title == "Lịch làm việc của cơ quan hành chính nhà nước"
    assert cal.tz == ZoneInfo("Asia/Ho_Chi_Minh")
    assert cal.office_open == time(8, 0)
    assert cal.office_close == time(17, 0)


def test_load_by_path_and_base_dir_give_the_same_calendar(cal):
    base = ROOT / "definitions" / "calendars"
    by_path = BusinessCalendar.load(base / "vn-civil-service.yaml")
    by_base = BusinessCalendar.load("vn-civil-service", base_dir=base)
    assert by_path.name == by_base.name == cal.name
    assert by_path.add_working_days(date(2022, 1, 28), 1) == date(2022, 2, 7)


def test_unknown_calendar_name_says_where_it_looked(tmp_path):
    with pytest.raises(CalendarError, match=r"calendar 'nope' not found: looked for nope\.yaml in .*calendars"):
        BusinessCalendar.load("nope", base_dir=tmp_path)


def test_a_plan_local_calendar_is_found_by_name_before_the_shipped_one(tmp_path):
    shipped = BusinessCalendar.load("vn-civil-service")
    (tmp_path / "calendars").mkdir()
    text = Path(shipped.source).read_text(encoding="utf-8").replace("name: Lịch làm việc", "name: Lịch riêng")
    (tmp_path / "calendars" / "vn-civil-service.yaml").write_text(text, encoding="utf-8")
    local = BusinessCalendar.load("vn-civil-service", base_dir=tmp_path)
    assert Path(local.source) == (tmp_path / "calendars" / "vn-civil-service.yaml").resolve()
    assert Path(BusinessCalendar.load("vn-civil-service").source) == Path(shipped.source)


def test_official_notices_known_in_full_for_2022_2024_2025(cal):
    assert cal.has_official_notice(2022)
    assert not cal.has_official_notice(2023)  # only Tết Dương lịch 2023 collected: complete: false
    assert cal.has_official_notice(2024) and cal.has_official_notice(2025)
    assert not cal.has_official_notice(2026)  # 24/11/2026 (Ngày Văn hóa Việt Nam): no text in the data
    assert not cal.has_official_notice(2027) and cal.official_notice(2027) is None
    assert "245" in cal.official_notice(2022)
    assert "12729/VPCP-KGVX" in cal.official_notice(2026)


def test_calendar_error_is_a_value_error():
    assert issubclass(CalendarError, ValueError)


# ----------------------------------------------------------------- days


def test_ordinary_monday_is_a_working_day(cal):
    assert date(2022, 12, 5).weekday() == 0
    assert cal.is_working_day(date(2022, 12, 5))
    assert cal.day_off_reason(date(2022, 12, 5)) is None


def test_weekend_days_are_named(cal):
    assert not cal.is_working_day(date(2022, 12, 10))
    assert cal.day_off_reason(date(2022, 12, 10)) == "Thứ Bảy"
    assert cal.day_off_reason(date(2022, 12, 11)) == "Chủ nhật"


def test_national_day_2022(cal):
    assert not cal.is_working_day(date(2022, 9, 2))
    assert cal.day_off_reason(date(2022, 9, 2)) == "Quốc khánh"
    assert not cal.is_working_day(date(2022, 9, 1))  # Thursday, official day off
    assert cal.is_working_day(date(2022, 9, 5))


def test_tet_nham_dan_is_nine_days_off_and_named_in_vietnamese(cal):
    tet = [date(2022, 1, 29) + timedelta(days=i) for i in range(9)]  # 29/1 .. 6/2
    assert tet[-1] == date(2022, 2, 6)
    for d in tet:
        assert not cal.is_working_day(d), d
        assert cal.day_off_reason(d) == "Tết Nguyên đán Nhâm Dần", d
    assert cal.is_working_day(date(2022, 1, 28))  # Fri, 26 tháng Chạp
    assert cal.is_working_day(date(2022, 2, 7))  # Mon, mùng 7


def test_other_2022_days_off(cal):
    off = [date(2022, 1, 1), date(2022, 1, 3), date(2022, 4, 11), date(2022, 5, 2), date(2022, 5, 3)]
    for d in off:
        assert not cal.is_working_day(d), d
    assert cal.day_off_reason(date(2022, 1, 3)) == "Tết Dương lịch"
    assert cal.day_off_reason(date(2022, 4, 11)) == "Giỗ Tổ Hùng Vương"
    assert cal.is_working_day(date(2022, 1, 4))
    assert cal.is_working_day(date(2022, 4, 12))
    assert cal.is_working_day(date(2022, 5, 4))


def test_new_year_2023_notice_spans_two_years(cal):
    assert cal.day_off_reason(date(2022, 12, 31)) == "Tết Dương lịch 2023"
    assert not cal.is_working_day(date(2023, 1, 2))
    assert cal.add_working_days(date(2022, 12, 30), 1) == date(2023, 1, 3)


def test_statutory_holidays_apply_without_a_notice(cal):
    # 2023 Tết Nguyên đán is not in the yaml: the holidays package still knows it.
    assert not cal.is_working_day(date(2023, 1, 23))
    assert "Tết" in cal.day_off_reason(date(2023, 1, 23))


def test_count_working_days_across_tet(cal):
    assert cal.count_working_days(date(2022, 1, 28), date(2022, 2, 7)) == 1
    assert cal.count_working_days(date(2022, 2, 7), date(2022, 1, 28)) == -1
    assert cal.count_working_days(date(2022, 12, 9), date(2022, 12, 9)) == 0


# ----------------------------------------------------------------- add_working_days


def test_add_working_days_skips_tet(cal):
    assert cal.add_working_days(date(2022, 1, 28), 1) == date(2022, 2, 7)
    assert cal.add_working_days(date(2022, 2, 7), -1) == date(2022, 1, 28)
    assert cal.add_working_days(date(2022, 2, 8), -3) == date(2022, 1, 27)  # 7/2, 28/1, 27/1
    assert cal.add_working_days(date(2022, 2, 8), -4) == date(2022, 1, 26)


def test_add_zero_working_days(cal):
    assert cal.add_working_days(date(2022, 12, 9), 0) == date(2022, 12, 9)
    assert cal.add_working_days(date(2022, 12, 10), 0) == date(2022, 12, 12)
    assert cal.add_working_days(date(2022, 1, 30), 0) == date(2022, 2, 7)


def test_add_working_days_is_fast(cal):
    cal.add_working_days(date(2022, 6, 1), 30)  # warm the per-year cache
    cal.add_working_days(date(2023, 6, 1), 30)
    n = 20_000
    t0 = _time.perf_counter()
    for _ in range(n):
        cal.add_working_days(date(2022, 12, 20), 30)
        cal.add_working_days(date(2022, 2, 15), -30)
    per_call = (_time.perf_counter() - t0) / (2 * n)
    assert per_call < 50e-6, f"{per_call * 1e6:.1f} µs per call"


# ----------------------------------------------------------------- shift / offsets


def test_reminders_skip_tet(cal):
    assert cal.shift(vn(2022, 2, 8, 8, 0), "-3wd") == vn(2022, 1, 27, 8, 0)
    assert cal.shift(vn(2022, 2, 8, 8, 0), "-4wd") == vn(2022, 1, 26, 8, 0)
    assert cal.shift(vn(2022, 1, 28, 8, 0), "+1wd") == vn(2022, 2, 7, 8, 0)


def test_reminder_before_the_seed_deadline_at_office_open(cal):
    due = cal.resolve_due({"before": "2022-12-10"})
    reminders = [cal.shift(due, spec, at=cal.office_open) for spec in ("-5wd", "-2wd", "-1wd")]
    assert reminders == [vn(2022, 12, 2, 8, 0), vn(2022, 12, 7, 8, 0), vn(2022, 12, 8, 8, 0)]


def test_zero_wd_escalation_on_due_day(cal):
    assert cal.shift(vn(2022, 12, 9, 23, 59, 59), "0wd") == vn(2022, 12, 9, 23, 59, 59)
    assert cal.shift(vn(2022, 12, 10, 9, 0), "0wd") == vn(2022, 12, 12, 9, 0)
    assert cal.shift(vn(2022, 12, 9, 23, 59, 59), "+3wd", at=cal.office_open) == vn(2022, 12, 14, 8, 0)


def test_working_days_count_from_the_local_date(cal):
    # 2022-02-06 18:00 UTC is Monday 7/2 01:00 in Hà Nội: a working day.
    utc = datetime(2022, 2, 6, 18, 0, tzinfo=timezone.utc)
    result = cal.shift(utc, "+1wd")
    assert result == vn(2022, 2, 8, 1, 0)
    assert result.tzinfo == VN


def test_iso_durations_keep_calendar_time(cal):
    assert cal.shift(vn(2022, 1, 28, 10, 0), "P7D") == vn(2022, 2, 4, 10, 0)  # inside Tết: calendar days
    assert cal.shift(vn(2022, 1, 28, 10, 0), "-P2D") == vn(2022, 1, 26, 10, 0)
    assert cal.shift(vn(2022, 1, 28, 22, 0), "PT4H") == vn(2022, 1, 29, 2, 0)
    assert cal.shift(vn(2022, 1, 31, 9, 0), "P1M") == vn(2022, 2, 28, 9, 0)
    assert cal.shift(vn(2022, 12, 1, 15, 30), "P1W", at=time(8, 0)) == vn(2022, 12, 8, 8, 0)


def test_naive_datetime_is_local_time(cal):
    assert cal.shift(datetime(2022, 1, 28, 8, 0), "+1wd") == vn(2022, 2, 7, 8, 0)


def test_parse_offset(cal):
    assert cal.parse_offset("+3wd") == Offset(spec="+3wd", working_days=3)
    assert cal.parse_offset("-5wd").working_days == -5
    assert cal.parse_offset("0wd").working_days == 0
    p7d = cal.parse_offset("P7D")
    assert not p7d.is_working_days and p7d.days == 7
    assert cal.parse_offset("-P2D").days == -2
    assert cal.parse_offset("PT4H").time == timedelta(hours=4)


@pytest.mark.parametrize("bad", ["5x", "", "wd", "+3 days", "P", "PT", "P1DT", "3d", "P-1D"])
def test_bad_offsets_say_what_is_accepted(cal, bad):
    with pytest.raises(CalendarError) as exc:
        cal.parse_offset(bad)
    assert str(exc.value) == f"bad offset '{bad}': use +Nwd, -Nwd or an ISO 8601 duration such as P7D"


@pytest.mark.parametrize("spec, words", [
    ("-5wd", "5 ngày làm việc trước"), ("+1wd", "1 ngày làm việc sau"), ("P30D", "30 ngày sau"),
    ("-P2W", "14 ngày trước"), ("P1Y2M", "1 năm 2 tháng sau"), ("-P1M2DT4H", "1 tháng 2 ngày 4 giờ trước"),
    ("PT1.5H", "1 giờ 30 phút sau"),
])
def test_an_offset_in_words(spec, words):
    from planflow.due_phrases import offset_words

    assert offset_words(spec) == words


def test_shift_rejects_bad_offset(cal):
    with pytest.raises(CalendarError, match=r"bad offset '5x'"):
        cal.shift(vn(2022, 12, 1, 8), "5x")


# ----------------------------------------------------------------- resolve_due


def test_seed_deadline_is_friday_9_december_end_of_day(cal):
    due = cal.resolve_due({"before": "2022-12-10"})
    assert due == vn(2022, 12, 9, 23, 59, 59)
    assert due.tzinfo == VN
    assert due.utcoffset() == timedelta(hours=7)
    assert due.isoformat() == "2022-12-09T23:59:59+07:00"


def test_seed_phrase_reads_the_same(cal):
    assert cal.resolve_due("trước ngày 10/12/2022") == vn(2022, 12, 9, 23, 59, 59)
    assert cal.resolve_due("Trước ngày 2022-12-10") == vn(2022, 12, 9, 23, 59, 59)
    assert cal.resolve_due("trước ngày 10 tháng 12 năm 2022") == vn(2022, 12, 9, 23, 59, 59)
    nfd = unicodedata.normalize("NFD", "trước ngày 10/12/2022")
    assert cal.resolve_due(nfd) == vn(2022, 12, 9, 23, 59, 59)


def test_on_time_and_late_around_the_seed_deadline(cal):
    due = cal.resolve_due({"before": "2022-12-10"})

    def on_time(submitted_at: datetime) -> bool:  # the callers' rule
        return submitted_at.replace(microsecond=0) <= due

    assert on_time(datetime.fromisoformat("2022-12-09T23:59:59+07:00"))
    assert on_time(datetime.fromisoformat("2022-12-09T23:59:59.999999+07:00"))
    assert on_time(datetime.fromisoformat("2022-12-09T16:59:59+00:00"))  # same moment in UTC
    assert not on_time(datetime.fromisoformat("2022-12-10T00:00:01+07:00"))
    assert not on_time(datetime.fromisoformat("2022-12-10T00:00:00+07:00"))
    assert cal.is_on_time(datetime.fromisoformat("2022-12-09T23:59:59+07:00"), due)
    assert not cal.is_on_time(datetime.fromisoformat("2022-12-10T00:00:01+07:00"), due)


def test_before_inclusive_gives_the_same_working_day_for_the_seed(cal):
    # 10/12 is a Saturday: inclusive reading rolls back to Friday too.
    assert cal.resolve_due({"before": "2022-12-10", "inclusive": True}) == vn(2022, 12, 9, 23, 59, 59)
    # ... but BLDS 148(5) roll forward would give Monday 12/12.
    assert cal.resolve_due({"before": "2022-12-10", "inclusive": True, "roll": "forward"}) == vn(
        2022, 12, 12, 23, 59, 59
    )


def test_by_is_inclusive(cal):
    assert cal.resolve_due({"by": "2022-12-09"}) == vn(2022, 12, 9, 23, 59, 59)
    assert cal.resolve_due("đến ngày 9/12/2022") == vn(2022, 12, 9, 23, 59, 59)
    assert cal.resolve_due("chậm nhất là ngày 09/12/2022") == vn(2022, 12, 9, 23, 59, 59)
    assert cal.resolve_due({"by": date(2022, 12, 9)}) == vn(2022, 12, 9, 23, 59, 59)  # unquoted YAML date


def test_by_a_holiday_rolls_back_or_forward(cal):
    assert cal.resolve_due("đến ngày 30/4/2022") == vn(2022, 4, 29, 23, 59, 59)  # Fri 29/4
    assert cal.resolve_due("đến ngày 30/4/2022", rules={"roll": "forward"}) == vn(2022, 5, 4, 23, 59, 59)
    assert cal.resolve_due({"by": "2022-04-30", "roll": "forward"}) == vn(2022, 5, 4, 23, 59, 59)  # Wed 4/5
    assert cal.resolve_due({"by": "2022-04-30", "roll": "none"}) == vn(2022, 4, 30, 23, 59, 59)


def test_before_a_day_after_tet(cal):
    # "trước ngày 7/2/2022": the day before is Sun 6/2, inside Tết -> back to Fri 28/1.
    assert cal.resolve_due("trước ngày 07/02/2022") == vn(2022, 1, 28, 23, 59, 59)


def test_end_of_office_gives_17_00(cal):
    assert cal.resolve_due({"before": "2022-12-10", "end_of": "office"}) == vn(2022, 12, 9, 17, 0, 0)
    assert cal.resolve_due("trước ngày 10/12/2022", rules={"end_of": "office"}) == vn(2022, 12, 9, 17, 0, 0)


def test_rules_precedence_yaml_then_rules_then_spec(cal):
    # rules= makes "before" inclusive; the spec turns it back to exclusive.
    assert cal.resolve_due({"before": "2022-12-08"}, rules={"before": {"inclusive": True}}) == vn(
        2022, 12, 8, 23, 59, 59
    )
    assert cal.resolve_due(
        {"before": "2022-12-08", "inclusive": False}, rules={"before": {"inclusive": True}}
    ) == vn(2022, 12, 7, 23, 59, 59)
    assert cal.resolve_due({"by": "2022-12-08"}, rules={"inclusive": False}) == vn(2022, 12, 7, 23, 59, 59)


def test_within_working_days_across_tet(cal):
    start = vn(2022, 1, 26, 10, 30)  # Wed; day 1 = Thu 27/1, 2 = Fri 28/1, then Tết, 3 = 7/2 ...
    assert cal.resolve_due("trong 5 ngày làm việc", start=start) == vn(2022, 2, 9, 23, 59, 59)
    assert cal.resolve_due({"within_working_days": 5}, start=start) == vn(2022, 2, 9, 23, 59, 59)
    assert cal.resolve_due({"within_working_days": 2, "end_of": "office"}, start=start) == vn(2022, 1, 28, 17, 0)
    assert cal.resolve_due(
        "trong vòng 3 ngày làm việc kể từ ngày nhận được văn bản", start=start
    ) == vn(2022, 2, 7, 23, 59, 59)


def test_within_working_days_from_a_day_off(cal):
    # start on Sat 29/1 (Tết): day 1 is the first working day after it, Mon 7/2.
    assert cal.resolve_due({"within_working_days": 1}, start=vn(2022, 1, 29, 9)) == vn(2022, 2, 7, 23, 59, 59)


# ----------------------------------------------------------------- bad deadlines


def test_within_working_days_needs_a_start(cal):
    with pytest.raises(CalendarError, match=r"pass start="):
        cal.resolve_due({"within_working_days": 5})


@pytest.mark.parametrize(
    "spec, pattern",
    [
        ({"before": "10/13/2022"}, r"bad date '10/13/2022' .*no such day.*DD/MM/YYYY"),
        ({"before": "31/02/2022"}, r"no such day"),
        ({"by": "next friday"}, r"bad date 'next friday'.*DD/MM/YYYY.*YYYY-MM-DD"),
        ("trước ngày 32/12/2022", r"bad date .*no such day"),
        ({"before": datetime(2022, 12, 10, 8)}, r"give a day, not a moment"),
    ],
)
def test_bad_dates(cal, spec, pattern):
    with pytest.raises(CalendarError, match=pattern):
        cal.resolve_due(spec)


def test_unknown_key_in_deadline(cal):
    with pytest.raises(CalendarError, match=r"unknown key\(s\) 'afer' in deadline .*use \{before"):
        cal.resolve_due({"afer": "2022-12-10"})


def test_deadline_needs_exactly_one_kind(cal):
    with pytest.raises(CalendarError, match=r"has more than one kind"):
        cal.resolve_due({"before": "2022-12-10", "by": "2022-12-10"})
    with pytest.raises(CalendarError, match=r"has no kind"):
        cal.resolve_due({"end_of": "office"})


def test_bad_rule_values(cal):
    with pytest.raises(CalendarError, match=r"end_of must be one of day, office"):
        cal.resolve_due({"before": "2022-12-10", "end_of": "night"})
    with pytest.raises(CalendarError, match=r"roll must be one of back, forward"):
        cal.resolve_due({"before": "2022-12-10"}, rules={"roll": "sideways"})
    with pytest.raises(CalendarError, match=r"inclusive must be true or false"):
        cal.resolve_due({"before": "2022-12-10", "inclusive": "yes"})
    with pytest.raises(CalendarError, match=r"unknown rule 'strict'"):
        cal.resolve_due({"before": "2022-12-10"}, rules={"strict": True})


@pytest.mark.parametrize("phrase", ["sau ngày 10/12/2022", "trong 5 ngày", "hôm nay", ""])
def test_unknown_phrase(cal, phrase):
    with pytest.raises(CalendarError, match=r"cannot read deadline .*'trước ngày DD/MM/YYYY'"):
        cal.resolve_due(phrase)


def test_not_a_deadline_at_all(cal):
    with pytest.raises(CalendarError, match=r"cannot read deadline 42"):
        cal.resolve_due(42)


# ----------------------------------------------------------------- other calendar files


MINIMAL = """\
id: test-cal
timezone: Asia/Ho_Chi_Minh
weekly_rest: [saturday, sunday]
office_hours: {open: "07:30", close: "16:30"}
statutory: {package: holidays, country: VN}
rules: {before: {inclusive: false}, by: {inclusive: true}, end_of: office, roll: forward}
years:
  2022:
    notice: "test"
    days_off:
      - {name: "Nghỉ thử", date: 2022-12-07, source: "test"}
    working_days:
      - 2022-12-10   # make-up Saturday
"""


def test_swapped_working_day_and_yaml_rules(tmp_path):
    path = tmp_path / "calendars" / "test-cal.yaml"
    path.parent.mkdir()
    path.write_text(MINIMAL, encoding="utf-8")
    cal = BusinessCalendar.load("test-cal", base_dir=tmp_path)
    assert cal.office_open == time(7, 30)
    assert cal.is_working_day(date(2022, 12, 10))  # Saturday made a working day
    assert cal.day_off_reason(date(2022, 12, 10)) is None
    assert cal.day_off_reason(date(2022, 12, 7)) == "Nghỉ thử"
    assert cal.add_working_days(date(2022, 12, 9), 1) == date(2022, 12, 10)
    # yaml rules: end_of office (16:30); before 10/12 -> last day 9/12 (working)
    assert cal.resolve_due({"before": "2022-12-10"}) == vn(2022, 12, 9, 16, 30)
    # roll forward by default: by 11/12 (Sunday) -> Monday 12/12
    assert cal.resolve_due({"by": "2022-12-11"}) == vn(2022, 12, 12, 16, 30)


@pytest.mark.parametrize(
    "change, pattern",
    [
        (("timezone: Asia/Ho_Chi_Minh", "timezone: Asia/Hanoi_City"), r"line 1: unknown timezone 'Asia/Hanoi_City'"),
        (("weekly_rest: [saturday, sunday]", "weekly_rest: [saturday, sundy]"), r"unknown weekday 'sundy'"),
        (('open: "07:30"', "open: 7:30"), r"office_hours.open: bad time 450: write it quoted"),  # YAML 1.1 base 60
        (('source: "test"}', "}"), r"line 11: years.2022.days_off\[0\] \('Nghỉ thử'\): missing 'source'"),
        (("date: 2022-12-07", "date: 2022-02-30"), r"line 11: bad date '2022-02-30' in years.2022.days_off\[0\]: no such day"),
        (("date: 2022-12-07", "when: 2022-12-07"), r"unknown key\(s\) when"),
        (("end_of: office", "end_of: noon"), r"end_of must be one of day, office"),
        (("      - 2022-12-10", "      - 2022-12-07"), r"2022-12-07 is both a working day and a day off"),
        (("years:", "yaers:"), r"unknown key\(s\) yaers"),
    ],
)
def test_bad_calendar_files_name_file_line_and_fix(tmp_path, change, pattern):
    old, new = change
    assert old in MINIMAL
    path = tmp_path / "bad.yaml"
    path.write_text(MINIMAL.replace(old, new), encoding="utf-8")
    with pytest.raises(CalendarError, match=pattern) as exc:
        BusinessCalendar.load(path)
    assert str(path) in str(exc.value)


def test_invalid_yaml_names_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("id: x\ntimezone: [unclosed\n", encoding="utf-8")
    with pytest.raises(CalendarError, match=r"broken.yaml, line \d+: invalid YAML"):
        BusinessCalendar.load(path)
