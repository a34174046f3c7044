"""上岗履职: shifts (班次), responsibility areas (责任区域) and what a track says about a shift.

Pure computation, no I/O. A shift says who is on duty when and where: local start and end times,
the days of the week it starts on (ISO 1 = Monday … 7 = Sunday) and the responsibility area, a set
of unit grid codes (for an inspector, the 责任网格's unit grids). A shift whose end is not after its
start runs over midnight.

A track is a list of :class:`DutyPoint` (fix time as UTC epoch seconds, WGS-84 lat/lon and the
unit grid holding the point, looked up by the caller). The rules (:class:`DutyRules`):

- time between two consecutive fixes at most ``max_gap_s`` apart belongs to the state (inside or
  outside the area) of the earlier fix, and so does the time from the last fix to the end when
  it is at most ``max_gap_s``; a longer silence and the time before the first fix are 无信号
  (no signal). Inside + outside + no signal always equals the (elapsed) length of the shift;
- distance is the haversine sum over consecutive fixes of the shift (``coords.distance_m``);
- a stop (停留) is a run of fixes that all stay within ``stop_radius_m`` of the run's first fix
  for at least ``stop_min_s``;
- late start (迟到): the first fix inside the area comes more than ``grace_s`` after the start;
  early leave (早退): the last time inside the area is more than ``grace_s`` before the end
  (judged only once the shift is over); never inside the area counts as late (缺岗);
- alarms while a shift runs: out of the area (离岗/越界) for ``out_alarm_s`` or longer, and no fix
  (无信号) for ``no_signal_alarm_s`` or longer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from typing import Iterable, NamedTuple, Sequence

from backend.domain.coords import distance_m

DAYS_ALL = frozenset(range(1, 8))


class DutyPoint(NamedTuple):
    """One fix of a track: time (UTC epoch s), lat, lon, and the unit grid holding it (None outside)."""

    time: float
    lat: float
    lon: float
    grid_code: str | None = None


@dataclass(frozen=True)
class DutyRules:
    """Thresholds of the on-duty rules, in seconds and metres."""

    max_gap_s: float = 300.0
    stop_min_s: float = 300.0
    stop_radius_m: float = 30.0
    grace_s: float = 300.0
    out_alarm_s: float = 900.0
    no_signal_alarm_s: float = 600.0

    def __post_init__(self) -> None:
        for name in ("max_gap_s", "stop_min_s", "stop_radius_m", "out_alarm_s", "no_signal_alarm_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if not isinstance(self.grace_s, (int, float)) or not math.isfinite(self.grace_s) or self.grace_s < 0:
            raise ValueError(f"grace_s must be a number >= 0, got {self.grace_s!r}")


def parse_clock(value: str | time, what: str = "time") -> time:
    """``"08:30"`` (or a time) -> time; ValueError with a clear message otherwise."""
    if isinstance(value, time):
        return value.replace(tzinfo=None)
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a local time like '08:00', got {value!r}")
    parts = value.strip().split(":")
    try:
        if len(parts) not in (2, 3):
            raise ValueError
        numbers = [int(p) for p in parts]
        return time(*numbers)
    except (ValueError, TypeError):
        raise ValueError(f"{what} must be a local time like '08:00', got {value!r}") from None


def parse_days(value: Iterable[int] | str | None) -> frozenset[int]:
    """Days of the week (ISO 1 = Monday … 7 = Sunday) from a list or a string like ``"12345"``."""
    if value is None:
        return DAYS_ALL
    items = list(value) if not isinstance(value, str) else [c for c in value if not c.isspace() and c != ","]
    days: set[int] = set()
    for item in items:
        try:
            if isinstance(item, bool):
                raise ValueError
            day = int(item)
        except (ValueError, TypeError):
            raise ValueError(f"days must be numbers 1 (Monday) to 7 (Sunday), got {item!r}") from None
        if not 1 <= day <= 7:
            raise ValueError(f"days must be numbers 1 (Monday) to 7 (Sunday), got {day}")
        days.add(day)
    if not days:
        raise ValueError("a shift needs at least one day of the week")
    return frozenset(days)


@dataclass(frozen=True)
class Shift:
    """班次: local start and end, the weekdays it starts on, the responsibility area (unit grid codes)."""

    start: time
    end: time
    days: frozenset[int] = DAYS_ALL
    grid_codes: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, start: str | time, end: str | time, days: Iterable[int] | str | None = None,
              grid_codes: Iterable[str] = ()) -> "Shift":
        """Validated shift; ValueError names the bad field."""
        start_t, end_t = parse_clock(start, "start"), parse_clock(end, "end")
        if start_t == end_t:
            raise ValueError("a shift cannot start and end at the same time")
        if isinstance(grid_codes, str):
            raise ValueError("grid_codes must be a list of unit grid codes")
        codes = frozenset(grid_codes)
        for code in codes:
            if not isinstance(code, str) or len(code) != 15 or not code.isdigit():
                raise ValueError(f"unit grid codes have 15 digits, got {code!r}")
        if not codes:
            raise ValueError("a shift needs a responsibility area: at least one unit grid code")
        return cls(start_t, end_t, parse_days(days), codes)

    @property
    def overnight(self) -> bool:
        return self.end <= self.start

    def window(self, day: date, tz: tzinfo) -> tuple[datetime, datetime] | None:
        """The shift starting on the local date ``day`` as UTC (start, end), or None if it does not run then."""
        if day.isoweekday() not in self.days:
            return None
        start = datetime.combine(day, self.start, tz)
        end_day = day + timedelta(days=1) if self.overnight else day
        end = datetime.combine(end_day, self.end, tz)
        return start.astimezone(timezone.utc), end.astimezone(timezone.utc)

    def active_window(self, now: datetime, tz: tzinfo) -> tuple[datetime, datetime] | None:
        """The window running at ``now`` (aware), if any (yesterday's for an overnight shift)."""
        today = now.astimezone(tz).date()
        for day in (today, today - timedelta(days=1)):
            window = self.window(day, tz)
            if window is not None and window[0] <= now < window[1]:
                return window
        return None


@dataclass(frozen=True)
class Stop:
    """停留: the unit stayed within the stop radius from ``start`` to ``end`` (epoch s)."""

    start: float
    end: float
    lat: float
    lon: float

    @property
    def duration_s(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class DutyResult:
    """What a track says about one shift window (epoch seconds; durations in seconds)."""

    start: float
    end: float
    evaluated_until: float
    in_progress: bool
    inside_s: float
    outside_s: float
    no_signal_s: float
    distance_m: float
    points: int
    arrived_at: float | None
    left_at: float | None
    late_s: float
    early_s: float
    late: bool
    early: bool
    absent: bool
    stops: list[Stop] = field(default_factory=list)
    out_periods: list[tuple[float, float]] = field(default_factory=list)


def _sorted_in(points: Iterable[DutyPoint], start: float, end: float) -> list[DutyPoint]:
    return sorted((p for p in points if start <= p.time <= end), key=lambda p: p.time)


def track_distance_m(points: Sequence[DutyPoint]) -> float:
    """Haversine length of a time-ordered track."""
    total = 0.0
    for a, b in zip(points, points[1:]):
        total += distance_m(a.lat, a.lon, b.lat, b.lon)
    return total


def find_stops(points: Sequence[DutyPoint], rules: DutyRules = DutyRules()) -> list[Stop]:
    """停留 in a time-ordered track: runs within stop_radius_m of their first fix for >= stop_min_s."""
    stops: list[Stop] = []
    i = 0
    while i < len(points):
        anchor = points[i]
        j = i
        while j + 1 < len(points) and distance_m(anchor.lat, anchor.lon, points[j + 1].lat,
                                                 points[j + 1].lon) <= rules.stop_radius_m:
            j += 1
        if points[j].time - anchor.time >= rules.stop_min_s:
            stops.append(Stop(anchor.time, points[j].time, anchor.lat, anchor.lon))
            i = j + 1
        else:
            i += 1
    return stops


def evaluate(points: Iterable[DutyPoint], start: float, end: float, area: Iterable[str],
             rules: DutyRules = DutyRules(), now: float | None = None) -> DutyResult:
    """On-duty figures of one shift window [start, end] (epoch s) for a track.

    With ``now`` inside the window the shift is in progress: it is judged up to ``now`` and early
    leave is not judged yet."""
    if not end > start:
        raise ValueError("the shift window must end after it starts")
    in_progress = now is not None and now < end
    until = max(start, min(end, now)) if now is not None else end
    area_set = frozenset(area)
    track = _sorted_in(points, start, until)
    inside_s = outside_s = 0.0
    out_periods: list[tuple[float, float]] = []
    # the covered spans: (from, to, inside?) for every stretch attributed to a fix
    spans: list[tuple[float, float, bool]] = []
    for index, point in enumerate(track):
        following = track[index + 1].time if index + 1 < len(track) else until
        gap = following - point.time
        covered = gap if gap <= rules.max_gap_s else 0.0
        if covered > 0:
            spans.append((point.time, point.time + covered, point.grid_code in area_set))
    for begin, finish, inside in spans:
        if inside:
            inside_s += finish - begin
        else:
            outside_s += finish - begin
            if out_periods and abs(out_periods[-1][1] - begin) < 1e-9:
                out_periods[-1] = (out_periods[-1][0], finish)
            else:
                out_periods.append((begin, finish))
    no_signal_s = max(0.0, (until - start) - inside_s - outside_s)
    inside_points = [p for p in track if p.grid_code in area_set]
    arrived_at = inside_points[0].time if inside_points else None
    inside_spans = [s for s in spans if s[2]]
    left_at = None
    if inside_points:
        left_at = max(inside_points[-1].time, inside_spans[-1][1] if inside_spans else 0.0)
    absent = arrived_at is None
    if absent:
        late_s = until - start
        late = not in_progress or late_s > rules.grace_s
    else:
        late_s = max(0.0, arrived_at - start)
        late = late_s > rules.grace_s
    if in_progress or absent:
        early_s, early = 0.0, False
    else:
        early_s = max(0.0, end - (left_at or start))
        early = early_s > rules.grace_s
    return DutyResult(
        start=start, end=end, evaluated_until=until, in_progress=in_progress,
        inside_s=inside_s, outside_s=outside_s, no_signal_s=no_signal_s,
        distance_m=track_distance_m(track), points=len(track), arrived_at=arrived_at, left_at=left_at,
        late_s=late_s, early_s=early_s, late=late, early=early, absent=absent,
        stops=find_stops(track, rules), out_periods=out_periods)


@dataclass(frozen=True)
class AlarmFinding:
    """A condition that deserves an alarm now: ``out_of_area`` (越界/离岗) or ``no_signal`` (无信号)."""

    kind: str
    since: float
    lat: float | None = None
    lon: float | None = None


ALARM_KINDS = ("out_of_area", "no_signal")


def check_alarms(points: Iterable[DutyPoint], window_start: float, now: float, area: Iterable[str],
                 rules: DutyRules = DutyRules(), last_heard: float | None = None) -> list[AlarmFinding]:
    """Alarms for a running shift at ``now`` from the recent track.

    ``points`` must cover at least the last ``out_alarm_s`` (older fixes may be left out).
    ``last_heard`` is the time of the newest fix known elsewhere (e.g. the live position), used
    when the track holds none. No signal hides out of area (the position is not current)."""
    area_set = frozenset(area)
    track = sorted((p for p in points if p.time <= now), key=lambda p: p.time)
    newest = track[-1].time if track else None
    if last_heard is not None and (newest is None or last_heard > newest):
        newest = last_heard
    silent_since = max(window_start, newest) if newest is not None else window_start
    if now - silent_since >= rules.no_signal_alarm_s:
        last = track[-1] if track else None
        return [AlarmFinding("no_signal", silent_since, last.lat if last else None, last.lon if last else None)]
    if not track or track[-1].grid_code in area_set:
        return []
    run_start = track[-1].time
    for earlier, later in zip(reversed(track[:-1]), reversed(track)):
        if earlier.grid_code in area_set or later.time - earlier.time > rules.max_gap_s:
            break
        run_start = earlier.time
    since = max(run_start, window_start)
    if now - since >= rules.out_alarm_s:
        return [AlarmFinding("out_of_area", since, track[-1].lat, track[-1].lon)]
    return []
