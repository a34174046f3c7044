"""GPS API: device registry, latest positions, tracks, nearest units, busy marks (SQLite and
PostgreSQL, the real Redis db 6, positions written by the gateway's own pipeline)."""
from __future__ import annotations

import asyncio
import time

import pytest
import redis as redis_lib
from redis import asyncio as aioredis

from backend.gps.archive import Archiver
from backend.gps.pipeline import PositionPipeline
from backend.gps.position import Position
from backend.services import gps
from backend.web import create_app
from tests import support
from tests.conftest import store_context

REDIS_URL = "redis://127.0.0.1:6379/6"
pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=["sqlite", "postgresql"])
def gps_store(request, tmp_path):
    with store_context(request.param, tmp_path, REDIS_URL) as ctx:
        yield ctx


@pytest.fixture
def client(gps_store):
    app = create_app(gps_store, screens=False)
    with app.test_client() as c:
        c.store = gps_store
        yield c
    gps_store.outbox.stop()


def login(client, username: str) -> dict:
    r = client.post("/api/v1/auth/token", json={"username": username, "password": support.PASSWORD})
    assert r.status_code == 200, r.json
    return {"Authorization": f"Bearer {r.json['token']}"}


def assert_error(r, status: int, field: str | None = None):
    assert r.status_code == status, (r.status_code, r.get_data(as_text=True))
    err = r.json["error"]
    assert set(err) == {"code", "message", "details"} and err["message"]
    if field:
        assert err["details"].get("field") == field, err


def write_positions(positions: list[Position]) -> None:
    """Through the gateway's pipeline: GEO set, trail stream and the latest-position hash."""
    async def go() -> None:
        client = aioredis.Redis.from_url(REDIS_URL)
        pipeline = PositionPipeline(client, max_delay=0.001)
        pipeline.start()
        assert pipeline.submit(positions)
        await pipeline.close()
        await client.aclose()
    asyncio.run(go())


def dept_id(client, code: str) -> int:
    return next(d["id"] for d in client.store.departments.values() if d["code"] == code)


def add_vehicle(client, headers, identifier: str, plate: str, vehicle_type: str = "环卫车",
                department: str = "sanitation") -> dict:
    r = client.post("/api/v1/devices", headers=headers, json={
        "protocol": "jt808", "identifier": identifier, "kind": "vehicle", "plate": plate,
        "vehicle_type": vehicle_type, "department_id": dept_id(client, department)})
    assert r.status_code == 201, r.json
    return r.json


# ---------------------------------------------------------------------------------- registry

def test_device_crud_publishes_registry_changes(client):
    admin = login(client, "dispatcher")
    pubsub = redis_lib.Redis.from_url(REDIS_URL).pubsub()
    pubsub.subscribe("citywall:gps:registry")
    pubsub.get_message(timeout=1)  # the subscribe confirmation
    truck = add_vehicle(client, admin, "013912345678", "京AH0001")
    assert truck["device"] == "jt808:013912345678"
    assert truck["department"] == client.store.departments[dept_id(client, "sanitation")]["name"]
    assert truck["vehicle_type"] == "环卫车" and truck["plate"] == "京AH0001" and truck["name"] == "京AH0001"
    assert pubsub.get_message(timeout=2)["channel"] == b"citywall:gps:registry"
    phone = client.post("/api/v1/devices", headers=admin, json={
        "protocol": "osmand", "identifier": "insp-phone-1", "kind": "person", "person": "inspector"})
    assert phone.status_code == 201 and phone.json["kind"] == "person"
    reader = login(client, "inspector")
    listed = client.get("/api/v1/devices?kind=vehicle", headers=reader)
    assert [d["device"] for d in listed.json["devices"]] == ["jt808:013912345678"]
    r = client.patch(f"/api/v1/devices/{truck['id']}", headers=admin, json={"enabled": False, "plate": "京AH0009"})
    assert r.status_code == 200 and r.json["enabled"] is False and r.json["plate"] == "京AH0009"
    assert client.get(f"/api/v1/devices/{truck['id']}", headers=reader).json["enabled"] is False
    assert client.delete(f"/api/v1/devices/{truck['id']}", headers=admin).status_code == 204
    assert_error(client.get(f"/api/v1/devices/{truck['id']}", headers=reader), 404)
    pubsub.close()


def test_the_gateways_registry_sees_api_changes(client):
    from backend.gps.registry import SqlRegistry

    admin = login(client, "leader")
    add_vehicle(client, admin, "013900000007", "京AZ0007", "执法车", "law_enforcement")
    registry = SqlRegistry(client.store.engine)
    registry.load()
    device = registry.resolve("jt808", "013900000007")
    assert device is not None and device.plate == "京AZ0007" and device.vehicle_type == "执法车"


@pytest.mark.parametrize("body,field", [
    ({"protocol": "gt06", "identifier": "1", "kind": "vehicle"}, "protocol"),
    ({"protocol": "jt808", "identifier": "12ab", "kind": "vehicle", "plate": "京A1", "vehicle_type": "环卫车"},
     "identifier"),
    ({"protocol": "jt808", "identifier": "123456789012345678901", "kind": "vehicle", "plate": "京A1",
      "vehicle_type": "环卫车"}, "identifier"),
    ({"protocol": "jt808", "identifier": "1234", "kind": "vehicle", "plate": "京A1", "vehicle_type": "飞机"},
     "vehicle_type"),
    ({"protocol": "jt808", "identifier": "1234", "kind": "vehicle", "vehicle_type": "环卫车"}, "plate"),
    ({"protocol": "jt808", "identifier": "1234", "kind": "robot"}, "kind"),
    ({"protocol": "osmand", "identifier": "p 1", "kind": "person", "person": "inspector"}, "identifier"),
    ({"protocol": "osmand", "identifier": "p1", "kind": "person"}, "person"),
    ({"protocol": "osmand", "identifier": "p1", "kind": "person", "person": "nobody"}, "person"),
    ({"protocol": "jt808", "identifier": "1234", "kind": "vehicle", "plate": "京A1", "vehicle_type": "环卫车",
      "department_id": 99999}, "department_id"),
    ({"protocol": "jt808", "identifier": "1234", "kind": "vehicle", "plate": "京A1", "vehicle_type": "环卫车",
      "enabled": "yes"}, "enabled"),
])
def test_bad_devices_are_400(client, body, field):
    assert_error(client.post("/api/v1/devices", headers=login(client, "dispatcher"), json=body), 400, field)


def test_device_writes_need_a_writer_role_and_reads_a_sign_in(client):
    body = {"protocol": "jt808", "identifier": "1234", "kind": "vehicle", "plate": "京A1", "vehicle_type": "环卫车"}
    assert_error(client.post("/api/v1/devices", headers=login(client, "inspector"), json=body), 403)
    assert_error(client.post("/api/v1/devices", json=body), 401)
    assert_error(client.get("/api/v1/devices"), 401)
    assert_error(client.post("/api/v1/devices", headers=login(client, "dispatcher"), data="{nope",
                             content_type="application/json"), 400)
    admin = login(client, "dispatcher")
    assert client.post("/api/v1/devices", headers=admin, json=body).status_code == 201
    r = client.post("/api/v1/devices", headers=admin, json=body)
    assert_error(r, 409)
    assert_error(client.patch("/api/v1/devices/1", headers=admin, json={"identifier": "999"}), 400, "identifier")
    assert_error(client.patch("/api/v1/devices/abc", headers=admin, json={}), 404)


# ---------------------------------------------------------------------------------- positions

def test_latest_positions_with_vehicle_details_stale_and_online(client):
    admin = login(client, "dispatcher")
    add_vehicle(client, admin, "013900000001", "京AH0001")
    add_vehicle(client, admin, "013900000002", "京AZ0002", "执法车", "law_enforcement")
    now = time.time()
    lat, lon = support.inside(1, 1)
    write_positions([
        Position("jt808:013900000001", now - 5, lat, lon, 23.5, 90.0, received=now),
        Position("jt808:013900000002", now - 600, lat + 0.001, lon, 0.0, 0.0, received=now - 600),
        Position("jt808:013999999999", now, lat, lon, received=now),  # not registered: not listed
    ])
    r = client.get("/api/v1/vehicles", headers=login(client, "inspector"))
    assert r.status_code == 200
    by_device = {v["device"]: v for v in r.json["vehicles"]}
    assert set(by_device) == {"jt808:013900000001", "jt808:013900000002"}
    fresh = by_device["jt808:013900000001"]
    assert fresh["plate"] == "京AH0001" and fresh["type"] == "环卫车" and fresh["kind"] == "vehicle"
    assert fresh["lat"] == pytest.approx(lat) and fresh["lon"] == pytest.approx(lon)
    assert fresh["speed"] == 23.5 and fresh["heading"] == 90.0 and fresh["time"].endswith("Z")
    assert fresh["department_id"] == dept_id(client, "sanitation")
    assert fresh["stale"] is False and fresh["online"] is True
    old = by_device["jt808:013900000002"]
    assert old["stale"] is True and old["online"] is False
    only = client.get("/api/v1/vehicles?type=执法车", headers=admin).json["vehicles"]
    assert [v["plate"] for v in only] == ["京AZ0002"]
    assert_error(client.get("/api/v1/vehicles?kind=plane", headers=admin), 400, "kind")


def test_nearest_available_units_with_distance_and_eta(client):
    admin = login(client, "dispatcher")
    ids = {}
    for n, (vtype, dept) in enumerate([("环卫车", "sanitation"), ("执法车", "law_enforcement"),
                                       ("执法车", "law_enforcement"), ("执法车", "law_enforcement")], 1):
        ids[n] = add_vehicle(client, admin, f"01390000000{n}", f"京A{n:05d}", vtype, dept)["id"]
    lat, lon = support.inside(1, 1)
    now = time.time()
    write_positions([
        Position("jt808:013900000001", now, lat, lon + 0.001, received=now),   # ~85 m, 环卫车
        Position("jt808:013900000002", now, lat, lon + 0.004, received=now),   # ~341 m
        Position("jt808:013900000003", now, lat, lon + 0.002, received=now),   # ~170 m, will be busy
        Position("jt808:013900000004", now - 900, lat, lon + 0.0005, received=now - 900),  # stale
    ])
    r = client.post("/api/v1/units/3/status", headers=admin, json={"status": "busy", "note": "处置中"})
    assert r.status_code == 200 and r.json["status"] == "busy"
    reader = login(client, "inspector")
    units = client.get(f"/api/v1/units/nearest?lat={lat}&lon={lon}", headers=reader).json["units"]
    assert [u["id"] for u in units] == [ids[1], ids[2]]
    assert units[0]["distance_m"] == pytest.approx(85.3, abs=1.0)
    assert units[0]["eta_s"] == round(units[0]["distance_m"] * gps.ROAD_FACTOR / (15.0 / 3.6))
    assert units[1]["eta_s"] == round(units[1]["distance_m"] * gps.ROAD_FACTOR / (25.0 / 3.6))
    typed = client.get(f"/api/v1/units/nearest?lat={lat}&lon={lon}&type=执法车", headers=reader).json["units"]
    assert [u["id"] for u in typed] == [ids[2]]
    every = client.get(f"/api/v1/units/nearest?lat={lat}&lon={lon}&available=false", headers=reader).json["units"]
    assert [u["id"] for u in every] == [ids[4], ids[1], ids[3], ids[2]]
    assert [u["available"] for u in every] == [False, True, False, True]
    client.post("/api/v1/units/jt808:013900000003/status", headers=admin, json={"status": "available"})
    units = client.get(f"/api/v1/units/nearest?lat={lat}&lon={lon}&limit=2", headers=reader).json["units"]
    assert [u["id"] for u in units] == [ids[1], ids[3]]


def test_nearest_and_status_refuse_bad_input(client):
    admin = login(client, "dispatcher")
    assert_error(client.get("/api/v1/units/nearest?lat=abc&lon=116.4", headers=admin), 400, "lat")
    assert_error(client.get("/api/v1/units/nearest?lon=116.4", headers=admin), 400, "lat")
    assert_error(client.get("/api/v1/units/nearest?lat=39.9&lon=116.4&type=飞机", headers=admin), 400, "type")
    assert_error(client.get("/api/v1/units/nearest?lat=39.9&lon=116.4&limit=0", headers=admin), 400, "limit")
    assert_error(client.get("/api/v1/units/nearest?lat=39.9&lon=116.4&available=maybe", headers=admin), 400)
    add_vehicle(client, admin, "013900000001", "京AH0001")
    assert_error(client.post("/api/v1/units/1/status", headers=admin, json={"status": "sleeping"}), 400, "status")
    assert_error(client.post("/api/v1/units/1/status", headers=login(client, "inspector"),
                             json={"status": "busy"}), 403)
    assert_error(client.post("/api/v1/units/77/status", headers=admin, json={"status": "busy"}), 404)


# ---------------------------------------------------------------------------------- tracks

def test_track_joins_the_archive_and_the_part_not_archived_yet(client):
    admin = login(client, "dispatcher")
    truck = add_vehicle(client, admin, "013900000001", "京AH0001")
    lat, lon = support.inside(1, 1)
    now = time.time()
    key = "jt808:013900000001"
    write_positions([Position(key, now - 7200, lat, lon, received=now)]  # two hours ago: not by default
                    + [Position(key, now - 1800 + i * 60, lat + i * 1e-4, lon, 20.0, received=now)
                       for i in range(10)])
    assert Archiver(client.store.redis, client.store.engine).drain() == 11
    write_positions([Position(key, now - 60 + i * 10, lat, lon + i * 1e-4, 30.0, received=now) for i in range(5)])
    r = client.get(f"/api/v1/vehicles/{truck['id']}/track", headers=login(client, "inspector"))
    assert r.status_code == 200
    times = [p["time"] for p in r.json["points"]]
    assert r.json["count"] == 15 and times == sorted(times)
    assert [p["speed"] for p in r.json["points"]] == [20.0] * 10 + [30.0] * 5
    # the same fixes once more in the stream (a gateway retry) are not shown twice
    write_positions([Position(key, now - 60, lat, lon, 30.0, received=now)])
    assert client.get(f"/api/v1/vehicles/{key}/track", headers=admin).json["count"] == 15
    window = client.get(f"/api/v1/vehicles/{truck['id']}/track?from=2020-01-01T00:00:00Z&to=2099-01-01T00:00:00Z",
                        headers=admin)
    assert_error(window, 400, "from")  # more than 7 days
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 3 * 3600))
    r = client.get(f"/api/v1/vehicles/{truck['id']}/track?from={start}", headers=admin)
    assert r.json["count"] == 16


def test_track_refuses_bad_times_and_unknown_devices(client):
    admin = login(client, "dispatcher")
    add_vehicle(client, admin, "013900000001", "京AH0001")
    assert_error(client.get("/api/v1/vehicles/1/track?from=yesterday", headers=admin), 400, "from")
    assert_error(client.get("/api/v1/vehicles/1/track?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
                            headers=admin), 400, "from")
    assert_error(client.get("/api/v1/vehicles/999/track", headers=admin), 404)
    assert_error(client.get("/api/v1/vehicles/jt808:000/track", headers=admin), 404)
