"""Emergency command (应急指挥) through the service, on SQLite and PostgreSQL with the real Redis."""
from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
import redis as redis_lib

from backend.domain.lifecycle import Actor
from backend.services import audit, conferences, emergency, errors, notify, reports
from backend.services.cases import now_utc
from tests import support
from tests.conftest import REDIS_TEST_URL, actor, new_case

class RecordingDriver:
    """A stand-in provider: accepts messages (``sent``) and confirms them when asked (``delivered``)."""

    name = "recording"

    def __init__(self):
        self.messages: list[tuple[str, str]] = []

    def send(self, recipient, text):
        self.messages.append((recipient, text))
        return notify.Delivery("sent", provider_id=f"r{len(self.messages)}")

    def status(self, provider_id):
        return notify.Delivery("delivered", provider_id=provider_id)


class BrokenDriver:
    name = "broken"

    def send(self, recipient, text):
        raise ConnectionError("gateway down")


def fake_units(lat, lon, unit_type, count):
    """Three units of every type, 500 m, 1 km and 2 km away (the GPS service's shape)."""
    return [{"id": 100 + k, "device": f"osmand:{unit_type}-{k}", "name": f"{unit_type}{k}", "type": unit_type,
             "department_id": None, "lat": lat + 0.0045 * (k + 1), "lon": lon, "distance_m": 500.0 * (k + 1),
             "eta_s": 60.0 * (k + 1)} for k in range(3)]


@pytest.fixture
def em(store, monkeypatch):
    marks: list[tuple[str, bool]] = []
    monkeypatch.setattr(emergency, "find_units", fake_units)
    monkeypatch.setattr(emergency, "mark_unit", lambda device, busy, note="", by="": marks.append((device, busy)))
    driver = notify.LogDriver()
    notify.use_driver(driver)
    emergency.use_plans(None)
    store.marks = marks
    store.sms = driver
    yield store
    notify.use_driver(None)


def leader():
    return actor("leader")


def bus_messages(kind_prefix: str = "incident.") -> list[dict]:
    r = redis_lib.Redis.from_url(REDIS_TEST_URL)
    out = [json.loads(f[b"data"]) for _id, f in r.xrange("citywall:events")]
    r.close()
    return [m for m in out if m["type"].startswith(kind_prefix)]


def raise_direct(**extra) -> dict:
    lat, lon = support.inside(1, 1)
    body = {"type": "gas_leak", "level": "II", "title": "东单燃气泄漏", "lat": lat, "lon": lon,
            "address": "东单北大街", "area": {"radius_m": 300}}
    body.update(extra)
    return emergency.raise_incident(body, leader())


def test_raise_from_an_emergency_case_takes_its_type_and_place(em):
    case = new_case(class_code="E0402")  # 自来水管破裂
    inc = emergency.raise_incident({"case_id": case["id"], "level": "III"}, actor("supervisor"))
    assert inc["type"] == "water_main_burst" and inc["type_zh"] == "爆管"
    assert inc["level"] == "III" and inc["status"] == "raised" and inc["case_id"] == case["id"]
    assert (inc["lat"], inc["lon"]) == (case["lat"], case["lon"]) and inc["grid_code"] == case["grid_code"]
    assert inc["perimeter"]["geometry"]["type"] == "Polygon"
    assert [e["action"] for e in inc["timeline"]] == ["raised"]
    assert inc["timeline"][0]["payload"]["case_number"] == case["case_number"]
    with pytest.raises(errors.Conflict):  # one open incident per case
        emergency.raise_incident({"case_id": case["id"]}, actor("supervisor"))


def test_only_emergency_classes_raise_incidents(em):
    case = new_case(class_code="E0102")  # 暴露垃圾
    with pytest.raises(errors.BadInput) as exc:
        emergency.raise_incident({"case_id": case["id"]}, actor("supervisor"))
    assert exc.value.code == "not_an_emergency_class"
    with pytest.raises(errors.NotFound):
        emergency.raise_incident({"case_id": 999999}, actor("supervisor"))


def test_direct_raise_is_for_leaders_and_checks_its_input(em):
    inc = raise_direct()
    assert inc["type"] == "gas_leak" and inc["level"] == "II" and inc["area"]["radius_m"] == 300
    with pytest.raises(errors.Forbidden):
        emergency.raise_incident({"type": "gas_leak", "level": "I", "title": "x", "lat": 39.9, "lon": 116.4},
                                 actor("supervisor"))
    for bad in ({"level": "V"}, {"type": "meteor"}, {"area": {"radius_m": -5}}, {"lat": 200},
                {"area": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}}):
        with pytest.raises(errors.BadInput):
            raise_direct(**bad)
    with pytest.raises(errors.BadInput):
        emergency.raise_incident({"title": "no type"}, leader())


def test_activation_creates_group_tasks_notifications_and_dispatches_units(em):
    inc = raise_direct()
    at = now_utc()
    out = emergency.activate(inc["id"], leader(), at=at)
    plan = emergency.plans().get("gas_leak", "II")
    assert out["status"] == "active" and out["plan"]["key"] == plan.key and out["wall_mode"] is True
    # tasks: one per plan task, each with its deadline from the urgent-hour clock
    assert [t["code"] for t in out["tasks"]] == sorted([t.code for t in plan.tasks],
                                                       key=lambda c: next(s.limit_value for s in plan.tasks
                                                                          if s.code == c))
    for spec in plan.tasks:
        task = next(t for t in out["tasks"] if t["code"] == spec.code)
        expected = at + timedelta(hours=spec.limit_value)
        deadline = datetime.fromisoformat(task["deadline_at"].replace("Z", "+00:00"))
        assert abs(deadline - expected) < timedelta(seconds=1)
        assert task["status"] == "pending" and task["department_id"] is not None
    # command group: the commander, the lead department, the members
    roles = [g["role"] for g in out["command_group"]]
    assert roles[0] == "commander" and out["command_group"][0]["username"] == "leader"
    assert roles.count("lead") == 1 and "member" in roles
    # notifications: every department of the plan, through the log driver, delivered
    assert len(out["notifications"]) == out["figures"]["departments"] >= len(plan.notify)
    assert {n["state"] for n in out["notifications"]} == {"delivered"}
    assert {n["driver"] for n in out["notifications"]} == {"log"}
    assert len(em.sms.sent) == len(out["notifications"]) and "燃气泄漏" in em.sms.sent[0][1]
    # units: the nearest ones, as many as the plan asks (3 found per type here), marked busy
    wanted = sum(min(u.count, 3) for u in plan.units)
    assert len(out["units"]) == wanted and all(u["status"] == "dispatched" for u in out["units"])
    assert sorted(d for d, busy in em.marks if busy) == sorted(u["device"] for u in out["units"])
    activated = next(e for e in out["timeline"] if e["action"] == "activated")
    assert activated["payload"]["shortfall"]  # the plan wants more units of a kind than were found
    assert [e["action"] for e in out["timeline"]].count("notification") == len(out["notifications"])
    # on the bus with the incident's id
    msgs = bus_messages()
    assert [m["type"] for m in msgs][:2] == ["incident.raised", "incident.activated"]
    assert all(m["incident_id"] == inc["id"] and m["case_id"] is None for m in msgs)
    assert msgs[1]["incident"]["status"] == "active" and msgs[1]["payload"]["plan_key"] == plan.key
    with pytest.raises(errors.Conflict):
        emergency.activate(inc["id"], leader())
    with pytest.raises(errors.Forbidden):
        emergency.activate(raise_direct()["id"], actor("dispatcher"))


def test_a_failing_gateway_is_recorded_not_fatal_and_later_deliveries_are_polled(em):
    notify.use_driver(BrokenDriver())
    out = emergency.activate(raise_direct()["id"], leader())
    assert out["status"] == "active"
    assert {n["state"] for n in out["notifications"]} == {"failed"}
    assert all("gateway down" in n["error"] for n in out["notifications"])
    driver = RecordingDriver()
    notify.use_driver(driver)
    out = emergency.activate(raise_direct(type="flooding")["id"], leader())
    assert {n["state"] for n in out["notifications"]} == {"sent"}
    assert emergency.poll_deliveries() == len(out["notifications"])
    again = emergency.get(out["id"])
    assert {n["state"] for n in again["notifications"]} == {"delivered"}
    states = [e["payload"]["state"] for e in again["timeline"] if e["action"] == "notification"]
    assert states.count("sent") == states.count("delivered") == len(out["notifications"])


def test_sms_driver_from_configuration(monkeypatch):
    monkeypatch.setenv(notify.ENV_DRIVER, "tests.integration.test_emergency_service:RecordingDriver")
    notify.use_driver(None)
    try:
        name, delivery = notify.send("dept:gas", "测试")
        assert name == "recording" and delivery.state == "sent"
        monkeypatch.setenv(notify.ENV_DRIVER, "no.such.module:Driver")
        notify.use_driver(None)
        name, delivery = notify.send("dept:gas", "测试")
        assert delivery.state == "failed" and "no.such.module" in delivery.error
    finally:
        notify.use_driver(None)


def test_timeline_is_append_only_and_hash_chained(em):
    inc = raise_direct()
    emergency.activate(inc["id"], leader())
    emergency.field_report(inc["id"], actor("inspector"), {"text": "现场有燃气味", "photos": ["p1.jpg"],
                                                            "lat": inc["lat"], "lon": inc["lon"]})
    emergency.order(inc["id"], leader(), {"text": "扩大警戒范围至 500 米"})
    view = emergency.get(inc["id"])
    task = view["tasks"][0]
    dept_user = Actor("dept_x", "department", task["department_id"])
    emergency.update_task(inc["id"], task["id"], dept_user, {"status": "in_progress", "note": "已到场"})
    with pytest.raises(errors.Forbidden):
        other = Actor("dept_y", "department", task["department_id"] + 1000)
        emergency.update_task(inc["id"], task["id"], other, {"status": "done"})
    with pytest.raises(errors.Conflict):
        emergency.update_task(inc["id"], task["id"], leader(), {"status": "pending"})
    emergency.set_level(inc["id"], leader(), {"level": "I", "reason": "波及地铁站"})
    before = emergency.get(inc["id"])["timeline"]
    emergency.field_report(inc["id"], actor("inspector"), {"text": "已疏散 200 人"})
    after = emergency.get(inc["id"])
    assert after["timeline"][:len(before)] == before  # nothing rewritten, only appended
    ids = [e["event_id"] for e in after["timeline"]]
    assert ids == sorted(ids)
    actions = [e["action"] for e in after["timeline"]]
    for a in ("raised", "activated", "report", "order", "task", "level"):
        assert a in actions
    assert after["level"] == "I" and after["tasks"][0]["status"] == "in_progress"
    result = audit.verify()
    assert result.ok, result.to_dict()


def test_task_deadlines_tick_warning_then_overdue_once(em):
    inc = raise_direct()
    at = now_utc()
    out = emergency.activate(inc["id"], leader(), at=at)
    first = min(out["tasks"], key=lambda t: t["deadline_at"])
    done = out["tasks"][-1]
    emergency.update_task(inc["id"], done["id"], leader(), {"status": "done"})
    limit = timedelta(hours=first["limit_value"])
    assert emergency.task_tick(at + limit * 0.5) == 0
    assert emergency.task_tick(at + limit * 0.9) >= 1  # 80% used: warning
    assert emergency.task_tick(at + timedelta(days=2)) == len(out["tasks"]) - 1  # all but the done one
    assert emergency.task_tick(at + timedelta(days=3)) == 0
    view = emergency.get(inc["id"])
    overdue = [e for e in view["timeline"] if e["action"] == "task_overdue"]
    assert len(overdue) == len(out["tasks"]) - 1 and done["id"] not in [e["payload"]["task_id"] for e in overdue]
    assert next(t for t in view["tasks"] if t["id"] == first["id"])["sla_state"] == 2
    assert "incident.task_overdue" in [m["type"] for m in bus_messages()]


def test_closing_releases_units_and_renders_the_report(em):
    inc = raise_direct(type="road_collapse", level="IV", area={
        "type": "Polygon", "coordinates": [[[116.405, 39.894], [116.409, 39.894], [116.409, 39.891],
                                            [116.405, 39.891], [116.405, 39.894]]]})
    emergency.activate(inc["id"], leader())
    emergency.field_report(inc["id"], actor("inspector"), {"text": "塌陷坑约三米见方"})
    with pytest.raises(errors.Conflict):
        reports.report_file(inc["id"], "html")
    out = emergency.close(inc["id"], leader(), {"summary": "路面已回填恢复通行"})
    assert out["status"] == "closed" and out["wall_mode"] is False
    assert all(u["status"] == "released" for u in out["units"])
    assert sorted(d for d, busy in em.marks if not busy) == sorted(u["device"] for u in out["units"])
    html = reports.report_file(inc["id"], "html").read_text(encoding="utf-8")
    assert "应急处置总结报告" in html and "塌陷坑约三米见方" in html and "路面已回填恢复通行" in html
    assert f'data-event="{out["timeline"][0]["event_id"]}"' in html  # the timeline
    assert f'<b>{out["figures"]["units"]}</b>调派力量' in html  # the figures
    assert "<svg" in html and 'class="perimeter"' in html and 'class="unit"' in html
    pdf = reports.report_file(inc["id"], "pdf").read_bytes()
    assert pdf.startswith(b"%PDF")
    ready = [e for e in emergency.get(inc["id"])["timeline"] if e["action"] == "report_ready"]
    assert ready and ready[0]["payload"]["pdf_bytes"] == len(pdf)
    with pytest.raises(errors.Conflict):
        emergency.field_report(inc["id"], actor("inspector"), {"text": "too late"})
    assert audit.verify().ok


def test_active_view_and_wall_mode(em):
    from backend.services import cameras

    inc = raise_direct()
    assert emergency.active_view()["incident"] is None
    lat, lon = inc["lat"], inc["lon"]
    near = cameras.create({"name": "东单路口", "lat": lat + 0.001, "lon": lon, "source": "synthetic:street"})
    far_lat, far_lon = support.inside(3, 3)  # about 1.4 km away: outside the area and its margin
    cameras.create({"name": "远处", "lat": far_lat, "lon": far_lon, "source": "synthetic:street"})
    emergency.activate(inc["id"], leader())
    view = emergency.active_view()
    shown = view["incident"]
    assert shown["id"] == inc["id"] and [i["id"] for i in view["incidents"]] == [inc["id"]]
    assert shown["perimeter"]["type"] == "Feature" and shown["tasks"] and shown["timeline"]
    assert [c["id"] for c in shown["cameras"]] == [near["id"]]
    assert all(u["eta_at"] and u["eta_remaining_s"] is not None for u in shown["units"])
    emergency.set_wall_mode(inc["id"], actor("supervisor"), False)
    view = emergency.active_view()
    assert view["incident"] is None and view["incidents"][0]["id"] == inc["id"]
    modes = [m for m in bus_messages() if m["type"] == "incident.mode"]
    assert modes[-1]["payload"] == {"on": False} and modes[-1]["incident_id"] == inc["id"]
    with pytest.raises(errors.BadInput):
        emergency.set_wall_mode(inc["id"], leader(), "yes")


def test_conference_joins_and_leaves_go_on_the_incident_timeline(em):
    inc = raise_direct()
    room = conferences.create({"title": "燃气泄漏会商", "incident_id": inc["id"], "invitees": [
        {"name": "燃气集团", "department_id": next(iter(em.departments)), "leader": False},
        {"username": "dispatcher", "leader": True}]}, leader(), "wall.example:8050")
    pid = room["invitees"][1]["pid"]
    r = redis_lib.Redis.from_url(REDIS_TEST_URL)
    try:
        # as the streams service writes it (streams.conference.events.event)
        from streams.conference.events import event as conference_event

        r.xadd(conferences.STREAM, {"data": json.dumps(conference_event("conference.join", str(room["id"]), pid,
                                                                        "dispatcher"))})
        r.xadd(conferences.STREAM, {"type": "leave", "room": str(room["id"]), "pid": pid})
        r.xadd(conferences.STREAM, {"type": "join", "room": "999", "pid": "nobody"})
        r.xadd(conferences.STREAM, {"data": "not json"})
        assert conferences.consume(r) == 4
        assert conferences.consume(r) == 0  # acknowledged: not read twice
        assert r.xpending(conferences.STREAM, conferences.GROUP)["pending"] == 0
    finally:
        r.close()
    timeline = emergency.get(inc["id"])["timeline"]
    entries = [(e["action"], e["payload"]["pid"]) for e in timeline if e["action"].startswith("conference_")]
    assert entries == [("conference_join", pid), ("conference_leave", pid)]
    person = conferences.get(room["id"])["invitees"][1]
    assert person["joins"] == 1 and person["joined_at"] and person["left_at"] and not person["present"]
    assert audit.verify().ok


def test_the_worker_pass_ticks_tasks_and_records_conference_events(em):
    from backend import worker

    inc = raise_direct()
    at = now_utc()
    out = emergency.activate(inc["id"], leader(), at=at)
    room = conferences.create({"title": "会商", "incident_id": inc["id"], "invitees": [{"username": "supervisor"}]},
                              leader(), "localhost")
    r = redis_lib.Redis.from_url(REDIS_TEST_URL)
    try:
        r.xadd(conferences.STREAM, {"type": "join", "room": str(room["id"]), "pid": room["invitees"][0]["pid"]})
    finally:
        r.close()
    assert worker.emergency_pass(at + timedelta(days=1)) == len(out["tasks"]) + 1
    actions = [e["action"] for e in emergency.get(inc["id"])["timeline"]]
    assert actions.count("task_overdue") == len(out["tasks"]) and "conference_join" in actions


def test_activation_dispatches_the_nearest_real_gps_units(store):
    """With the GPS service itself: registered devices, positions through the pipeline, busy marks."""
    import asyncio
    import time

    from redis import asyncio as aioredis

    from backend.gps.pipeline import PositionPipeline
    from backend.gps.position import Position
    from backend.services import gps

    notify.use_driver(notify.LogDriver())
    try:
        trucks = [gps.create_device({"protocol": "osmand", "identifier": f"repair-{k}", "kind": "vehicle",
                                     "plate": f"京A0000{k}", "vehicle_type": "抢修车"}) for k in range(3)]
        lat, lon = support.inside(1, 1)
        now = time.time()
        where = [(lat + 0.002, lon), (lat + 0.012, lon + 0.012), (lat + 0.001, lon)]  # 0 and 2 are nearest

        async def write() -> None:
            r = aioredis.Redis.from_url(REDIS_TEST_URL)
            pipeline = PositionPipeline(r, max_delay=0.001)
            pipeline.start()
            pipeline.submit([Position(t["device"], now, *p) for t, p in zip(trucks, where)])
            await pipeline.close()
            await r.aclose()

        asyncio.run(write())
        inc = raise_direct(type="road_collapse", level="IV")
        out = emergency.activate(inc["id"], leader())
        plan = emergency.plans().get("road_collapse", "IV")
        wanted = next(u.count for u in plan.units if u.unit_type == "抢修车")
        assert wanted == 2
        assert [u["device"] for u in out["units"]] == [trucks[2]["device"], trucks[0]["device"]]
        assert out["units"][0]["distance_m"] < out["units"][1]["distance_m"] and out["units"][0]["eta_s"] > 0
        shortfall = next(e for e in out["timeline"] if e["action"] == "activated")["payload"]["shortfall"]
        assert {s["type"] for s in shortfall} == {u.unit_type for u in plan.units} - {"抢修车"}
        busy = {u["device"]: u["busy"] for u in gps.vehicles()}
        assert busy == {trucks[0]["device"]: True, trucks[1]["device"]: False, trucks[2]["device"]: True}
        emergency.close(inc["id"], leader())
        assert not any(u["busy"] for u in gps.vehicles())
    finally:
        notify.use_driver(None)
