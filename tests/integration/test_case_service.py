"""The case service against the real databases (SQLite file and PostgreSQL) and the real Redis."""
from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import delete, select, update

from backend import bus
from backend.services import audit, cases, errors
from backend.store import models as m
from tests.conftest import actor, new_case

# Wednesday 2026-11-25 09:00 Asia/Shanghai: inside working hours, no holiday nearby.
T0 = datetime(2026, 11, 25, 1, 0, tzinfo=timezone.utc)


def walk_to_handling(at=T0) -> tuple[dict, str]:
    c = new_case(at=at)
    cases.apply(c["id"], "register", actor("supervisor"), at=at + timedelta(minutes=5))
    c = cases.apply(c["id"], "dispatch", actor("dispatcher"), {"department_id": _dept("sanitation")},
                    at=at + timedelta(minutes=10))
    c = cases.apply(c["id"], "accept", actor("department", "sanitation"), at=at + timedelta(minutes=20))
    return c, "sanitation"


def _dept(code: str) -> int:
    from backend.services.context import current

    return next(d["id"] for d in current().departments.values() if d["code"] == code)


def test_create_answers_number_grid_status_and_first_deadline(store):
    c = new_case(at=T0)
    assert c["id"] > 0
    assert c["case_number"] == "E0102202611250001"
    assert c["grid_code"] == "110101001001006"
    assert c["status"] == "to_register"
    # 立案 of E0102 (暴露垃圾): the register stage's limit counted in working time from 09:00 local
    assert c["stage"] == "register" and c["deadline_at"] > "2026-11-25T01:00:00Z"
    assert c["suggested_department_id"] == _dept("sanitation")


def test_full_loop_to_close_with_timeline_and_on_time(store):
    c, dept = walk_to_handling()
    c = cases.apply(c["id"], "feedback", actor("department", dept), {"note": "已清理", "photos": ["p/1.jpg"]},
                    at=T0 + timedelta(hours=1))
    assert c["status"] == "checking" and c["stage"] == "check"
    c = cases.apply(c["id"], "check", actor("inspector"), {"passed": True}, at=T0 + timedelta(hours=1, minutes=30))
    c = cases.apply(c["id"], "close", actor("supervisor"), at=T0 + timedelta(hours=2))
    assert c["status"] == "closed" and c["on_time"] is True and c["close_type"] == "normal"
    assert c["deadline_at"] is None
    full = cases.get(c["id"], actor("supervisor"))
    assert [e["action"] for e in full["timeline"]] == ["create", "register", "dispatch", "accept", "feedback",
                                                        "check", "close"]
    assert full["timeline"][4]["payload"]["photos"] == ["p/1.jpg"]
    assert full["allowed_actions"] == []
    assert audit.verify().ok


def test_wrong_state_is_409_with_the_allowed_actions(store):
    c = new_case(at=T0)
    with pytest.raises(errors.Conflict) as exc:
        cases.apply(c["id"], "close", actor("supervisor"))
    assert exc.value.status == 409
    assert "register" in exc.value.details["allowed"]
    assert cases.get(c["id"])["status"] == "to_register"


def test_department_cannot_touch_another_departments_case(store):
    c, _ = walk_to_handling()
    with pytest.raises(errors.Forbidden):
        cases.apply(c["id"], "feedback", actor("department", "roads"), {"note": "x"})
    with pytest.raises(errors.NotFound):
        cases.get(c["id"], actor("department", "roads"))
    listed = cases.list_cases({}, actor("department", "roads"))
    assert listed["total"] == 0
    assert cases.list_cases({}, actor("department", "sanitation"))["total"] == 1


def test_postpone_moves_the_bundle_deadline_twice_then_refuses(store):
    c, dept = walk_to_handling()
    first = c["bundle_deadline_at"]
    cases.apply(c["id"], "postpone", actor("department", dept), {"reason": "需要调度车辆", "hours": 2},
                at=T0 + timedelta(minutes=30))
    c = cases.apply(c["id"], "approve_postpone", actor("dispatcher"), at=T0 + timedelta(minutes=40))
    assert c["bundle_deadline_at"] > first and c["postpone_count"] == 1 and c["deadline_at"] == c["bundle_deadline_at"]
    second = c["bundle_deadline_at"]
    cases.apply(c["id"], "postpone", actor("department", dept), {"reason": "再延期"}, at=T0 + timedelta(minutes=50))
    c = cases.apply(c["id"], "approve_postpone", actor("supervisor"), at=T0 + timedelta(minutes=55))
    assert c["bundle_deadline_at"] > second and c["postpone_count"] == 2
    with pytest.raises(errors.Conflict):
        cases.apply(c["id"], "postpone", actor("department", dept), {"reason": "第三次"})


def test_suspend_stops_the_clock_and_resume_moves_the_deadline(store):
    c, dept = walk_to_handling()
    bundle = datetime.fromisoformat(c["bundle_deadline_at"].replace("Z", "+00:00"))
    cases.apply(c["id"], "suspend", actor("department", dept), {"reason": "季节性施工"}, at=T0 + timedelta(minutes=30))
    c = cases.apply(c["id"], "approve_suspend", actor("dispatcher"), at=T0 + timedelta(minutes=30))
    assert c["status"] == "suspended" and c["deadline_at"] is None
    # nothing is due while suspended, however late it gets
    assert c["id"] not in cases.due_cases(T0 + timedelta(days=30))["overdue"]
    # resumed one working day later (Thursday 09:30 local): the deadline moves by one working day
    c = cases.apply(c["id"], "resume", actor("dispatcher"), at=T0 + timedelta(days=1, minutes=30))
    assert c["status"] == "handling"
    moved = datetime.fromisoformat(c["bundle_deadline_at"].replace("Z", "+00:00"))
    assert moved - bundle == timedelta(days=1)


def test_failed_check_reworks_to_the_same_department_and_counts(store):
    c, dept = walk_to_handling()
    cases.apply(c["id"], "feedback", actor("department", dept), {"note": "已处理"}, at=T0 + timedelta(hours=1))
    c = cases.apply(c["id"], "check", actor("inspector"), {"passed": False, "reason": "现场仍有垃圾"},
                    at=T0 + timedelta(hours=2))
    assert c["status"] == "dispatched" and c["rework_count"] == 1 and c["department_id"] == _dept(dept)


def test_return_goes_back_to_the_dispatcher(store):
    c, dept = walk_to_handling()
    cases.apply(c["id"], "return", actor("department", dept), {"reason": "不属于本部门职责"})
    c = cases.apply(c["id"], "approve_return", actor("dispatcher"))
    assert c["status"] == "registered" and c["department_id"] is None and c["return_count"] == 1
    assert c["stage"] == "dispatch"


def test_overdue_is_marked_once_and_supervised_automatically(store):
    c, _ = walk_to_handling()
    late = datetime.fromisoformat(c["bundle_deadline_at"].replace("Z", "+00:00")) + timedelta(minutes=1)
    assert c["id"] in cases.due_cases(late)["overdue"]
    assert cases.sla_tick(late) >= 1
    c = cases.get(c["id"])
    assert c["sla_state"] == 2 and c["supervise_count"] == 1 and c["overdue"] is True
    actions = [e["action"] for e in c["timeline"]]
    assert actions[-2:] == ["overdue", "supervise"]
    assert cases.sla_tick(late + timedelta(minutes=1)) == 0  # marked once only
    assert c["id"] not in cases.due_cases(late)["overdue"]


def test_warning_at_eighty_percent(store):
    c, _ = walk_to_handling()
    start = datetime.fromisoformat(c["stage_started_at"].replace("Z", "+00:00"))
    warn = datetime.fromisoformat(c["warn_at"].replace("Z", "+00:00"))
    deadline = datetime.fromisoformat(c["deadline_at"].replace("Z", "+00:00"))
    assert start < warn < deadline
    assert cases.due_cases(warn - timedelta(seconds=1))["warning"] == []
    assert cases.due_cases(warn)["warning"] == [c["id"]]


def test_case_numbers_are_unique_under_concurrency(store):
    results: list[str] = []
    failures: list[BaseException] = []

    def work():
        try:
            for _ in range(15):
                results.append(new_case(at=T0)["case_number"])
        except BaseException as exc:  # collected, asserted below
            failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    assert len(results) == 90 and len(set(results)) == 90
    assert sorted(results)[-1] == "E0102202611250090"
    assert audit.verify().ok


def test_audit_chain_detects_an_edit_and_a_deletion(store):
    for _ in range(3):
        walk_to_handling()
    assert audit.verify().ok
    ev = m.Event.__table__
    with store.engine.begin() as conn:
        target, original = conn.execute(select(ev.c.id, ev.c.actor).order_by(ev.c.id).offset(4).limit(1)).one()
        conn.execute(update(ev).where(ev.c.id == target).values(actor="someone_else"))
    result = audit.verify()
    assert not result.ok and result.broken_event_id == target
    with store.engine.begin() as conn:  # restore the actor, then delete a row instead
        conn.execute(update(ev).where(ev.c.id == target).values(actor=original))
    assert audit.verify().ok
    with store.engine.begin() as conn:
        conn.execute(delete(ev).where(ev.c.id == target))
    result = audit.verify()
    assert not result.ok and result.broken_event_id == target + 1


def test_every_change_is_on_the_stream_in_order(store):
    c, _ = walk_to_handling()
    store.outbox.flush()
    events = bus.read_events(store.redis)
    assert [e["action"] for _, e in events] == ["create", "register", "dispatch", "accept"]
    assert [sid for sid, _ in events] == [f"{e['event_id']}-1" for _, e in events]
    last = events[-1][1]
    assert last["type"] == "case.accept" and last["case"]["status"] == "handling"
    assert last["case_id"] == c["id"] and last["case"]["lat"] == c["lat"]
    assert store.outbox.pending() == 0
    # a second flush sends nothing again
    store.outbox.flush()
    assert len(bus.read_events(store.redis)) == 4


def test_list_filters_and_pagination(store):
    for i in range(5):
        new_case(at=T0 + timedelta(minutes=i))
    new_case(class_code="E0505", at=T0)
    assert cases.list_cases({"class_code": "E0505"})["total"] == 1
    assert cases.list_cases({"class_code": "E05"})["total"] == 1
    assert cases.list_cases({"status": "to_register"})["total"] == 6
    page = cases.list_cases({"per_page": "2", "page": "2", "sort": "created_at"})
    assert page["total"] == 6 and len(page["items"]) == 2
    assert cases.list_cases({"from": "2026-11-25T09:02:00+08:00"})["total"] == 3
    with pytest.raises(errors.BadInput):
        cases.list_cases({"status": "nonsense"})
    with pytest.raises(errors.BadInput):
        cases.list_cases({"colour": "red"})


def test_bad_reports_change_nothing(store):
    def count():
        with store.engine.connect() as conn:
            return (conn.execute(select(m.Case.id)).all().__len__(), conn.execute(select(m.Event.id)).all().__len__())

    before = count()
    bad = [
        {"class_code": "E9999", "lat": 39.89, "lon": 116.41, "description": "x", "source": "inspector"},
        {"class_code": "E0102", "lat": 31.23, "lon": 121.47, "description": "x", "source": "inspector"},
        {"class_code": "E0102", "lat": "north", "lon": 116.41, "description": "x", "source": "inspector"},
        {"class_code": "E0102", "lat": 39.89, "lon": 116.41, "description": "", "source": "inspector"},
        {"class_code": "E0102", "lat": 39.89, "lon": 116.41, "description": "x", "source": "pigeon"},
        {"lat": 39.89, "lon": 116.41, "description": "x", "source": "inspector"},
    ]
    for data in bad:
        with pytest.raises(errors.BadInput):
            cases.create(data, actor("inspector"))
    with pytest.raises(errors.Forbidden):
        cases.create({"class_code": "E0102", "lat": 39.89, "lon": 116.41, "description": "x",
                      "source": "inspector"}, actor("department", "roads"))
    assert count() == before
