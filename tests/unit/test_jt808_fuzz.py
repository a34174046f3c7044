"""Property and fuzz tests of the JT/T 808 codec: any input either decodes or raises FrameError."""
from __future__ import annotations

import functools
import operator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.gps import jt808
from backend.gps.jt808 import FrameError

fast = settings(max_examples=300, deadline=None)


@fast
@given(st.binary(max_size=600))
def test_escape_round_trip(data):
    escaped = jt808.escape(data)
    assert b"\x7e" not in escaped
    assert jt808.unescape(escaped) == data


@fast
@given(st.binary(max_size=3000))
def test_checksum_is_xor_of_all_bytes(data):
    assert jt808.checksum(data) == functools.reduce(operator.xor, data, 0)


@fast
@given(st.integers(0, 0xFFFF), st.from_regex(r"\A[0-9]{1,12}\Z"), st.integers(0, 0xFFFF),
       st.binary(max_size=1023), st.one_of(st.none(), st.integers(0, 255)))
def test_message_round_trip(msg_id, phone, serial, body, version):
    wire = jt808.encode_message(msg_id, phone, serial, body, version)
    assert wire[0] == 0x7E and wire[-1] == 0x7E and b"\x7e" not in wire[1:-1]
    message = jt808.decode_frame(wire[1:-1])
    size = 20 if version is not None else 12
    assert message.header.phone == phone.rjust(size, "0")
    assert (message.header.msg_id, message.header.serial, message.body) == (msg_id, serial, body)
    assert message.header.version == version


@fast
@given(st.binary(max_size=200))
def test_random_frames_decode_or_raise_frame_error(raw):
    try:
        message = jt808.decode_frame(raw)
    except FrameError:
        return
    assert len(message.body) == message.header.body_length


@fast
@given(st.binary(max_size=120))
def test_random_frames_with_a_valid_checksum(payload):
    """Well-framed garbage reaches the header parser: it still only raises FrameError."""
    try:
        jt808.decode_frame(jt808.frame(payload)[1:-1])
    except FrameError:
        pass


@fast
@given(st.binary(max_size=200), st.booleans())
def test_body_decoders_never_crash(body, is_2019):
    for decoder in (jt808.decode_location, jt808.decode_batch, jt808.decode_general_reply,
                    jt808.decode_register_reply):
        try:
            decoder(body)
        except FrameError:
            pass
    for decoder in (jt808.decode_register, jt808.decode_auth):
        try:
            decoder(body, is_2019)
        except FrameError:
            pass
    assert isinstance(jt808.decode_items(body), dict)


@fast
@given(st.floats(-85, 85), st.floats(-180, 180), st.integers(946_656_000, 4_102_415_999),
       st.floats(0, 6000), st.integers(0, 359))
def test_location_round_trip(lat, lon, when, speed, heading):
    location = jt808.decode_location(jt808.encode_location(lat, lon, when, speed, heading))
    assert abs(location.lat - lat) <= 5e-7 and abs(location.lon - lon) <= 5e-7
    assert location.time == when
    assert abs(location.speed - speed) <= 0.05 + 1e-9  # speed is sent in 0.1 km/h units
    assert location.heading == heading


def test_times_outside_the_bcd_century_are_refused_when_encoding():
    with pytest.raises(ValueError):
        jt808.encode_bcd_time(4_102_416_000)  # 2100-01-01 08:00 GMT+8
    with pytest.raises(ValueError):
        jt808.encode_bcd_time(946_655_999)  # 1999-12-31 23:59:59 GMT+8


@fast
@given(st.lists(st.binary(min_size=1, max_size=80), max_size=10))
def test_split_frames_recovers_every_frame(payloads):
    stream = b"".join(b"\x7e" + jt808.escape(p) + b"\x7e" for p in payloads)
    frames, rest = jt808.split_frames(stream)
    assert rest == b""
    assert [jt808.unescape(f) for f in frames] == payloads
