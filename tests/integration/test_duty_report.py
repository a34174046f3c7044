"""上岗履职 through the API: shifts with validation and a person's daily report from a stored
track (archive + the trail stream), on SQLite and PostgreSQL with the real Redis db 6."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
from redis import asyncio as aioredis
from sqlalchemy import insert

from backend.domain.coords import distance_m
from backend.gps.pipeline import PositionPipeline
from backend.gps.position import Position
from backend.store.gps_models import TrailPoint
from backend.web import create_app
from tests import support
from tests.conftest import store_context

REDIS_URL = "redis://127.0.0.1:6379/6"
pytestmark = pytest.mark.timeout(60)
SHIFT_START = datetime(2026, 11, 25, 0, 0, tzinfo=timezone.utc)  # 08:00 in Beijing, a Wednesday


@pytest.fixture(params=["sqlite", "postgresql"])
def client(request, tmp_path):
    with store_context(request.param, tmp_path, REDIS_URL) as ctx:
        app = create_app(ctx, screens=False)
        with app.test_client() as c:
            c.store = ctx
            yield c


def login(client, username: str) -> dict:
    r = client.post("/api/v1/auth/token", json={"username": username, "password": support.PASSWORD})
    assert r.status_code == 200, r.json
    return {"Authorization": f"Bearer {r.json['token']}"}


def assert_error(r, status: int, field: str | None = None):
    assert r.status_code == status, (r.status_code, r.get_data(as_text=True))
    assert set(r.json["error"]) == {"code", "message", "details"}
    if field:
        assert r.json["error"]["details"].get("field") == field, r.json


def add_phone(client, headers) -> dict:
    r = client.post("/api/v1/devices", headers=headers, json={
        "protocol": "osmand", "identifier": "insp-phone", "kind": "person", "person": "inspector"})
    assert r.status_code == 201, r.json
    return r.json


def test_shift_from_a_duty_grid_and_validation(client):
    admin = login(client, "dispatcher")
    r = client.post("/api/v1/duty/shifts", headers=admin, json={
        "name": "白班", "person": "inspector", "start": "08:00", "end": "18:00", "days": [1, 2, 3, 4, 5],
        "duty_grid_code": "D1"})
    assert r.status_code == 201, r.json
    assert r.json["days"] == "12345" and len(r.json["grid_codes"]) == 16 and r.json["duty_grid_code"] == "D1"
    shift_id = r.json["id"]
    r = client.patch(f"/api/v1/duty/shifts/{shift_id}", headers=admin, json={"end": "17:30"})
    assert r.status_code == 200 and r.json["end"] == "17:30"
    listed = client.get("/api/v1/duty/shifts?person=inspector", headers=login(client, "inspector")).json["shifts"]
    assert [s["id"] for s in listed] == [shift_id]
    good = {"person": "inspector", "start": "08:00", "end": "18:00", "grid_codes": [support.grid_code(0, 0)]}
    for change, field in [({"start": "8 o'clock"}, "start"), ({"end": "24:30"}, "end"), ({"days": "9"}, "days"),
                          ({"grid_codes": ["110101999999999"]}, "grid_codes"), ({"grid_codes": []}, "grid_codes"),
                          ({"person": "nobody"}, "person"), ({"device_id": 12345}, "person"),
                          ({"duty_grid_code": "D9"}, "duty_grid_code"), ({"colour": "red"}, None)]:
        assert_error(client.post("/api/v1/duty/shifts", headers=admin, json=good | change), 400, field)
    no_one = {k: v for k, v in good.items() if k != "person"}
    assert_error(client.post("/api/v1/duty/shifts", headers=admin, json=no_one), 400, "person")
    assert_error(client.post("/api/v1/duty/shifts", headers=login(client, "inspector"), json=good), 403)
    assert client.delete(f"/api/v1/duty/shifts/{shift_id}", headers=admin).status_code == 204
    assert_error(client.get(f"/api/v1/duty/shifts/{shift_id}", headers=admin), 404)


def write_stream(positions: list[Position]) -> None:
    async def go() -> None:
        r = aioredis.Redis.from_url(REDIS_URL)
        pipeline = PositionPipeline(r, max_delay=0.001)
        pipeline.start()
        pipeline.submit(positions)
        await pipeline.close()
        await r.aclose()
    asyncio.run(go())


def test_daily_report_of_a_person(client):
    admin = login(client, "dispatcher")
    phone = add_phone(client, admin)
    area = [support.grid_code(0, 0)]
    r = client.post("/api/v1/duty/shifts", headers=admin, json={
        "name": "上午班", "person": "inspector", "start": "08:00", "end": "10:00", "days": "3", "grid_codes": area})
    assert r.status_code == 201, r.json
    (a_lat, a_lon), (b_lat, b_lon) = support.inside(0, 0), (support.inside(0, 0)[0] + 0.0005, support.inside(0, 0)[1])
    away = support.inside(2, 2)

    def at(minute: int) -> datetime:
        return SHIFT_START + timedelta(minutes=minute)

    track: list[tuple[int, float, float]] = []
    for minute in range(12, 40):  # arrives 12 minutes late, walks to and fro
        track.append((minute, *((a_lat, a_lon) if minute % 2 == 0 else (b_lat, b_lon))))
    for minute in range(40, 60):  # 20 minutes out of the area
        track.append((minute, *away))
    for minute in range(60, 90):  # back; parked 65-75; silent from 09:29 (leaves early)
        spot = (a_lat, a_lon) if 65 <= minute <= 75 or minute % 2 == 0 else (b_lat, b_lon)
        track.append((minute, *spot))
    archived, recent = track[:45], track[45:]
    with client.store.engine.begin() as conn:
        conn.execute(insert(TrailPoint.__table__), [
            {"device_id": phone["id"], "time": at(m), "lat": lat, "lon": lon, "speed": 4.0, "heading": 0.0,
             "altitude": 0.0, "valid": True, "alarm": 0, "status": 0} for m, lat, lon in archived])
    write_stream([Position("osmand:insp-phone", at(m).timestamp(), lat, lon, 4.0) for m, lat, lon in recent])

    r = client.get("/api/v1/duty/report?person=inspector&date=2026-11-25", headers=login(client, "leader"))
    assert r.status_code == 200, r.json
    [shift] = r.json["shifts"]
    assert shift["status"] == "finished" and shift["points"] == len(track)
    assert shift["start"] == "2026-11-25T00:00:00Z" and shift["end"] == "2026-11-25T02:00:00Z"
    assert shift["inside_s"] == (28 + 29) * 60
    assert shift["outside_s"] == 20 * 60
    assert shift["no_signal_s"] == (12 + 31) * 60
    assert shift["late_start"] is True and shift["late_s"] == 12 * 60
    assert shift["early_leave"] is True and shift["early_s"] == 31 * 60
    assert shift["out_periods"] == [{"start": "2026-11-25T00:40:00Z", "end": "2026-11-25T01:00:00Z",
                                     "duration_s": 1200}]
    away_stop, parked = shift["stops"]  # standing out of the area counts as a stop too
    assert away_stop["start"] == "2026-11-25T00:40:00Z" and away_stop["duration_s"] == 19 * 60
    assert away_stop["in_area"] is False and away_stop["grid_code"] == support.grid_code(2, 2)
    assert parked["start"] == "2026-11-25T01:04:00Z" and parked["duration_s"] == 12 * 60  # 64-76, same spot
    assert parked["in_area"] is True
    expected = sum(distance_m(p[1], p[2], q[1], q[2]) for p, q in zip(track, track[1:]))
    assert shift["distance_m"] == pytest.approx(expected, abs=0.2)
    assert r.json["totals"]["late_starts"] == 1 and r.json["totals"]["stops"] == 2
    other_day = client.get("/api/v1/duty/report?person=inspector&date=2026-11-26", headers=admin)
    assert other_day.json["shifts"] == []  # the shift runs on Wednesdays only


def test_report_refuses_bad_input(client):
    admin = login(client, "dispatcher")
    assert_error(client.get("/api/v1/duty/report?person=inspector&date=26/11/2026", headers=admin), 400, "date")
    assert_error(client.get("/api/v1/duty/report?date=2026-11-25", headers=admin), 400, "person")
    assert_error(client.get("/api/v1/duty/report?person=nobody&date=2026-11-25", headers=admin), 404)
    assert_error(client.get("/api/v1/duty/report?person=inspector"), 401)
