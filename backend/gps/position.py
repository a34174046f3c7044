"""A decoded position (定位点) and the record shapes written to Redis.

One ``Position`` per fix, whatever the protocol. Times are UTC epoch seconds, coordinates
WGS-84 degrees, speed km/h, heading degrees clockwise from north.
"""
from __future__ import annotations

import json
import math
import time as _time
from typing import Any, NamedTuple



class Position(NamedTuple):
    """定位点: one fix of one device (device key like ``jt808:013912345678``)."""

    device: str
    time: float
    lat: float
    lon: float
    speed: float = 0.0
    heading: float = 0.0
    altitude: float = 0.0
    valid: bool = True
    alarm: int = 0
    status: int = 0
    attrs: dict | None = None
    received: float = 0.0
    items: bytes = b""  # raw JT/T 808 additional items (附加信息), decoded on demand


def attributes(position: Position) -> dict:
    """attrs plus the decoded JT/T 808 additional items (mileage, fuel, signal, satellites...)."""
    if not position.items:
        return dict(position.attrs or {})
    from backend.gps.jt808 import decode_items  # jt808 imports this module

    merged = decode_items(position.items)
    if position.attrs:
        merged.update(position.attrs)
    return merged


# Compact trail record: the first ten fields of a Position, as a JSON array.
TRAIL_FIELDS = Position._fields[:10]


def device_key(protocol: str, identifier: str) -> str:
    """The Redis member name of a device: ``<protocol>:<identifier>``."""
    return f"{protocol}:{identifier}"


def check_coordinates(lat: float, lon: float) -> None:
    """Raise ValueError unless lat/lon are finite WGS-84 degrees."""
    if not (math.isfinite(lat) and math.isfinite(lon)):
        raise ValueError("lat and lon must be finite numbers")
    if not -90.0 <= lat <= 90.0:
        raise ValueError(f"lat {lat} outside -90..90")
    if not -180.0 <= lon <= 180.0:
        raise ValueError(f"lon {lon} outside -180..180")
    # GEOADD refuses latitudes beyond the Web Mercator limit.
    if abs(lat) > 85.05112878:
        raise ValueError(f"lat {lat} beyond the 85.05112878 limit of the position index")


_iso_cache: dict[int, str] = {}


def iso_utc(epoch: float) -> str:
    """UTC epoch seconds -> ``2020-08-07T10:07:22Z`` (whole seconds), cached per second."""
    second = int(epoch)
    text = _iso_cache.get(second)
    if text is None:
        text = _time.strftime("%Y-%m-%dT%H:%M:%SZ", _time.gmtime(second))
        if len(_iso_cache) > 8192:
            _iso_cache.clear()
        _iso_cache[second] = text
    return text


def motion_status(position: Position) -> str:
    """Summary state for the wall: ``alarm`` | ``nofix`` | ``moving`` | ``stopped``."""
    if position.alarm:
        return "alarm"
    if not position.valid:
        return "nofix"
    return "moving" if position.speed >= 1.0 else "stopped"


_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def position_json(position: Position) -> str:
    """The full latest position of a device as JSON (the value in ``citywall:gps:last``)."""
    protocol, _, identifier = position.device.partition(":")
    return _dumps({
        "device": position.device,
        "protocol": protocol,
        "identifier": identifier,
        "time": iso_utc(position.time),
        "ts": position.time,
        "lat": position.lat,
        "lon": position.lon,
        "speed": position.speed,
        "heading": position.heading,
        "altitude": position.altitude,
        "valid": position.valid,
        "alarm": position.alarm,
        "status": position.status,
        "state": motion_status(position),
        "attrs": attributes(position),
        "received": position.received,
    })


def position_from_json(text: str | bytes) -> Position:
    """Inverse of position_json."""
    data = json.loads(text)
    return Position(data["device"], data["ts"], data["lat"], data["lon"], data["speed"],
                    data["heading"], data["altitude"], data["valid"], data["alarm"],
                    data["status"], data["attrs"], data["received"])


def summary_item(position: Position) -> dict[str, Any]:
    """One changed device in the periodic summary (every 0.5 s by default)."""
    return {
        "device": position.device,
        "lat": position.lat,
        "lon": position.lon,
        "speed": position.speed,
        "heading": position.heading,
        "time": iso_utc(position.time),
        "status": motion_status(position),
    }


def trail_json(positions: list[Position]) -> str:
    """One trail stream entry: a JSON array of compact arrays in TRAIL_FIELDS order."""
    return _dumps([p[:10] for p in positions])


def trail_positions(text: str | bytes) -> list[Position]:
    """Decode one trail entry's ``p`` field back into positions (attrs are not in the trail)."""
    out = []
    for item in json.loads(text):
        out.append(Position(*item))
    return out
