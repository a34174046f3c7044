"""The JT/T 808 connection handler without sockets or Redis: a fake transport and pipeline.

Frames are the real ones of test_jt808_codec (protocols.md §3.8 and Traccar's
Jt808ProtocolDecoderTest); replies are checked byte by byte where the standard fixes them.
"""
from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.gps import jt808
from backend.gps.jt808_server import Jt808Connection, Jt808Server
from backend.gps.registry import DeviceInfo, Registry
from backend.gps.stats import Stats
from tests.unit.test_jt808_codec import (AUTH_2013, AUTH_BINARY_ID, BATCH_2019, HEARTBEAT_2013, LOCATION_2013,
                                         LOCATION_WITH_7D, REGISTER_2013, wire)


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str):
        return None

    def get_write_buffer_size(self) -> int:
        return 0

    def abort(self) -> None:
        self.closed = True


class FakePipeline:
    """Queues like PositionPipeline; flush() plays the part of a successful Redis write."""

    def __init__(self, accept: bool = True) -> None:
        self.stats = Stats()
        self.accept = accept
        self.queued: list = []
        self.written: list = []
        self.callbacks: list = []
        self.flush_listeners: list = []

    def submit(self, positions, callback=None) -> bool:
        if not self.accept:
            return False
        self.queued.extend(positions)
        if callback:
            self.callbacks.append(callback)
        return True

    def flush(self) -> None:
        self.written += self.queued
        self.queued = []
        callbacks, self.callbacks = self.callbacks, []
        for callback in callbacks:
            callback(True)
        for listener in self.flush_listeners:
            listener()


def make(devices=(), autoregister=False, accept=True):
    pipeline = FakePipeline(accept)
    registry = Registry(devices, autoregister=autoregister, stats=pipeline.stats)
    server = Jt808Server(registry, pipeline)
    conn = Jt808Connection(server)
    transport = FakeTransport()
    conn.connection_made(transport)
    return conn, transport, pipeline, registry


def replies(transport: FakeTransport) -> list[jt808.Message]:
    frames, rest = jt808.split_frames(b"".join(transport.writes))
    assert rest == b""
    return [jt808.decode_frame(f) for f in frames]


def general(message: jt808.Message) -> tuple[int, int, int]:
    reply = jt808.decode_general_reply(message.body)
    return reply.reply_serial, reply.reply_id, reply.result


KNOWN = [DeviceInfo("jt808", "051160004464"), DeviceInfo("jt808", "043048325465"),
         DeviceInfo("jt808", "014130567872"), DeviceInfo("jt808", "013511221122"),
         DeviceInfo("jt808", "866496077582164"), DeviceInfo("jt808", "012152334751")]


def test_location_is_acknowledged_only_after_the_write():
    conn, transport, pipeline, _ = make(KNOWN)
    conn.data_received(bytes.fromhex(LOCATION_2013))
    assert transport.writes == []  # nothing acknowledged before the write
    pipeline.flush()
    [reply] = replies(transport)
    assert reply.header.phone == "051160004464"
    assert general(reply) == (13, 0x0200, 0)
    [position] = pipeline.written
    assert position.device == "jt808:051160004464"
    assert (position.lat, position.lon) == (22.64483, 114.02938)


def test_heartbeat_answered_at_once():
    conn, transport, _, _ = make(KNOWN)
    conn.data_received(bytes.fromhex(HEARTBEAT_2013))
    [reply] = replies(transport)
    assert reply.header.msg_id == jt808.PLATFORM_REPLY
    assert general(reply) == (183, 0x0002, 0)


def test_a_chunk_answers_other_frames_at_once_and_locations_in_one_write_after_the_flush():
    conn, transport, pipeline, _ = make(KNOWN)
    conn.data_received(bytes.fromhex(LOCATION_2013) + bytes.fromhex(HEARTBEAT_2013)
                       + wire(LOCATION_WITH_7D))
    assert [(m.header.phone, general(m)) for m in replies(transport)] == [
        ("043048325465", (183, 0x0002, 0))]
    transport.writes.clear()
    pipeline.flush()
    assert len(transport.writes) == 1
    got = [(m.header.phone, general(m)) for m in replies(transport)]
    assert got == [("051160004464", (13, 0x0200, 0)), ("012152334751", (3, 0x0200, 0))]
    assert len(pipeline.written) == 2


def test_frames_split_across_reads():
    conn, transport, pipeline, _ = make(KNOWN)
    data = bytes.fromhex(LOCATION_2013)
    for i in range(len(data)):
        conn.data_received(data[i:i + 1])
    pipeline.flush()
    assert [general(m) for m in replies(transport)] == [(13, 0x0200, 0)]


def test_garbage_between_good_frames_is_dropped_and_counted():
    conn, transport, pipeline, _ = make(KNOWN)
    bad_checksum = bytearray(bytes.fromhex(HEARTBEAT_2013))
    bad_checksum[-2] ^= 0xFF
    conn.data_received(b"\x7e\x01\x02\x03\x7e" + bytes.fromhex(HEARTBEAT_2013) + b"hello world"
                       + bytes(bad_checksum) + b"\x7e\x7d\x05\x7e" + bytes.fromhex(LOCATION_2013))
    pipeline.flush()
    assert [general(m) for m in replies(transport)] == [(183, 2, 0), (13, 0x0200, 0)]
    stats = pipeline.stats
    assert stats["frames_malformed"] >= 1
    assert stats["frames_bad_checksum"] >= 1
    assert stats["frames_bad_escape"] == 1
    assert not transport.closed


def test_oversized_partial_frame_closes_the_connection():
    conn, transport, pipeline, _ = make(KNOWN)
    conn.data_received(b"\x7e" + b"\x01" * (jt808.MAX_ESCAPED_FRAME + 10))
    assert transport.closed
    assert pipeline.stats["frames_oversize"] == 1
    assert conn.rest == b""


def test_unknown_terminal_is_refused_and_counted():
    conn, transport, pipeline, _ = make([])
    conn.data_received(bytes.fromhex(LOCATION_2013))
    pipeline.flush()
    assert [general(m) for m in replies(transport)] == [(13, 0x0200, jt808.RESULT_FAILURE)]
    assert pipeline.written == []
    assert pipeline.stats["unknown_devices"] == 1


def test_unknown_terminal_registered_when_autoregistration_is_on():
    conn, transport, pipeline, registry = make([], autoregister=True)
    conn.data_received(bytes.fromhex(LOCATION_2013))
    pipeline.flush()
    assert [general(m) for m in replies(transport)] == [(13, 0x0200, 0)]
    assert registry.find("jt808", "051160004464") is not None
    assert [d.key for d in registry.new_devices] == ["jt808:051160004464"]


def test_register_then_authenticate():
    conn, transport, _, registry = make(KNOWN)
    conn.data_received(bytes.fromhex(REGISTER_2013))
    [reply] = replies(transport)
    assert reply.header.msg_id == jt808.REGISTER_REPLY
    serial, result, code = jt808.decode_register_reply(reply.body)
    assert (serial, result) == (36, 0)
    assert code == registry.auth_code(registry.find("jt808", "014130567872"))
    transport.writes.clear()
    auth = jt808.encode_message(jt808.AUTH, "014130567872", 37, code.encode())
    wrong = jt808.encode_message(jt808.AUTH, "014130567872", 38, b"not-the-code")
    conn.data_received(auth + wrong)
    assert [general(m) for m in replies(transport)] == [(37, 0x0102, 0), (38, 0x0102, 1)]
    assert conn.authenticated


def test_register_refused_for_unknown_terminal():
    conn, transport, _, _ = make([])
    conn.data_received(bytes.fromhex(REGISTER_2013))
    [reply] = replies(transport)
    assert jt808.decode_register_reply(reply.body) == (36, jt808.REGISTER_TERMINAL_UNKNOWN, "")


def test_stored_auth_code_is_required():
    device = DeviceInfo("jt808", "013511221122", auth_code="authentication")
    conn, transport, _, _ = make([device])
    conn.data_received(bytes.fromhex(AUTH_2013))
    assert [general(m) for m in replies(transport)] == [(6, 0x0102, 0)]


def test_terminal_with_a_binary_id_gets_its_replies():
    device = DeviceInfo("jt808", "4f07788ef676", auth_code="ODY4OTM1MDYwMDA1MDIwbmV3U25SdWxl")
    conn, transport, _, _ = make([device])
    conn.data_received(bytes.fromhex(AUTH_BINARY_ID))
    [reply] = replies(transport)
    assert reply.header.phone == "4f07788ef676"
    assert general(reply) == (386, 0x0102, 0)
    transport.writes.clear()
    conn.data_received(jt808.frame(bytes.fromhex("0100002d4f07788ef6760001") + bytes.fromhex(
        REGISTER_2013)[13:-2]))
    [reply] = replies(transport)
    assert jt808.decode_register_reply(reply.body)[:2] == (1, 0)


def test_2019_batch_is_answered_in_2019_form():
    conn, transport, pipeline, _ = make(KNOWN)  # registered without leading zeros
    conn.data_received(bytes.fromhex(BATCH_2019))
    pipeline.flush()
    # protocols.md Example 3 reply, with platform serial 1 instead of 0 (checksum 0x7E ^ 0x01)
    assert b"".join(transport.writes).hex() == "7e8001400501000008664960775821640001881d0704007f7e"
    [reply] = replies(transport)
    assert reply.header.is_2019 and reply.header.phone == "00000866496077582164"
    assert general(reply) == (0x881D, 0x0704, 0)
    [position] = pipeline.written
    assert position.device == "jt808:866496077582164"
    assert position.lat == -27.263378


def test_batch_with_a_bad_item_stores_the_good_ones():
    conn, transport, pipeline, _ = make(KNOWN)
    good = jt808.encode_location(22.5, 114.0, 1_790_000_000)
    bad = bytearray(good)
    bad[8:12] = (95_000_000).to_bytes(4, "big")
    frame = jt808.encode_message(jt808.BATCH_LOCATION, "051160004464", 5,
                                 jt808.encode_batch([good, bytes(bad), good]))
    conn.data_received(frame)
    pipeline.flush()
    assert [general(m) for m in replies(transport)] == [(5, 0x0704, jt808.RESULT_MESSAGE_ERROR)]
    assert len(pipeline.written) == 2
    assert pipeline.stats["positions_invalid"] == 1


def test_logout_and_unsupported_messages():
    conn, transport, _, _ = make(KNOWN)
    logout = jt808.encode_message(jt808.LOGOUT, "051160004464", 1)
    other = jt808.encode_message(0x0900, "051160004464", 2, b"\x01passthrough")
    conn.data_received(logout + other)
    assert [general(m) for m in replies(transport)] == [(1, 0x0003, 0), (2, 0x0900, 3)]


def test_split_package_is_answered_unsupported():
    conn, transport, _, _ = make(KNOWN)
    header = bytes.fromhex("0200") + (0x2000 | 28).to_bytes(2, "big") + bytes.fromhex("051160004464") \
        + (9).to_bytes(2, "big") + (2).to_bytes(2, "big") + (1).to_bytes(2, "big")
    conn.data_received(jt808.frame(header + jt808.encode_location(22.5, 114.0, 1_790_000_000)))
    assert [general(m) for m in replies(transport)] == [(9, 0x0200, 3)]


def test_full_pipeline_answers_failure():
    conn, transport, _, _ = make(KNOWN, accept=False)
    conn.data_received(bytes.fromhex(LOCATION_2013))
    assert [general(m) for m in replies(transport)] == [(13, 0x0200, jt808.RESULT_FAILURE)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=120), max_size=6))
def test_random_bytes_never_break_the_connection(chunks):
    conn, transport, pipeline, _ = make(KNOWN)
    for chunk in chunks:
        conn.data_received(chunk)
    # whatever came before, a fresh good frame after a flag is still served
    conn.data_received(b"\x7e" + bytes.fromhex(HEARTBEAT_2013))
    if not transport.closed:
        assert general(replies(transport)[-1]) == (183, 2, 0)


def test_idle_connections_are_closed():
    async def scenario() -> None:
        pipeline = FakePipeline()
        server = Jt808Server(Registry(KNOWN, stats=pipeline.stats), pipeline, idle_timeout=0.2)
        transports = []
        for _ in range(50):
            conn = Jt808Connection(server)
            transport = FakeTransport()
            conn.connection_made(transport)
            transports.append(transport)
        server._reaper = asyncio.get_running_loop().create_task(server._reap_idle())
        await asyncio.sleep(0.7)
        server._reaper.cancel()
        assert all(t.closed for t in transports)
        assert pipeline.stats["connections_idle_closed"] == 50

    asyncio.run(scenario())


def test_connection_limit():
    pipeline = FakePipeline()
    server = Jt808Server(Registry(KNOWN, stats=pipeline.stats), pipeline, max_connections=2)
    transports = [FakeTransport() for _ in range(3)]
    for transport in transports:
        Jt808Connection(server).connection_made(transport)
    assert [t.closed for t in transports] == [False, False, True]


@pytest.mark.parametrize("version", [None, 1])
def test_reply_checksum_fast_path_matches_the_codec(version):
    conn, transport, pipeline, _ = make(KNOWN)
    for serial in (0, 0x7D7E, 0xFFFF, 0x017E):
        frame = jt808.encode_message(jt808.HEARTBEAT, "051160004464", serial, b"", version)
        conn.data_received(frame)
    for message in replies(transport):
        assert message.header.version == version
        assert message.header.phone.endswith("051160004464")
