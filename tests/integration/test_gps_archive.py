"""Trail archiver: the trail stream into gps_trail_points with a consumer group (SQLite and
PostgreSQL, real Redis db 6): everything stored once, a restart resumes, nothing is lost."""
from __future__ import annotations

import asyncio
import time

import pytest
import redis as redis_lib
from redis import asyncio as aioredis
from sqlalchemy import func, select

from backend.gps import archive
from backend.gps.archive import Archiver
from backend.gps.pipeline import KEY_TRAIL, PositionPipeline
from backend.gps.position import Position
from backend.store.gps_models import Device, TrailPoint
from tests import support
from tests.conftest import store_context

REDIS_URL = "redis://127.0.0.1:6379/6"
pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=["sqlite", "postgresql"])
def ctx(request, tmp_path):
    with store_context(request.param, tmp_path, REDIS_URL) as context:
        yield context


def write_positions(positions: list[Position], max_batch: int = 7) -> None:
    """Through the gateway's pipeline, in small batches so there are many stream entries."""
    async def go() -> None:
        client = aioredis.Redis.from_url(REDIS_URL)
        pipeline = PositionPipeline(client, max_batch=max_batch, max_delay=0.001)
        pipeline.start()
        for start in range(0, len(positions), max_batch):
            assert pipeline.submit(positions[start:start + max_batch])
            await asyncio.sleep(0.005)
        await pipeline.close()
        await client.aclose()
    asyncio.run(go())


def fixes(n: int, devices=("jt808:013900000001", "osmand:phone-7")) -> list[Position]:
    now = time.time() - 3600
    lat, lon = support.inside()
    return [Position(devices[i % len(devices)], now + i, lat + i * 1e-5, lon, 12.5, 45.0, 30.0, True, 0, 2)
            for i in range(n)]


def stored(ctx) -> list[tuple]:
    with ctx.engine.connect() as conn:
        return conn.execute(select(Device.identifier, TrailPoint.time, TrailPoint.lat, TrailPoint.speed)
                            .join(Device, Device.id == TrailPoint.device_id).order_by(TrailPoint.time)).all()


def pending(ctx) -> int:
    return ctx.redis.xpending(KEY_TRAIL, archive.GROUP)["pending"]


def test_every_position_is_archived_once_with_its_device(ctx):
    positions = fixes(60)
    write_positions(positions)
    archiver = Archiver(ctx.redis, ctx.engine, count=3)
    assert archiver.drain(max_rounds=1000) == 60
    rows = stored(ctx)
    assert len(rows) == 60
    assert {r.identifier for r in rows} == {"013900000001", "phone-7"}
    assert rows[0].speed == 12.5 and rows[0].lat == pytest.approx(positions[0].lat)
    assert pending(ctx) == 0
    assert archiver.drain() == 0  # nothing new
    with ctx.engine.connect() as conn:  # unknown devices were registered with the right kind
        kinds = dict(conn.execute(select(Device.identifier, Device.kind)).all())
    assert kinds == {"013900000001": "vehicle", "phone-7": "person"}
    write_positions(fixes(5, ("jt808:013900000001",)))
    assert archiver.drain() == 5 and len(stored(ctx)) == 65


def test_entries_read_before_a_crash_are_archived_after_the_restart(ctx):
    write_positions(fixes(40))
    crashed = Archiver(ctx.redis, ctx.engine, consumer="worker-a", count=1000)
    crashed._prepare()
    assert crashed._read(">")  # read, then the process died before storing them
    assert pending(ctx) > 0
    restarted = Archiver(ctx.redis, ctx.engine, consumer="worker-a")
    assert restarted.drain() == 40
    assert len(stored(ctx)) == 40 and pending(ctx) == 0


class AckFails:
    """A Redis client whose XACK fails, like a crash between the commit and the acknowledgement."""

    def __init__(self, real):
        self.real = real

    def __getattr__(self, name):
        return getattr(self.real, name)

    def xack(self, *args):
        raise redis_lib.ConnectionError("gone")


def test_a_crash_between_commit_and_ack_stores_nothing_twice(ctx):
    write_positions(fixes(30))
    with pytest.raises(redis_lib.ConnectionError):
        Archiver(AckFails(ctx.redis), ctx.engine, consumer="worker-a", count=1000).drain()
    assert len(stored(ctx)) == 30 and pending(ctx) > 0
    write_positions(fixes(10, ("jt808:013900000002",)))
    assert Archiver(ctx.redis, ctx.engine, consumer="worker-a").drain() == 10
    assert len(stored(ctx)) == 40 and pending(ctx) == 0


def test_entries_left_by_another_consumer_are_taken_over(ctx, monkeypatch):
    write_positions(fixes(20))
    dead = Archiver(ctx.redis, ctx.engine, consumer="worker-dead", count=1000)
    dead._prepare()
    assert dead._read(">")
    monkeypatch.setattr(archive, "CLAIM_IDLE_MS", 0)
    assert Archiver(ctx.redis, ctx.engine, consumer="worker-live").drain() == 20
    assert pending(ctx) == 0


def test_a_malformed_entry_is_skipped_not_blocking(ctx):
    ctx.redis.xadd(KEY_TRAIL, {"n": 1, "p": "not json"})
    write_positions(fixes(4))
    assert Archiver(ctx.redis, ctx.engine).drain() == 4
    assert pending(ctx) == 0
    with ctx.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(TrailPoint)).scalar_one() == 4
