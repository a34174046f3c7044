"""The wall's video, vehicle and emergency feeds on the web app (SQLite + the real Redis).

What screens rely on: the state says where the streams service is and which token to show it; the
camera, vehicle, track and emergency routes answer in display coordinates; bus events of incidents
reach the screens as incident notices; GPS summaries are coalesced by device and bad ones dropped.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from backend import realtime
from backend.services import cameras, gps
from backend.services.context import Context
from backend.web import create_app
from tests import support


@pytest.fixture
def app(sqlite_store):
    application = create_app(sqlite_store)
    application.config["TESTING"] = True
    yield application
    if realtime.bridge() is not None:
        realtime.bridge().stop()


def test_state_tells_the_screen_where_the_streams_service_is(app, sqlite_store):
    st = app.test_client().get("/wall/api/state").get_json()
    assert st["video"]["port"] == sqlite_store.config.streams_port
    assert st["video"]["token"] == ""  # the open demo wall needs none


def test_token_wall_shows_its_screen_token_to_the_streams_service(tmp_path, sqlite_store):
    cfg = support.make_config(tmp_path, sqlite_store.config.effective_database_url, sqlite_store.config.redis_url,
                              wall_access="token", screen_token="hall-secret")
    ctx = Context.from_config(cfg)
    try:
        c = create_app(ctx).test_client()
        assert c.get("/wall/api/cameras").status_code == 401
        assert c.get("/wall/api/emergency").status_code == 401
        assert c.get("/wall/api/state?token=hall-secret").get_json()["video"]["token"] == "hall-secret"
    finally:
        ctx.outbox.stop()
        ctx.close()


def test_cameras_vehicles_and_tracks_for_the_map(app, sqlite_store):
    c = app.test_client()
    lat, lon = support.inside(1, 1)
    cam = cameras.create({"name": "东单路口", "lat": lat, "lon": lon, "source": "rtsp://user:pw@10.0.0.9/cam"})
    listed = c.get("/wall/api/cameras").get_json()["cameras"]
    assert listed == [{"id": cam["id"], "name": "东单路口", "lat": lat, "lon": lon, "status": "active"}]
    assert "source" not in json.dumps(listed)  # an RTSP URL may carry a password
    dev = gps.create_device({"protocol": "osmand", "identifier": "insp-07", "kind": "vehicle", "plate": "京A00007",
                             "vehicle_type": "巡查车"})
    now = datetime.now(timezone.utc)
    sqlite_store.redis.hset("citywall:gps:last", dev["device"], json.dumps({
        "device": dev["device"], "time": now.isoformat().replace("+00:00", "Z"), "ts": now.timestamp(), "lat": lat,
        "lon": lon, "speed": 12.0, "heading": 45.0, "state": "moving", "received": now.timestamp()}))
    body = c.get("/wall/api/vehicles").get_json()
    assert body["stale_after_ms"] == 120_000
    (v,) = body["vehicles"]
    assert (v["device"], v["plate"], v["type"], v["lat"], v["lon"], v["heading"]) == \
        (dev["device"], "京A00007", "巡查车", lat, lon, 45.0)
    assert abs(v["t"] - now.timestamp() * 1000) < 1000 and v["online"] is True
    track = c.get(f"/wall/api/vehicles/{dev['id']}/track").get_json()
    assert track["track"]["geometry"]["type"] == "LineString"
    assert c.get("/wall/api/vehicles/99999/track").status_code == 404


def test_emergency_view_is_empty_without_an_incident(app):
    assert app.test_client().get("/wall/api/emergency").get_json()["incident"] is None


def test_incident_events_reach_screens_as_notices(sqlite_store):
    ev = {"event_id": 41, "type": "incident.mode", "action": "mode", "case_id": None, "at": "2026-11-26T06:00:00Z",
          "payload": {"on": False}, "case": None, "incident_id": 3,
          "incident": {"id": 3, "title": "内涝", "status": "active", "wall_mode": False}}
    out = realtime.event_for_screen(ev, sqlite_store)
    assert out["c"] is None and "tk" not in out
    assert out["inc"] == {"id": 3, "a": "mode", "status": "active", "wall_mode": False}
    activated = realtime.event_for_screen(dict(ev, type="incident.activated", action="activated"), sqlite_store)
    assert activated["tk"]["a"] == "incident" and activated["tk"]["cls"] == "内涝"


class FakeSio:
    def __init__(self):
        self.sent: list[tuple] = []

    def emit(self, event, data, to=None):
        self.sent.append((event, data, to))


def test_gps_summaries_are_coalesced_by_device_and_alarms_go_out_at_once(sqlite_store):
    sio = FakeSio()
    bridge = realtime.Bridge(sqlite_store, sio)
    pending: dict = {}

    def summary(devices):
        return {"channel": b"citywall:gps:summary", "data": json.dumps({"devices": devices}).encode()}

    bridge.take_gps_message(summary([{"device": "a", "lat": 39.9, "lon": 116.4, "time": "2026-11-26T06:00:00Z"},
                                     {"device": "b", "lat": 39.8, "lon": 116.3}]), pending)
    bridge.take_gps_message(summary([{"device": "a", "lat": 39.95, "lon": 116.45, "heading": 90},
                                     {"device": "bad", "lat": "north"}]), pending)
    bridge.take_gps_message({"channel": "citywall:gps:summary", "data": b"{not json"}, pending)
    assert set(pending) == {"a", "b"} and pending["a"]["lat"] == 39.95 and pending["a"]["heading"] == 90
    assert sio.sent == []  # positions wait for the next once-a-second batch
    bridge.emit_vehicles(list(pending.values()))
    assert bridge.emit_tick()  # positions ride the wall room's next tick
    (name, data, room), = sio.sent
    assert name == "tick" and room == realtime.WALL_ROOM and len(data["vehicles"]["devices"]) == 2
    assert not bridge.emit_tick()  # nothing new: no message
    bridge.take_gps_message({"channel": b"citywall:gps:alarms", "data": json.dumps({
        "type": "duty_alarm", "state": "raised", "id": 5, "kind_zh": "无信号", "person": "insp001",
        "time": "2026-11-26T06:00:00Z", "message": "10 分钟无定位"})}, pending)
    name, data, room = sio.sent[-1]
    assert name == "alarm" and data["tk"]["a"] == "alarm" and data["tk"]["cls"] == "无信号"


def test_the_open_cases_kept_from_the_stream_are_the_stores(sqlite_store):
    """The web process keeps the open cases from the event stream for the wall's state: after creations,
    moves and a cancellation, and after a gap in the stream, they equal a fresh read of the store."""
    from backend import bus
    from backend.services import cases, wall
    from tests.conftest import actor, new_case

    bridge = realtime.Bridge(sqlite_store, FakeSio())
    a, b = new_case(), new_case()
    sqlite_store.outbox.flush()
    tail = bridge._tail_id(sqlite_store.redis)
    bridge.load_open_cases(int(tail.split("-")[0]))
    c = new_case()
    cases.apply(a["id"], "register", actor("supervisor"))
    cases.apply(a["id"], "dispatch", actor("dispatcher"))
    cases.apply(b["id"], "cancel", actor("supervisor"), {"note": "重复上报"})
    sqlite_store.outbox.flush()
    events = [e for _sid, e in bus.read_events(sqlite_store.redis, tail, count=100)]
    bridge.emit_batch(events)
    event_id, cols = bridge.open_cases_now()
    assert cols == wall.open_case_columns() and event_id == events[-1]["event_id"]
    assert c["id"] in cols["id"] and b["id"] not in cols["id"]
    assert cols["s"][cols["id"].index(a["id"])] == "dispatched"
    # an event lost between the stream and this process (c's cancellation): the cases are read again
    cases.apply(c["id"], "cancel", actor("supervisor"), {"note": "重复上报"})
    d = new_case()
    sqlite_store.outbox.flush()
    later = [e for _sid, e in bus.read_events(sqlite_store.redis, bus.stream_id(event_id), count=100)]
    bridge.emit_batch(later[1:])  # the cancellation never arrives
    event_id, cols = bridge.open_cases_now()
    assert cols == wall.open_case_columns() and event_id == later[-1]["event_id"]
    assert c["id"] not in cols["id"] and d["id"] in cols["id"]


def test_two_web_workers_compute_the_wall_panels_once_and_show_the_same(sqlite_store, monkeypatch):
    """Every web worker's bridge sees each change; the panels (KPIs, ranking, trends) are computed by the one
    that takes the lock and taken from Redis by the other, and a later change is computed again."""
    import threading
    import time

    from backend.services import wall
    from tests.conftest import new_case

    calls = {"kpis": 0, "ranking": 0}
    real_kpis, real_ranking = wall.kpis, wall.ranking

    def slow_kpis():
        calls["kpis"] += 1
        time.sleep(0.3)  # long enough for the other worker to ask meanwhile
        return real_kpis()

    def counted_ranking():
        calls["ranking"] += 1
        return real_ranking()

    monkeypatch.setattr(wall, "kpis", slow_kpis)
    monkeypatch.setattr(wall, "ranking", counted_ranking)
    sqlite_store.redis.delete(realtime.SUMMARY_KEY, realtime.SUMMARY_LOCK)
    new_case()
    workers = [realtime.Bridge(sqlite_store, FakeSio()), realtime.Bridge(sqlite_store, FakeSio())]
    got: dict[int, dict] = {}
    threads = [threading.Thread(target=lambda i=i: got.__setitem__(i, workers[i].panels({}))) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert calls == {"kpis": 1, "ranking": 1}
    assert got[0] == got[1] and got[0]["kpi"]["open"] >= 1 and "ranking" in got[0] and "trends" in got[0]
    assert sum(w.stats["summaries_shared"] for w in workers) == 1
    # a change later: computed again (the ranking kept while younger than SLOW_SUMMARY_INTERVAL)
    new_case()
    later = workers[1].panels(got[1])
    assert calls == {"kpis": 2, "ranking": 1} and later["kpi"]["open"] == got[0]["kpi"]["open"] + 1
    # without Redis a bridge computes the panels itself
    monkeypatch.setattr(type(sqlite_store), "redis", property(lambda self: (_ for _ in ()).throw(OSError("down"))))
    alone = realtime.Bridge(sqlite_store, FakeSio()).panels({})
    assert calls["kpis"] == 3 and alone["kpi"]["open"] == later["kpi"]["open"]
