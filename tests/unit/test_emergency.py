"""Emergency command rules (应急指挥): types, levels, the state machine, areas, plans, task deadlines."""
from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta, timezone

import pytest

from backend.domain import emergency as dom
from backend.domain.catalog import default_catalog
from backend.domain.clock import default_calendar

UNIT_TYPES = {"环卫车", "洒水车", "渣土车", "执法车", "巡查车", "抢修车", "其他", "person"}


def shipped() -> dict:
    return json.loads(dom.PLANS_FILE.read_text(encoding="utf-8"))


def test_every_emergency_class_maps_to_a_type_and_others_are_refused():
    cat = default_catalog()
    e04 = [c.key for c in cat.classes if c.key.startswith("E04")]
    assert e04 and all(dom.type_for_class(k) in dom.INCIDENT_TYPES for k in e04)
    assert dom.type_for_class("E0402") == "water_main_burst" and dom.type_for_class("E0401") == "road_collapse"
    for bad in ("E0102", "C0401", "", None):
        with pytest.raises(dom.EmergencyError):
            dom.type_for_class(bad)


def test_levels_and_types_are_checked():
    assert list(dom.LEVELS) == ["I", "II", "III", "IV"] and dom.LEVELS["IV"] == "一般"
    assert dom.check_level("II") == "II"
    for bad in ("V", "1", None, 2):
        with pytest.raises(dom.EmergencyError):
            dom.check_level(bad)
    with pytest.raises(dom.EmergencyError):
        dom.check_type("meteor")


def test_state_machine():
    assert dom.next_status("raised", "activate") == "active"
    assert dom.next_status("active", "close") == "closed"
    assert dom.next_status("raised", "cancel") == "cancelled"
    assert dom.next_status("active", "report") == "active"
    with pytest.raises(dom.TransitionNotAllowed) as exc:
        dom.next_status("active", "activate")
    assert "close" in exc.value.allowed and "activate" not in exc.value.allowed
    for final in ("closed", "cancelled"):
        with pytest.raises(dom.TransitionNotAllowed):
            dom.next_status(final, "report")
        with pytest.raises(dom.TransitionNotAllowed):
            dom.next_status(final, "close")
    with pytest.raises(dom.TransitionNotAllowed):
        dom.next_status("raised", "close")
    with pytest.raises(dom.EmergencyError):
        dom.next_status("raised", "explode")


def test_task_moves():
    dom.check_task_move("pending", "in_progress")
    dom.check_task_move("in_progress", "done")
    for frm, to in (("done", "pending"), ("in_progress", "pending"), ("cancelled", "done")):
        with pytest.raises(dom.TransitionNotAllowed):
            dom.check_task_move(frm, to)
    with pytest.raises(dom.EmergencyError):
        dom.check_task_move("pending", "finished")


def test_radius_area_is_a_circle_of_that_radius():
    area = dom.parse_area({"radius_m": 500}, 39.9, 116.4)
    assert area.kind == "radius" and area.reach_m == 500
    ring = area.geometry["coordinates"][0]
    assert ring[0] == ring[-1] and len(ring) == dom.CIRCLE_SEGMENTS + 1
    for lon, lat in ring:
        assert abs(dom.distance_m(39.9, 116.4, lat, lon) - 500) < 5
    assert dom.contains(area.geometry, 39.9, 116.4) and not dom.contains(area.geometry, 39.91, 116.4)
    assert dom.parse_area(None, 39.9, 116.4).radius_m == 200


def test_polygon_area_and_bad_areas():
    square = {"type": "Polygon", "coordinates": [[[116.40, 39.90], [116.41, 39.90], [116.41, 39.91],
                                                  [116.40, 39.91], [116.40, 39.90]]]}
    area = dom.parse_area({"type": "Feature", "geometry": square}, 39.905, 116.405)
    assert area.kind == "polygon" and area.radius_m is None and 700 < area.reach_m < 800
    bowtie = {"type": "Polygon", "coordinates": [[[116.40, 39.90], [116.41, 39.91], [116.41, 39.90],
                                                  [116.40, 39.91], [116.40, 39.90]]]}
    far = copy.deepcopy(square)
    far["coordinates"][0] = [[x + 1, y] for x, y in far["coordinates"][0]]
    for bad in (bowtie, far, {"radius_m": 0}, {"radius_m": True}, {"radius_m": 1e9}, "300",
                {"type": "Polygon", "coordinates": [[[1, 2]]]}, {"type": "Point", "coordinates": [1, 2]},
                {"type": "Polygon", "coordinates": "x"}):
        with pytest.raises(dom.EmergencyError):
            dom.parse_area(bad, 39.905, 116.405)


def test_shipped_plans_cover_the_main_types_at_every_level_and_validate():
    book = dom.PlanBook.load(dom.PLANS_FILE, default_catalog().dept_types, UNIT_TYPES)
    for type_ in ("water_main_burst", "road_collapse", "flooding", "gas_leak", "power_outage"):
        for level in dom.LEVELS:
            plan = book.get(type_, level)
            assert plan.steps and plan.notify and plan.tasks and plan.units
    # a higher level sends at least as many units and asks for no slower tasks
    low, high = book.get("gas_leak", "IV"), book.get("gas_leak", "I")
    assert sum(u.count for u in high.units) > sum(u.count for u in low.units)
    assert min(t.limit_value for t in high.tasks) <= min(t.limit_value for t in low.tasks)
    assert len(high.notify) > len(low.notify)


@pytest.mark.parametrize("path, value, message", [
    (("type",), "meteor", "unknown type"),
    (("level",), "V", "unknown level"),
    (("notify",), ["nobody"], "unknown department type"),
    (("tasks", 0, "limit", "clock"), "fortnight", "limit.clock"),
    (("tasks", 0, "limit", "value"), -1, "positive"),
    (("units", 0, "count"), 0, "count"),
    (("units", 0, "type"), "tank", "unknown unit type"),
    (("steps",), [], "steps"),
])
def test_bad_plans_are_refused_with_the_field_named(path, value, message):
    data = shipped()
    target = data["plans"][0]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(dom.PlanError, match=message):
        dom.PlanBook.from_dict(data, default_catalog().dept_types, UNIT_TYPES)


def test_duplicate_plans_are_refused():
    data = shipped()
    data["plans"].append(dict(data["plans"][0], key="another"))
    with pytest.raises(dom.PlanError, match="second plan"):
        dom.PlanBook.from_dict(data)
    with pytest.raises(dom.PlanError):
        dom.PlanBook.from_dict({"plans": "none"})


def test_task_deadline_and_warning_follow_the_clock():
    cal = default_calendar()
    urgent = dom.TaskSpec("x", "抢修", "water", 2.0, "urgent_hour")
    start = datetime(2026, 11, 28, 22, 0, tzinfo=timezone.utc)  # a Sunday morning in Beijing
    clock = dom.task_clock(cal, start, urgent)
    assert clock.deadline_at == start + timedelta(hours=2) and clock.warn_at == start + timedelta(hours=1.6)
    working = dom.TaskSpec("y", "恢复", "roads", 2.0, "work_hour")
    friday_5pm = datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)  # 17:00 Friday in Beijing
    # one working hour on Friday, the next on Monday 08:00–09:00 local = 01:00 UTC
    assert dom.task_clock(cal, friday_5pm, working).deadline_at == datetime(2026, 11, 30, 1, 0, tzinfo=timezone.utc)
    assert dom.task_sla_state(start + timedelta(hours=1), clock.deadline_at, clock.warn_at) == 0
    assert dom.task_sla_state(start + timedelta(hours=1.7), clock.deadline_at, clock.warn_at) == 1
    assert dom.task_sla_state(clock.deadline_at, clock.deadline_at, clock.warn_at) == 2


def test_notification_text_names_the_incident_and_the_department():
    plan = dom.PlanBook.load().get("gas_leak", "II")
    text = dom.notification_text(plan, "东单燃气泄漏", "II", "东单北大街", "燃气集团")
    assert "东单燃气泄漏" in text and "燃气泄漏" in text and "II级重大" in text and "燃气集团" in text
