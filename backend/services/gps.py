"""Vehicles and field staff on the map (车辆与人员定位): the device registry, latest positions,
tracks, nearest available units, busy/available marks, and the demo fleet's seed.

- Devices (设备登记) live in ``gps_devices``; after every change ``citywall:gps:registry`` is
  published so the gateways reload.
- Latest positions come from the gateways' Redis keys (``citywall:gps:last``, ``citywall:gps:latest``).
  ``stale``: the newest fix is more than ``STALE_AFTER_S`` (2 minutes) old; ``online``: the device
  was heard from (any message) within ``OFFLINE_AFTER_S``.
- Tracks (轨迹) come from the archive (``gps_trail_points``) plus the part of the trail stream the
  archiver has not stored yet.
- Nearest units (就近调度): GEOSEARCH around the point; ETA = ``ROAD_FACTOR`` × straight distance
  / the typical speed of the unit's type (``TYPICAL_SPEED_KMH``). ``available`` = online, not
  stale and not marked busy (``citywall:gps:busy``).
"""
from __future__ import annotations

import json
import logging
import math
import re
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from backend.gps.archive import POINTS, unarchived_from
from backend.store.db import as_utc
from backend.gps.gateway import CHANNEL_REGISTRY
from backend.gps.pipeline import KEY_LAST, KEY_LATEST, KEY_TRAIL
from backend.gps.position import trail_positions
from backend.gps.registry import KINDS, PROTOCOLS
from backend.services import errors
from backend.services.context import current
from backend.store import models as m
from backend.store.gps_models import VEHICLE_TYPES, Device

log = logging.getLogger(__name__)

DEVICES = Device.__table__
KEY_BUSY = "citywall:gps:busy"  # hash: device key -> JSON {"status": "busy", "note", "since", "by"}

STALE_AFTER_S = 120.0
OFFLINE_AFTER_S = 300.0
ROAD_FACTOR = 1.3
"""Road distance / straight distance in the old city's grid of streets (a Manhattan walk is ~1.27×)."""
TYPICAL_SPEED_KMH: dict[str, float] = {
    "环卫车": 15.0, "洒水车": 15.0, "渣土车": 20.0, "执法车": 25.0, "巡查车": 25.0, "抢修车": 25.0,
    "其他": 20.0, "person": 4.5,
}
"""Typical speed in the city per type (km/h); ``person`` is a walking inspector."""
MAX_TRACK_DAYS = 7
MAX_TRACK_POINTS = 100_000

_JT808_ID = re.compile(r"^[0-9]{1,20}$")
_OSMAND_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")
_FIELDS = {"protocol", "identifier", "name", "kind", "plate", "vehicle_type", "person", "department_id",
           "enabled", "auth_code"}


# ---------------------------------------------------------------------------------- registry

def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _iso(value: datetime | None) -> str | None:
    return as_utc(value).strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else None


def _public(row) -> dict:
    dept = current().departments.get(row.department_id) if row.department_id else None
    return {"id": row.id, "device": f"{row.protocol}:{row.identifier}", "protocol": row.protocol,
            "identifier": row.identifier, "name": row.name or "", "kind": row.kind, "plate": row.plate or "",
            "vehicle_type": row.vehicle_type or "", "person": row.person or "",
            "department_id": row.department_id, "department": dept["name"] if dept else None,
            "enabled": bool(row.enabled), "created_at": _iso(row.created_at),
            "last_seen_at": _iso(row.last_seen_at)}


def _bad(message: str, field: str) -> errors.BadInput:
    return errors.BadInput(message, {"field": field})


def _validate(data: dict, current_row: dict | None = None) -> dict:
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise errors.BadInput(f"unknown fields: {', '.join(unknown)}", {"unknown": unknown})
    if current_row is not None and ({"protocol", "identifier"} & set(data)):
        changed = [f for f in ("protocol", "identifier") if f in data and data[f] != current_row[f]]
        if changed:
            raise _bad("protocol and identifier cannot change: register a new device instead", changed[0])
    merged = dict(current_row or {}) | data
    out: dict = {}
    protocol = merged.get("protocol")
    if protocol not in PROTOCOLS:
        raise _bad(f"'protocol' must be one of {', '.join(PROTOCOLS)}", "protocol")
    identifier = merged.get("identifier")
    pattern = _JT808_ID if protocol == "jt808" else _OSMAND_ID
    if not isinstance(identifier, str) or not pattern.match(identifier):
        what = "up to 20 digits (the terminal phone number)" if protocol == "jt808" else \
            "1-64 letters, digits or . _ - :"
        raise _bad(f"'identifier' of a {protocol} device must be {what}", "identifier")
    out["protocol"], out["identifier"] = protocol, identifier
    kind = merged.get("kind", "vehicle")
    if kind not in KINDS:
        raise _bad(f"'kind' must be one of {', '.join(KINDS)}", "kind")
    out["kind"] = kind
    for key, limit in (("name", 100), ("plate", 20), ("person", 64), ("auth_code", 64)):
        value = merged.get(key)
        if value is None:
            value = ""
        if not isinstance(value, str) or len(value) > limit:
            raise _bad(f"'{key}' must be a string of at most {limit} characters", key)
        out[key] = value.strip()
    vehicle_type = merged.get("vehicle_type") or ""
    # a patch checks what a vehicle or a person needs only when it touches those fields, so an
    # auto-registered device can be disabled before it is described
    strict = current_row is None or bool({"kind", "vehicle_type", "plate", "person"} & set(data))
    if kind == "vehicle" and strict:
        if vehicle_type not in VEHICLE_TYPES:
            raise _bad(f"'vehicle_type' of a vehicle must be one of {', '.join(VEHICLE_TYPES)}", "vehicle_type")
        if not out["plate"]:
            raise _bad("a vehicle needs its 'plate' (车牌号)", "plate")
    elif kind == "person" and vehicle_type:
        raise _bad("a person's device has no 'vehicle_type'", "vehicle_type")
    out["vehicle_type"] = vehicle_type or None
    if kind == "person" and strict:
        if not out["person"]:
            raise _bad("a person's device needs 'person': the username of who carries it", "person")
        with current().reader.connect() as conn:
            known = conn.execute(select(m.User.id).where(m.User.username == out["person"])).first()
        if known is None:
            raise _bad(f"there is no user {out['person']!r}", "person")
    department_id = merged.get("department_id")
    if department_id is not None:
        if isinstance(department_id, bool) or not isinstance(department_id, int) \
                or department_id not in current().departments:
            raise _bad("'department_id' must be the id of a department", "department_id")
    out["department_id"] = department_id
    enabled = merged.get("enabled", True)
    if not isinstance(enabled, bool):
        raise _bad("'enabled' must be true or false", "enabled")
    out["enabled"] = enabled
    out["plate"] = out["plate"] or None
    out["person"] = out["person"] or None
    out["auth_code"] = out["auth_code"] or None
    return out


def _registry_changed() -> None:
    """Tell the gateways to reload the registry (they also reload every 30 s by themselves)."""
    try:
        current().redis.publish(CHANNEL_REGISTRY, "reload")
    except Exception as exc:  # the change is stored; the gateways pick it up at their next refresh
        log.warning("could not publish the registry change: %s", exc)


def list_devices(kind: str | None = None, vehicle_type: str | None = None,
                 department_id: int | None = None) -> list[dict]:
    query = select(DEVICES).order_by(DEVICES.c.id)
    if kind:
        query = query.where(DEVICES.c.kind == kind)
    if vehicle_type:
        query = query.where(DEVICES.c.vehicle_type == vehicle_type)
    if department_id is not None:
        query = query.where(DEVICES.c.department_id == department_id)
    with current().reader.connect() as conn:
        return [_public(r) for r in conn.execute(query).all()]


def _row(device_id: int):
    with current().reader.connect() as conn:
        row = conn.execute(select(DEVICES).where(DEVICES.c.id == device_id)).first()
    if row is None:
        raise errors.NotFound(f"device {device_id} does not exist")
    return row


def get_device(device_id: int) -> dict:
    return _public(_row(device_id))


def find_device(ref: str) -> dict:
    """A device by its id (``12``) or its key (``jt808:013912345678``)."""
    if ref.isdigit():
        return get_device(int(ref))
    protocol, _, identifier = ref.partition(":")
    with current().reader.connect() as conn:
        row = conn.execute(select(DEVICES).where(DEVICES.c.protocol == protocol,
                                                 DEVICES.c.identifier == identifier)).first()
    if row is None:
        raise errors.NotFound(f"device {ref!r} does not exist")
    return _public(row)


def create_device(data: dict) -> dict:
    values = _validate(data)
    values["name"] = values["name"] or values["plate"] or values["person"] or values["identifier"]
    try:
        with current().engine.begin() as conn:
            device_id = conn.execute(insert(DEVICES).values(
                **values, created_at=datetime.now(timezone.utc)).returning(DEVICES.c.id)).scalar_one()
    except IntegrityError as exc:
        raise errors.Conflict(f"device {values['protocol']}:{values['identifier']} is already registered",
                              code="duplicate_device") from exc
    _registry_changed()
    return get_device(device_id)


def patch_device(device_id: int, data: dict) -> dict:
    row = _row(device_id)
    current_row = {k: getattr(row, k) for k in _FIELDS}
    values = _validate(data, current_row)
    with current().engine.begin() as conn:
        conn.execute(update(DEVICES).where(DEVICES.c.id == device_id).values(**values))
    _registry_changed()
    return get_device(device_id)


def delete_device(device_id: int) -> None:
    row = _row(device_id)
    key = f"{row.protocol}:{row.identifier}"
    with current().engine.begin() as conn:
        conn.execute(delete(POINTS).where(POINTS.c.device_id == device_id))
        conn.execute(delete(DEVICES).where(DEVICES.c.id == device_id))
    r = current().redis
    try:
        r.zrem(KEY_LATEST, key)
        r.hdel(KEY_LAST, key)
        r.hdel(KEY_BUSY, key)
    except Exception as exc:
        log.warning("could not clear %s from Redis: %s", key, exc)
    _registry_changed()


# ---------------------------------------------------------------------------------- positions

def _directory() -> dict[str, dict]:
    """Device key -> its public record, for every registered device."""
    with current().reader.connect() as conn:
        rows = conn.execute(select(DEVICES)).all()
    return {f"{r.protocol}:{r.identifier}": _public(r) for r in rows}


def _unit_type(device: dict) -> str:
    return device["vehicle_type"] or ("person" if device["kind"] == "person" else "其他")


def _busy_marks(keys: list[str]) -> dict[str, dict]:
    if not keys:
        return {}
    values = current().redis.hmget(KEY_BUSY, keys)
    return {k: json.loads(v) for k, v in zip(keys, values) if v}


def _live(device: dict, last: dict, now: float, busy: dict | None) -> dict:
    heard = max(float(last.get("received") or 0.0), float(last.get("ts") or 0.0))
    return {
        "id": device["id"], "device": device["device"], "kind": device["kind"], "name": device["name"],
        "plate": device["plate"], "type": _unit_type(device), "person": device["person"],
        "department_id": device["department_id"], "department": device["department"],
        "lat": last["lat"], "lon": last["lon"], "speed": last.get("speed", 0.0),
        "heading": last.get("heading", 0.0), "time": last.get("time"), "state": last.get("state"),
        "stale": now - float(last.get("ts") or 0.0) > STALE_AFTER_S,
        "online": now - heard <= OFFLINE_AFTER_S,
        "busy": bool(busy), "busy_note": (busy or {}).get("note", ""),
    }


def vehicles(kind: str | None = None, unit_type: str | None = None, department_id: int | None = None,
             now: float | None = None) -> list[dict]:
    """Latest position of every registered, enabled device that has reported (车辆/人员实时位置)."""
    now = datetime.now(timezone.utc).timestamp() if now is None else now
    directory = _directory()
    raw = current().redis.hgetall(KEY_LAST)
    lasts = {_text(k): json.loads(v) for k, v in raw.items()}
    keys = [k for k in lasts if k in directory and directory[k]["enabled"]]
    busy = _busy_marks(keys)
    out = []
    for key in sorted(keys, key=lambda k: directory[k]["id"]):
        device = directory[key]
        if kind and device["kind"] != kind:
            continue
        if unit_type and _unit_type(device) != unit_type:
            continue
        if department_id is not None and device["department_id"] != department_id:
            continue
        out.append(_live(device, lasts[key], now, busy.get(key)))
    return out


def nearest(lat: float, lon: float, unit_type: str | None = None, available: bool = True, limit: int = 10,
            radius_m: float = 20_000.0, now: float | None = None) -> list[dict]:
    """就近调度: the nearest units to a point with straight distance and ETA, nearest first."""
    if not (math.isfinite(lat) and math.isfinite(lon)) or not -85 <= lat <= 85 or not -180 <= lon <= 180:
        raise errors.BadInput("'lat' and 'lon' must be WGS-84 degrees", {"lat": lat, "lon": lon})
    if not 1 <= limit <= 200:
        raise errors.BadInput("'limit' must be between 1 and 200", {"field": "limit"})
    if not 0 < radius_m <= 200_000:
        raise errors.BadInput("'radius_m' must be between 0 and 200000", {"field": "radius_m"})
    if unit_type and unit_type not in TYPICAL_SPEED_KMH:
        raise errors.BadInput(f"'type' must be one of {', '.join(TYPICAL_SPEED_KMH)}", {"field": "type"})
    now = datetime.now(timezone.utc).timestamp() if now is None else now
    r = current().redis
    hits = r.geosearch(KEY_LATEST, longitude=lon, latitude=lat, radius=radius_m, unit="m", sort="ASC",
                       withdist=True)
    if not hits:
        return []
    keys = [_text(member) for member, _ in hits]
    directory = _directory()
    lasts = dict(zip(keys, r.hmget(KEY_LAST, keys)))
    busy = _busy_marks(keys)
    out = []
    for (member, dist), key in zip(hits, keys):
        device = directory.get(key)
        if device is None or not device["enabled"] or lasts.get(key) is None:
            continue
        if unit_type and _unit_type(device) != unit_type:
            continue
        unit = _live(device, json.loads(lasts[key]), now, busy.get(key))
        unit["available"] = unit["online"] and not unit["stale"] and not unit["busy"]
        if available and not unit["available"]:
            continue
        speed = TYPICAL_SPEED_KMH.get(unit["type"], TYPICAL_SPEED_KMH["其他"])
        unit["distance_m"] = round(float(dist), 1)
        unit["eta_s"] = round(float(dist) * ROAD_FACTOR / (speed / 3.6))
        out.append(unit)
        if len(out) >= limit:
            break
    return out


def set_status(ref: str, status: str, note: str = "", by: str = "") -> dict:
    """Mark a unit busy (执行任务中) or available again."""
    if status not in ("busy", "available"):
        raise errors.BadInput("'status' must be 'busy' or 'available'", {"field": "status"})
    if not isinstance(note, str) or len(note) > 200:
        raise errors.BadInput("'note' must be a string of at most 200 characters", {"field": "note"})
    device = find_device(ref)
    r = current().redis
    if status == "busy":
        r.hset(KEY_BUSY, device["device"], json.dumps({
            "status": "busy", "note": note, "by": by,
            "since": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}, ensure_ascii=False))
    else:
        r.hdel(KEY_BUSY, device["device"])
    return {"id": device["id"], "device": device["device"], "status": status, "note": note if status == "busy" else ""}


# ---------------------------------------------------------------------------------- tracks

def track_points(device_ids: list[int], start: datetime, end: datetime) -> dict[int, list[dict]]:
    """Fixes of the devices in [start, end] (UTC), oldest first: the archive plus the trail
    stream's part that is not archived yet. Each fix: time (epoch s), lat, lon, speed, heading, valid."""
    out: dict[int, dict[float, dict]] = {d: {} for d in device_ids}
    if not device_ids:
        return {}
    with current().reader.connect() as conn:
        rows = conn.execute(select(POINTS.c.device_id, POINTS.c.time, POINTS.c.lat, POINTS.c.lon, POINTS.c.speed,
                                   POINTS.c.heading, POINTS.c.valid).where(
            POINTS.c.device_id.in_(device_ids), POINTS.c.time >= start, POINTS.c.time <= end,
        ).order_by(POINTS.c.time).limit(MAX_TRACK_POINTS)).all()
    for row in rows:
        t = as_utc(row.time).timestamp()
        out[row.device_id][t] = {"time": t, "lat": row.lat, "lon": row.lon, "speed": row.speed,
                                 "heading": row.heading, "valid": bool(row.valid)}
    keys = _keys_of(device_ids)
    for position in _recent_positions(start):
        device_id = keys.get(position.device)
        if device_id is None or not start.timestamp() <= position.time <= end.timestamp():
            continue
        out[device_id].setdefault(position.time, {
            "time": position.time, "lat": position.lat, "lon": position.lon, "speed": position.speed,
            "heading": position.heading, "valid": bool(position.valid)})
    return {d: [points[t] for t in sorted(points)] for d, points in out.items()}


def _keys_of(device_ids: list[int]) -> dict[str, int]:
    with current().reader.connect() as conn:
        rows = conn.execute(select(DEVICES.c.id, DEVICES.c.protocol, DEVICES.c.identifier).where(
            DEVICES.c.id.in_(device_ids))).all()
    return {f"{r.protocol}:{r.identifier}": r.id for r in rows}


def _recent_positions(start: datetime, max_entries: int = 20_000):
    """Positions of trail entries not archived yet, appended since ``start`` (less a minute of clock skew)."""
    r = current().redis
    low = unarchived_from(r)
    by_time = f"{max(0, int(start.timestamp() * 1000) - 60_000)}-0"
    if low == "0" or _id_tuple(by_time) > _id_tuple(low.lstrip("(")):
        low = by_time
    try:
        entries = r.xrange(KEY_TRAIL, min=low, max="+", count=max_entries)
    except Exception as exc:
        log.warning("trail stream not readable: %s", exc)
        return
    for _entry_id, fields in entries:
        raw = fields.get(b"p", fields.get("p")) if fields else None
        if raw is None:
            continue
        try:
            yield from trail_positions(raw)
        except (ValueError, TypeError):
            continue


def _id_tuple(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms or 0), int(seq or 0)


def track(ref: str, start: datetime | None = None, end: datetime | None = None) -> dict:
    """轨迹回放: a device's fixes between start and end (default: the last hour)."""
    device = find_device(ref)
    end = end or datetime.now(timezone.utc)
    start = start or end - timedelta(hours=1)
    if start >= end:
        raise errors.BadInput("'from' must be before 'to'", {"field": "from"})
    if end - start > timedelta(days=MAX_TRACK_DAYS):
        raise errors.BadInput(f"a track covers at most {MAX_TRACK_DAYS} days", {"field": "from"})
    points = track_points([device["id"]], start, end)[device["id"]]
    for p in points:
        p["time"] = datetime.fromtimestamp(p["time"], timezone.utc).isoformat().replace("+00:00", "Z")
    return {"device": device, "from": _iso(start), "to": _iso(end), "count": len(points), "points": points}


# ---------------------------------------------------------------------------------- demo seed

def seed_devices(city) -> dict:
    """The demo fleet (backend.sim.vehicles.demo_fleet) as registered devices, and demo shifts."""
    from backend.services import duty
    from backend.sim.vehicles import demo_fleet

    ctx = current()
    dept_ids = {d["code"]: d["id"] for d in ctx.departments.values()}
    fleet = demo_fleet(city)
    rows = [{"protocol": u.protocol, "identifier": u.identifier, "name": u.name, "kind": u.kind,
             "plate": u.plate or None, "vehicle_type": u.vehicle_type or None, "person": u.person or None,
             "department_id": dept_ids.get(u.department_code) if u.department_code else None,
             "enabled": True, "created_at": datetime.now(timezone.utc)} for u in fleet]
    with ctx.engine.begin() as conn:
        existing = {(r.protocol, r.identifier) for r in conn.execute(
            select(DEVICES.c.protocol, DEVICES.c.identifier)).all()}
        rows = [r for r in rows if (r["protocol"], r["identifier"]) not in existing]
        if rows:
            conn.execute(insert(DEVICES), rows)
        ids = {(r.protocol, r.identifier): r.id for r in conn.execute(
            select(DEVICES.c.id, DEVICES.c.protocol, DEVICES.c.identifier)).all()}
    shifts = 0
    for unit in fleet:
        for start, end in unit.shifts:
            data = {"name": f"{unit.name} {start}-{end}", "start": start, "end": end, "days": "1234567",
                    "grid_codes": list(unit.area)}
            if unit.kind == "person":
                data["person"] = unit.person
                data["duty_grid_code"] = unit.duty_grid_code
            else:
                data["device_id"] = ids[(unit.protocol, unit.identifier)]
            duty.create_shift(data)
            shifts += 1
    _registry_changed()
    return {"devices": len(rows), "shifts": shifts}
