"""Department evaluation from the store: the SQL aggregate equals the pandas counts, on both databases."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd

from backend.domain import evaluation
from backend.services import cases
from backend.services import evaluation as eval_service
from tests.conftest import actor, new_case

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)  # Monday 09:00 local


def _dept(store, code):
    return next(d["id"] for d in store.departments.values() if d["code"] == code)


def _accept(case_id: int, d, at: datetime, suspend: bool) -> None:
    """The department accepts the dispatched case; with `suspend` it then has it suspended (挂账)."""
    cases.apply(case_id, "accept", d, at=at + timedelta(minutes=5))
    if suspend:
        cases.apply(case_id, "suspend", d, {"reason": "待施工"}, at=at + timedelta(minutes=6))
        cases.apply(case_id, "approve_suspend", actor("dispatcher"), at=at + timedelta(minutes=7))


def _sql_counts_checked(start: datetime, end: datetime) -> pd.DataFrame:
    """The SQL aggregate of [start, end), once it is checked equal to the pandas counts of the same window."""
    from_sql = eval_service.department_counts_sql(start, end)
    from_pandas = evaluation.department_counts(eval_service.cases_frame(start, end), start, end)
    pd.testing.assert_frame_equal(from_sql, from_pandas[from_sql.columns], check_dtype=False)
    return from_sql


def test_sql_counts_match_the_pandas_counts(store):
    sanitation, roads = _dept(store, "sanitation"), _dept(store, "roads")
    plan = [  # (department, what happens)
        (sanitation, "close_on_time"), (sanitation, "close_late"), (sanitation, "rework_then_close"),
        (roads, "open_overdue"), (roads, "suspended"), (roads, "postponed"), (sanitation, "cancel_before"),
    ]
    for i, (dept, fate) in enumerate(plan):
        at = T0 + timedelta(hours=i)
        c = new_case(at=at)
        if fate == "cancel_before":
            cases.apply(c["id"], "cancel", actor("supervisor"), {"note": "重复上报"}, at=at)
            continue
        cases.apply(c["id"], "register", actor("supervisor"), at=at)
        c = cases.apply(c["id"], "dispatch", actor("dispatcher"), {"department_id": dept}, at=at)
        code = "sanitation" if dept == sanitation else "roads"
        d = actor("department", code)
        _accept(c["id"], d, at, suspend=fate == "suspended")
        if fate == "suspended":
            continue
        if fate == "postponed":
            cases.apply(c["id"], "postpone", d, {"reason": "材料", "hours": 4}, at=at + timedelta(minutes=6))
            cases.apply(c["id"], "approve_postpone", actor("dispatcher"), at=at + timedelta(minutes=7))
        if fate == "open_overdue" or fate == "postponed":
            continue
        late = timedelta(days=3) if fate == "close_late" else timedelta(minutes=30)
        cases.apply(c["id"], "feedback", d, {"note": "done"}, at=at + late)
        if fate == "rework_then_close":
            cases.apply(c["id"], "check", actor("inspector"), {"passed": False, "reason": "未清理干净"},
                        at=at + late + timedelta(minutes=5))
            cases.apply(c["id"], "accept", d, at=at + late + timedelta(minutes=6))
            cases.apply(c["id"], "feedback", d, {"note": "再次处理"}, at=at + late + timedelta(minutes=20))
        cases.apply(c["id"], "check", actor("inspector"), {"passed": True}, at=at + late + timedelta(minutes=30))
        cases.apply(c["id"], "close", actor("supervisor"), at=at + late + timedelta(minutes=40))
    start, end = T0 - timedelta(days=1), T0 + timedelta(days=10)
    from_sql = _sql_counts_checked(start, end)
    assert from_sql.loc[sanitation, "reworked"] == 1 and from_sql.loc[roads, "suspended"] == 1
    assert from_sql.loc[roads, "overdue_open"] == 2  # the open one and the postponed one, by T0 + 10 days
    result = eval_service.departments(start, end)
    ranked = [d for d in result["departments"] if d["cases"]]
    assert [d["department_id"] for d in ranked][:1] == [sanitation]


def test_sql_counts_match_with_the_window_ending_mid_way_and_a_department_with_only_a_suspended_case(store):
    """The window's end falls between 处置 and 结案, and one department has nothing but a 挂账 case."""
    sanitation, roads = _dept(store, "sanitation"), _dept(store, "roads")
    for i, (dept, code, fate) in enumerate([(sanitation, "sanitation", "close"), (sanitation, "sanitation", "late"),
                                           (roads, "roads", "suspended")]):
        at = T0 + timedelta(hours=i)
        c = new_case(at=at)
        cases.apply(c["id"], "register", actor("supervisor"), at=at)
        cases.apply(c["id"], "dispatch", actor("dispatcher"), {"department_id": dept}, at=at)
        d = actor("department", code)
        _accept(c["id"], d, at, suspend=fate == "suspended")
        if fate == "suspended":
            continue
        done = at + (timedelta(days=3) if fate == "late" else timedelta(minutes=30))
        cases.apply(c["id"], "feedback", d, {"note": "done"}, at=done)
        cases.apply(c["id"], "check", actor("inspector"), {"passed": True}, at=done + timedelta(hours=20))
        cases.apply(c["id"], "close", actor("supervisor"), at=done + timedelta(hours=21))
    start, end = T0 - timedelta(days=1), T0 + timedelta(hours=12)  # after the first 处置, before its 结案
    from_sql = _sql_counts_checked(start, end)
    assert from_sql.loc[sanitation, ["cases", "disposed", "closed"]].tolist() == [2, 1, 0]
    assert from_sql.loc[roads, ["cases", "suspended", "to_dispose"]].tolist() == [1, 1, 0]
