"""The working-hours clock (工作时 SLA calendar): deadlines and elapsed clock time for case stages.

A case stage gets a time limit (处置时限) such as "4 工作时" or "2 工作日". This module turns a start instant
plus such a limit into a deadline, and measures how much of a limit has been used.

Time in the API is UTC: every function takes timezone-aware datetimes (any zone; naive ones are refused) and
returns datetimes with ``tzinfo=UTC``. The calendar itself is local time, Asia/Shanghai by default.

Clock types:

- ``WORK_HOUR`` 工作时: only working periods of workdays count.
- ``URGENT_HOUR`` 紧急工作时: continuous, nights, weekends and holidays count.
- ``WORK_DAY`` 工作日: counted in working time like 工作时; one day is the total length of the periods of one
  day (8 hours with the default periods).
- ``NATURAL_DAY`` 自然日: continuous, one day is 24 hours.

Workdays are Monday to Friday, minus holidays (法定节假日), plus make-up workdays (调休上班). Holidays and make-up
workdays are configured per year (the shipped file covers 2025 and 2026); a year with no configured dates
simply falls back to plain Monday to Friday.

Working periods are half-open, ``[start, end)``: the instant a period ends is not working time, but a deadline
that is reached exactly at the end of a period stays there (4 工作时 from Monday 08:00 ends Monday 12:00).
A zero amount gives the start itself.

Internally instants are integers (microseconds since the Unix epoch), so the arithmetic is exact to the
microsecond; per-day working intervals and per-year cumulative tables are cached, so a deadline costs a
binary search per calendar year crossed, not a loop over days.
"""
from __future__ import annotations

import json
import math
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from numbers import Real
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WORK_HOUR = "work_hour"
"""工作时: only working periods count."""
URGENT_HOUR = "urgent_hour"
"""紧急工作时: continuous hours, nights and holidays included."""
WORK_DAY = "work_day"
"""工作日: one day = the working length of one day (8 h by default), counted in working time."""
NATURAL_DAY = "natural_day"
"""自然日: continuous 24-hour days."""

CLOCK_TYPES: frozenset[str] = frozenset({WORK_HOUR, URGENT_HOUR, WORK_DAY, NATURAL_DAY})
CLOCK_LABELS: dict[str, str] = {
    WORK_HOUR: "工作时",
    URGENT_HOUR: "紧急工作时",
    WORK_DAY: "工作日",
    NATURAL_DAY: "自然日",
}
"""Chinese name of each clock type, as written in 立结案标准 tables."""
CLOCK_BY_LABEL: dict[str, str] = {label: clock for clock, label in CLOCK_LABELS.items()}

DEFAULT_TIMEZONE = "Asia/Shanghai"
DEFAULT_PERIODS: tuple[tuple[time, time], ...] = ((time(8), time(12)), (time(14), time(18)))
CALENDAR_FILE = Path(__file__).resolve().parent.parent / "data" / "calendar.json"

_US = 1_000_000  # microseconds per second
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_MAX_YEAR = 9998  # keep one year of headroom below datetime's limit


class CalendarError(ValueError):
    """A working calendar that cannot be used: bad periods, bad dates, contradictory days."""


def _to_us(t: datetime, name: str = "time") -> int:
    if not isinstance(t, datetime):
        raise ValueError(f"{name} must be a datetime, got {type(t).__name__}")
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (got naive {t.isoformat()})")
    return (t - _EPOCH) // _ONE_US


def _from_us(us: int) -> datetime:
    try:
        return _EPOCH + timedelta(microseconds=us)
    except OverflowError as exc:
        raise ValueError("result lies outside the supported date range") from exc


def _parse_time(value: time | str, what: str) -> time:
    if isinstance(value, str):
        try:
            value = time.fromisoformat(value)
        except ValueError as exc:
            raise CalendarError(f"{what}: {value!r} is not a time like '08:00'") from exc
    if not isinstance(value, time):
        raise CalendarError(f"{what}: expected a time or 'HH:MM', got {value!r}")
    if value.tzinfo is not None:
        raise CalendarError(f"{what}: period times are local wall times and must not carry a timezone")
    return value


def _parse_date(value: date | str, what: str) -> date:
    if isinstance(value, datetime):
        raise CalendarError(f"{what}: expected a date, got a datetime {value.isoformat()}")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError as exc:
            raise CalendarError(f"{what}: {value!r} is not a date like '2026-10-01'") from exc
    raise CalendarError(f"{what}: expected a date or 'YYYY-MM-DD', got {value!r}")


def _seconds_of_day(t: time) -> float:
    return t.hour * 3600 + t.minute * 60 + t.second + t.microsecond / _US


def _check_periods(periods: Iterable[Sequence[time | str]]) -> tuple[tuple[time, time], ...]:
    checked: list[tuple[time, time]] = []
    for n, period in enumerate(periods, start=1):
        if isinstance(period, (str, bytes)) or len(period) != 2:
            raise CalendarError(f"period {n}: expected a (start, end) pair, got {period!r}")
        start = _parse_time(period[0], f"period {n} start")
        end = _parse_time(period[1], f"period {n} end")
        if end <= start:
            raise CalendarError(f"period {n}: end {end.isoformat()} must be after start {start.isoformat()}"
                                " (a period cannot cross midnight)")
        if checked and start < checked[-1][1]:
            prev = checked[-1]
            raise CalendarError(f"period {n} ({start.isoformat()}-{end.isoformat()}) overlaps or comes before "
                                f"period {n - 1} ({prev[0].isoformat()}-{prev[1].isoformat()}); "
                                "periods must be sorted and must not overlap")
        checked.append((start, end))
    if not checked:
        raise CalendarError("a working calendar needs at least one working period")
    return tuple(checked)


def _check_clock(clock: str) -> str:
    if clock not in CLOCK_TYPES:
        raise ValueError(f"unknown clock type {clock!r}; expected one of {sorted(CLOCK_TYPES)}")
    return clock


class WorkCalendar:
    """A working-time calendar (工作日历): working periods of a day, holidays and make-up workdays, a time zone.

    ``periods`` are local (start, end) wall times, sorted and not overlapping (touching is allowed);
    ``holidays`` are dates off work even on a weekday (法定节假日); ``workdays`` are make-up workdays (调休上班)
    worked even on a weekend. A date cannot be both. Any date not listed follows Monday-Friday.
    """

    def __init__(self, periods: Iterable[Sequence[time | str]] = DEFAULT_PERIODS,
                 holidays: Iterable[date | str] = (), workdays: Iterable[date | str] = (),
                 tz: tzinfo | str = DEFAULT_TIMEZONE) -> None:
        self._periods = _check_periods(periods)
        self._holidays = frozenset(_parse_date(d, "holiday") for d in holidays)
        self._workdays = frozenset(_parse_date(d, "make-up workday") for d in workdays)
        both = sorted(self._holidays & self._workdays)
        if both:
            raise CalendarError("dates cannot be both a holiday and a make-up workday: "
                                + ", ".join(d.isoformat() for d in both))
        if isinstance(tz, str):
            try:
                tz = ZoneInfo(tz)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise CalendarError(f"unknown time zone {tz!r}") from exc
        if not isinstance(tz, tzinfo):
            raise CalendarError(f"tz must be a tzinfo or a zone name, got {tz!r}")
        self._tz = tz
        self._day_length_s = sum(_seconds_of_day(e) - _seconds_of_day(s) for s, e in self._periods)
        self._intervals_cache: dict[int, tuple[tuple[int, int], ...]] = {}
        self._year_cache: dict[int, list[int]] = {}

    # ----- configuration -------------------------------------------------------------------------------------

    @property
    def periods(self) -> tuple[tuple[time, time], ...]:
        """Working periods of a workday, local wall times (工作时段)."""
        return self._periods

    @property
    def holidays(self) -> frozenset[date]:
        return self._holidays

    @property
    def workdays(self) -> frozenset[date]:
        """Make-up workdays (调休上班)."""
        return self._workdays

    @property
    def tz(self) -> tzinfo:
        return self._tz

    @property
    def configured_years(self) -> frozenset[int]:
        """Years with at least one holiday or make-up workday; other years are plain Monday-Friday."""
        return frozenset(d.year for d in self._holidays | self._workdays)

    def with_year(self, year: int, holidays: Iterable[date | str] = (),
                  workdays: Iterable[date | str] = ()) -> WorkCalendar:
        """A new calendar where ``year``'s holidays and make-up workdays are replaced by the given ones."""
        new_holidays = {_parse_date(d, "holiday") for d in holidays}
        new_workdays = {_parse_date(d, "make-up workday") for d in workdays}
        for d in new_holidays | new_workdays:
            if d.year != year:
                raise CalendarError(f"{d.isoformat()} is not in year {year}")
        kept_h = {d for d in self._holidays if d.year != year}
        kept_w = {d for d in self._workdays if d.year != year}
        return WorkCalendar(self._periods, kept_h | new_holidays, kept_w | new_workdays, self._tz)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkCalendar:
        """Build a calendar from its JSON shape (see ``backend/data/calendar.json``)::

            {"timezone": "Asia/Shanghai",
             "periods": [["08:00", "12:00"], ["14:00", "18:00"]],
             "years": {"2026": {"holidays": [{"name": "国庆节", "from": "2026-10-01", "to": "2026-10-07"},
                                             "2026-06-19"],
                                "workdays": ["2026-09-20", "2026-10-10"]}}}

        A holiday entry is a date string or an object with ``from`` and optional ``to`` (inclusive) and
        ``name``. Every key is optional; missing periods/timezone take the defaults.
        """
        if not isinstance(data, Mapping):
            raise CalendarError(f"calendar data must be an object, got {type(data).__name__}")
        tz = data.get("timezone", DEFAULT_TIMEZONE)
        if not isinstance(tz, str):
            raise CalendarError(f"timezone must be a zone name, got {tz!r}")
        periods = data.get("periods", DEFAULT_PERIODS)
        if not isinstance(periods, (list, tuple)):
            raise CalendarError(f"periods must be a list of [start, end] pairs, got {periods!r}")
        years = data.get("years", {})
        if not isinstance(years, Mapping):
            raise CalendarError("years must be an object keyed by year, e.g. {\"2026\": {...}}")
        holidays: set[date] = set()
        workdays: set[date] = set()
        for key, entry in years.items():
            _parse_year(key)
            if not isinstance(entry, Mapping):
                raise CalendarError(f"year {key}: expected an object with holidays and workdays")
            for item in _list(entry, "holidays", key):
                holidays.update(_holiday_dates(item, key))
            for item in _list(entry, "workdays", key):
                workdays.add(_parse_date(item, f"year {key} make-up workday"))
        return cls(periods, holidays, workdays, tz)

    @classmethod
    def load(cls, path: str | Path) -> WorkCalendar:
        """Read a calendar JSON file (same shape as :meth:`from_dict`)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise CalendarError(f"cannot read calendar file {path}: {exc}") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CalendarError(f"calendar file {path} is not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    # ----- days and instants ---------------------------------------------------------------------------------

    def is_workday(self, d: date) -> bool:
        """Is the local date ``d`` a workday (工作日)? Holidays are not, make-up days are, else Monday-Friday."""
        if isinstance(d, datetime) or not isinstance(d, date):
            raise ValueError(f"is_workday takes a date, got {d!r}")
        if d in self._holidays:
            return False
        if d in self._workdays:
            return True
        return d.weekday() < 5

    def is_working_time(self, t: datetime) -> bool:
        """Is instant ``t`` inside a working period (start included, end excluded)?"""
        us = _to_us(t)
        return any(a <= us < b for a, b in self._intervals(self._local_date(us)))

    def next_working_instant(self, t: datetime) -> datetime:
        """``t`` itself if it is working time, else the start of the next working period (UTC)."""
        us = _to_us(t)
        day = self._local_date(us)
        for a, b in self._intervals(day):
            if b > us:
                return _from_us(max(a, us))
        day = self._next_day_with_work(day + timedelta(days=1))
        return _from_us(self._intervals(day)[0][0])

    # ----- clocks --------------------------------------------------------------------------------------------

    def unit_seconds(self, clock: str) -> float:
        """Length of one unit of ``clock`` in clock seconds (工作日 = the periods of one day, 8 h by default)."""
        _check_clock(clock)
        if clock == WORK_DAY:
            return self._day_length_s
        if clock == NATURAL_DAY:
            return 86400.0
        return 3600.0

    def deadline(self, start: datetime, value: float, clock: str) -> datetime:
        """When ``value`` units of ``clock`` have elapsed from ``start`` (处置时限 → 截止时间), in UTC."""
        _check_amount(value, "value")
        return self.add_seconds(start, value * self.unit_seconds(clock), clock)

    def add_seconds(self, start: datetime, seconds: float, clock: str) -> datetime:
        """The instant when ``seconds`` of ``clock`` time have elapsed from ``start`` (UTC).

        Used to resume a suspended case (挂账): remaining = counted_seconds(suspend_at, deadline),
        new deadline = add_seconds(resume_at, remaining).
        """
        _check_clock(clock)
        _check_amount(seconds, "seconds")
        s = _to_us(start, "start")
        try:
            amount = round(seconds * _US)
        except OverflowError as exc:
            raise ValueError(f"seconds {seconds!r} is too large") from exc
        if clock in (URGENT_HOUR, NATURAL_DAY):
            return _from_us(s + amount)
        return _from_us(self._add_working(s, amount))

    def counted_seconds(self, start: datetime, end: datetime, clock: str) -> float:
        """Clock seconds between ``start`` and ``end`` (0 if end <= start): the inverse of :meth:`add_seconds`."""
        _check_clock(clock)
        s, e = _to_us(start, "start"), _to_us(end, "end")
        if e <= s:
            return 0.0
        if clock in (URGENT_HOUR, NATURAL_DAY):
            return (e - s) / _US
        ys, ws = self._working_position(s)
        ye, we = self._working_position(e)
        if ys == ye:
            return (we - ws) / _US
        total = self._year_table(ys)[-1] - ws + we
        total += sum(self._year_table(y)[-1] for y in range(ys + 1, ye))
        return total / _US

    def used_fraction(self, start: datetime, deadline: datetime, now: datetime, clock: str) -> float:
        """Share of the allowed clock time used at ``now`` (> 1 when overdue; 0.8 is the amber warning).

        When the allowed time is zero (deadline at or before start, or no clock time between them) the result
        is 1.0 until clock time passes beyond the deadline, then ``math.inf``.
        """
        allowed = self.counted_seconds(start, deadline, clock)
        used = self.counted_seconds(start, now, clock)
        if allowed > 0:
            return used / allowed
        return math.inf if self.counted_seconds(deadline, now, clock) > 0 else 1.0

    # ----- internals -----------------------------------------------------------------------------------------

    def _local_date(self, us: int) -> date:
        return _from_us(us).astimezone(self._tz).date()

    def _intervals(self, d: date) -> tuple[tuple[int, int], ...]:
        """Working intervals of local date ``d`` as (start, end) microseconds, UTC-based; empty if no workday."""
        key = d.toordinal()
        cached = self._intervals_cache.get(key)
        if cached is None:
            cached = self._intervals_cache[key] = self._compute_intervals(d)
        return cached

    def _compute_intervals(self, d: date) -> tuple[tuple[int, int], ...]:
        if not self.is_workday(d):
            return ()
        spans = []
        for start, end in self._periods:
            a = _to_us(datetime.combine(d, start, tzinfo=self._tz))
            b = _to_us(datetime.combine(d, end, tzinfo=self._tz))
            if b > a:  # a period can vanish in a daylight-saving gap
                spans.append((a, b))
        return tuple(spans)

    def _year_table(self, year: int) -> list[int]:
        """cum[i] = working microseconds in the days of ``year`` before its i-th day (0-based); cum[-1] = total."""
        table = self._year_cache.get(year)
        if table is not None:
            return table
        if not 1 <= year <= _MAX_YEAR:
            raise ValueError(f"year {year} is outside the supported date range")
        first = date(year, 1, 1)
        days = (date(year + 1, 1, 1) - first).days
        table = [0] * (days + 1)
        running = 0
        for i in range(days):
            running += sum(b - a for a, b in self._compute_intervals(first + timedelta(days=i)))
            table[i + 1] = running
        self._year_cache[year] = table
        return table

    def _working_position(self, us: int) -> tuple[int, int]:
        """(local year, working microseconds from the start of that year up to instant ``us``)."""
        day = self._local_date(us)
        index = day.timetuple().tm_yday - 1
        within = sum(min(b, us) - a for a, b in self._intervals(day) if a < us)
        return day.year, self._year_table(day.year)[index] + within

    def _next_day_with_work(self, day: date) -> date:
        """The first day on or after ``day`` that has working time."""
        while True:
            table = self._year_table(day.year)
            index = day.timetuple().tm_yday - 1
            if table[-1] > table[index]:
                k = bisect_left(table, table[index] + 1)  # first k with table[k] > table[index]
                return date(day.year, 1, 1) + timedelta(days=k - 1)
            day = self._first_day_of_next_year(day.year)

    def _add_working(self, s: int, amount: int) -> int:
        if amount == 0:
            return s
        day = self._local_date(s)
        for a, b in self._intervals(day):
            if b <= s:
                continue
            begin = max(a, s)
            if amount <= b - begin:
                return begin + amount
            amount -= b - begin
        day += timedelta(days=1)
        while True:
            table = self._year_table(day.year)
            index = day.timetuple().tm_yday - 1
            left_in_year = table[-1] - table[index]
            if amount > left_in_year:
                amount -= left_in_year
                day = self._first_day_of_next_year(day.year)
                continue
            k = bisect_left(table, table[index] + amount)  # table[k-1] < target <= table[k]
            amount -= table[k - 1] - table[index]
            target_day = date(day.year, 1, 1) + timedelta(days=k - 1)
            for a, b in self._intervals(target_day):
                if amount <= b - a:
                    return a + amount
                amount -= b - a
            raise AssertionError("working time table and day intervals disagree")  # pragma: no cover

    @staticmethod
    def _first_day_of_next_year(year: int) -> date:
        if year >= _MAX_YEAR:
            raise ValueError("deadline lies beyond the supported date range")
        return date(year + 1, 1, 1)

    def __repr__(self) -> str:
        periods = ", ".join(f"{s.strftime('%H:%M')}-{e.strftime('%H:%M')}" for s, e in self._periods)
        years = ", ".join(str(y) for y in sorted(self.configured_years)) or "none"
        return f"WorkCalendar(periods=[{periods}], tz={self._tz}, configured_years=[{years}])"


def _check_amount(value: float, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def _parse_year(key: Any) -> int:
    try:
        year = int(key)
    except (TypeError, ValueError) as exc:
        raise CalendarError(f"year key {key!r} is not a year") from exc
    if not 1 <= year <= _MAX_YEAR:
        raise CalendarError(f"year {year} is outside the supported range")
    return year


def _list(entry: Mapping[str, Any], name: str, year: Any) -> list[Any]:
    items = entry.get(name, [])
    if not isinstance(items, list):
        raise CalendarError(f"year {year}: {name} must be a list")
    return items


def _holiday_dates(item: Any, year: Any) -> list[date]:
    what = f"year {year} holiday"
    if isinstance(item, str):
        return [_parse_date(item, what)]
    if not isinstance(item, Mapping) or "from" not in item:
        raise CalendarError(f"{what}: expected a date or an object with 'from' (and 'to'), got {item!r}")
    name = item.get("name", "")
    first = _parse_date(item["from"], f"{what} {name}".strip())
    last = _parse_date(item.get("to", item["from"]), f"{what} {name}".strip())
    if last < first:
        raise CalendarError(f"{what} {name}: 'to' {last} is before 'from' {first}")
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def sla_state(now: datetime, deadline_at: datetime | None, warn_at: datetime | None) -> int:
    """A running clock's state (时限状态): 0 within time, 1 warned (80% used), 2 overdue; 0 when no clock runs."""
    if deadline_at is None:
        return 0
    if now >= deadline_at:
        return 2
    if warn_at is not None and now >= warn_at:
        return 1
    return 0


@lru_cache(maxsize=1)
def default_calendar() -> WorkCalendar:
    """The shipped calendar (``backend/data/calendar.json``): 08:00-12:00, 14:00-18:00, Asia/Shanghai,
    official holidays and make-up workdays for 2025 and 2026. Other years fall back to Monday-Friday."""
    return WorkCalendar.load(CALENDAR_FILE)
