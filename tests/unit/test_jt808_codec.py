"""JT/T 808 codec against real frames captured from devices.

Frames marked "protocols.md" are the worked examples of /work/shared/reference/protocols.md §3.8,
verified byte by byte there. The others come from the public Traccar test suite,
traccar/traccar: src/test/java/org/traccar/protocol/Jt808ProtocolDecoderTest.java (commit
083ed8edc3820be42bc98f8f5ea23f277002b297); that file
gives frames in their unescaped form (flags, payload, checksum), so a frame holding 0x7D or
0x7E inside is escaped here before it goes on the wire.
"""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from backend.gps import jt808
from backend.gps.jt808 import FrameError

# protocols.md Example 1 (Traccar test): 0x0200, 2013 header, phone 051160004464, serial 13
LOCATION_2013 = ("7e02000048051160004464000d00000000000c00020159885e06cbf344000000000000200807180722"
                 "01040000000130011c310109e4020063e50100e60100e7080000000000000000ee0a01cc01262c009a674300"
                 "1e7e")
# protocols.md Example 2 (Traccar test): 0x0100 register, 2013 header
REGISTER_2013 = ("7e0100002d0141305678720024002c012f373031313142534a2d41362d424400000000000000000000003035"
                 "363738373201d4c14238383838386d7e")
# protocols.md Example 3 (Traccar test): 0x0704 batch, 2019 header
BATCH_2019 = ("7e0704402d0100000866496077582164881d0001000028000000000000000701a00192091f2a4700160000"
              "000226050916422701040000258230010031010e507e")
# protocols.md smaller frames (Traccar tests)
HEARTBEAT_2013 = "7e0002000004304832546500b7ca7e"
AUTH_2013 = "7E0102000E013511221122000661757468656E7469636174696F6E3F7E"
REGISTER_2019 = ("7e0100405c010000086649607758216452180000000000000000000000000000004d44333030000000000000"
                 "0000000000000000000000000000000000000038363634393630373735383231363400000000000000000000"
                 "000000000004000000000000000000000000000000007a7e")
# Traccar Jt808ProtocolDecoderTest: 0x0704 2013 header, blind-area back-fill, satellites 14
BATCH_2013_BACKFILL = ("7e070400510144503762020002000101004c00040100000800030202301006f893e8001d000000952608"
                       "17221812140400000000170200000104000036c9030200002504000000002a02000030011f31010eea04"
                       "020c8300ef0400000000037e")
# Traccar Jt808ProtocolDecoderTest: 0x0200 with 0x7D bytes inside its 0x5D cell item (unescaped form)
LOCATION_WITH_7D = ("7E0200008201215233475100030000000000000003015A7F6106CF8CEC003D000000002107131148190104"
                    "0000005630011931011AE10200755D3D0601CC0024990A7dA0032301CC002499099B2941FC01CC00249909"
                    "9B29430B01CC0024990A7dA0290601CC0024990A7dA015FD01CC0026220994506BFFFE157C01040000000"
                    "1F10C000000000000000000000000997E")
# Traccar Jt808ProtocolDecoderTest: 0x0200 not positioned, ACC on, IO status item 0x2A
LOCATION_NO_FIX = ("7e0200002c00160128561400020000000000040001005de1f7065c6cef000000000000170117100442010400"
                   "00a9002a02000030011b3101030c7e")
# Traccar Jt808ProtocolDecoderTest: 0x0102 auth from a terminal whose 6 id bytes are not BCD
AUTH_BINARY_ID = "7e010200204f07788ef67601824f4459344f544d314d4459774d4441314d444977626d5633553235536457786cba7e"
# Traccar Jt808ProtocolDecoderTest: 0x0100 register, plate colour 2, plate "ABC00000"
REGISTER_YELLOW = ("7e0100002d007089994489002800000000000000000048422d52303347424400000000000000000000003139"
                   "3036373531024142433030303030d17e")


def wire(unescaped_hex: str) -> bytes:
    """A frame from its unescaped hex (as Traccar's tests write it) to its wire form."""
    raw = bytes.fromhex(unescaped_hex)
    return b"\x7e" + jt808.escape(raw[1:-1]) + b"\x7e"


def decode(unescaped_hex: str) -> jt808.Message:
    return jt808.decode_frame(wire(unescaped_hex)[1:-1])


def utc(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp())


# ----------------------------------------------------------------------------- framing


def test_escape_vector_from_the_standard_round_trips():
    assert jt808.escape(bytes.fromhex("307e087d55")) == bytes.fromhex("307d02087d0155")
    assert jt808.unescape(bytes.fromhex("307d02087d0155")) == bytes.fromhex("307e087d55")


def test_unescape_refuses_a_lone_escape_byte():
    with pytest.raises(FrameError):
        jt808.unescape(bytes.fromhex("307d0355"))
    with pytest.raises(FrameError):
        jt808.unescape(bytes.fromhex("30557d"))


def test_checksum_is_xor_of_header_and_body():
    payload = bytes.fromhex(HEARTBEAT_2013)[1:-2]
    assert jt808.checksum(payload) == 0xCA
    assert jt808.checksum(b"") == 0
    assert jt808.checksum(bytes(range(256)) * 3) == 0


def test_bad_checksum_is_refused():
    raw = bytearray(bytes.fromhex(HEARTBEAT_2013))
    raw[-2] ^= 0x01
    with pytest.raises(FrameError, match="checksum"):
        jt808.decode_frame(bytes(raw[1:-1]))


def test_length_field_must_match_the_body():
    raw = bytes.fromhex(LOCATION_2013)[1:-2]
    truncated = raw[:-4]
    with pytest.raises(FrameError, match="body length"):
        jt808.decode_frame(jt808.frame(truncated)[1:-1])


def test_real_frame_with_7d_bytes_is_escaped_and_decodes_back():
    on_wire = wire(LOCATION_WITH_7D)
    assert b"\x7d\x01" in on_wire  # its 0x7D bytes travel escaped
    message = jt808.decode_frame(on_wire[1:-1])
    assert message.header.phone == "012152334751"
    location = jt808.decode_location(message.body)
    assert (location.lat, location.lon) == (22.708065, 114.265324)
    assert location.time == utc("2021-07-13T03:48:19")
    assert location.attrs["satellites"] == 26
    assert location.attrs["signal"] == 25
    assert location.attrs["mileage"] == 8.6


def test_split_frames_keeps_the_partial_tail():
    stream = bytes.fromhex(HEARTBEAT_2013) + bytes.fromhex(LOCATION_2013)[:20]
    frames, rest = jt808.split_frames(stream)
    assert len(frames) == 1
    assert jt808.decode_frame(frames[0]).header.msg_id == jt808.HEARTBEAT
    frames, rest = jt808.split_frames(rest + bytes.fromhex(LOCATION_2013)[20:])
    assert jt808.decode_frame(frames[0]).header.msg_id == jt808.LOCATION
    assert rest == b""


# ----------------------------------------------------------------------------- 2013 messages


def test_location_2013_example_1():
    message = decode(LOCATION_2013)
    header = message.header
    assert (header.msg_id, header.phone, header.serial, header.is_2019) == (0x0200, "051160004464", 13, False)
    location = jt808.decode_location(message.body)
    assert location.lat == 22.64483 and location.lon == 114.02938
    assert (location.altitude, location.speed, location.heading) == (0, 0.0, 0)
    assert location.time == utc("2020-08-07T10:07:22")  # 18:07:22 GMT+8
    assert location.valid
    assert location.alarm == 0
    flags = jt808.status_flags(location.status)
    assert flags["acc"] is False and flags["positioned"] is True
    assert flags["gnss"] == ["gps", "beidou"]
    assert location.attrs["mileage"] == 0.1
    assert location.attrs["signal"] == 28
    assert location.attrs["satellites"] == 9
    assert location.attrs["xe4"] == "0063"  # vendor item kept raw


def test_location_position_matches_decode_location():
    message = decode(LOCATION_2013)
    position = jt808.location_position(message.body, "jt808:051160004464", 5.0)
    assert position.device == "jt808:051160004464"
    assert (position.lat, position.lon, position.time) == (22.64483, 114.02938, utc("2020-08-07T10:07:22"))
    assert position.valid and position.received == 5.0
    assert jt808.decode_items(position.items)["satellites"] == 9


def test_location_without_fix_keeps_the_flag():
    location = jt808.decode_location(decode(LOCATION_NO_FIX).body)
    assert not location.valid
    assert jt808.status_flags(location.status)["acc"] is True
    assert location.attrs["satellites"] == 3
    assert location.attrs["io_status"] == 0
    assert location.time == utc("2017-01-17T02:04:42")


def test_register_2013_example_2():
    message = decode(REGISTER_2013)
    assert (message.header.phone, message.header.serial) == ("014130567872", 36)
    registration = jt808.decode_register(message.body, message.header.is_2019)
    assert registration == jt808.Registration(44, 303, "70111", "BSJ-A6-BD", "0567872", 1, "粤B88888")


def test_register_with_yellow_plate():
    registration = jt808.decode_register(decode(REGISTER_YELLOW).body, False)
    assert (registration.model, registration.terminal_id) == ("HB-R03GBD", "1906751")
    assert (registration.plate_color, registration.plate) == (2, "ABC00000")


def test_register_body_round_trips():
    original = jt808.Registration(44, 303, "70111", "BSJ-A6-BD", "0567872", 1, "粤B88888")
    assert jt808.decode_register(jt808.encode_register(original), False) == original
    assert jt808.decode_register(jt808.encode_register(original, True), True) == original


def test_auth_2013():
    message = decode(AUTH_2013)
    assert (message.header.phone, message.header.serial) == ("013511221122", 6)
    assert jt808.decode_auth(message.body, False).auth_code == "authentication"


def test_terminal_id_that_is_not_bcd_keeps_its_hex_spelling():
    message = decode(AUTH_BINARY_ID)
    assert message.header.phone == "4f07788ef676"
    assert jt808.decode_auth(message.body, False).auth_code == "ODY4OTM1MDYwMDA1MDIwbmV3U25SdWxl"


def test_heartbeat_2013():
    message = decode(HEARTBEAT_2013)
    assert (message.header.msg_id, message.header.phone, message.header.serial) == (0x0002, "043048325465", 183)
    assert message.body == b""


def test_batch_2013_blind_area_backfill():
    message = decode(BATCH_2013_BACKFILL)
    kind, items = jt808.decode_batch(message.body)
    assert kind == 1 and len(items) == 1
    location = jt808.decode_location(items[0])
    assert location.attrs["satellites"] == 14  # the value Traccar's test asserts
    assert (location.lat, location.lon) == (33.697808, 116.954088)
    assert location.time == utc("2026-08-17T14:18:12")


# ----------------------------------------------------------------------------- 2019 messages


def test_batch_2019_example_3():
    message = decode(BATCH_2019)
    header = message.header
    assert header.is_2019 and header.version == 1
    assert header.phone == "00000866496077582164"  # 20 digits, leading zeros kept
    assert header.serial == 0x881D
    kind, items = jt808.decode_batch(message.body)
    assert kind == 0 and len(items) == 1
    location = jt808.decode_location(items[0])
    assert location.lat == -27.263378  # south bit
    assert location.lon == 153.037383
    assert (location.altitude, location.heading) == (22, 2)
    assert location.attrs == {"mileage": 960.2, "signal": 0, "satellites": 14}
    assert location.time == utc("2026-05-09T08:42:27")


def test_register_2019():
    message = decode(REGISTER_2019)
    assert message.header.is_2019 and message.header.serial == 21016
    registration = jt808.decode_register(message.body, True)
    assert (registration.model, registration.terminal_id) == ("MD300", "866496077582164")
    assert (registration.plate_color, registration.plate) == (4, "")


def test_auth_2019_round_trip():
    auth = jt808.Authentication("abc123", "866496077582164", "V1.2")
    assert jt808.decode_auth(jt808.encode_auth(auth, True), True) == auth


# ----------------------------------------------------------------------------- replies


def test_general_reply_as_traccar_sends_it():
    header = decode(LOCATION_2013).header
    assert jt808.general_reply(header).hex() == "7e800100050511600044640000000d020000df7e"
    assert jt808.general_reply(header, serial=1).hex() == "7e800100050511600044640001000d020000de7e"


def test_heartbeat_reply():
    header = decode(HEARTBEAT_2013).header
    assert jt808.general_reply(header).hex() == "7e80010005043048325465000000b70002004e7e"


def test_general_reply_2019_escapes_its_checksum():
    header = decode(BATCH_2019).header
    assert jt808.general_reply(header).hex() == "7e8001400501000008664960775821640000881d0704007d027e"


def test_register_reply_as_traccar_builds_it():
    header = decode(REGISTER_2013).header
    reply = jt808.register_reply(header, jt808.REGISTER_OK, "014130567872")
    assert reply.hex() == "7e8100000f0141305678720000002400303134313330353637383732887e"
    message = jt808.decode_frame(reply[1:-1])
    assert jt808.decode_register_reply(message.body) == (36, 0, "014130567872")


def test_register_refusal_carries_no_auth_code():
    header = decode(REGISTER_2013).header
    message = jt808.decode_frame(jt808.register_reply(header, jt808.REGISTER_TERMINAL_UNKNOWN, "x")[1:-1])
    assert jt808.decode_register_reply(message.body) == (36, 4, "")


def test_unsupported_reply_result_3():
    header = jt808.Header(0x0900, 0, "013912345678", 77)
    message = jt808.decode_frame(jt808.general_reply(header, jt808.RESULT_UNSUPPORTED)[1:-1])
    assert jt808.decode_general_reply(message.body) == jt808.GeneralReply(77, 0x0900, 3)


# ----------------------------------------------------------------------------- encoders, bits


def test_location_encoder_round_trips_south_west_and_time():
    when = utc("2026-11-26T06:30:15")
    body = jt808.encode_location(-33.8688, -151.2093, when, speed=42.5, heading=271, altitude=58,
                                 alarm=1, items=jt808.encode_item(0x31, b"\x0c"))
    location = jt808.decode_location(body)
    assert (location.lat, location.lon, location.time) == (-33.8688, -151.2093, when)
    assert (location.speed, location.heading, location.altitude) == (42.5, 271, 58)
    assert location.attrs == {"satellites": 12}
    assert jt808.alarm_names(location.alarm) == ["sos"]


def test_bcd_time_is_gmt_plus_8():
    assert jt808.bcd_time(bytes.fromhex("200807180722")) == utc("2020-08-07T10:07:22")
    assert jt808.encode_bcd_time(utc("2020-08-07T10:07:22")) == bytes.fromhex("200807180722")


@pytest.mark.parametrize("raw", ["201307180722", "2008071807a2", "200807250722", "200807186022"])
def test_bad_bcd_time_is_refused(raw):
    with pytest.raises(FrameError):
        jt808.bcd_time(bytes.fromhex(raw))


def test_coordinates_out_of_range_are_refused():
    body = bytearray(jt808.encode_location(22.5, 114.0, utc("2026-01-01T00:00:00")))
    body[8:12] = (91_000_000).to_bytes(4, "big")
    with pytest.raises(FrameError, match="out of range"):
        jt808.decode_location(bytes(body))


def test_alarm_names():
    assert jt808.alarm_names(0) == []
    assert jt808.alarm_names((1 << 1) | (1 << 8) | (1 << 29)) == ["overspeed", "power_off", "collision"]
    assert jt808.alarm_names(1 << 16) == ["bit16"]


def test_items_decoding_units_and_truncation():
    items = (jt808.encode_item(0x01, (12345).to_bytes(4, "big")) + jt808.encode_item(0x02, (456).to_bytes(2, "big"))
             + jt808.encode_item(0x03, (605).to_bytes(2, "big")) + jt808.encode_item(0x30, b"\x1f")
             + b"\x31\x05\x01")  # truncated last item
    assert jt808.decode_items(items) == {"mileage": 1234.5, "fuel": 45.6, "recorder_speed": 60.5, "signal": 31}


def test_batch_with_a_short_item_is_refused():
    body = jt808.encode_batch([jt808.encode_location(22.5, 114.0, utc("2026-01-01T00:00:00"))])
    with pytest.raises(FrameError):
        jt808.decode_batch(body[:-5])
    with pytest.raises(FrameError):
        jt808.decode_batch(b"\x00\x05\x00")


def test_header_2019_encode_decode():
    frame = jt808.encode_message(jt808.HEARTBEAT, "13912345678", 9, b"", version=1)
    header = jt808.decode_frame(frame[1:-1]).header
    assert header.phone == "00000000013912345678" and header.version == 1 and header.serial == 9


def test_phone_too_long_is_refused():
    with pytest.raises(ValueError):
        jt808.encode_message(jt808.HEARTBEAT, "1234567890123", 0)
