"""The position pipeline against the real Redis (127.0.0.1:6379 db 3): keys, batching, summary."""
from __future__ import annotations

import asyncio
import json

import pytest
from redis.asyncio import Redis

from backend.gps.pipeline import (CHANNEL_SUMMARY, KEY_LAST, KEY_LATENCY, KEY_LATEST, KEY_STATS,
                                  KEY_TRAIL, PositionPipeline)
from backend.gps.position import Position, position_from_json, trail_positions
from backend.gps.stats import Stats

REDIS_URL = "redis://127.0.0.1:6379/3"
pytestmark = pytest.mark.timeout(60)


def fix(n: int, device: str | None = None, when: float = 1_790_000_000.0, **kw) -> Position:
    return Position(device or f"jt808:0139{n:08d}", when, 22.5 + n * 1e-4, 114.0 + n * 1e-4,
                    speed=kw.pop("speed", 30.0), heading=90, received=kw.pop("received", 0.0), **kw)


async def with_pipeline(scenario, **options):
    redis = Redis.from_url(REDIS_URL)
    await redis.flushdb()
    options.setdefault("max_delay", 0.01)
    options.setdefault("summary_interval", 0.2)
    pipeline = PositionPipeline(redis, Stats(), **options)
    pipeline.start()
    try:
        await scenario(pipeline, redis)
    finally:
        await pipeline.close()
        await redis.flushdb()
        await redis.aclose()


async def trail(redis) -> tuple[int, list[Position]]:
    entries = await redis.xrange(KEY_TRAIL)
    return len(entries), [p for _, fields in entries for p in trail_positions(fields[b"p"])]


def test_batches_are_cut_at_max_batch_and_every_position_is_acknowledged():
    async def scenario(pipeline: PositionPipeline, redis: Redis) -> None:
        acks: list[bool] = []
        done = asyncio.Event()

        def ack(ok: bool) -> None:
            acks.append(ok)
            if len(acks) == 50:
                done.set()

        for chunk in range(50):  # 50 submissions of 50 positions, 1,000 devices
            assert pipeline.submit([fix((chunk * 50 + i) % 1000, when=1_790_000_000 + chunk)
                                    for i in range(50)], ack)
        await asyncio.wait_for(done.wait(), 10)
        assert acks == [True] * 50
        entries, positions = await trail(redis)
        assert len(positions) == 2500
        assert entries >= 2500 // 400  # no command carries more than max_batch positions
        assert max(int(fields[b"n"]) for _, fields in await redis.xrange(KEY_TRAIL)) <= 400
        assert await redis.zcard(KEY_LATEST) == 1000
        assert pipeline.stats["positions_written"] == 2500

    asyncio.run(with_pipeline(scenario, max_batch=400))


def test_latest_position_is_not_overwritten_by_an_older_fix():
    async def scenario(pipeline: PositionPipeline, redis: Redis) -> None:
        done = asyncio.Event()
        newer = Position("jt808:1", 2000.0, 30.0, 120.0)
        older = Position("jt808:1", 1000.0, 10.0, 100.0)  # blind-area back-fill arriving late
        pipeline.submit([newer])
        await asyncio.sleep(0.1)
        pipeline.submit([older], lambda ok: done.set())
        await asyncio.wait_for(done.wait(), 5)
        [(lon, lat)] = await redis.geopos(KEY_LATEST, "jt808:1")
        assert abs(lat - 30.0) < 1e-5 and abs(lon - 120.0) < 1e-5
        _, positions = await trail(redis)
        assert [p.time for p in positions] == [2000.0, 1000.0]  # both kept in the trail

    asyncio.run(with_pipeline(scenario))


def test_position_without_fix_is_not_placed_on_the_map():
    async def scenario(pipeline: PositionPipeline, redis: Redis) -> None:
        done = asyncio.Event()
        pipeline.submit([Position("jt808:2", 1000.0, 0.0, 0.0, valid=False)], lambda ok: done.set())
        await asyncio.wait_for(done.wait(), 5)
        assert await redis.zcard(KEY_LATEST) == 0
        _, [position] = await trail(redis)
        assert position.valid is False

    asyncio.run(with_pipeline(scenario))


def test_summary_last_hash_stats_and_latency():
    async def scenario(pipeline: PositionPipeline, redis: Redis) -> None:
        pubsub = redis.pubsub()
        await pubsub.subscribe(CHANNEL_SUMMARY)
        alarm = Position("jt808:3", 1_790_000_000, 22.6, 114.1, 0.0, 45, 12, True, 1, 3,
                         {"note": "sos"}, 1.0, b"\x31\x01\x09")
        moving = fix(4, speed=50.0)
        pipeline.submit([alarm, moving])
        message = None
        while message is None or message["type"] != "message":
            message = await pubsub.get_message(timeout=3.0)
        summary = json.loads(message["data"])
        items = {d["device"]: d for d in summary["devices"]}
        assert items["jt808:3"] == {"device": "jt808:3", "lat": 22.6, "lon": 114.1, "speed": 0.0,
                                    "heading": 45, "time": "2026-09-21T14:13:20Z", "status": "alarm"}
        assert items[moving.device]["status"] == "moving"
        last = json.loads(await redis.hget(KEY_LAST, "jt808:3"))
        assert last["attrs"] == {"satellites": 9, "note": "sos"}  # JT/T 808 items decoded
        assert position_from_json(await redis.hget(KEY_LAST, "jt808:3")).alarm == 1
        for _ in range(50):  # counters follow with the next summaries
            stats = await redis.hgetall(KEY_STATS)
            latency = await redis.hgetall(KEY_LATENCY)
            if stats.get(b"positions_written") and latency:
                break
            await asyncio.sleep(0.1)
        assert int(stats[b"positions_written"]) == 2
        assert sum(int(v) for v in latency.values()) >= 1
        await pubsub.aclose()

    asyncio.run(with_pipeline(scenario))


def test_full_backlog_refuses_new_positions():
    async def scenario(pipeline: PositionPipeline, redis: Redis) -> None:
        assert pipeline.submit([fix(i) for i in range(5)])
        assert not pipeline.submit([fix(i) for i in range(6)])
        assert pipeline.stats["positions_dropped"] == 6

    asyncio.run(with_pipeline(scenario, max_backlog=10, max_delay=5.0))


def test_close_flushes_what_is_queued():
    async def scenario() -> None:
        redis = Redis.from_url(REDIS_URL)
        await redis.flushdb()
        pipeline = PositionPipeline(redis, max_delay=30.0)
        pipeline.start()
        acks: list[bool] = []
        pipeline.submit([fix(1), fix(2)], acks.append)
        await pipeline.close()
        assert acks == [True]
        assert await redis.zcard(KEY_LATEST) == 2
        await redis.flushdb()
        await redis.aclose()

    asyncio.run(scenario())
