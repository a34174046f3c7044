"""Comprehensive evaluation (综合评价 / 绩效评价): counts, rates, weighted 综合指标值, grades.

Pure and vectorised with pandas: no loop over rows, departments or people.

Formulas follow reference §6.2 (the Unicom platform's UI notes) with its known bugs fixed:

* 专业部门 (department): 综合指标值 = 立案数分值×10% + 结案率分值×30% + 按期处置率分值×30%
  + 返工率分值×30%. The UI line's "结案数分值" is a typo for 结案率分值.
* 监督员 (inspector): 有效上报率×40% + 漏报率×20% + 按时核实率×20% + 按时核查率×20%,
  with 漏报率分值 = (1 − 漏报率)×100 (the shipped code weighted the raw rate).
* 受理员 (operator): 受理数分值×25% + 核实按时派发率×40% + 核查按时派发率×35%.
* 值班长 (supervisor): 按时立案率×25% + 准确立案率×40% + 按时结案率×35% (the shipped SQL put
  按时结案率 in the 25% term).
* 派遣员 (dispatcher): 派遣数分值×20% + 按时派遣率×40% + 准确派遣率×40%, with the banded
  派遣数分值 (the shipped SQL used 0.2 × the raw count).
* 区域 (region): 监督举报率×10% + 立案数分值×20% + 结案率×30% + 按期结案率×40%. The shipped code
  has 10% for the last term (weights summing to 70%) and scores every rate as (100 − rate); here
  every region rate scores rate×100 and the last weight is 40%, the reference's most likely value.

Rate sub-score (分值) = rate × 100; for bad rates (漏报率, 返工率) it is (1 − rate) × 100.
The score is rounded to 2 decimals at the very end; grade and rank use the rounded score, so the
figure shown and its grade always agree.

Undefined rates: a rate whose denominator is 0 is NaN, the score of that row is NaN, its grade is
None and it ranks after every scored row. No other NaN is produced.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

# ---------------------------------------------------------------------------------------------
# Grades (评价等级)
# ---------------------------------------------------------------------------------------------

GRADE_COLOURS: dict[str, str] = {
    "A": "green",
    "B": "blue",
    "C": "yellow",
    "D": "red",
    "E": "black",
}
"""Grade → colour on the wall: A green, B blue, C yellow, D red, E black."""

GRADE_LOWER_BOUNDS: tuple[tuple[str, float], ...] = (
    ("A", 90.0),
    ("B", 75.0),
    ("C", 60.0),
    ("D", 40.0),
    ("E", 0.0),
)
"""A [90,100] · B [75,90) · C [60,75) · D [40,60) · E [0,40)."""

# ---------------------------------------------------------------------------------------------
# Weights (percent; each set sums to 100)
# ---------------------------------------------------------------------------------------------

DEPARTMENT_WEIGHTS: dict[str, int] = {
    "cases_score": 10,
    "close_score": 30,
    "on_time_dispose_score": 30,
    "rework_score": 30,
}
INSPECTOR_WEIGHTS: dict[str, int] = {
    "valid_report_score": 40,
    "missed_score": 20,
    "on_time_verify_score": 20,
    "on_time_check_score": 20,
}
OPERATOR_WEIGHTS: dict[str, int] = {
    "accepted_score": 25,
    "verify_send_on_time_score": 40,
    "check_send_on_time_score": 35,
}
SUPERVISOR_WEIGHTS: dict[str, int] = {
    "on_time_file_score": 25,
    "accurate_file_score": 40,
    "on_time_close_score": 35,
}
DISPATCHER_WEIGHTS: dict[str, int] = {
    "dispatched_score": 20,
    "on_time_dispatch_score": 40,
    "accurate_dispatch_score": 40,
}
REGION_WEIGHTS: dict[str, int] = {
    "public_report_score": 10,
    "filed_score": 20,
    "close_score": 30,
    "on_time_close_score": 40,
}
"""区域 weights. The reference code has 10% for 按期结案率 (total 70%); 40% is used here, the
reference's most likely value, so that the weights sum to 100%."""

for _weights in (
    DEPARTMENT_WEIGHTS,
    INSPECTOR_WEIGHTS,
    OPERATOR_WEIGHTS,
    SUPERVISOR_WEIGHTS,
    DISPATCHER_WEIGHTS,
    REGION_WEIGHTS,
):
    assert sum(_weights.values()) == 100, _weights

# ---------------------------------------------------------------------------------------------
# Count bands (数量分值). Each band: (highest count in the band, score); counts above the last
# band get the trailing "above" score.
# ---------------------------------------------------------------------------------------------

DEPARTMENT_CASE_BANDS: tuple[tuple[int, int], ...] = ((50, 100), (100, 90), (200, 75), (500, 60), (999, 40))
DEPARTMENT_CASE_ABOVE = 0
"""专业部门 立案数分值: 0–50 → 100; 51–100 → 90; 101–200 → 75; 201–500 → 60; 501–999 → 40; ≥1000 → 0.

The reference writes 100–200, 200–500 and 500–1000, which overlap at their ends. Its first two
bands (0–50, 51–100) put each shared end in the lower band, so 100 → 90, 200 → 75 and 500 → 60;
1000 → 0 because the last band is "≥1000"."""

VOLUME_BANDS: tuple[tuple[int, int], ...] = ((100, 0), (300, 40), (500, 60), (1200, 75), (2000, 90))
VOLUME_ABOVE = 100
"""受理数分值 and 派遣数分值: ≤100 → 0; 101–300 → 40; 301–500 → 60; 501–1200 → 75;
1201–2000 → 90; ≥2001 → 100."""

REGION_FILED_BANDS: dict[int, tuple[tuple[int, int], ...]] = {
    1: ((0, 100), (2, 90), (4, 75), (6, 60), (8, 40)),
    2: ((0, 100), (3, 90), (5, 75), (7, 60), (9, 40)),
}
REGION_FILED_ABOVE = 0
"""区域 立案数分值. 一类区域: 0 → 100; <3 → 90; <5 → 75; <7 → 60; <9 → 40; else 0.
二类区域: 0 → 100; <4 → 90; <6 → 75; <8 → 60; <10 → 40; else 0."""

# ---------------------------------------------------------------------------------------------
# Department input
# ---------------------------------------------------------------------------------------------

CASE_TIME_COLUMNS: tuple[str, ...] = (
    "dispatched_at",
    "disposed_at",
    "closed_at",
    "cancelled_at",
    "bundle_deadline_at",
)
CASE_COLUMNS: tuple[str, ...] = (
    "department_id",
    *CASE_TIME_COLUMNS,
    "rework_count",
    "postpone_count",
    "suspended",
)
COUNT_COLUMNS: tuple[str, ...] = (
    "cases",
    "cancelled",
    "suspended",
    "to_dispose",
    "disposed",
    "disposed_on_time",
    "to_close",
    "closed",
    "closed_on_time",
    "reworked",
    "rework_times",
    "postponed",
    "overdue_open",
)


# ---------------------------------------------------------------------------------------------
# Public API: grades
# ---------------------------------------------------------------------------------------------


def grade(score: float | None) -> str | None:
    """Grade (评价等级) of one 综合指标值: A [90,100] B [75,90) C [60,75) D [40,60) E [0,40).

    None or NaN (a score that could not be computed) gives None. A score outside [0, 100] or
    not a number raises ValueError.
    """
    if score is None:
        return None
    if isinstance(score, bool) or not isinstance(score, (int, float, np.integer, np.floating)):
        raise ValueError(f"score must be a number, got {score!r}")
    value = float(score)
    if np.isnan(value):
        return None
    if not 0.0 <= value <= 100.0:
        raise ValueError(f"score must lie in [0, 100], got {value}")
    for letter, lower in GRADE_LOWER_BOUNDS:
        if value >= lower:
            return letter
    raise AssertionError("unreachable: E covers [0, 40)")


def grades(scores: pd.Series) -> pd.Series:
    """Vectorised `grade`: a Series of "A".."E" (object dtype), None where the score is NaN."""
    values = pd.to_numeric(scores, errors="raise").to_numpy(dtype=float)
    known = ~np.isnan(values)
    if ((values[known] < 0.0) | (values[known] > 100.0)).any():
        raise ValueError("scores must lie in [0, 100]")
    letters_low_to_high = np.array([g for g, _ in reversed(GRADE_LOWER_BOUNDS)], dtype=object)
    bounds = np.array([b for _, b in reversed(GRADE_LOWER_BOUNDS)][1:])  # 40, 60, 75, 90
    index = np.searchsorted(bounds, np.where(known, values, 0.0), side="right")
    out = np.where(known, letters_low_to_high[index], None)
    return pd.Series(out, index=scores.index, dtype=object, name="grade")


# ---------------------------------------------------------------------------------------------
# Public API: departments (专业部门)
# ---------------------------------------------------------------------------------------------


def department_counts(
    cases: pd.DataFrame,
    start: datetime | pd.Timestamp | str,
    end: datetime | pd.Timestamp | str,
    departments: Iterable[int] | None = None,
) -> pd.DataFrame:
    """Per-department base counts (基础指标) for the window [start, end), indexed by department_id.

    `cases` has one row per case with the columns of CASE_COLUMNS: department_id (the department
    the case is/was dispatched to, NaN if never), dispatched_at, disposed_at (last 处理反馈),
    closed_at, cancelled_at, bundle_deadline_at (处置 deadline with approved 延期), all tz-aware
    datetimes (NaT when not reached); rework_count and postpone_count (int); suspended (bool,
    currently 挂账/缓办). `start` and `end` must be tz-aware; everything is compared in UTC.

    A case belongs to the window when dispatched_at ∈ [start, end). Each event counts when it
    happened before `end`. Columns (int64):

    * cases 立案数: cases dispatched to the department in the window.
    * cancelled 作废数: of those, cancelled before end.
    * suspended 缓办数: of those, not cancelled and currently 挂账/缓办.
    * to_dispose 应处置数 = cases − cancelled − suspended. Following 金华, 缓办 cases are removed
      from the denominators; every count below is taken over these cases only.
    * disposed 处置数: disposed_at < end.
    * disposed_on_time 按期处置数: disposed and disposed_at ≤ bundle_deadline_at (a missing
      deadline is never on time).
    * to_close 应结案数: same as to_dispose.
    * closed 结案数: closed_at < end.
    * closed_on_time 按期结案数: closed and disposed on time (as egova and 运城 count it: a case
      whose disposal overran is an 超期结案).
    * reworked 返工数: disposed cases with rework_count > 0, so 返工数 ≤ 处置数.
    * rework_times 返工次数: sum of rework_count over those cases.
    * postponed 延期数: cases with postpone_count > 0.
    * overdue_open 超期待处置数: neither disposed nor closed by end, and bundle_deadline_at < end.

    `departments` (optional) lists departments to report even with no case in the window; they
    get zero counts. Raises ValueError on missing columns, naive datetimes, start ≥ end, or
    invalid counts/flags on the window's rows.
    """
    start_ts, end_ts = _window(start, end)
    _require_columns(cases, CASE_COLUMNS, "cases")

    department = cases["department_id"]
    if not pd.api.types.is_numeric_dtype(department):
        raise ValueError(f"department_id must be numeric, got dtype {department.dtype}")
    dispatched_at = _utc_times(cases, "dispatched_at")
    in_window = (department.notna() & (dispatched_at >= start_ts) & (dispatched_at < end_ts)).to_numpy(
        dtype=bool
    )
    rows = cases.loc[in_window]

    department_ids = _integer_values(rows["department_id"], "department_id")
    disposed_at = _utc_times(rows, "disposed_at")
    closed_at = _utc_times(rows, "closed_at")
    cancelled_at = _utc_times(rows, "cancelled_at")
    deadline_at = _utc_times(rows, "bundle_deadline_at")
    rework_count = _integer_values(rows["rework_count"], "rework_count")
    postpone_count = _integer_values(rows["postpone_count"], "postpone_count")
    suspended_now = _bool_values(rows["suspended"], "suspended")

    cancelled = (cancelled_at < end_ts).to_numpy(dtype=bool)
    suspended = ~cancelled & suspended_now
    evaluated = ~cancelled & ~suspended_now
    disposed_before_end = (disposed_at < end_ts).to_numpy(dtype=bool)
    disposed = evaluated & disposed_before_end
    disposed_on_time = disposed & (disposed_at <= deadline_at).to_numpy(dtype=bool)
    closed = evaluated & (closed_at < end_ts).to_numpy(dtype=bool)
    reworked = disposed & (rework_count > 0)
    overdue_open = evaluated & ~disposed & ~closed & (deadline_at < end_ts).to_numpy(dtype=bool)

    columns: dict[str, np.ndarray] = {
        "cases": np.ones(len(rows), dtype=np.int64),
        "cancelled": cancelled,
        "suspended": suspended,
        "to_dispose": evaluated,
        "disposed": disposed,
        "disposed_on_time": disposed_on_time,
        "to_close": evaluated,
        "closed": closed,
        "closed_on_time": closed & disposed_on_time,
        "reworked": reworked,
        "rework_times": np.where(reworked, rework_count, 0),
        "postponed": evaluated & (postpone_count > 0),
        "overdue_open": overdue_open,
    }

    try:
        wanted = np.unique(np.asarray(list(departments) if departments is not None else [], dtype=np.int64))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"departments must be integer ids: {exc}") from exc
    all_ids, codes = np.unique(np.concatenate([department_ids, wanted]), return_inverse=True)
    codes = codes[: len(department_ids)]
    counts = {
        name: np.bincount(codes, weights=values.astype(np.int64), minlength=len(all_ids)).astype(np.int64)
        for name, values in columns.items()
    }
    index = pd.Index(all_ids.astype(np.int64), name="department_id")
    return pd.DataFrame(counts, index=index, columns=list(COUNT_COLUMNS))


def department_scores(counts: pd.DataFrame) -> pd.DataFrame:
    """专业部门 综合指标值 from `department_counts` output (a copy with new columns added).

    Needs the columns cases, to_dispose, disposed, disposed_on_time, to_close, closed, reworked.
    Adds:

    * close_rate 结案率 = closed / to_close
    * on_time_dispose_rate 按期处置率 = disposed_on_time / to_dispose
    * rework_rate 返工率 = reworked / disposed (the reference notes cities differ; 处置数 is used,
      as in the Unicom platform). With nothing disposed there was no rework: rate 0.
    * cases_score 立案数分值 (DEPARTMENT_CASE_BANDS), close_score, on_time_dispose_score,
      rework_score = (1 − rework_rate) × 100
    * score 综合指标值 (DEPARTMENT_WEIGHTS, rounded to 2 decimals at the end), grade, rank
      (1 = best, ties share the lowest rank).

    A department with nothing to dispose or nothing to close (to_dispose or to_close is 0) cannot
    be rated: its rates, rate sub-scores and score are NaN, its grade None, and it ranks after
    every rated department. Raises ValueError on missing columns, negative or fractional counts,
    or a numerator above its denominator.
    """
    needed = ("cases", "to_dispose", "disposed", "disposed_on_time", "to_close", "closed", "reworked")
    _require_columns(counts, needed, "counts")
    c = {name: _count_series(counts, name) for name in needed}
    _not_above(c["disposed"], c["to_dispose"], "disposed", "to_dispose")

    rated = (c["to_dispose"] > 0) & (c["to_close"] > 0)
    close_rate = _rate(c["closed"], c["to_close"], "closed", "to_close").where(rated)
    on_time_rate = _rate(c["disposed_on_time"], c["to_dispose"], "disposed_on_time", "to_dispose").where(rated)
    rework_rate = _rate(c["reworked"], c["disposed"], "reworked", "disposed").fillna(0.0).where(rated)

    out = counts.copy()
    out["close_rate"] = close_rate
    out["on_time_dispose_rate"] = on_time_rate
    out["rework_rate"] = rework_rate
    out["cases_score"] = _banded(c["cases"], DEPARTMENT_CASE_BANDS, DEPARTMENT_CASE_ABOVE)
    out["close_score"] = close_rate * 100.0
    out["on_time_dispose_score"] = on_time_rate * 100.0
    out["rework_score"] = (1.0 - rework_rate) * 100.0
    return _finish(out, DEPARTMENT_WEIGHTS)


def evaluate_departments(
    cases: pd.DataFrame,
    start: datetime | pd.Timestamp | str,
    end: datetime | pd.Timestamp | str,
    departments: Iterable[int] | None = None,
) -> pd.DataFrame:
    """专业部门 综合评价 for [start, end): `department_scores(department_counts(...))`."""
    return department_scores(department_counts(cases, start, end, departments))


# ---------------------------------------------------------------------------------------------
# Public API: people and regions (one row per person or region; index kept)
# ---------------------------------------------------------------------------------------------


def inspector_scores(counts: pd.DataFrame) -> pd.DataFrame:
    """监督员 综合指标值 = 有效上报率×40% + 漏报率分值×20% + 按时核实率×20% + 按时核查率×20%.

    Columns: reported 上报数, valid_reported 有效上报数, missed 漏报数, filed 立案数 (the 漏报率
    denominator), to_verify 应核实数, verified_on_time 按时核实数, to_check 应核查数,
    checked_on_time 按时核查数.

    Adds valid_report_rate, missed_rate, on_time_verify_rate, on_time_check_rate, their scores
    (missed_score = (1 − 漏报率) × 100), score, grade, rank. A zero denominator makes that rate
    and the row's score NaN (grade None, ranked last).
    """
    cols = (
        "reported", "valid_reported", "missed", "filed",
        "to_verify", "verified_on_time", "to_check", "checked_on_time",
    )
    _require_columns(counts, cols, "inspector counts")
    c = {name: _count_series(counts, name) for name in cols}
    out = counts.copy()
    out["valid_report_rate"] = _rate(c["valid_reported"], c["reported"], "valid_reported", "reported")
    out["missed_rate"] = _rate(c["missed"], c["filed"], "missed", "filed")
    out["on_time_verify_rate"] = _rate(c["verified_on_time"], c["to_verify"], "verified_on_time", "to_verify")
    out["on_time_check_rate"] = _rate(c["checked_on_time"], c["to_check"], "checked_on_time", "to_check")
    out["valid_report_score"] = out["valid_report_rate"] * 100.0
    out["missed_score"] = (1.0 - out["missed_rate"]) * 100.0
    out["on_time_verify_score"] = out["on_time_verify_rate"] * 100.0
    out["on_time_check_score"] = out["on_time_check_rate"] * 100.0
    return _finish(out, INSPECTOR_WEIGHTS)


def operator_scores(counts: pd.DataFrame) -> pd.DataFrame:
    """受理员 综合指标值 = 受理数分值×25% + 核实按时派发率×40% + 核查按时派发率×35%.

    Columns: accepted 受理数, to_send_verify 应发核实数, verify_sent_on_time 按时发核实数,
    to_send_check 应发核查数, check_sent_on_time 按时发核查数.

    Adds verify_send_on_time_rate, check_send_on_time_rate, accepted_score (VOLUME_BANDS), the
    rate scores, score, grade, rank. A zero denominator makes the score NaN (grade None, last).
    """
    cols = ("accepted", "to_send_verify", "verify_sent_on_time", "to_send_check", "check_sent_on_time")
    _require_columns(counts, cols, "operator counts")
    c = {name: _count_series(counts, name) for name in cols}
    out = counts.copy()
    out["verify_send_on_time_rate"] = _rate(
        c["verify_sent_on_time"], c["to_send_verify"], "verify_sent_on_time", "to_send_verify"
    )
    out["check_send_on_time_rate"] = _rate(
        c["check_sent_on_time"], c["to_send_check"], "check_sent_on_time", "to_send_check"
    )
    out["accepted_score"] = _banded(c["accepted"], VOLUME_BANDS, VOLUME_ABOVE)
    out["verify_send_on_time_score"] = out["verify_send_on_time_rate"] * 100.0
    out["check_send_on_time_score"] = out["check_send_on_time_rate"] * 100.0
    return _finish(out, OPERATOR_WEIGHTS)


def supervisor_scores(counts: pd.DataFrame) -> pd.DataFrame:
    """值班长 综合指标值 = 按时立案率×25% + 准确立案率×40% + 按时结案率×35%.

    The 25% term is 按时立案率 (the Unicom SQL wrongly reuses 按时结案率 there).

    Columns: filed 立案数, filed_on_time 按时立案数, cancelled 作废数, to_close 应结案数,
    closed_on_time 按期结案数.

    Adds on_time_file_rate = filed_on_time / filed, accurate_file_rate = (filed − cancelled) /
    filed, on_time_close_rate = closed_on_time / to_close, their scores, score, grade, rank.
    A zero denominator makes the score NaN (grade None, last).
    """
    cols = ("filed", "filed_on_time", "cancelled", "to_close", "closed_on_time")
    _require_columns(counts, cols, "supervisor counts")
    c = {name: _count_series(counts, name) for name in cols}
    _not_above(c["cancelled"], c["filed"], "cancelled", "filed")
    out = counts.copy()
    out["on_time_file_rate"] = _rate(c["filed_on_time"], c["filed"], "filed_on_time", "filed")
    out["accurate_file_rate"] = _rate(c["filed"] - c["cancelled"], c["filed"], "filed - cancelled", "filed")
    out["on_time_close_rate"] = _rate(c["closed_on_time"], c["to_close"], "closed_on_time", "to_close")
    out["on_time_file_score"] = out["on_time_file_rate"] * 100.0
    out["accurate_file_score"] = out["accurate_file_rate"] * 100.0
    out["on_time_close_score"] = out["on_time_close_rate"] * 100.0
    return _finish(out, SUPERVISOR_WEIGHTS)


def dispatcher_scores(counts: pd.DataFrame) -> pd.DataFrame:
    """派遣员 综合指标值 = 派遣数分值×20% + 按时派遣率×40% + 准确派遣率×40%.

    派遣数分值 is the banded score of the count (VOLUME_BANDS), not 0.2 × the raw count.

    Columns: dispatched 派遣数, to_dispatch 应派遣数, dispatched_on_time 按时派遣数,
    reworked 返工数.

    Adds on_time_dispatch_rate = dispatched_on_time / to_dispatch, accurate_dispatch_rate =
    (dispatched − reworked) / to_dispatch, dispatched_score, the rate scores, score, grade, rank.
    A zero denominator makes the score NaN (grade None, last).
    """
    cols = ("dispatched", "to_dispatch", "dispatched_on_time", "reworked")
    _require_columns(counts, cols, "dispatcher counts")
    c = {name: _count_series(counts, name) for name in cols}
    _not_above(c["reworked"], c["dispatched"], "reworked", "dispatched")
    out = counts.copy()
    out["on_time_dispatch_rate"] = _rate(
        c["dispatched_on_time"], c["to_dispatch"], "dispatched_on_time", "to_dispatch"
    )
    out["accurate_dispatch_rate"] = _rate(
        c["dispatched"] - c["reworked"], c["to_dispatch"], "dispatched - reworked", "to_dispatch"
    )
    out["dispatched_score"] = _banded(c["dispatched"], VOLUME_BANDS, VOLUME_ABOVE)
    out["on_time_dispatch_score"] = out["on_time_dispatch_rate"] * 100.0
    out["accurate_dispatch_score"] = out["accurate_dispatch_rate"] * 100.0
    return _finish(out, DISPATCHER_WEIGHTS)


def region_scores(counts: pd.DataFrame) -> pd.DataFrame:
    """区域 (单元网格/社区/街道) 综合指标值 = 监督举报率×10% + 立案数分值×20% + 结案率×30% + 按期结案率×40%.

    Every rate scores rate × 100 (the shipped code used 100 − rate, inverting it), and the last
    weight is 40% so the weights sum to 100% (REGION_WEIGHTS).

    Columns: region_class (1 = 一类区域, 2 = 二类区域), public_verified 监督举报核实数,
    filed 立案数, to_close 应结案数, closed 结案数, closed_on_time 按期结案数.

    Adds public_report_rate 监督举报率 = public_verified / filed, close_rate = closed / to_close,
    on_time_close_rate = closed_on_time / to_close, filed_score (REGION_FILED_BANDS of the
    row's class), the rate scores, score, grade, rank. A region with no case filed or none to
    close has an undefined rate, so its score is NaN (grade None, last).
    """
    cols = ("region_class", "public_verified", "filed", "to_close", "closed", "closed_on_time")
    _require_columns(counts, cols, "region counts")
    c = {name: _count_series(counts, name) for name in cols}
    region_class = c["region_class"]
    unknown = ~region_class.isin(list(REGION_FILED_BANDS))
    if unknown.any():
        bad = sorted(set(region_class[unknown].tolist()))
        raise ValueError(f"region_class must be 1 (一类) or 2 (二类), got {bad}")
    out = counts.copy()
    out["public_report_rate"] = _rate(c["public_verified"], c["filed"], "public_verified", "filed")
    out["close_rate"] = _rate(c["closed"], c["to_close"], "closed", "to_close")
    out["on_time_close_rate"] = _rate(c["closed_on_time"], c["to_close"], "closed_on_time", "to_close")
    filed_score = pd.Series(np.nan, index=counts.index)
    for region_type, bands in REGION_FILED_BANDS.items():
        filed_score = filed_score.mask(region_class == region_type, _banded(c["filed"], bands, REGION_FILED_ABOVE))
    out["filed_score"] = filed_score
    out["public_report_score"] = out["public_report_rate"] * 100.0
    out["close_score"] = out["close_rate"] * 100.0
    out["on_time_close_score"] = out["on_time_close_rate"] * 100.0
    return _finish(out, REGION_WEIGHTS)


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _finish(out: pd.DataFrame, weights: Mapping[str, int]) -> pd.DataFrame:
    """Add score (weighted sum, rounded once), grade and rank (NaN scores last)."""
    raw = sum(out[name] * weight for name, weight in weights.items()) / 100.0
    score = pd.Series(raw, index=out.index, dtype=float).round(2)
    out["score"] = score
    out["grade"] = grades(score)
    ranks = score.rank(method="min", ascending=False, na_option="bottom")
    out["rank"] = ranks.astype(np.int64)
    return out


def _banded(values: pd.Series, bands: tuple[tuple[int, int], ...], above: int) -> pd.Series:
    """Score of each count by bands of (highest count in band, score); `above` past the last."""
    uppers = np.array([upper for upper, _ in bands], dtype=float)
    scores = np.array([score for _, score in bands] + [above], dtype=float)
    index = np.searchsorted(uppers, values.to_numpy(dtype=float), side="left")
    return pd.Series(scores[index], index=values.index)


def _rate(numerator: pd.Series, denominator: pd.Series, num_name: str, den_name: str) -> pd.Series:
    """numerator / denominator, NaN where the denominator is 0; numerator must not exceed it."""
    _not_above(numerator, denominator, num_name, den_name)
    return numerator.astype(float) / denominator.where(denominator > 0).astype(float)


def _not_above(numerator: pd.Series, denominator: pd.Series, num_name: str, den_name: str) -> None:
    bad = numerator > denominator
    if bad.any():
        rows = bad[bad].index.tolist()[:5]
        raise ValueError(f"{num_name} exceeds {den_name} for rows {rows}")


def _count_series(frame: pd.DataFrame, name: str) -> pd.Series:
    """A count column as int64: numeric, no missing value, non-negative, whole numbers."""
    column = frame[name]
    return pd.Series(_integer_values(column, name), index=frame.index, name=name)


def _integer_values(column: pd.Series, name: str) -> np.ndarray:
    if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        raise ValueError(f"{name} must be numeric, got dtype {column.dtype}")
    if column.isna().any():
        raise ValueError(f"{name} has missing values")
    values = column.to_numpy(dtype=float)
    if (values < 0).any():
        raise ValueError(f"{name} must not be negative")
    if (values != np.floor(values)).any():
        raise ValueError(f"{name} must hold whole numbers")
    return values.astype(np.int64)


def _bool_values(column: pd.Series, name: str) -> np.ndarray:
    if not pd.api.types.is_bool_dtype(column):
        raise ValueError(f"{name} must be boolean, got dtype {column.dtype}")
    if column.isna().any():
        raise ValueError(f"{name} has missing values")
    return column.to_numpy(dtype=bool)


def _utc_times(frame: pd.DataFrame, name: str) -> pd.Series:
    """A time column as tz-aware UTC; an all-missing column of any dtype is accepted as all NaT."""
    column = frame[name]
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        return column.dt.tz_convert("UTC")
    if column.isna().all():
        return pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns, UTC]")
    raise ValueError(f"{name} must hold tz-aware datetimes, got dtype {column.dtype}")


def _window(start: Any, end: Any) -> tuple[pd.Timestamp, pd.Timestamp]:
    try:
        start_ts, end_ts = pd.Timestamp(start), pd.Timestamp(end)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"start and end must be datetimes: {exc}") from exc
    if start_ts is pd.NaT or end_ts is pd.NaT:
        raise ValueError("start and end must not be missing")
    if start_ts.tzinfo is None or end_ts.tzinfo is None:
        raise ValueError("start and end must be tz-aware")
    start_ts, end_ts = start_ts.tz_convert("UTC"), end_ts.tz_convert("UTC")
    if start_ts >= end_ts:
        raise ValueError(f"start {start_ts} must be before end {end_ts}")
    return start_ts, end_ts


def _require_columns(frame: Any, columns: Iterable[str], what: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"{what} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks columns {missing}")
