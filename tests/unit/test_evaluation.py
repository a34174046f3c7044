"""Tests for backend.domain.evaluation (综合评价)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from backend.domain.evaluation import (
    COUNT_COLUMNS,
    DEPARTMENT_WEIGHTS,
    DISPATCHER_WEIGHTS,
    GRADE_COLOURS,
    INSPECTOR_WEIGHTS,
    OPERATOR_WEIGHTS,
    REGION_WEIGHTS,
    SUPERVISOR_WEIGHTS,
    department_counts,
    department_scores,
    dispatcher_scores,
    evaluate_departments,
    grade,
    grades,
    inspector_scores,
    operator_scores,
    region_scores,
    supervisor_scores,
)

START = pd.Timestamp("2024-03-01", tz="UTC")
END = pd.Timestamp("2024-04-01", tz="UTC")
TIME_COLUMNS = ("dispatched_at", "disposed_at", "closed_at", "cancelled_at", "bundle_deadline_at")


def t(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def make_cases(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """A cases frame; omitted times are NaT, counts 0, suspended False."""
    full = []
    for row in rows:
        item: dict[str, Any] = {name: pd.NaT for name in TIME_COLUMNS}
        item.update(department_id=np.nan, rework_count=0, postpone_count=0, suspended=False)
        item.update(row)
        full.append(item)
    frame = pd.DataFrame(full)
    for name in TIME_COLUMNS:
        frame[name] = pd.to_datetime(frame[name], utc=True)
    frame["department_id"] = frame["department_id"].astype(float)
    frame["suspended"] = frame["suspended"].astype(bool)
    return frame


def one_department(**counts: int) -> pd.DataFrame:
    """A counts frame for department 1 with everything disposed and closed on time by default."""
    base = dict(cases=10, to_dispose=10, disposed=10, disposed_on_time=10, to_close=10, closed=10, reworked=0)
    base.update(counts)
    return pd.DataFrame([base], index=pd.Index([1], name="department_id"))


# -------------------------------------------------------------------------------------------
# Department counts and scores: a hand-computed month
# -------------------------------------------------------------------------------------------

HAND_CASES = [
    # Department 1
    # a: dispatched exactly at start (in), disposed before its deadline, closed.
    dict(department_id=1, dispatched_at=t("2024-03-01"), bundle_deadline_at=t("2024-03-03"),
         disposed_at=t("2024-03-02"), closed_at=t("2024-03-04")),
    # b: disposed a day late, closed, reworked twice.
    dict(department_id=1, dispatched_at=t("2024-03-05"), bundle_deadline_at=t("2024-03-06"),
         disposed_at=t("2024-03-07"), closed_at=t("2024-03-08"), rework_count=2),
    # c: never disposed, deadline passed before end, postponed once.
    dict(department_id=1, dispatched_at=t("2024-03-10"), bundle_deadline_at=t("2024-03-12"), postpone_count=1),
    # d: cancelled (作废).
    dict(department_id=1, dispatched_at=t("2024-03-11"), cancelled_at=t("2024-03-12")),
    # e: suspended (挂账/缓办), removed from the denominators.
    dict(department_id=1, dispatched_at=t("2024-03-12"), bundle_deadline_at=t("2024-03-13"), suspended=True),
    # f, g: outside the window (dispatched at end; a minute before start).
    dict(department_id=1, dispatched_at=t("2024-04-01"), disposed_at=t("2024-04-02")),
    dict(department_id=1, dispatched_at=t("2024-02-29 23:59"), disposed_at=t("2024-03-02")),
    # h: never dispatched to any department.
    dict(department_id=np.nan, dispatched_at=t("2024-03-15")),
    # Department 2: disposed exactly at its deadline (on time), closed.
    dict(department_id=2, dispatched_at=t("2024-03-15"), bundle_deadline_at=t("2024-03-20"),
         disposed_at=t("2024-03-20"), closed_at=t("2024-03-21")),
    # Department 3: its only case was cancelled -> nothing to dispose.
    dict(department_id=3, dispatched_at=t("2024-03-15"), cancelled_at=t("2024-03-16")),
]


def test_hand_computed_counts() -> None:
    counts = department_counts(make_cases(HAND_CASES), START, END)
    assert list(counts.columns) == list(COUNT_COLUMNS)
    assert counts.index.tolist() == [1, 2, 3]
    assert counts.loc[1].to_dict() == dict(
        cases=5,  # a b c d e
        cancelled=1,  # d
        suspended=1,  # e
        to_dispose=3,  # 5 - 1 cancelled - 1 suspended
        disposed=2,  # a b
        disposed_on_time=1,  # a
        to_close=3,
        closed=2,  # a b
        closed_on_time=1,  # a (b's disposal overran)
        reworked=1,  # b
        rework_times=2,  # b twice
        postponed=1,  # c
        overdue_open=1,  # c
    )
    assert counts.loc[2, "disposed_on_time"] == 1
    assert counts.loc[3, ["cases", "cancelled", "to_dispose"]].tolist() == [1, 1, 0]


def test_hand_computed_scores() -> None:
    result = evaluate_departments(make_cases(HAND_CASES), START, END)
    d1 = result.loc[1]
    # 结案率 2/3, 按期处置率 1/3, 返工率 = 返工数/处置数 = 1/2; 立案数 5 -> 100
    assert d1["close_rate"] == pytest.approx(2 / 3)
    assert d1["on_time_dispose_rate"] == pytest.approx(1 / 3)
    assert d1["rework_rate"] == pytest.approx(1 / 2)
    assert d1["cases_score"] == 100
    assert d1["rework_score"] == pytest.approx(50)
    # 100×10% + 66.67×30% + 33.33×30% + (1 − 0.5)×100×30% = 10 + 20 + 10 + 15 = 55
    assert d1["score"] == 55.0
    assert d1["grade"] == "D"
    # Department 2: 10 + 30 + 30 + 30 = 100
    assert result.loc[2, "score"] == 100.0
    assert result.loc[2, "grade"] == "A"
    assert result["rank"].to_dict() == {2: 1, 1: 2, 3: 3}


def test_sub_scores_are_not_rounded_only_the_score() -> None:
    counts = one_department(to_dispose=3, to_close=3, closed=1, disposed=3, disposed_on_time=1, reworked=1)
    row = department_scores(counts).loc[1]
    assert row["close_score"] == pytest.approx(100 / 3, rel=1e-12)
    assert row["rework_score"] == pytest.approx(200 / 3, rel=1e-12)
    # 10 + 0.3 × (100/3 + 100/3 + 200/3) = 10 + 40 = 50
    assert row["score"] == 50.0


# -------------------------------------------------------------------------------------------
# Window boundaries
# -------------------------------------------------------------------------------------------


def test_events_at_end_do_not_count() -> None:
    cases = make_cases([
        # disposed and closed exactly at end: not yet disposed/closed within the window
        dict(department_id=1, dispatched_at=t("2024-03-30"), bundle_deadline_at=t("2024-03-31"),
             disposed_at=END, closed_at=END),
        # cancelled exactly at end: not cancelled within the window
        dict(department_id=1, dispatched_at=t("2024-03-30"), bundle_deadline_at=t("2024-04-05"), cancelled_at=END),
        # deadline exactly at end, not disposed: not yet overdue
        dict(department_id=1, dispatched_at=t("2024-03-30"), bundle_deadline_at=END),
    ])
    row = department_counts(cases, START, END).loc[1]
    assert row["cases"] == 3
    assert row["cancelled"] == 0
    assert row["disposed"] == 0
    assert row["closed"] == 0
    # only the first case is past its deadline and still awaiting disposal
    assert row["overdue_open"] == 1


def test_disposal_one_microsecond_late_is_not_on_time() -> None:
    deadline = t("2024-03-10 12:00")
    cases = make_cases([
        dict(department_id=1, dispatched_at=t("2024-03-09"), bundle_deadline_at=deadline, disposed_at=deadline),
        dict(department_id=1, dispatched_at=t("2024-03-09"), bundle_deadline_at=deadline,
             disposed_at=deadline + pd.Timedelta(microseconds=1)),
    ])
    row = department_counts(cases, START, END).loc[1]
    assert (row["disposed"], row["disposed_on_time"]) == (2, 1)


def test_window_given_in_local_time() -> None:
    # 2024-03-01 00:00 in Beijing is 2024-02-29 16:00 UTC
    start = pd.Timestamp("2024-03-01", tz="Asia/Shanghai")
    end = pd.Timestamp("2024-04-01", tz="Asia/Shanghai")
    cases = make_cases([
        dict(department_id=1, dispatched_at=t("2024-02-29 16:00")),
        dict(department_id=1, dispatched_at=t("2024-02-29 15:59")),
        dict(department_id=1, dispatched_at=t("2024-03-31 16:00")),
    ])
    assert department_counts(cases, start, end).loc[1, "cases"] == 1


def test_disposed_not_on_time_without_deadline() -> None:
    cases = make_cases([dict(department_id=1, dispatched_at=t("2024-03-09"), disposed_at=t("2024-03-10"))])
    row = department_counts(cases, START, END).loc[1]
    assert (row["disposed"], row["disposed_on_time"]) == (1, 0)


# -------------------------------------------------------------------------------------------
# Zero denominators, ranks
# -------------------------------------------------------------------------------------------


def test_department_with_nothing_to_dispose_is_unrated_and_last() -> None:
    result = evaluate_departments(make_cases(HAND_CASES), START, END, departments=[1, 2, 3, 4])
    assert result.index.tolist() == [1, 2, 3, 4]
    assert result.loc[4, list(COUNT_COLUMNS)].tolist() == [0] * len(COUNT_COLUMNS)
    for dept in (3, 4):
        row = result.loc[dept]
        assert math.isnan(row["close_rate"]) and math.isnan(row["on_time_dispose_rate"])
        assert math.isnan(row["rework_rate"])
        assert math.isnan(row["score"])
        assert row["grade"] is None
        assert row["rank"] == 3  # after departments 2 (rank 1) and 1 (rank 2), tied
    assert result["rank"].dtype == np.int64


def test_nothing_disposed_gives_no_nan() -> None:
    # 2 cases to dispose, none disposed: 返工率 has nothing to divide by, counts as no rework.
    row = department_scores(one_department(cases=2, to_dispose=2, to_close=2, disposed=0, disposed_on_time=0,
                                           closed=0, reworked=0)).loc[1]
    assert row["rework_rate"] == 0.0
    # 100×10% + 0 + 0 + 100×30% = 40
    assert row["score"] == 40.0
    assert row["grade"] == "D"


def test_rated_departments_have_no_nan() -> None:
    result = department_scores(one_department(disposed=3, disposed_on_time=2, closed=2, reworked=0))
    assert not result.isna().any().any()


def test_rank_ties_share_the_best_rank() -> None:
    counts = pd.concat([
        one_department(closed=5),  # 10 + 15 + 30 + 30 = 85
        one_department(closed=5),  # 85
        one_department(),  # 100
        one_department(closed=0),  # 70
    ])
    counts.index = pd.Index([11, 12, 13, 14], name="department_id")
    result = department_scores(counts)
    assert result["score"].tolist() == [85.0, 85.0, 100.0, 70.0]
    assert result["rank"].tolist() == [2, 2, 1, 4]


# -------------------------------------------------------------------------------------------
# Bands and grades
# -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cases", "expected"),
    [(0, 100), (50, 100), (51, 90), (100, 90), (101, 75), (200, 75), (201, 60),
     (500, 60), (501, 40), (999, 40), (1000, 0), (25000, 0)],
)
def test_department_case_bands(cases: int, expected: int) -> None:
    row = department_scores(one_department(cases=cases)).loc[1]
    assert row["cases_score"] == expected
    assert row["score"] == pytest.approx(expected * 0.1 + 90)


@pytest.mark.parametrize(
    ("score", "expected"),
    [(100, "A"), (90, "A"), (89.99, "B"), (75, "B"), (74.99, "C"), (60, "C"), (59.99, "D"),
     (40, "D"), (39.99, "E"), (0, "E")],
)
def test_grade_edges(score: float, expected: str) -> None:
    assert grade(score) == expected
    assert grades(pd.Series([score])).tolist() == [expected]


def test_grade_of_missing_score_and_bad_input() -> None:
    assert grade(float("nan")) is None
    assert grade(None) is None
    assert grades(pd.Series([np.nan, 95.0])).tolist() == [None, "A"]
    for bad in (100.01, -0.01):
        with pytest.raises(ValueError, match=r"\[0, 100\]"):
            grade(bad)
    with pytest.raises(ValueError, match="number"):
        grade("A")  # type: ignore[arg-type]


def test_grade_colours() -> None:
    assert GRADE_COLOURS == {"A": "green", "B": "blue", "C": "yellow", "D": "red", "E": "black"}


def test_all_weight_sets_sum_to_100() -> None:
    for weights in (DEPARTMENT_WEIGHTS, INSPECTOR_WEIGHTS, OPERATOR_WEIGHTS, SUPERVISOR_WEIGHTS,
                    DISPATCHER_WEIGHTS, REGION_WEIGHTS):
        assert sum(weights.values()) == 100


# -------------------------------------------------------------------------------------------
# People and regions, each with a test that the known buggy version would fail
# -------------------------------------------------------------------------------------------


def test_inspector_uses_one_minus_missed_rate() -> None:
    counts = pd.DataFrame([dict(reported=200, valid_reported=180, filed=100, missed=25, to_verify=50,
                                verified_on_time=45, to_check=40, checked_on_time=30)], index=["w01"])
    row = inspector_scores(counts).loc["w01"]
    assert row["missed_rate"] == 0.25
    assert row["missed_score"] == 75.0
    # 90×40% + (1 − 0.25)×100×20% + 90×20% + 75×20% = 36 + 15 + 18 + 15 = 84
    # (the buggy version weights the raw rate: 36 + 25×0.2 + 18 + 15 = 74)
    assert row["score"] == 84.0
    assert row["grade"] == "B"


def test_operator_hand_computed() -> None:
    counts = pd.DataFrame([dict(accepted=600, to_send_verify=200, verify_sent_on_time=180,
                                to_send_check=100, check_sent_on_time=80)])
    row = operator_scores(counts).iloc[0]
    # 受理数 600 -> 75; 75×25% + 90×40% + 80×35% = 18.75 + 36 + 28 = 82.75
    assert row["accepted_score"] == 75
    assert row["score"] == 82.75


@pytest.mark.parametrize(
    ("accepted", "expected"),
    [(0, 0), (100, 0), (101, 40), (300, 40), (301, 60), (500, 60), (501, 75), (1200, 75),
     (1201, 90), (2000, 90), (2001, 100)],
)
def test_operator_and_dispatcher_volume_bands(accepted: int, expected: int) -> None:
    operator = operator_scores(pd.DataFrame([dict(accepted=accepted, to_send_verify=1, verify_sent_on_time=1,
                                                  to_send_check=1, check_sent_on_time=1)]))
    assert operator.loc[0, "accepted_score"] == expected
    dispatcher = dispatcher_scores(pd.DataFrame([dict(dispatched=accepted, to_dispatch=max(accepted, 1),
                                                      dispatched_on_time=0, reworked=0)]))
    assert dispatcher.loc[0, "dispatched_score"] == expected


def test_supervisor_uses_on_time_filing_rate_for_its_25_percent() -> None:
    counts = pd.DataFrame([dict(filed=100, filed_on_time=100, cancelled=10, to_close=50, closed_on_time=25)])
    row = supervisor_scores(counts).iloc[0]
    # 按时立案率 1.0, 准确立案率 0.9, 按时结案率 0.5:
    # 100×25% + 90×40% + 50×35% = 25 + 36 + 17.5 = 78.5
    # (the buggy version uses 按时结案率 for 25%: 12.5 + 36 + 17.5 = 66)
    assert row["on_time_file_rate"] == 1.0
    assert row["accurate_file_rate"] == 0.9
    assert row["score"] == 78.5
    assert row["grade"] == "B"


def test_dispatcher_uses_banded_count_score() -> None:
    counts = pd.DataFrame([dict(dispatched=150, to_dispatch=150, dispatched_on_time=120, reworked=15)])
    row = dispatcher_scores(counts).iloc[0]
    # 派遣数 150 -> band 40; 按时派遣率 0.8; 准确派遣率 (150 − 15)/150 = 0.9
    # 40×20% + 80×40% + 90×40% = 8 + 32 + 36 = 76
    # (the buggy version adds 0.2 × 150 = 30 instead of 8: 98)
    assert row["dispatched_score"] == 40
    assert row["accurate_dispatch_rate"] == 0.9
    assert row["score"] == 76.0


def test_region_scores_good_rates_upwards_with_full_weights() -> None:
    counts = pd.DataFrame([
        dict(region_class=1, public_verified=2, filed=4, to_close=4, closed=3, closed_on_time=2),
        dict(region_class=2, public_verified=3, filed=3, to_close=3, closed=3, closed_on_time=3),
    ], index=["grid-a", "grid-b"])
    result = region_scores(counts)
    a, b = result.loc["grid-a"], result.loc["grid-b"]
    # grid-a: 监督举报率 0.5, 立案数 4 (一类 <5) -> 75, 结案率 0.75, 按期结案率 0.5
    # 50×10% + 75×20% + 75×30% + 50×40% = 5 + 15 + 22.5 + 20 = 62.5
    # (the buggy version, 100 − rate and 10% last weight: 5 + 15 + 7.5 + 5 = 32.5)
    assert a["close_score"] == 75.0
    assert a["score"] == 62.5
    # grid-b: every rate 1, 立案数 3 (二类 <4) -> 90: 10 + 18 + 30 + 40 = 98
    # (weights summing to 70% would give 68)
    assert b["score"] == 98.0
    assert result["rank"].tolist() == [2, 1]


@pytest.mark.parametrize(
    ("region_class", "filed", "expected"),
    [(1, 0, 100), (1, 1, 90), (1, 2, 90), (1, 3, 75), (1, 4, 75), (1, 5, 60), (1, 6, 60), (1, 7, 40),
     (1, 8, 40), (1, 9, 0), (2, 0, 100), (2, 3, 90), (2, 4, 75), (2, 5, 75), (2, 6, 60), (2, 7, 60),
     (2, 8, 40), (2, 9, 40), (2, 10, 0)],
)
def test_region_filed_bands(region_class: int, filed: int, expected: int) -> None:
    counts = pd.DataFrame([dict(region_class=region_class, public_verified=0, filed=filed, to_close=filed,
                                closed=0, closed_on_time=0)])
    assert region_scores(counts).loc[0, "filed_score"] == expected


def test_region_without_cases_is_unrated() -> None:
    counts = pd.DataFrame([
        dict(region_class=1, public_verified=0, filed=0, to_close=0, closed=0, closed_on_time=0),
        dict(region_class=1, public_verified=0, filed=1, to_close=1, closed=1, closed_on_time=1),
    ])
    result = region_scores(counts)
    assert math.isnan(result.loc[0, "score"]) and result.loc[0, "grade"] is None
    assert result["rank"].tolist() == [2, 1]


# -------------------------------------------------------------------------------------------
# Bad input
# -------------------------------------------------------------------------------------------


def test_bad_department_input_raises_clear_errors() -> None:
    cases = make_cases(HAND_CASES)
    with pytest.raises(ValueError, match="lacks columns"):
        department_counts(cases.drop(columns=["closed_at"]), START, END)
    with pytest.raises(ValueError, match="before end"):
        department_counts(cases, END, START)
    with pytest.raises(ValueError, match="tz-aware"):
        department_counts(cases, pd.Timestamp("2024-03-01"), END)
    naive = cases.assign(disposed_at=cases["disposed_at"].dt.tz_localize(None))
    with pytest.raises(ValueError, match="disposed_at must hold tz-aware"):
        department_counts(naive, START, END)
    negative = cases.assign(rework_count=-1)
    with pytest.raises(ValueError, match="rework_count must not be negative"):
        department_counts(negative, START, END)
    with pytest.raises(ValueError, match="suspended must be boolean"):
        department_counts(cases.assign(suspended="no"), START, END)


def test_all_missing_time_column_of_any_dtype_is_accepted() -> None:
    cases = make_cases(HAND_CASES).assign(cancelled_at=None)
    assert department_counts(cases, START, END).loc[1, "cancelled"] == 0


def test_bad_counts_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="closed exceeds to_close"):
        department_scores(one_department(closed=11))
    with pytest.raises(ValueError, match="reworked exceeds disposed"):
        department_scores(one_department(disposed=1, disposed_on_time=1, reworked=2))
    with pytest.raises(ValueError, match="whole numbers"):
        department_scores(one_department().assign(closed=2.5))
    with pytest.raises(ValueError, match="lacks columns"):
        inspector_scores(pd.DataFrame([dict(reported=1)]))
    with pytest.raises(ValueError, match="region_class"):
        region_scores(pd.DataFrame([dict(region_class=3, public_verified=0, filed=1, to_close=1, closed=1,
                                         closed_on_time=1)]))


# -------------------------------------------------------------------------------------------
# Vectorised counts equal a naive per-row recount
# -------------------------------------------------------------------------------------------


def random_cases(seed: int, n: int = 400) -> pd.DataFrame:
    """Times on a coarse grid of days around the window so that boundary ties happen often."""
    rng = np.random.default_rng(seed)
    days = pd.date_range("2024-02-27", "2024-04-04", freq="D", tz="UTC")

    def times(p_missing: float) -> pd.Series:
        picked = pd.Series(days[rng.integers(0, len(days), n)])
        return picked.where(rng.random(n) >= p_missing)

    dept = rng.integers(1, 6, n).astype(float)
    dept[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame({
        "department_id": dept,
        "dispatched_at": times(0.05),
        "disposed_at": times(0.3),
        "closed_at": times(0.4),
        "cancelled_at": times(0.85),
        "bundle_deadline_at": times(0.1),
        "rework_count": rng.choice([0, 0, 0, 1, 2], n),
        "postpone_count": rng.choice([0, 0, 1], n),
        "suspended": rng.random(n) < 0.15,
    })


def naive_counts(cases: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> dict[int, dict[str, int]]:
    def before_end(value: Any) -> bool:
        return not pd.isna(value) and value < end

    result: dict[int, dict[str, int]] = {}
    for row in cases.itertuples(index=False):
        if pd.isna(row.department_id) or pd.isna(row.dispatched_at):
            continue
        if not start <= row.dispatched_at < end:
            continue
        c = result.setdefault(int(row.department_id), dict.fromkeys(COUNT_COLUMNS, 0))
        c["cases"] += 1
        if before_end(row.cancelled_at):
            c["cancelled"] += 1
            continue
        if row.suspended:
            c["suspended"] += 1
            continue
        c["to_dispose"] += 1
        c["to_close"] += 1
        disposed = before_end(row.disposed_at)
        on_time = disposed and not pd.isna(row.bundle_deadline_at) and row.disposed_at <= row.bundle_deadline_at
        closed = before_end(row.closed_at)
        c["disposed"] += disposed
        c["disposed_on_time"] += on_time
        c["closed"] += closed
        c["closed_on_time"] += closed and on_time
        if disposed and row.rework_count > 0:
            c["reworked"] += 1
            c["rework_times"] += row.rework_count
        c["postponed"] += row.postpone_count > 0
        if not disposed and not closed and before_end(row.bundle_deadline_at):
            c["overdue_open"] += 1
    return result


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_counts_equal_naive_recount(seed: int) -> None:
    cases = random_cases(seed)
    counts = department_counts(cases, START, END)
    expected = naive_counts(cases, START, END)
    assert sorted(expected) == counts.index.tolist()
    for dept, values in expected.items():
        assert counts.loc[dept].to_dict() == values, dept
    assert counts["cases"].sum() > 100  # the frame really exercises the window
