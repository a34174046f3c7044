"""OsmAnd protocol decoder (Traccar Client / 巡查员手机定位), as the Traccar server reads it.

Three request forms carry one report each: a GET query, a POST form body and (Traccar Client 9+)
a POST JSON body. The query/form ``speed`` is in knots and the JSON ``coords.speed`` in m/s;
both are stored in km/h with the knots kept in ``attrs["speed_knots"]``. Timestamps may be unix
seconds, unix milliseconds (any number >= 2^31 - 1), ISO 8601 (a string containing ``T``; naive
means UTC) or ``yyyy-MM-dd HH:mm:ss`` in the server's time zone (Asia/Shanghai by default).

Pure functions: bad input raises ValueError with a message fit for the HTTP 400 body.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping
from zoneinfo import ZoneInfo

from backend.gps.position import Position, check_coordinates

KNOT_KMH = 1.852
MPS_KMH = 3.6
MPS_KNOTS = 3.6 / 1.852
MS_THRESHOLD = 2**31 - 1
MAX_ATTRS = 64
MAX_TEXT = 256
SHANGHAI = ZoneInfo("Asia/Shanghai")

# Query keys with their own meaning; every other key becomes an attribute.
_KNOWN = {"id", "deviceid", "valid", "timestamp", "lat", "lon", "location", "cell", "wifi", "speed",
          "bearing", "heading", "altitude", "accuracy", "hdop", "batt", "charge",
          "driverUniqueId", "notificationToken"}


@dataclass(frozen=True, slots=True)
class Report:
    """One decoded OsmAnd request: the device identifier and its position(s) (device key empty)."""

    identifier: str
    positions: list[Position]
    json_form: bool = False


def parse_time(value: str | float | int, tz: ZoneInfo = SHANGHAI) -> float:
    """Any OsmAnd timestamp form -> UTC epoch seconds."""
    if isinstance(value, bool):
        raise ValueError("timestamp must be a number or a date string")
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            return _parse_date(text, tz)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"timestamp {value!r} is not a valid time")
    if number >= MS_THRESHOLD:
        number /= 1000.0
    if number > 32503680000:  # year 3000
        raise ValueError(f"timestamp {value!r} is too far in the future")
    return number


def _parse_date(text: str, tz: ZoneInfo) -> float:
    if "T" in text:
        try:
            moment = datetime.fromisoformat(text.replace("z", "Z"))
        except ValueError:
            raise ValueError(f"timestamp {text!r} is not ISO 8601") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return moment.timestamp()
    try:
        moment = datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        raise ValueError(f"timestamp {text!r} is neither a number, ISO 8601 nor "
                         "'yyyy-MM-dd HH:mm:ss'") from None
    return moment.replace(tzinfo=tz).timestamp()


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {str(value)[:40]!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number")
    return number


def _boolean(value: str) -> bool:
    return value.strip().lower() in ("true", "1", "yes")


def _attribute(value: str) -> object:
    """A free parameter stored as a number if it parses, a boolean for true/false, else text."""
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        number = float(value)
    except ValueError:
        return value[:MAX_TEXT]
    if not math.isfinite(number):
        return value[:MAX_TEXT]
    return int(number) if number.is_integer() and "." not in value else number


def _wifi(value: str) -> str:
    """``mac,rssi`` with the MAC's dashes turned into colons (the signal keeps its sign)."""
    mac, comma, rest = value.partition(",")
    return mac.replace("-", ":") + comma + rest


def _items(params: Mapping[str, str] | Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    if hasattr(params, "items"):
        # a MultiDict yields every repeated key from items()
        return [(str(k), str(v)) for k, v in params.items()]  # type: ignore[union-attr]
    return [(str(k), str(v)) for k, v in params]


def parse_params(params: Mapping[str, str] | Iterable[tuple[str, str]], *, now: float | None = None,
                 tz: ZoneInfo = SHANGHAI, last: tuple[float, float] | None = None) -> Report:
    """GET query or POST form parameters -> Report. ``last`` is the device's last known
    (lat, lon), reused when the request carries no location."""
    pairs = _items(params)
    single: dict[str, str] = {}
    cells: list[str] = []
    wifis: list[str] = []
    for key, value in pairs:
        if key == "cell":
            cells.append(value)
        elif key == "wifi":
            wifis.append(value)
        else:
            single[key] = value
    identifier = (single.get("id") or single.get("deviceid") or "").strip()
    if not identifier:
        raise ValueError("id (or deviceid) is required")
    if len(identifier) > 64:
        raise ValueError("id is longer than 64 characters")
    attrs: dict[str, object] = {}
    when = parse_time(single["timestamp"], tz) if single.get("timestamp") else (now or time.time())
    if "lat" in single and "lon" in single:
        lat, lon = _number("lat", single["lat"]), _number("lon", single["lon"])
    elif "location" in single:
        parts = single["location"].split(",")
        if len(parts) != 2:
            raise ValueError("location must be 'lat,lon'")
        lat, lon = _number("lat", parts[0]), _number("lon", parts[1])
    elif last is not None:
        lat, lon = last
    else:
        raise ValueError("lat and lon (or location) are required")
    check_coordinates(lat, lon)
    speed = 0.0
    if single.get("speed"):
        knots = _number("speed", single["speed"])
        if knots < 0:
            raise ValueError("speed must not be negative")
        attrs["speed_knots"] = knots
        speed = knots * KNOT_KMH
    heading = 0.0
    course = single.get("bearing") or single.get("heading")
    if course:
        heading = _number("bearing", course) % 360.0
    altitude = _number("altitude", single["altitude"]) if single.get("altitude") else 0.0
    for key in ("accuracy", "hdop"):
        if single.get(key):
            attrs[key] = _number(key, single[key])
    if single.get("batt"):
        attrs["battery"] = _number("batt", single["batt"])
    if single.get("charge"):
        attrs["charge"] = _boolean(single["charge"])
    if single.get("driverUniqueId"):
        attrs["driver"] = single["driverUniqueId"][:MAX_TEXT]
    if cells:
        attrs["cells"] = [c[:MAX_TEXT] for c in cells[:16]]
    if wifis:
        attrs["wifi"] = [_wifi(w)[:MAX_TEXT] for w in wifis[:16]]
    for key, value in single.items():
        if key not in _KNOWN and len(attrs) < MAX_ATTRS and len(key) <= 64:
            attrs[key] = _attribute(value)
    valid = _boolean(single["valid"]) if single.get("valid") else True
    alarm = 1 if attrs.get("alarm") else 0
    position = Position("", when, lat, lon, speed, heading, altitude, valid, alarm, 0, attrs)
    return Report(identifier, [position])


def parse_json(data: Any, *, now: float | None = None,
               last: tuple[float, float] | None = None) -> Report:
    """The Traccar Client JSON body -> Report. ``location`` may be one object or a list."""
    if not isinstance(data, dict):
        raise ValueError("JSON body must be an object")
    identifier = data.get("device_id")
    if not isinstance(identifier, (str, int)) or isinstance(identifier, bool) or not str(identifier).strip():
        raise ValueError("device_id is required")
    identifier = str(identifier).strip()
    if len(identifier) > 64:
        raise ValueError("device_id is longer than 64 characters")
    locations = data.get("location")
    if isinstance(locations, dict):
        locations = [locations]
    if not isinstance(locations, list) or not locations:
        raise ValueError("location object is required")
    if len(locations) > 100:
        raise ValueError("at most 100 locations per request")
    positions = []
    for location in locations:
        position = _json_location(location, now, last)
        positions.append(position)
        last = (position.lat, position.lon)
    return Report(identifier, positions, json_form=True)


def _json_location(location: Any, now: float | None,
                   last: tuple[float, float] | None) -> Position:
    if not isinstance(location, dict):
        raise ValueError("location must be an object")
    stamp = location.get("timestamp")
    when = parse_time(stamp) if stamp not in (None, "") else (now or time.time())
    coords = location.get("coords")
    attrs: dict[str, object] = {}
    speed = heading = altitude = 0.0
    if isinstance(coords, dict) and "latitude" in coords and "longitude" in coords:
        lat = _number("coords.latitude", coords["latitude"])
        lon = _number("coords.longitude", coords["longitude"])
        if coords.get("altitude") is not None:
            altitude = _number("coords.altitude", coords["altitude"])
        if coords.get("speed") is not None:
            mps = _number("coords.speed", coords["speed"])
            if mps >= 0:  # negative means unknown
                speed = mps * MPS_KMH
                attrs["speed_knots"] = mps * MPS_KNOTS
        if coords.get("heading") is not None:
            course = _number("coords.heading", coords["heading"])
            if course >= 0:
                heading = course % 360.0
        if coords.get("accuracy") is not None:
            attrs["accuracy"] = _number("coords.accuracy", coords["accuracy"])
    elif coords is not None and not isinstance(coords, dict):
        raise ValueError("coords must be an object")
    elif last is not None:
        lat, lon = last
    else:
        raise ValueError("coords.latitude and coords.longitude are required")
    check_coordinates(lat, lon)
    if "is_moving" in location:
        attrs["motion"] = bool(location["is_moving"])
    odometer = location.get("odometer")
    if isinstance(odometer, (int, float)) and not isinstance(odometer, bool) and math.isfinite(odometer):
        attrs["odometer"] = odometer
    for key in ("event", "mock", "alarm"):
        value = location.get(key)
        if isinstance(value, (str, int, float, bool)) and not (
                isinstance(value, float) and not math.isfinite(value)):
            attrs[key] = value[:MAX_TEXT] if isinstance(value, str) else value
    activity = location.get("activity")
    if isinstance(activity, dict) and isinstance(activity.get("type"), str):
        attrs["activity"] = activity["type"][:MAX_TEXT]
    battery = location.get("battery")
    if isinstance(battery, dict):
        level = battery.get("level")
        if isinstance(level, (int, float)) and not isinstance(level, bool) \
                and math.isfinite(level) and level >= 0:
            attrs["battery"] = round(level * 100, 1)
        if isinstance(battery.get("is_charging"), bool):
            attrs["charge"] = battery["is_charging"]
    extras = location.get("extras")
    if isinstance(extras, dict):
        for key, value in list(extras.items())[:MAX_ATTRS]:
            if isinstance(value, float) and not math.isfinite(value):
                continue
            if isinstance(value, (str, int, float, bool)) and len(str(key)) <= 64:
                attrs[str(key)] = value[:MAX_TEXT] if isinstance(value, str) else value
    alarm = 1 if attrs.get("alarm") else 0
    return Position("", when, lat, lon, speed, heading, altitude, True, alarm, 0, attrs)
