"""Tests of the working-hours clock (工作时 SLA calendar): worked examples on the real 2025/2026 calendar,
validation, and properties over random calendars."""
from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from backend.domain.clock import (
    CLOCK_BY_LABEL,
    NATURAL_DAY,
    URGENT_HOUR,
    WORK_DAY,
    WORK_HOUR,
    CalendarError,
    WorkCalendar,
    default_calendar,
)

SH = ZoneInfo("Asia/Shanghai")
CLOCKS = [WORK_HOUR, URGENT_HOUR, WORK_DAY, NATURAL_DAY]
TOL = 1e-6


def local(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    """A Shanghai wall time as an aware datetime."""
    return datetime(y, mo, d, h, mi, tzinfo=SH)


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return local(y, mo, d, h, mi).astimezone(UTC)


@pytest.fixture(scope="module")
def cal() -> WorkCalendar:
    return default_calendar()


# ----- worked examples on the shipped calendar ---------------------------------------------------------------

def test_4_work_hours_from_friday_2026_09_18_1600_end_on_makeup_sunday_09_20_1000(cal: WorkCalendar) -> None:
    # Fri 16-18 gives 2 h; Sat 09-19 is off; Sun 09-20 is a make-up workday (调休上班): 08-10 gives 2 h.
    assert date(2026, 9, 18).weekday() == 4
    assert cal.deadline(utc(2026, 9, 18, 16), 4, WORK_HOUR) == utc(2026, 9, 20, 10)


def test_1_work_day_from_wednesday_2026_09_30_1000_skips_national_day_to_10_08_1000(cal: WorkCalendar) -> None:
    # 09-30: 10-12 and 14-18 give 6 h; 10-01..10-07 are holidays; Thu 10-08: 08-10 gives the last 2 h.
    assert cal.deadline(utc(2026, 9, 30, 10), 1, WORK_DAY) == utc(2026, 10, 8, 10)


def test_4_work_hours_from_monday_0800_stay_at_monday_1200_not_1400(cal: WorkCalendar) -> None:
    assert cal.deadline(utc(2026, 3, 2, 8), 4, WORK_HOUR) == utc(2026, 3, 2, 12)


def test_1_work_day_from_monday_1800_ends_tuesday_1800_not_wednesday_0800(cal: WorkCalendar) -> None:
    assert cal.deadline(utc(2026, 3, 2, 18), 1, WORK_DAY) == utc(2026, 3, 3, 18)


def test_2_work_days_from_friday_2026_03_06_1800_end_tuesday_1800(cal: WorkCalendar) -> None:
    assert cal.deadline(utc(2026, 3, 6, 18), 2, WORK_DAY) == utc(2026, 3, 10, 18)


def test_1_work_hour_started_tuesday_evening_2000_ends_wednesday_0900(cal: WorkCalendar) -> None:
    assert cal.deadline(utc(2026, 3, 3, 20), 1, WORK_HOUR) == utc(2026, 3, 4, 9)


def test_2_work_hours_started_at_lunch_1230_end_1600(cal: WorkCalendar) -> None:
    assert cal.deadline(utc(2026, 3, 3, 12, 30), 2, WORK_HOUR) == utc(2026, 3, 3, 16)


def test_2_work_days_from_friday_2026_02_13_1600_use_makeup_saturday_and_skip_spring_festival(
        cal: WorkCalendar) -> None:
    # 16 h: Fri 02-13 16-18 (2 h), Sat 02-14 make-up (8 h), 02-15..02-23 春节, Tue 02-24 08-12 + 14-16 (6 h).
    assert cal.deadline(utc(2026, 2, 13, 16), 2, WORK_DAY) == utc(2026, 2, 24, 16)


def test_1_work_day_from_2025_12_31_1400_crosses_new_year_to_makeup_sunday_2026_01_04_1200(
        cal: WorkCalendar) -> None:
    # 12-31 14-18 (4 h); 01-01..01-03 元旦; Sun 01-04 is a make-up workday: 08-12 (4 h).
    assert cal.deadline(utc(2025, 12, 31, 14), 1, WORK_DAY) == utc(2026, 1, 4, 12)


def test_4_work_hours_from_wednesday_2025_04_30_1600_skip_labour_day_to_2025_05_06_1000(
        cal: WorkCalendar) -> None:
    assert cal.deadline(utc(2025, 4, 30, 16), 4, WORK_HOUR) == utc(2025, 5, 6, 10)


def test_2_urgent_hours_from_holiday_saturday_2300_end_sunday_0100(cal: WorkCalendar) -> None:
    assert cal.deadline(utc(2026, 10, 3, 23), 2, URGENT_HOUR) == utc(2026, 10, 4, 1)


def test_3_natural_days_from_2026_09_30_1000_end_10_03_1000(cal: WorkCalendar) -> None:
    assert cal.deadline(utc(2026, 9, 30, 10), 3, NATURAL_DAY) == utc(2026, 10, 3, 10)


def test_half_work_day_is_4_hours(cal: WorkCalendar) -> None:
    assert cal.deadline(utc(2026, 3, 3, 10), 0.5, WORK_DAY) == utc(2026, 3, 3, 16)


def test_deadline_is_utc_and_accepts_any_aware_input(cal: WorkCalendar) -> None:
    result = cal.deadline(datetime(2026, 3, 2, 0, 0, tzinfo=UTC), 4, WORK_HOUR)  # 08:00 Shanghai
    assert result.tzinfo is UTC
    assert result == utc(2026, 3, 2, 12)


def test_suspension_moves_deadline_by_the_suspended_working_time(cal: WorkCalendar) -> None:
    # 1 工作日 from Mon 03-02 08:00 is due Mon 18:00. 挂账 at Mon 10:00 (6 h left), resumed Tue 15:00:
    # Tue 15-18 (3 h) + Wed 08-11 (3 h) -> Wed 03-04 11:00.
    start = utc(2026, 3, 2, 8)
    due = cal.deadline(start, 1, WORK_DAY)
    assert due == utc(2026, 3, 2, 18)
    remaining = cal.counted_seconds(utc(2026, 3, 2, 10), due, WORK_DAY)
    assert remaining == 6 * 3600
    assert cal.add_seconds(utc(2026, 3, 3, 15), remaining, WORK_DAY) == utc(2026, 3, 4, 11)


def test_used_fraction_reaches_amber_at_80_percent_and_exceeds_1_when_overdue(cal: WorkCalendar) -> None:
    start, due = utc(2026, 3, 2, 8), utc(2026, 3, 2, 12)
    assert cal.used_fraction(start, due, utc(2026, 3, 2, 11, 12), WORK_HOUR) == pytest.approx(0.8)
    assert cal.used_fraction(start, due, utc(2026, 3, 2, 13), WORK_HOUR) == pytest.approx(1.0)  # lunch
    assert cal.used_fraction(start, due, utc(2026, 3, 2, 15), WORK_HOUR) == pytest.approx(1.25)
    assert cal.used_fraction(start, due, utc(2026, 3, 2, 7), WORK_HOUR) == 0.0


def test_used_fraction_with_zero_allowance(cal: WorkCalendar) -> None:
    t = utc(2026, 3, 2, 9)
    assert cal.used_fraction(t, t, t, WORK_HOUR) == 1.0
    assert cal.used_fraction(t, t, utc(2026, 3, 2, 10), WORK_HOUR) == math.inf


def test_national_day_week_counts_no_working_time(cal: WorkCalendar) -> None:
    assert cal.counted_seconds(utc(2026, 10, 1), utc(2026, 10, 8), WORK_HOUR) == 0.0
    assert cal.counted_seconds(utc(2026, 10, 1), utc(2026, 10, 8), URGENT_HOUR) == 7 * 86400


def test_counted_seconds_is_zero_when_end_not_after_start(cal: WorkCalendar) -> None:
    assert cal.counted_seconds(utc(2026, 3, 3, 10), utc(2026, 3, 2, 10), WORK_HOUR) == 0.0
    assert cal.counted_seconds(utc(2026, 3, 3, 10), utc(2026, 3, 3, 10), NATURAL_DAY) == 0.0


def test_counted_seconds_over_a_normal_week_is_40_hours(cal: WorkCalendar) -> None:
    assert cal.counted_seconds(utc(2026, 3, 2), utc(2026, 3, 9), WORK_HOUR) == 40 * 3600


def test_working_time_boundaries_are_half_open(cal: WorkCalendar) -> None:
    assert cal.is_working_time(utc(2026, 3, 2, 8))
    assert cal.is_working_time(utc(2026, 3, 2, 11, 59))
    assert not cal.is_working_time(utc(2026, 3, 2, 12))
    assert not cal.is_working_time(utc(2026, 3, 2, 7, 59))
    assert not cal.is_working_time(utc(2026, 10, 2, 9))  # 国庆
    assert cal.is_working_time(utc(2026, 9, 20, 9))  # make-up Sunday


def test_next_working_instant(cal: WorkCalendar) -> None:
    assert cal.next_working_instant(utc(2026, 3, 2, 12)) == utc(2026, 3, 2, 14)
    assert cal.next_working_instant(utc(2026, 3, 6, 18)) == utc(2026, 3, 9, 8)  # Friday evening -> Monday
    assert cal.next_working_instant(utc(2026, 9, 30, 18)) == utc(2026, 10, 8, 8)
    t = utc(2026, 3, 2, 9, 30)
    assert cal.next_working_instant(t) == t


def test_workdays_of_the_shipped_calendar(cal: WorkCalendar) -> None:
    assert not cal.is_workday(date(2025, 1, 1))
    assert cal.is_workday(date(2025, 1, 26))  # Sunday, make-up for 春节
    assert not cal.is_workday(date(2025, 10, 8))
    assert cal.is_workday(date(2025, 10, 11))  # Saturday make-up
    assert not cal.is_workday(date(2026, 2, 23))  # Monday, last day of 春节
    assert cal.is_workday(date(2026, 5, 9))  # Saturday make-up
    assert not cal.is_workday(date(2026, 3, 7))  # an ordinary Saturday
    assert cal.is_workday(date(2026, 3, 6))  # an ordinary Friday


def test_unconfigured_year_falls_back_to_monday_to_friday(cal: WorkCalendar) -> None:
    assert 2027 not in cal.configured_years
    assert cal.is_workday(date(2027, 10, 1))  # a Friday; 2027 holidays are not configured
    assert not cal.is_workday(date(2027, 10, 2))


def test_shipped_file_holds_the_official_2025_and_2026_arrangements(cal: WorkCalendar) -> None:
    assert cal.configured_years == {2025, 2026}
    h2025 = {d for d in cal.holidays if d.year == 2025}
    h2026 = {d for d in cal.holidays if d.year == 2026}
    assert len(h2025) == 1 + 8 + 3 + 5 + 3 + 8
    assert len(h2026) == 3 + 9 + 3 + 5 + 3 + 3 + 7
    assert {date(2025, 1, 28), date(2025, 2, 4), date(2025, 5, 31), date(2025, 6, 2)} <= h2025
    assert {date(2026, 2, 15), date(2026, 6, 19), date(2026, 9, 25), date(2026, 10, 7)} <= h2026
    assert cal.workdays == {date(2025, 1, 26), date(2025, 2, 8), date(2025, 4, 27), date(2025, 9, 28),
                            date(2025, 10, 11), date(2026, 1, 4), date(2026, 2, 14), date(2026, 2, 28),
                            date(2026, 5, 9), date(2026, 9, 20), date(2026, 10, 10)}
    assert all(d.weekday() >= 5 for d in cal.workdays)
    assert cal.periods == ((time(8), time(12)), (time(14), time(18)))
    assert cal.unit_seconds(WORK_DAY) == 8 * 3600


def test_default_calendar_is_cached() -> None:
    assert default_calendar() is default_calendar()


def test_chinese_labels_map_to_clock_types() -> None:
    assert CLOCK_BY_LABEL["紧急工作时"] == URGENT_HOUR
    assert CLOCK_BY_LABEL["工作日"] == WORK_DAY


def test_very_large_values_finish_and_invert(cal: WorkCalendar) -> None:
    start = utc(2025, 6, 1)
    due = cal.deadline(start, 20_000, WORK_HOUR)  # about ten years of working hours
    assert due.year >= 2034
    assert cal.counted_seconds(start, due, WORK_HOUR) == pytest.approx(20_000 * 3600, abs=TOL)
    assert cal.deadline(start, 100_000, NATURAL_DAY) == start + timedelta(days=100_000)


# ----- configuration and validation --------------------------------------------------------------------------

def test_with_year_adds_a_year_and_replaces_an_existing_one(cal: WorkCalendar) -> None:
    extended = cal.with_year(2027, holidays=["2027-10-01"], workdays=[date(2027, 10, 9)])
    assert not extended.is_workday(date(2027, 10, 1))
    assert extended.is_workday(date(2027, 10, 9))
    assert extended.configured_years == {2025, 2026, 2027}
    cleared = extended.with_year(2026)
    assert cleared.is_workday(date(2026, 10, 8))  # 2026 holidays dropped, plain Thursday
    with pytest.raises(CalendarError, match="not in year 2027"):
        cal.with_year(2027, holidays=["2028-01-01"])


def test_from_dict_accepts_date_strings_and_ranges() -> None:
    c = WorkCalendar.from_dict({"years": {"2030": {"holidays": ["2030-01-01",
                                                               {"from": "2030-02-04", "to": "2030-02-06"}],
                                                   "workdays": ["2030-02-09"]}}})
    assert c.holidays == {date(2030, 1, 1), date(2030, 2, 4), date(2030, 2, 5), date(2030, 2, 6)}
    assert c.workdays == {date(2030, 2, 9)}
    assert c.periods == ((time(8), time(12)), (time(14), time(18)))


def test_load_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "cal.json"
    path.write_text(json.dumps({"periods": [["09:00", "15:00"]], "timezone": "UTC"}), encoding="utf-8")
    c = WorkCalendar.load(path)
    assert c.unit_seconds(WORK_DAY) == 6 * 3600  # a 工作日 is the length of this calendar's day
    assert c.deadline(datetime(2026, 3, 2, 9, tzinfo=UTC), 1, WORK_DAY) == datetime(2026, 3, 2, 15, tzinfo=UTC)


@pytest.mark.parametrize("periods, message", [
    ([("08:00", "12:00"), ("11:00", "18:00")], "overlap"),
    ([("14:00", "18:00"), ("08:00", "12:00")], "sorted"),
    ([("12:00", "08:00")], "must be after start"),
    ([("08:00", "08:00")], "must be after start"),
    ([("8 o'clock", "12:00")], "not a time"),
    ([], "at least one"),
    ([("08:00",)], "pair"),
])
def test_bad_periods_are_refused(periods: list, message: str) -> None:
    with pytest.raises(CalendarError, match=message):
        WorkCalendar(periods=periods)


def test_touching_periods_are_allowed() -> None:
    c = WorkCalendar(periods=[("08:00", "12:00"), ("12:00", "16:00")])
    assert c.deadline(utc(2026, 3, 2, 8), 6, WORK_HOUR) == utc(2026, 3, 2, 14)


def test_a_date_both_holiday_and_makeup_workday_is_refused() -> None:
    with pytest.raises(CalendarError, match="2026-10-10"):
        WorkCalendar(holidays={date(2026, 10, 10)}, workdays={date(2026, 10, 10)})
    with pytest.raises(CalendarError, match="both"):
        WorkCalendar.from_dict({"years": {"2026": {"holidays": [{"from": "2026-10-01", "to": "2026-10-07"}],
                                                   "workdays": ["2026-10-03"]}}})


@pytest.mark.parametrize("data, message", [
    ({"years": {"2026": {"holidays": ["2026-02-30"]}}}, "not a date"),
    ({"years": {"2026": {"workdays": ["tomorrow"]}}}, "not a date"),
    ({"years": {"2026": {"holidays": [{"from": "2026-10-07", "to": "2026-10-01"}]}}}, "before"),
    ({"years": {"2026": {"holidays": [17]}}}, "expected a date"),
    ({"years": {"next": {}}}, "not a year"),
    ({"years": {"2026": {"holidays": "2026-10-01"}}}, "must be a list"),
    ({"years": []}, "keyed by year"),
    ({"timezone": "Mars/Olympus"}, "unknown time zone"),
    ({"periods": "08:00-12:00"}, "periods must be a list"),
    ([], "must be an object"),
])
def test_bad_calendar_data_is_refused(data: object, message: str) -> None:
    with pytest.raises(CalendarError, match=message):
        WorkCalendar.from_dict(data)  # type: ignore[arg-type]


def test_load_refuses_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(CalendarError, match="cannot read"):
        WorkCalendar.load(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(CalendarError, match="not valid JSON"):
        WorkCalendar.load(broken)


def test_bad_arguments_get_clear_errors(cal: WorkCalendar) -> None:
    t = utc(2026, 3, 2, 9)
    with pytest.raises(ValueError, match="unknown clock"):
        cal.deadline(t, 1, "fortnight")
    with pytest.raises(ValueError, match=">= 0"):
        cal.deadline(t, -1, WORK_HOUR)
    with pytest.raises(ValueError, match=">= 0"):
        cal.deadline(t, float("nan"), WORK_HOUR)
    with pytest.raises(ValueError, match="must be a number"):
        cal.deadline(t, "4", WORK_HOUR)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timezone-aware"):
        cal.deadline(datetime(2026, 3, 2, 9), 1, WORK_HOUR)
    with pytest.raises(ValueError, match="timezone-aware"):
        cal.counted_seconds(t, datetime(2026, 3, 2, 9), WORK_HOUR)
    with pytest.raises(ValueError, match="takes a date"):
        cal.is_workday(t)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="supported date range"):
        cal.deadline(t, 1e9, NATURAL_DAY)


# ----- properties over random calendars ----------------------------------------------------------------------

FIRST, LAST = date(2025, 1, 1), date(2027, 12, 31)
ZONES = ["Asia/Shanghai", "Europe/Berlin", "America/New_York"]


@st.composite
def periods_st(draw: st.DrawFn) -> list[tuple[time, time]]:
    n = draw(st.integers(1, 4))
    minutes = sorted(draw(st.lists(st.integers(0, 24 * 60 - 1), min_size=2 * n, max_size=2 * n)))
    pairs = [(minutes[2 * i], minutes[2 * i + 1]) for i in range(n)]
    assume(all(a < b for a, b in pairs))
    return [(time(a // 60, a % 60), time(b // 60, b % 60)) for a, b in pairs]


@st.composite
def calendars(draw: st.DrawFn) -> WorkCalendar:
    days = st.dates(FIRST, LAST)
    holidays = draw(st.sets(days, max_size=120))
    workdays = draw(st.sets(days, max_size=60)) - holidays
    return WorkCalendar(draw(periods_st()), holidays, workdays, draw(st.sampled_from(ZONES)))


instants = st.datetimes(datetime(2025, 1, 1), datetime(2027, 12, 31), timezones=st.just(UTC))
values = st.floats(0, 400, allow_nan=False, allow_infinity=False)
clocks = st.sampled_from(CLOCKS)
PROPERTY = settings(deadline=None, max_examples=80)


def brute_counted(cal: WorkCalendar, start: datetime, end: datetime) -> float:
    """Working seconds between start and end, summed naively over every local day (test oracle)."""
    total = 0.0
    day = start.astimezone(cal.tz).date() - timedelta(days=1)
    while day <= end.astimezone(cal.tz).date() + timedelta(days=1):
        workday = day not in cal.holidays and (day in cal.workdays or day.weekday() < 5)
        if workday:
            for a, b in cal.periods:
                lo = max(start, datetime.combine(day, a, tzinfo=cal.tz))
                hi = min(end, datetime.combine(day, b, tzinfo=cal.tz))
                if hi > lo:
                    total += (hi - lo).total_seconds()
        day += timedelta(days=1)
    return total


@PROPERTY
@given(calendars(), instants, values, clocks)
def test_deadline_is_not_before_start_and_inverts_counted_seconds(
        cal: WorkCalendar, start: datetime, value: float, clock: str) -> None:
    due = cal.deadline(start, value, clock)
    assert due >= start
    assert due.tzinfo is UTC
    assert abs(cal.counted_seconds(start, due, clock) - value * cal.unit_seconds(clock)) <= TOL


@PROPERTY
@given(calendars(), instants, values, values, clocks)
def test_deadline_is_monotone_in_value(cal: WorkCalendar, start: datetime, a: float, b: float,
                                       clock: str) -> None:
    low, high = sorted((a, b))
    assert cal.deadline(start, low, clock) <= cal.deadline(start, high, clock)


@PROPERTY
@given(calendars(), instants, st.floats(0.001, 400), st.sampled_from([WORK_HOUR, WORK_DAY]))
def test_positive_working_deadline_is_in_a_period_or_at_its_end(
        cal: WorkCalendar, start: datetime, value: float, clock: str) -> None:
    due = cal.deadline(start, value, clock)
    assert cal.is_working_time(due) or cal.is_working_time(due - timedelta(microseconds=1))


@PROPERTY
@given(calendars(), instants, st.floats(0.001, 400), clocks)
def test_deadline_is_the_first_instant_the_amount_is_reached(
        cal: WorkCalendar, start: datetime, value: float, clock: str) -> None:
    due = cal.deadline(start, value, clock)
    assert cal.counted_seconds(start, due - timedelta(microseconds=1), clock) < value * cal.unit_seconds(clock) - 2.5e-7


@PROPERTY
@given(calendars(), instants, st.integers(1, 30))
def test_a_work_day_is_the_working_length_of_one_day(cal: WorkCalendar, start: datetime, days: int) -> None:
    day_hours = sum((datetime.combine(FIRST, b) - datetime.combine(FIRST, a)).total_seconds()
                    for a, b in cal.periods) / 3600
    assert cal.deadline(start, days, WORK_DAY) == cal.deadline(start, days * day_hours, WORK_HOUR)


@PROPERTY
@given(calendars(), instants, clocks)
def test_non_working_stretch_counts_nothing_on_working_clocks(
        cal: WorkCalendar, t: datetime, clock: str) -> None:
    nxt = cal.next_working_instant(t)
    assert nxt >= t
    assert cal.is_working_time(nxt)
    if nxt > t:
        assert not cal.is_working_time(t)
    counted = cal.counted_seconds(t, nxt, clock)
    if clock in (WORK_HOUR, WORK_DAY):
        assert counted == 0.0
    else:
        assert counted == (nxt - t).total_seconds()


@PROPERTY
@given(calendars(), st.dates(FIRST, LAST))
def test_whole_holiday_counts_nothing(cal: WorkCalendar, day: date) -> None:
    cal = cal.with_year(day.year, holidays={d for d in cal.holidays if d.year == day.year} | {day},
                        workdays={d for d in cal.workdays if d.year == day.year} - {day})
    assert not cal.is_workday(day)
    begin = datetime.combine(day, time(0), tzinfo=cal.tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=cal.tz)
    assert cal.counted_seconds(begin, end, WORK_HOUR) == 0.0


@PROPERTY
@given(calendars(), instants, st.integers(0, 24 * 60 * 20), st.integers(0, 24 * 60 * 20), clocks)
def test_deadline_is_additive_for_whole_minutes(cal: WorkCalendar, start: datetime, a: int, b: int,
                                                clock: str) -> None:
    va, vb = a / 60, b / 60  # whole minutes of the clock's unit: exact to the microsecond
    assert cal.deadline(cal.deadline(start, va, clock), vb, clock) == cal.deadline(start, va + vb, clock)


@PROPERTY
@given(calendars(), instants, values, values, clocks)
def test_deadline_is_additive_in_clock_time(cal: WorkCalendar, start: datetime, a: float, b: float,
                                            clock: str) -> None:
    two_step = cal.deadline(cal.deadline(start, a, clock), b, clock)
    direct = cal.deadline(start, a + b, clock)
    unit = cal.unit_seconds(clock)
    assert abs(cal.counted_seconds(start, two_step, clock) - (a + b) * unit) <= 2 * TOL + 1e-9 * (a + b) * unit
    assert abs(cal.counted_seconds(direct, two_step, clock) + cal.counted_seconds(two_step, direct, clock)) <= 2e-6


@PROPERTY
@given(calendars(), instants, st.integers(0, 60 * 24 * 40))
def test_counted_seconds_matches_a_day_by_day_sum(cal: WorkCalendar, start: datetime, minutes: int) -> None:
    end = start + timedelta(minutes=minutes)
    expected = brute_counted(cal, start, end)
    assert abs(cal.counted_seconds(start, end, WORK_HOUR) - expected) <= TOL
    assert cal.counted_seconds(start, end, NATURAL_DAY) == minutes * 60


@PROPERTY
@given(calendars(), st.dates(FIRST, LAST))
def test_is_workday_follows_holidays_makeup_days_and_weekdays(cal: WorkCalendar, day: date) -> None:
    expected = day not in cal.holidays and (day in cal.workdays or day.weekday() < 5)
    assert cal.is_workday(day) == expected


@PROPERTY
@given(calendars(), instants, values, instants, instants)
def test_suspension_keeps_the_remaining_clock_time(cal: WorkCalendar, start: datetime, value: float,
                                                   suspend: datetime, resume: datetime) -> None:
    due = cal.deadline(start, value, WORK_HOUR)
    suspend_at, resume_at = sorted((suspend, resume))
    remaining = cal.counted_seconds(suspend_at, due, WORK_HOUR)
    new_due = cal.add_seconds(resume_at, remaining, WORK_HOUR)
    assert abs(cal.counted_seconds(resume_at, new_due, WORK_HOUR) - remaining) <= TOL
