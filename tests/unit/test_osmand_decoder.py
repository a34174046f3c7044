"""OsmAnd decoder against the requests of Traccar's public test suite.

Requests come from traccar/traccar: src/test/java/org/traccar/protocol/OsmAndProtocolDecoderTest.java
(commit 24157c0a2eb94fd6b1d6ed6698d6aedb492d288a)
(also listed in /work/shared/reference/protocols.md §2.2-2.3).
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.gps import osmand
from backend.gps.position import check_coordinates


def query(url: str) -> list[tuple[str, str]]:
    """What a web server hands over for a request line: decoded pairs, '+' as space."""
    return parse_qsl(urlsplit(url).query, keep_blank_values=True)


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


JSON_TRACCAR_CLIENT = (
    '{"location":{"timestamp":"2025-06-15T13:45:12.862Z","coords":{"latitude":37.4219983,'
    '"longitude":-122.084,"accuracy":5,"speed":0,"heading":-1,"altitude":5},"is_moving":false,'
    '"odometer":0,"event":"motionchange","battery":{"level":1,"is_charging":false},'
    '"activity":{"type":"still"},"extras":{},"_":"&id=48241179&lat=37.4219983&lon=-122.084&'
    'timestamp=2025-06-15T13:45:12.862Z&"},"device_id":"48241179"}')
JSON_MOVING = (
    '{"location":{"event":"motionchange","is_moving":false,"uuid":"0e9a2473-a9a7-4c00-997b-fb97d2154e75",'
    '"timestamp":"2021-07-21T08:06:34.444Z","odometer":0,"coords":{"latitude":-6.1148096,'
    '"longitude":106.6837015,"accuracy":3.8,"speed":18.67,"speed_accuracy":0.26,"heading":63,'
    '"heading_accuracy":0.28,"altitude":35.7,"altitude_accuracy":3.8},"activity":{"type":"still",'
    '"confidence":100},"battery":{"is_charging":false,"level":0.79},"extras":{}},"device_id":"8737767034"}')
JSON_EXTRAS = (
    '{"location":{"timestamp":"2025-06-15T13:45:12.862Z","coords":{"latitude":37.4219983,'
    '"longitude":-122.084,"accuracy":5,"speed":0,"heading":-1,"altitude":5},"is_moving":false,'
    '"odometer":0,"event":"motionchange","battery":{"level":1,"is_charging":false},'
    '"activity":{"type":"still"},"extras":{"device_string_test":"long_device_id","device_bool_test":true,'
    '"device_bool_false_test":false,"device_integer_test":1,"device_double_test":1.345,'
    '"device_very_long_double_test":1763636.3442}},"device_id":"48241179"}')
JSON_MOCK = (
    '{"location":{"extras":{},"mock":true,"coords":{"speed_accuracy":-1,"speed":-1,"longitude":-122.406417,'
    '"ellipsoidal_altitude":0,"floor":null,"heading_accuracy":-1,"latitude":37.785834000000001,'
    '"accuracy":5,"altitude_accuracy":-1,"altitude":0,"heading":-1},"is_moving":false,"age":188,'
    '"odometer":0,"uuid":"2FB04C65-99CF-42AB-8DD3-EBCB4B108BF8","event":"motionchange",'
    '"battery":{"level":-1,"is_charging":false},"activity":{"type":"unknown","confidence":100},'
    '"timestamp":"2025-05-09T04:11:30.579Z"},"device_id":"658765"}')


def test_basic_query_unix_seconds():
    report = osmand.parse_params(query(
        "/?id=123456&timestamp=1377177267&lat=60.0&lon=30.0&speed=0.0&bearing=0.0&altitude=0&hdop=0.0"))
    assert report.identifier == "123456"
    [p] = report.positions
    assert (p.lat, p.lon, p.time, p.speed, p.heading, p.altitude) == (60.0, 30.0, 1377177267.0, 0.0, 0.0, 0.0)
    assert p.attrs["hdop"] == 0.0 and p.valid


def test_iso_8601_timestamp():
    report = osmand.parse_params(query(
        "/?id=902064&lat=42.06288&lon=-88.23412&timestamp=2016-01-27T18%3A55%3A47Z&hdop=6.0&altitude=224.0&speed=0.0"))
    [p] = report.positions
    assert p.time == utc("2016-01-27T18:55:47")
    assert (p.lat, p.lon, p.altitude) == (42.06288, -88.23412, 224.0)


def test_millisecond_timestamp():
    [p] = osmand.parse_params(query(
        "/?id=902064&lat=42.06288&lon=-88.23412&timestamp=1442068686579&hdop=6.0&altitude=224.0&speed=0.0")).positions
    assert p.time == pytest.approx(1442068686.579)


def test_local_date_time_is_server_time_zone():
    report = osmand.parse_params(query(
        "/?lat=49.60688&lon=6.15788&timestamp=2014-06-04+09%3A10%3A11&altitude=384.7&speed=0.0&id=353861053849681"))
    assert report.identifier == "353861053849681"
    assert report.positions[0].time == utc("2014-06-04T01:10:11")  # 09:10:11 Asia/Shanghai


def test_deviceid_and_heading_spelling():
    report = osmand.parse_params(query(
        "/?lat=60.0&lon=30.0&speed=0.0&heading=90.0&vacc=0&hacc=0&altitude=0&deviceid=123456"), now=1000.0)
    [p] = report.positions
    assert report.identifier == "123456"
    assert p.heading == 90.0
    assert p.time == 1000.0  # no timestamp: server time
    assert p.attrs["vacc"] == 0


def test_location_parameter():
    [p] = osmand.parse_params(query("/?id=123456&timestamp=1377177267&location=60.0,30.0")).positions
    assert (p.lat, p.lon) == (60.0, 30.0)


def test_speed_in_knots_is_stored_in_kmh_and_kept():
    [p] = osmand.parse_params(query(
        "/?id=123456789012345&timestamp=1504763810&lat=40.7232948571&lon=-74.0061408571"
        "&bearing=7.19889788244&speed=40&ignition=true&rpm=933&fuel=24")).positions
    assert p.speed == pytest.approx(40 * 1.852)
    assert p.attrs["speed_knots"] == 40.0
    assert p.heading == pytest.approx(7.19889788244)
    assert (p.attrs["ignition"], p.attrs["rpm"], p.attrs["fuel"]) == (True, 933, 24)


def test_battery_parameter():
    [p] = osmand.parse_params(query(
        "/?id=861001000719969&lat=41.666667&lon=-0.883333&altitude=350.059479&speed=0.000000&batt=87")).positions
    assert p.attrs["battery"] == 87.0


def test_cells_and_wifi_without_location_need_a_last_known_position():
    url = ("/?id=123456&timestamp=1377177267&cell=257,02,16,2224&cell=257,02,16,2223,-90"
           "&wifi=00-14-22-01-23-45,-80&wifi=00-1C-B3-09-85-15,-70")
    with pytest.raises(ValueError, match="lat and lon"):
        osmand.parse_params(query(url))
    [p] = osmand.parse_params(query(url), last=(31.2, 121.5)).positions
    assert (p.lat, p.lon) == (31.2, 121.5)
    assert p.attrs["cells"] == ["257,02,16,2224", "257,02,16,2223,-90"]
    assert p.attrs["wifi"] == ["00:14:22:01:23:45,-80", "00:1C:B3:09:85:15,-70"]


def test_missing_id_is_refused():
    with pytest.raises(ValueError, match="id"):
        osmand.parse_params(query("/?timestamp=1377177267&lat=60.0&lon=30.0"))


@pytest.mark.parametrize("url, message", [
    ("/?id=1&lat=abc&lon=30", "lat must be a number"),
    ("/?id=1&lat=95&lon=30", "outside"),
    ("/?id=1&lat=60&lon=181", "outside"),
    ("/?id=1&lat=nan&lon=30", "finite"),
    ("/?id=1&lat=60&lon=30&timestamp=yesterday", "timestamp"),
    ("/?id=1&lat=60&lon=30&speed=-3", "speed"),
    ("/?id=1&lat=60&lon=30&timestamp=2016-13-45T99:00:00Z", "ISO 8601"),
])
def test_bad_values_are_refused_with_a_clear_message(url, message):
    with pytest.raises(ValueError, match=message):
        osmand.parse_params(query(url))


def test_valid_flag():
    [p] = osmand.parse_params(query("/?id=1&lat=60&lon=30&valid=false")).positions
    assert p.valid is False


def test_json_traccar_client():
    report = osmand.parse_json(json.loads(JSON_TRACCAR_CLIENT))
    assert report.identifier == "48241179" and report.json_form
    [p] = report.positions
    assert (p.lat, p.lon, p.altitude) == (37.4219983, -122.084, 5.0)
    assert p.time == pytest.approx(utc("2025-06-15T13:45:12.862"))
    assert p.heading == 0.0  # -1 means unknown
    assert p.attrs["battery"] == 100 and p.attrs["charge"] is False
    assert (p.attrs["event"], p.attrs["activity"], p.attrs["motion"]) == ("motionchange", "still", False)


def test_json_speed_in_metres_per_second():
    [p] = osmand.parse_json(json.loads(JSON_MOVING)).positions
    assert p.speed == pytest.approx(18.67 * 3.6)
    assert p.attrs["speed_knots"] == pytest.approx(18.67 * 3.6 / 1.852)
    assert p.heading == 63.0
    assert p.attrs["battery"] == 79.0
    assert p.lat == -6.1148096


def test_json_extras_become_attributes():
    [p] = osmand.parse_json(json.loads(JSON_EXTRAS)).positions
    assert p.attrs["device_string_test"] == "long_device_id"
    assert p.attrs["device_bool_false_test"] is False
    assert p.attrs["device_very_long_double_test"] == 1763636.3442


def test_json_unknown_speed_and_battery_are_ignored():
    [p] = osmand.parse_json(json.loads(JSON_MOCK)).positions
    assert p.speed == 0.0 and "speed_knots" not in p.attrs
    assert "battery" not in p.attrs
    assert p.attrs["mock"] is True


@pytest.mark.parametrize("body, message", [
    ([], "object"),
    ({"location": {}}, "device_id"),
    ({"device_id": "1"}, "location"),
    ({"device_id": "1", "location": {"coords": {"latitude": "x", "longitude": 1}}}, "number"),
    ({"device_id": "1", "location": {"coords": {"latitude": 100, "longitude": 1}}}, "outside"),
    ({"device_id": "1", "location": {"coords": {"latitude": 1, "longitude": 1}, "timestamp": "soon"}},
     "timestamp"),
])
def test_bad_json_is_refused(body, message):
    with pytest.raises(ValueError, match=message):
        osmand.parse_json(body)


def test_parse_time_forms():
    assert osmand.parse_time("1377177267") == 1377177267.0
    assert osmand.parse_time("1442068686579") == pytest.approx(1442068686.579)
    assert osmand.parse_time("2016-01-27T18:55:47+08:00") == utc("2016-01-27T10:55:47")
    assert osmand.parse_time("2016-01-27T18:55:47") == utc("2016-01-27T18:55:47")  # naive ISO = UTC
    assert osmand.parse_time("2014-06-04 09:10:11") == utc("2014-06-04T01:10:11")


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["id", "deviceid", "lat", "lon", "timestamp", "speed", "bearing",
                                        "altitude", "location", "valid", "batt", "charge", "x"]),
                       st.text(max_size=20)))
def test_random_query_parameters_decode_or_raise_value_error(params):
    try:
        report = osmand.parse_params(params)
    except ValueError:
        return
    for p in report.positions:
        check_coordinates(p.lat, p.lon)
        assert p.speed >= 0


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=10),
                    lambda children: st.lists(children, max_size=4)
                    | st.dictionaries(st.sampled_from(["device_id", "location", "coords", "latitude",
                                                       "longitude", "timestamp", "speed", "battery",
                                                       "level", "extras"]), children, max_size=5),
                    max_leaves=20))
def test_random_json_decodes_or_raises_value_error(body):
    try:
        osmand.parse_json(body)
    except ValueError:
        pass
