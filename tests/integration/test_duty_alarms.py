"""Duty alarms (履职告警): raised once while a shift runs, stored in SQL, published on
citywall:gps:alarms, cleared when the condition ends (SQLite and PostgreSQL, real Redis db 6)."""
from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timedelta, timezone

import pytest
import redis as redis_lib
from redis import asyncio as aioredis

from backend.gps.pipeline import PositionPipeline
from backend.gps.position import Position
from backend.services import duty, gps
from backend.web import create_app
from tests import support
from tests.conftest import store_context

REDIS_URL = "redis://127.0.0.1:6379/6"
pytestmark = pytest.mark.timeout(60)
AREA = [support.grid_code(0, 0)]


@pytest.fixture(params=["sqlite", "postgresql"])
def ctx(request, tmp_path):
    with store_context(request.param, tmp_path, REDIS_URL) as context:
        yield context


def write(positions: list[Position]) -> None:
    async def go() -> None:
        r = aioredis.Redis.from_url(REDIS_URL)
        pipeline = PositionPipeline(r, max_delay=0.001)
        pipeline.start()
        pipeline.submit(positions)
        await pipeline.close()
        await r.aclose()
    asyncio.run(go())


def running_shift(ctx, **who) -> dict:
    """A shift that started two hours ago and ends in two hours (local time)."""
    local = datetime.now(ctx.calendar.tz)
    return duty.create_shift({"name": "测试班", "start": (local - timedelta(hours=2)).strftime("%H:%M"),
                              "end": (local + timedelta(hours=2)).strftime("%H:%M"), "grid_codes": AREA, **who})


def subscriber():
    pubsub = redis_lib.Redis.from_url(REDIS_URL).pubsub()
    pubsub.subscribe(duty.CHANNEL_ALARMS)
    pubsub.get_message(timeout=1)
    return pubsub


def next_alarm(pubsub) -> dict:
    deadline = time.time() + 5
    while time.time() < deadline:
        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
        if message is not None:
            return json.loads(message["data"])
    raise AssertionError("no alarm published")


def test_out_of_area_is_raised_once_and_cleared(ctx):
    truck = gps.create_device({"protocol": "jt808", "identifier": "013900000001", "kind": "vehicle",
                               "plate": "京AH0001", "vehicle_type": "环卫车"})
    shift = running_shift(ctx, device_id=truck["id"])
    now = time.time()
    inside, outside = support.inside(0, 0), support.inside(3, 3)
    write([Position(truck["device"], now - 1800 + i * 30, *inside) for i in range(20)]  # in the area
          + [Position(truck["device"], now - 1200 + i * 30, *outside) for i in range(41)])  # out for 20 min
    pubsub = subscriber()
    at = datetime.fromtimestamp(now, timezone.utc)
    assert duty.tick(at) == {"raised": 1, "cleared": 0}
    message = next_alarm(pubsub)
    assert message["type"] == "duty_alarm" and message["state"] == "raised" and message["kind"] == "out_of_area"
    assert message["plate"] == "京AH0001" and message["shift_id"] == shift["id"]
    assert message["lat"] == pytest.approx(outside[0]) and "越界" in message["message"]
    [stored] = duty.list_alarms(active=True)
    assert stored["kind"] == "out_of_area" and stored["device_id"] == truck["id"]
    since = datetime.fromisoformat(stored["since"].replace("Z", "+00:00")).timestamp()
    assert abs(since - (now - 1200)) <= 1  # the first fix out of the area (whole seconds)
    assert duty.tick(at + timedelta(seconds=5)) == {"raised": 0, "cleared": 0}  # still out: no second alarm
    write([Position(truck["device"], now + 10, *inside)])
    assert duty.tick(at + timedelta(seconds=20)) == {"raised": 0, "cleared": 1}
    assert next_alarm(pubsub)["state"] == "cleared"
    assert duty.list_alarms(active=True) == []
    [ended] = duty.list_alarms(active=False)
    assert ended["ended_at"] is not None
    pubsub.close()


def test_no_signal_during_a_shift(ctx):
    phone = gps.create_device({"protocol": "osmand", "identifier": "insp-phone", "kind": "person",
                               "person": "inspector"})
    running_shift(ctx, person="inspector")
    now = time.time()
    write([Position(phone["device"], now - 1500 + i * 30, *support.inside(0, 0), received=now - 900)
           for i in range(20)])  # silent for the last 15 minutes
    assert duty.tick(datetime.fromtimestamp(now, timezone.utc)) == {"raised": 1, "cleared": 0}
    [alarm] = duty.list_alarms(active=True)
    assert alarm["kind"] == "no_signal" and alarm["person"] == "inspector"


def test_a_person_without_any_device_has_no_signal(ctx):
    running_shift(ctx, person="inspector")
    assert duty.tick()["raised"] == 1
    assert duty.list_alarms(active=True)[0]["kind"] == "no_signal"


def test_no_alarm_outside_the_shift_and_inside_the_area(ctx):
    truck = gps.create_device({"protocol": "jt808", "identifier": "013900000001", "kind": "vehicle",
                               "plate": "京AH0001", "vehicle_type": "环卫车"})
    local = datetime.now(ctx.calendar.tz)
    duty.create_shift({"start": (local + timedelta(hours=2)).strftime("%H:%M"),
                       "end": (local + timedelta(hours=3)).strftime("%H:%M"), "grid_codes": AREA,
                       "device_id": truck["id"]})  # later today (or tomorrow morning)
    running = running_shift(ctx, device_id=truck["id"])
    now = time.time()
    write([Position(truck["device"], now - 1200 + i * 30, *support.inside(0, 0)) for i in range(41)])
    assert duty.tick(datetime.fromtimestamp(now, timezone.utc)) == {"raised": 0, "cleared": 0}
    assert running["id"] and duty.list_alarms() == []


def test_alarms_through_the_api(ctx):
    running_shift(ctx, person="inspector")
    duty.tick()
    app = create_app(ctx, screens=False)
    with app.test_client() as client:
        token = client.post("/api/v1/auth/token", json={"username": "leader", "password": support.PASSWORD})
        headers = {"Authorization": f"Bearer {token.json['token']}"}
        r = client.get("/api/v1/duty/alarms?active=true", headers=headers)
        assert r.status_code == 200 and [a["kind_zh"] for a in r.json["alarms"]] == ["无信号"]
        assert client.get("/api/v1/duty/alarms?active=false", headers=headers).json["alarms"] == []
        assert client.get("/api/v1/duty/alarms?active=perhaps", headers=headers).status_code == 400
    ctx.outbox.stop()
