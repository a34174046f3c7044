"""上岗履职 (on-duty checks): shifts, daily reports and duty alarms, over the stored tracks.

The rules themselves are in ``backend.domain.duty``; this module reads shifts and tracks, writes
alarms (``duty_alarms``) and publishes them on Redis ``citywall:gps:alarms`` as JSON:

    {"type": "duty_alarm", "state": "raised" | "cleared", "id", "kind", "kind_zh", "shift_id",
     "shift_name", "person", "device", "device_id", "plate", "since", "time", "lat", "lon", "message"}

A shift of a person counts every device whose ``person`` is that username (the inspector's phone).
"""
from __future__ import annotations

import json
import logging
from datetime import date, datetime, timedelta, timezone

from sqlalchemy import delete, insert, or_, select, update

from backend.domain import duty as rules_mod
from backend.domain.duty import DutyPoint, DutyRules, Shift
from backend.domain.grid import GridError
from backend.store.db import as_utc
from backend.gps.pipeline import KEY_LAST
from backend.services import errors, gps
from backend.services.context import current
from backend.store import models as m
from backend.store.duty_models import DutyAlarm, DutyShift
from backend.store.gps_models import Device

log = logging.getLogger(__name__)

CHANNEL_ALARMS = "citywall:gps:alarms"
SHIFTS = DutyShift.__table__
ALARMS = DutyAlarm.__table__
DEVICES = Device.__table__
RULES = DutyRules()
KIND_ZH = {"out_of_area": "越界/离岗", "no_signal": "无信号"}
_FIELDS = {"name", "device_id", "person", "start", "end", "days", "grid_codes", "duty_grid_code", "enabled"}


def _iso(t: datetime | float | None) -> str | None:
    if t is None:
        return None
    if not isinstance(t, datetime):
        t = datetime.fromtimestamp(t, timezone.utc)
    return as_utc(t).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------------- shifts

def _public(row) -> dict:
    return {"id": row.id, "name": row.name, "device_id": row.device_id, "person": row.person,
            "start": row.start_time, "end": row.end_time, "days": row.days, "grid_codes": list(row.grid_codes),
            "duty_grid_code": row.duty_grid_code, "enabled": bool(row.enabled)}


def _shift(row) -> Shift:
    return Shift.parse(row.start_time, row.end_time, row.days, row.grid_codes)


def _bad(message: str, field: str) -> errors.BadInput:
    return errors.BadInput(message, {"field": field})


def _validate(data: dict, current_row: dict | None = None) -> dict:
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise errors.BadInput(f"unknown fields: {', '.join(unknown)}", {"unknown": unknown})
    merged = dict(current_row or {}) | data
    ctx = current()
    out: dict = {}
    name = merged.get("name") or ""
    if not isinstance(name, str) or len(name) > 100:
        raise _bad("'name' must be a string of at most 100 characters", "name")
    device_id, person = merged.get("device_id"), merged.get("person")
    if (device_id is None) == (person in (None, "")):
        raise _bad("a shift is for exactly one of 'device_id' (a vehicle) or 'person' (a username)", "person")
    if device_id is not None:
        if isinstance(device_id, bool) or not isinstance(device_id, int):
            raise _bad("'device_id' must be a device id", "device_id")
        with ctx.reader.connect() as conn:
            if conn.execute(select(DEVICES.c.id).where(DEVICES.c.id == device_id)).first() is None:
                raise _bad(f"device {device_id} does not exist", "device_id")
    else:
        if not isinstance(person, str):
            raise _bad("'person' must be a username", "person")
        with ctx.reader.connect() as conn:
            if conn.execute(select(m.User.id).where(m.User.username == person)).first() is None:
                raise _bad(f"there is no user {person!r}", "person")
    out["device_id"], out["person"] = device_id, person if device_id is None else None
    duty_grid_code = merged.get("duty_grid_code")
    grid_codes = merged.get("grid_codes")
    if duty_grid_code is not None:
        if not isinstance(duty_grid_code, str):
            raise _bad("'duty_grid_code' must be the code of a 责任网格", "duty_grid_code")
        with ctx.reader.connect() as conn:
            row = conn.execute(select(m.DutyGrid.grid_codes).where(m.DutyGrid.code == duty_grid_code)).first()
        if row is None:
            raise _bad(f"there is no 责任网格 {duty_grid_code!r}", "duty_grid_code")
        if grid_codes is None or ("duty_grid_code" in data and "grid_codes" not in data):
            grid_codes = list(row.grid_codes)
    if not isinstance(grid_codes, list) or not grid_codes:
        raise _bad("'grid_codes' must be a non-empty list of unit grid codes (or give 'duty_grid_code')",
                   "grid_codes")
    for code in grid_codes:
        try:
            ctx.grid_index.get(code)
        except (GridError, TypeError) as exc:
            raise _bad(f"unknown unit grid {code!r}", "grid_codes") from exc
    try:
        shift = Shift.parse(merged.get("start"), merged.get("end"), merged.get("days"), grid_codes)
    except ValueError as exc:
        field = next((f for f in ("start", "end", "days", "grid_codes") if f in str(exc).split(" ")[0]), "start")
        raise _bad(str(exc), field) from exc
    out.update(name=name.strip(), start_time=shift.start.strftime("%H:%M"), end_time=shift.end.strftime("%H:%M"),
               days="".join(str(d) for d in sorted(shift.days)), grid_codes=sorted(shift.grid_codes),
               duty_grid_code=duty_grid_code)
    enabled = merged.get("enabled", True)
    if not isinstance(enabled, bool):
        raise _bad("'enabled' must be true or false", "enabled")
    out["enabled"] = enabled
    return out


def create_shift(data: dict) -> dict:
    values = _validate(data)
    with current().engine.begin() as conn:
        shift_id = conn.execute(insert(SHIFTS).values(**values, created_at=datetime.now(timezone.utc))
                                .returning(SHIFTS.c.id)).scalar_one()
    return get_shift(shift_id)


def _row(shift_id: int):
    with current().reader.connect() as conn:
        row = conn.execute(select(SHIFTS).where(SHIFTS.c.id == shift_id)).first()
    if row is None:
        raise errors.NotFound(f"shift {shift_id} does not exist")
    return row


def get_shift(shift_id: int) -> dict:
    return _public(_row(shift_id))


def patch_shift(shift_id: int, data: dict) -> dict:
    shift = get_shift(shift_id)
    values = _validate(data, shift)
    with current().engine.begin() as conn:
        conn.execute(update(SHIFTS).where(SHIFTS.c.id == shift_id).values(**values))
    return get_shift(shift_id)


def delete_shift(shift_id: int) -> None:
    _row(shift_id)
    with current().engine.begin() as conn:
        conn.execute(delete(ALARMS).where(ALARMS.c.shift_id == shift_id))
        conn.execute(delete(SHIFTS).where(SHIFTS.c.id == shift_id))


def list_shifts(person: str | None = None, device_id: int | None = None) -> list[dict]:
    query = select(SHIFTS).order_by(SHIFTS.c.id)
    if person:
        query = query.where(or_(SHIFTS.c.person == person,
                                SHIFTS.c.device_id.in_(select(DEVICES.c.id).where(DEVICES.c.person == person))))
    if device_id is not None:
        query = query.where(SHIFTS.c.device_id == device_id)
    with current().reader.connect() as conn:
        return [_public(r) for r in conn.execute(query).all()]


# ---------------------------------------------------------------------------------- tracks

def _devices_of(row) -> list[dict]:
    """The devices a shift follows: its vehicle's terminal, or every device the person carries."""
    query = select(DEVICES)
    query = query.where(DEVICES.c.id == row.device_id) if row.device_id is not None \
        else query.where(DEVICES.c.person == row.person)
    with current().reader.connect() as conn:
        return [{"id": r.id, "device": f"{r.protocol}:{r.identifier}", "plate": r.plate or ""}
                for r in conn.execute(query.order_by(DEVICES.c.id)).all()]


def _duty_points(device_ids: list[int], start: datetime, end: datetime) -> list[DutyPoint]:
    tracks = gps.track_points(device_ids, start, end)
    fixes = sorted((p for points in tracks.values() for p in points if p["valid"]), key=lambda p: p["time"])
    grids = current().grid_index.locate_many([(p["lat"], p["lon"]) for p in fixes])
    return [DutyPoint(p["time"], p["lat"], p["lon"], g.code if g is not None else None)
            for p, g in zip(fixes, grids)]


# ---------------------------------------------------------------------------------- report

def _result_json(result: rules_mod.DutyResult, area: frozenset[str]) -> dict:
    locate = current().grid_index.locate
    stops = []
    for stop in result.stops:
        grid = locate(stop.lat, stop.lon)
        stops.append({"start": _iso(stop.start), "end": _iso(stop.end), "duration_s": round(stop.duration_s),
                      "lat": stop.lat, "lon": stop.lon, "grid_code": grid.code if grid else None,
                      "in_area": bool(grid and grid.code in area)})
    return {
        "status": "in_progress" if result.in_progress else "finished",
        "inside_s": round(result.inside_s), "outside_s": round(result.outside_s),
        "no_signal_s": round(result.no_signal_s), "distance_m": round(result.distance_m, 1),
        "points": result.points, "arrived_at": _iso(result.arrived_at), "left_at": _iso(result.left_at),
        "late_start": result.late, "late_s": round(result.late_s),
        "early_leave": result.early, "early_s": round(result.early_s), "absent": result.absent,
        "stops": stops,
        "out_periods": [{"start": _iso(a), "end": _iso(b), "duration_s": round(b - a)} for a, b in result.out_periods],
    }


def _alarms_between(shift_id: int, start: datetime, end: datetime) -> list[dict]:
    with current().reader.connect() as conn:
        rows = conn.execute(select(ALARMS).where(ALARMS.c.shift_id == shift_id, ALARMS.c.since >= start,
                                                 ALARMS.c.since <= end).order_by(ALARMS.c.id)).all()
    return [_alarm_public(r) for r in rows]


def shift_report(row, day: date, now: datetime, rules: DutyRules = RULES) -> dict | None:
    """One shift's figures for the shift starting on the local date ``day`` (None: not that day)."""
    tz = current().calendar.tz
    shift = _shift(row)
    window = shift.window(day, tz)
    if window is None:
        return None
    start, end = window
    base = {"shift_id": row.id, "name": row.name, "person": row.person, "device_id": row.device_id,
            "start": _iso(start), "end": _iso(end), "grid_codes": sorted(shift.grid_codes),
            "duty_grid_code": row.duty_grid_code}
    if now <= start:
        return base | {"status": "upcoming"}
    devices = _devices_of(row)
    points = _duty_points([d["id"] for d in devices], start, min(end, now))
    result = rules_mod.evaluate(points, start.timestamp(), end.timestamp(), shift.grid_codes, rules,
                                now=now.timestamp())
    return base | {"devices": [d["device"] for d in devices]} | _result_json(result, shift.grid_codes) \
        | {"alarms": _alarms_between(row.id, start, end)}


def report(day: date, person: str | None = None, device_id: int | None = None,
           now: datetime | None = None) -> dict:
    """日报: every shift of a person (or a vehicle's device) that starts on the local date ``day``."""
    now = now or datetime.now(timezone.utc)
    if not person and device_id is None:
        raise errors.BadInput("give 'person' (a username) or 'device_id'", {"field": "person"})
    ctx = current()
    display = None
    if person:
        with ctx.reader.connect() as conn:
            user = conn.execute(select(m.User.username, m.User.display_name).where(
                m.User.username == person)).first()
        if user is None:
            raise errors.NotFound(f"there is no user {person!r}")
        display = user.display_name
    with ctx.reader.connect() as conn:
        query = select(SHIFTS).where(SHIFTS.c.enabled.is_(True)).order_by(SHIFTS.c.start_time, SHIFTS.c.id)
        if person:
            query = query.where(or_(SHIFTS.c.person == person, SHIFTS.c.device_id.in_(
                select(DEVICES.c.id).where(DEVICES.c.person == person))))
        else:
            query = query.where(SHIFTS.c.device_id == device_id)
        rows = conn.execute(query).all()
    shifts = [r for r in (shift_report(row, day, now) for row in rows) if r is not None]
    done = [s for s in shifts if s.get("status") != "upcoming"]
    totals = {key: sum(s[key] for s in done) for key in ("inside_s", "outside_s", "no_signal_s", "points")}
    totals["distance_m"] = round(sum(s["distance_m"] for s in done), 1)
    totals["stops"] = sum(len(s["stops"]) for s in done)
    totals["late_starts"] = sum(1 for s in done if s["late_start"])
    totals["early_leaves"] = sum(1 for s in done if s["early_leave"])
    totals["alarms"] = sum(len(s["alarms"]) for s in done)
    return {"person": person, "display_name": display, "device_id": device_id, "date": day.isoformat(),
            "shifts": shifts, "totals": totals}


# ---------------------------------------------------------------------------------- alarms

def _alarm_public(row) -> dict:
    return {"id": row.id, "kind": row.kind, "kind_zh": KIND_ZH.get(row.kind, row.kind), "shift_id": row.shift_id,
            "person": row.person, "device_id": row.device_id, "since": _iso(row.since),
            "raised_at": _iso(row.raised_at), "ended_at": _iso(row.ended_at), "lat": row.lat, "lon": row.lon,
            "active": row.ended_at is None}


def list_alarms(active: bool | None = None, person: str | None = None, start: datetime | None = None,
                end: datetime | None = None, limit: int = 500) -> list[dict]:
    query = select(ALARMS).order_by(ALARMS.c.id.desc()).limit(limit)
    if active is True:
        query = query.where(ALARMS.c.ended_at.is_(None))
    elif active is False:
        query = query.where(ALARMS.c.ended_at.is_not(None))
    if person:
        query = query.where(ALARMS.c.person == person)
    if start is not None:
        query = query.where(ALARMS.c.raised_at >= start)
    if end is not None:
        query = query.where(ALARMS.c.raised_at < end)
    with current().reader.connect() as conn:
        return [_alarm_public(r) for r in conn.execute(query).all()]


def _last_heard(devices: list[dict]) -> float | None:
    if not devices:
        return None
    values = current().redis.hmget(KEY_LAST, [d["device"] for d in devices])
    times = [float(json.loads(v)["ts"]) for v in values if v]
    return max(times) if times else None


def _publish(state: str, alarm: dict, row, devices: list[dict], now: datetime) -> None:
    who = row.person or (devices[0]["plate"] if devices else f"设备{row.device_id}")
    minutes = max(0, round((now - datetime.fromisoformat(alarm["since"].replace("Z", "+00:00"))).total_seconds() / 60))
    text = f"{who} {KIND_ZH[alarm['kind']]} {minutes} 分钟" if state == "raised" else \
        f"{who} {KIND_ZH[alarm['kind']]} 已解除"
    message = {"type": "duty_alarm", "state": state, **{k: alarm[k] for k in (
        "id", "kind", "kind_zh", "shift_id", "person", "device_id", "since", "lat", "lon")},
        "shift_name": row.name, "device": devices[0]["device"] if devices else None,
        "plate": devices[0]["plate"] if devices else "", "time": _iso(now), "message": text}
    try:
        current().redis.publish(CHANNEL_ALARMS, json.dumps(message, ensure_ascii=False))
    except Exception as exc:  # the alarm is stored; the wall reads it from the API
        log.warning("could not publish a duty alarm: %s", exc)


def tick(now: datetime | None = None, rules: DutyRules = RULES) -> dict:
    """One pass of the duty checker (worker): raise and clear alarms of the running shifts."""
    now = now or datetime.now(timezone.utc)
    ctx = current()
    tz = ctx.calendar.tz
    with ctx.reader.connect() as conn:
        rows = conn.execute(select(SHIFTS).where(SHIFTS.c.enabled.is_(True))).all()
        open_alarms = conn.execute(select(ALARMS).where(ALARMS.c.ended_at.is_(None))).all()
    open_by_shift: dict[int, dict[str, object]] = {}
    for alarm in open_alarms:
        open_by_shift.setdefault(alarm.shift_id, {})[alarm.kind] = alarm
    raised = cleared = 0
    lookback = timedelta(seconds=rules.out_alarm_s * 2 + rules.max_gap_s)
    for row in rows:
        try:
            window = _shift(row).active_window(now, tz)
        except ValueError:
            continue
        findings: dict[str, rules_mod.AlarmFinding] = {}
        devices: list[dict] = []
        if window is not None:
            devices = _devices_of(row)
            points = _duty_points([d["id"] for d in devices], max(window[0], now - lookback), now)
            for finding in rules_mod.check_alarms(points, window[0].timestamp(), now.timestamp(),
                                                  row.grid_codes, rules, last_heard=_last_heard(devices)):
                findings[finding.kind] = finding
        current_open = open_by_shift.get(row.id, {})
        for kind, alarm in current_open.items():
            if kind not in findings:
                with ctx.engine.begin() as conn:
                    conn.execute(update(ALARMS).where(ALARMS.c.id == alarm.id).values(ended_at=now))
                _publish("cleared", _alarm_public(alarm) | {"ended_at": _iso(now)}, row, devices, now)
                cleared += 1
        for kind, finding in findings.items():
            if kind in current_open:
                continue
            with ctx.engine.begin() as conn:
                alarm_id = conn.execute(insert(ALARMS).values(
                    shift_id=row.id, kind=kind, person=row.person,
                    device_id=devices[0]["id"] if len(devices) == 1 else row.device_id,
                    since=datetime.fromtimestamp(finding.since, timezone.utc), raised_at=now,
                    lat=finding.lat, lon=finding.lon).returning(ALARMS.c.id)).scalar_one()
                stored = conn.execute(select(ALARMS).where(ALARMS.c.id == alarm_id)).first()
            _publish("raised", _alarm_public(stored), row, devices, now)
            raised += 1
    return {"raised": raised, "cleared": cleared}
