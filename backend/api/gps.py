"""GPS devices, vehicles on the map, tracks, nearest units and 上岗履职 (on-duty) under /api/v1.

Any signed-in user reads; admin, leader and dispatcher write (devices, unit status, shifts).
"""
from __future__ import annotations

from datetime import date, datetime, timezone

from flask import Blueprint, jsonify, request

from backend.api.common import current_actor, json_body, login_required
from backend.services import duty, errors, gps
from backend.services.context import current

bp = Blueprint("gps", __name__)
WRITERS = {"admin", "leader", "dispatcher"}


def _int(raw: str, what: str) -> int:
    try:
        return int(raw)
    except (TypeError, ValueError) as exc:
        raise errors.NotFound(f"{what} {raw!r} does not exist") from exc


def _arg_int(name: str) -> int | None:
    raw = request.args.get(name)
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError as exc:
        raise errors.BadInput(f"'{name}' must be an integer", {"field": name, "value": raw}) from exc


def _arg_float(name: str, default: float | None = None) -> float:
    raw = request.args.get(name)
    if raw in (None, ""):
        if default is None:
            raise errors.BadInput(f"'{name}' is required", {"field": name})
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise errors.BadInput(f"'{name}' must be a number", {"field": name, "value": raw}) from exc


def _arg_bool(name: str, default: bool) -> bool:
    raw = request.args.get(name)
    if raw in (None, ""):
        return default
    if raw.lower() in ("1", "true", "yes"):
        return True
    if raw.lower() in ("0", "false", "no"):
        return False
    raise errors.BadInput(f"'{name}' must be true or false", {"field": name, "value": raw})


def _arg_time(name: str) -> datetime | None:
    """ISO 8601; a time without an offset is local (CITYWALL_TIMEZONE)."""
    raw = request.args.get(name)
    if not raw:
        return None
    try:
        t = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise errors.BadInput(f"'{name}' must be an ISO 8601 date or time", {"field": name, "value": raw}) from exc
    if t.tzinfo is None:
        t = t.replace(tzinfo=current().calendar.tz)
    return t.astimezone(timezone.utc)


# ---------------------------------------------------------------------------------- devices

@bp.get("/devices")
@login_required()
def list_devices():
    return jsonify({"devices": gps.list_devices(request.args.get("kind"), request.args.get("type"),
                                                _arg_int("department_id"))})


@bp.post("/devices")
@login_required(WRITERS)
def create_device():
    resp = jsonify(gps.create_device(json_body()))
    resp.status_code = 201
    resp.headers["Location"] = f"/api/v1/devices/{resp.json['id']}"
    return resp


@bp.get("/devices/<device_id>")
@login_required()
def get_device(device_id: str):
    return jsonify(gps.get_device(_int(device_id, "device")))


@bp.patch("/devices/<device_id>")
@login_required(WRITERS)
def patch_device(device_id: str):
    return jsonify(gps.patch_device(_int(device_id, "device"), json_body()))


@bp.delete("/devices/<device_id>")
@login_required(WRITERS)
def delete_device(device_id: str):
    gps.delete_device(_int(device_id, "device"))
    return "", 204


# ---------------------------------------------------------------------------------- vehicles

@bp.get("/vehicles")
@login_required()
def vehicles():
    kind = request.args.get("kind")
    if kind and kind not in ("vehicle", "person"):
        raise errors.BadInput("'kind' must be 'vehicle' or 'person'", {"field": "kind"})
    items = gps.vehicles(kind, request.args.get("type"), _arg_int("department_id"))
    return jsonify({"count": len(items), "stale_after_s": gps.STALE_AFTER_S, "vehicles": items})


@bp.get("/vehicles/<ref>/track")
@login_required()
def track(ref: str):
    return jsonify(gps.track(ref, _arg_time("from"), _arg_time("to")))


@bp.get("/units/nearest")
@login_required()
def nearest():
    limit = _arg_int("limit")
    units = gps.nearest(_arg_float("lat"), _arg_float("lon"), request.args.get("type") or None,
                        _arg_bool("available", True), 10 if limit is None else limit,
                        _arg_float("radius_m", 20_000.0))
    return jsonify({"units": units, "road_factor": gps.ROAD_FACTOR, "typical_speed_kmh": gps.TYPICAL_SPEED_KMH})


@bp.post("/units/<ref>/status")
@login_required(WRITERS)
def unit_status(ref: str):
    body = json_body()
    actor = current_actor()
    return jsonify(gps.set_status(ref, body.get("status"), body.get("note") or "", actor.username))


# ---------------------------------------------------------------------------------- 上岗履职

@bp.get("/duty/shifts")
@login_required()
def list_shifts():
    return jsonify({"shifts": duty.list_shifts(request.args.get("person"), _arg_int("device_id"))})


@bp.post("/duty/shifts")
@login_required(WRITERS)
def create_shift():
    resp = jsonify(duty.create_shift(json_body()))
    resp.status_code = 201
    return resp


@bp.get("/duty/shifts/<shift_id>")
@login_required()
def get_shift(shift_id: str):
    return jsonify(duty.get_shift(_int(shift_id, "shift")))


@bp.patch("/duty/shifts/<shift_id>")
@login_required(WRITERS)
def patch_shift(shift_id: str):
    return jsonify(duty.patch_shift(_int(shift_id, "shift"), json_body()))


@bp.delete("/duty/shifts/<shift_id>")
@login_required(WRITERS)
def delete_shift(shift_id: str):
    duty.delete_shift(_int(shift_id, "shift"))
    return "", 204


@bp.get("/duty/report")
@login_required()
def duty_report():
    raw = request.args.get("date")
    if raw:
        try:
            day = date.fromisoformat(raw)
        except ValueError as exc:
            raise errors.BadInput("'date' must be a date like 2026-11-26", {"field": "date", "value": raw}) from exc
    else:
        day = datetime.now(current().calendar.tz).date()
    return jsonify(duty.report(day, request.args.get("person") or None, _arg_int("device_id")))


@bp.get("/duty/alarms")
@login_required()
def duty_alarms():
    raw = request.args.get("active")
    active = None if raw in (None, "") else _arg_bool("active", True)
    return jsonify({"alarms": duty.list_alarms(active, request.args.get("person") or None,
                                               _arg_time("from"), _arg_time("to"))})
