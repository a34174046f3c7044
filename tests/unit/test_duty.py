"""上岗履职 rules (backend.domain.duty) on hand-made tracks."""
from __future__ import annotations

import math
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from backend.domain.duty import (DutyPoint, DutyRules, Shift, check_alarms, evaluate, find_stops, parse_days,
                                 track_distance_m)

T0 = 1_790_000_000.0  # shift start
IN, OUT = "110101001001001", "110101001001002"
AREA = {IN}
LAT, LON = 39.9, 116.4
M_PER_DEG_LON = 6_371_008.8 * math.radians(1) * math.cos(math.radians(LAT))


def points(times, grid: str | None = IN, lat: float = LAT, lon: float = LON) -> list[DutyPoint]:
    return [DutyPoint(T0 + t, lat, lon, grid) for t in times]


def test_time_inside_and_outside_adds_up_to_the_shift():
    track = points(range(0, 1200, 60)) + points(range(1200, 1800, 60), OUT) + points(range(1800, 3600, 60))
    result = evaluate(track, T0, T0 + 3600, AREA)
    assert result.inside_s == 3000
    assert result.outside_s == 600
    assert result.no_signal_s == 0
    assert result.out_periods == [(T0 + 1200, T0 + 1800)]
    assert result.points == 60


def test_a_silence_longer_than_the_gap_is_no_signal():
    track = points(range(0, 660, 60)) + points(range(1500, 3600, 60))
    result = evaluate(track, T0, T0 + 3600, AREA)
    assert result.no_signal_s == 900  # 600 -> 1500
    assert result.inside_s == 2700
    assert result.inside_s + result.outside_s + result.no_signal_s == 3600


def test_time_before_the_first_fix_and_after_a_long_silence_at_the_end_is_no_signal():
    track = points(range(600, 1200, 60))  # first fix 10 min late, last at 1140, then nothing
    result = evaluate(track, T0, T0 + 3600, AREA)
    assert result.no_signal_s == 600 + (3600 - 1140)
    assert result.inside_s == 1140 - 600


def test_points_outside_the_window_are_ignored():
    track = points([-600, -60]) + points(range(0, 3600, 60)) + points([3700], OUT)
    result = evaluate(track, T0, T0 + 3600, AREA)
    assert result.points == 60 and result.outside_s == 0 and result.inside_s == 3600


def test_distance_is_the_haversine_sum():
    track = [DutyPoint(T0 + i * 10, LAT, LON + i * 0.001, IN) for i in range(10)]
    expected = 9 * 0.001 * M_PER_DEG_LON
    assert track_distance_m(track) == pytest.approx(expected, abs=0.5)
    assert evaluate(track, T0, T0 + 3600, AREA).distance_m == pytest.approx(expected, abs=0.5)


def test_a_long_standstill_is_one_stop_and_a_short_one_is_none():
    moving = [DutyPoint(T0 + i * 10, LAT, LON + i * 0.001, IN) for i in range(10)]  # 0..90 s, moving east
    jitter = [0.00003, -0.00002, 0.00001, 0.0]  # a few metres of GPS noise
    parked = [DutyPoint(T0 + 100 + i * 30, LAT + jitter[i % 4], LON + 0.01, IN) for i in range(21)]  # 10 min
    moving2 = [DutyPoint(T0 + 760 + i * 10, LAT, LON + 0.011 + i * 0.001, IN) for i in range(10)]
    short = [DutyPoint(T0 + 860 + i * 30, LAT, LON + 0.03, IN) for i in range(7)]  # 3 min
    moving3 = [DutyPoint(T0 + 1100 + i * 10, LAT, LON + 0.031 + i * 0.001, IN) for i in range(5)]
    stops = find_stops(moving + parked + moving2 + short + moving3)
    assert len(stops) == 1
    assert stops[0].start == T0 + 100 and stops[0].duration_s == 600
    assert stops[0].lon == pytest.approx(LON + 0.01)
    assert len(evaluate(moving + parked + moving2 + short + moving3, T0, T0 + 3600, AREA).stops) == 1


def test_stop_length_follows_the_rule():
    parked = [DutyPoint(T0 + i * 30, LAT, LON, IN) for i in range(7)]  # 3 minutes
    assert find_stops(parked) == []
    assert len(find_stops(parked, DutyRules(stop_min_s=120))) == 1


def test_late_start_beyond_the_grace():
    track = points(range(0, 1200, 60), OUT) + points(range(1200, 3600, 60))
    result = evaluate(track, T0, T0 + 3600, AREA)
    assert result.late and result.late_s == 1200 and result.arrived_at == T0 + 1200
    on_time = evaluate(points(range(0, 240, 60), OUT) + points(range(240, 3600, 60)), T0, T0 + 3600, AREA)
    assert not on_time.late and on_time.late_s == 240


def test_early_leave_beyond_the_grace():
    track = points(range(0, 1800, 60)) + points(range(1800, 3600, 60), OUT)
    result = evaluate(track, T0, T0 + 3600, AREA)
    assert result.early and result.early_s == 1800 and result.left_at == T0 + 1800
    stays = evaluate(points(range(0, 3600, 60)), T0, T0 + 3600, AREA)
    assert not stays.early and stays.early_s == 0 and stays.left_at == T0 + 3600


def test_a_leave_after_the_last_fix_is_early():
    result = evaluate(points(range(0, 1800, 60)), T0, T0 + 3600, AREA)  # phone silent from 30 min
    assert result.early and result.left_at == T0 + 1740


def test_early_leave_is_not_judged_while_the_shift_runs():
    track = points(range(0, 1800, 60)) + points(range(1800, 2400, 60), OUT)
    result = evaluate(track, T0, T0 + 3600, AREA, now=T0 + 2400)
    assert result.in_progress and not result.early
    assert result.inside_s + result.outside_s + result.no_signal_s == 2400


def test_never_in_the_area_is_absent_and_late():
    result = evaluate(points(range(0, 3600, 60), OUT), T0, T0 + 3600, AREA)
    assert result.absent and result.late and result.arrived_at is None and not result.early
    assert result.outside_s == 3600


def test_a_window_must_end_after_it_starts():
    with pytest.raises(ValueError):
        evaluate([], T0, T0, AREA)


SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_shift_window_in_local_time():
    shift = Shift.parse("08:00", "18:00", "12345", [IN])
    start, end = shift.window(date(2026, 11, 26), SHANGHAI)  # a Thursday
    assert start == datetime(2026, 11, 26, 0, 0, tzinfo=timezone.utc)
    assert end == datetime(2026, 11, 26, 10, 0, tzinfo=timezone.utc)
    assert shift.window(date(2026, 11, 28), SHANGHAI) is None  # Saturday


def test_overnight_shift_runs_into_the_next_day():
    shift = Shift.parse("22:00", "06:00", None, [IN])
    assert shift.overnight
    start, end = shift.window(date(2026, 11, 26), SHANGHAI)
    assert (end - start).total_seconds() == 8 * 3600
    at_2am = datetime(2026, 11, 27, 2, 0, tzinfo=SHANGHAI)
    assert shift.active_window(at_2am, SHANGHAI) == (start, end)
    assert shift.active_window(datetime(2026, 11, 27, 12, 0, tzinfo=SHANGHAI), SHANGHAI) is None


@pytest.mark.parametrize("start,end,days,grids", [
    ("25:00", "18:00", None, [IN]),
    ("8", "18:00", None, [IN]),
    ("08:00", "08:00", None, [IN]),
    ("08:00", "18:00", "8", [IN]),
    ("08:00", "18:00", "", [IN]),
    ("08:00", "18:00", None, []),
    ("08:00", "18:00", None, ["12345"]),
    ("08:00", "18:00", None, IN),
    (None, "18:00", None, [IN]),
])
def test_bad_shifts_are_refused(start, end, days, grids):
    with pytest.raises(ValueError):
        Shift.parse(start, end, days, grids)


def test_days_accept_lists_and_strings():
    assert parse_days([1, 2, 3]) == parse_days("123") == parse_days("1,2,3") == frozenset({1, 2, 3})


def test_out_of_area_alarm_after_the_limit():
    now = T0 + 3600
    track = points(range(0, 2400, 60)) + points(range(2400, 3600, 60), OUT)  # out for 20 min
    [alarm] = check_alarms(track, T0, now, AREA)
    assert alarm.kind == "out_of_area" and alarm.since == T0 + 2400
    ten_minutes_out = points(range(0, 3000, 60)) + points(range(3000, 3600, 60), OUT)
    assert check_alarms(ten_minutes_out, T0, now, AREA) == []
    back_inside = track + points([3600])
    assert check_alarms(back_inside, T0, now, AREA) == []


def test_out_of_area_counts_from_the_shift_start():
    track = points(range(-3600, 600, 60), OUT)  # outside since before the shift
    assert check_alarms(track, T0, T0 + 600, AREA) == []
    [alarm] = check_alarms(track + points(range(600, 1000, 60), OUT), T0, T0 + 1000, AREA)
    assert alarm.since == T0


def test_no_signal_alarm_and_it_hides_out_of_area():
    track = points(range(0, 1200, 60), OUT)  # last fix at 1140, outside
    [alarm] = check_alarms(track, T0, T0 + 1140 + 700, AREA)
    assert alarm.kind == "no_signal" and alarm.since == T0 + 1140
    assert check_alarms(track, T0, T0 + 1140 + 60, AREA)[0].kind == "out_of_area"
    assert check_alarms(points(range(0, 1200, 60)), T0, T0 + 1200, AREA) == []


def test_no_signal_from_the_shift_start_without_any_fix():
    [alarm] = check_alarms([], T0, T0 + 700, AREA)
    assert alarm.kind == "no_signal" and alarm.since == T0
    assert check_alarms([], T0, T0 + 700, AREA, last_heard=T0 + 650) == []


def test_rules_refuse_nonsense():
    with pytest.raises(ValueError):
        DutyRules(max_gap_s=0)
    with pytest.raises(ValueError):
        DutyRules(grace_s=-1)
