"""Read models of the command-hall wall (指挥大厅大屏): pure queries over the store.

Everything a wall screen shows is built here, from the case table and the event rows:
today's KPIs (今日上报/立案/派遣/结案, 按期结案率, 超期未结), the open cases for the map and the SLA
board (时限看板), the department ranking (综合评价排名), the hourly and per-class trends, the newest
events for the ticker, and the base layers of the offline map. Times go out as epoch milliseconds
(UTC); coordinates are converted for display only when the tile source is GCJ-02.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

from sqlalchemy import BigInteger, and_, case, cast, extract, func, select

from backend.store.db import as_utc
from backend.domain import coords, lifecycle
from backend.domain.catalog import UnknownClass
from backend.services import errors, evaluation, reference
from backend.services.context import Context, current
from backend.store import models as m

CASES = m.Case.__table__
EVENTS = m.Event.__table__

TICKER_ACTIONS = ("create", "register", "dispatch", "overdue", "supervise", "close")
RANKING_DAYS = 30
SLA_BOARD_SIZE = 14
SLA_RECENT_OVERDUE = timedelta(hours=2)  # overdue cases stay on the board this long; then the KPI counts them
MAX_TEXT = 80
_ON_TIME = case((CASES.c.on_time.is_(True), 1), else_=0)
BASE_LAYERS = ("district", "roads", "grids", "streets")

# The compact case record sent to screens, one letter per field (20,000 cases stay small).
CASE_FIELDS = {"id": "id", "n": "case_number", "s": "status", "u": "urgency", "c": "class_code",
               "g": "grid_code", "d": "department_id", "ss": "sla_state", "p": "pending"}
CASE_TIMES = {"dl": "deadline_at", "wa": "warn_at", "st": "stage_started_at"}


# --- small helpers -----------------------------------------------------------------------------

def _utc(t: datetime | str | None) -> datetime | None:
    if t is None:
        return None
    if isinstance(t, str):
        t = datetime.fromisoformat(t.replace("Z", "+00:00"))
    return as_utc(t)


EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MILLISECOND = timedelta(milliseconds=1)


def epoch_ms(t: datetime | str | None) -> int | None:
    """A time (datetime or ISO text) as UTC epoch milliseconds; None stays None."""
    t = _utc(t)
    return None if t is None else (t - EPOCH) // MILLISECOND  # exact: whole milliseconds, rounded down


def display_point(lat: float, lon: float, ctx: Context | None = None) -> tuple[float, float]:
    """Stored WGS-84 → the coordinate system of the configured tile source (display only)."""
    ctx = ctx or current()
    if ctx.config.tile_crs == "gcj02":
        lat, lon = coords.wgs84_to_gcj02(lat, lon)
    return round(lat, 6), round(lon, 6)


def _convert_coords(obj: Any, ctx: Context) -> Any:
    """Convert every [lon, lat] position in GeoJSON coordinates (nested lists)."""
    if isinstance(obj, list) and len(obj) >= 2 and all(isinstance(v, (int, float)) for v in obj[:2]):
        lat, lon = display_point(obj[1], obj[0], ctx)
        return [lon, lat] + list(obj[2:])
    if isinstance(obj, list):
        return [_convert_coords(v, ctx) for v in obj]
    return obj


def display_geojson(fc: dict, ctx: Context | None = None) -> dict:
    """A FeatureCollection in display coordinates (unchanged for WGS-84 tiles or no tiles)."""
    ctx = ctx or current()
    if ctx.config.tile_crs != "gcj02":
        return fc
    out = dict(fc)
    out["features"] = [dict(f, geometry=dict(f["geometry"], coordinates=_convert_coords(
        f["geometry"]["coordinates"], ctx))) for f in fc.get("features", [])]
    return out


def day_start(now: datetime, ctx: Context | None = None) -> datetime:
    """Local midnight (display time zone) of `now`, in UTC."""
    ctx = ctx or current()
    local = _utc(now).astimezone(ctx.calendar.tz)
    return local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(timezone.utc)


def class_name(code: str, ctx: Context | None = None) -> str:
    ctx = ctx or current()
    try:
        return ctx.catalog.get(code).name
    except UnknownClass:
        return code


def _short(text: Any) -> str:
    text = str(text or "").strip()
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT - 1] + "…"


# --- cases for the map and the SLA board -------------------------------------------------------

def compact_case(snap: dict, ctx: Context | None = None) -> dict:
    """A case dict (bus snapshot or row) as the compact record screens keep: display coordinates, ms."""
    ctx = ctx or current()
    out = {k: snap.get(src) for k, src in CASE_FIELDS.items()}
    for k, src in CASE_TIMES.items():
        out[k] = epoch_ms(snap.get(src))
    if snap.get("lat") is not None and snap.get("lon") is not None:
        out["lat"], out["lon"] = display_point(snap["lat"], snap["lon"], ctx)
    out["o"] = snap.get("status") not in lifecycle.FINAL_STATUSES
    return out


def open_cases(department_id: int | None = None, limit: int = 50_000) -> list[dict]:
    """Every open case (未结案件) as compact records, oldest first; a department sees only its own."""
    cols = open_case_columns(department_id, limit)
    keys = list(cols)
    return [dict(zip(keys, values), o=True) for values in zip(*cols.values())]


def _sql_epoch_seconds(col, dialect: str):
    """A stored time as whole UTC epoch seconds (rounded down), computed by the database."""
    if dialect == "sqlite":  # stored as 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC); strftime would round .9995 s up
        return cast(func.strftime("%s", func.substr(col, 1, 19)), BigInteger)
    return cast(func.floor(extract("epoch", col)), BigInteger)


def _sql_epoch_ms(col, dialect: str):
    """A stored time as UTC epoch milliseconds, computed by the database (exactly as `epoch_ms` does:
    whole milliseconds, rounded down): 60,000 datetimes a state were most of the Python time."""
    if dialect == "sqlite":  # the milliseconds are the first three digits of the stored fraction
        return _sql_epoch_seconds(col, dialect) * 1000 + cast(func.substr(col, 21, 3), BigInteger)
    return cast(func.floor(extract("epoch", col) * 1000), BigInteger)


def open_case_columns(department_id: int | None = None, limit: int = 50_000) -> dict[str, list]:
    """The open cases as one list per compact field (the wall's state)."""
    ctx = current()
    c = CASES.c
    dialect = ctx.engine.dialect.name
    cols = [c.id, c.case_number, c.status, c.urgency, c.class_code, c.grid_code, c.department_id,
            c.sla_state, c.pending, _sql_epoch_ms(c.deadline_at, dialect), _sql_epoch_ms(c.warn_at, dialect),
            _sql_epoch_ms(c.stage_started_at, dialect), c.lat, c.lon]
    q = select(*cols).where(c.status.notin_(list(lifecycle.FINAL_STATUSES)))
    if department_id is not None:
        q = q.where(c.department_id == department_id)
    with ctx.reader.connect() as conn:
        rows = conn.execute(q.order_by(c.id).limit(limit)).all()
    columns = list(zip(*rows)) if rows else [()] * len(cols)
    out: dict[str, list] = {k: list(v) for k, v in zip(list(CASE_FIELDS) + list(CASE_TIMES), columns)}
    if ctx.config.tile_crs == "gcj02":
        points = [display_point(lat, lon, ctx) for lat, lon in zip(columns[12], columns[13])]
        out["lat"], out["lon"] = [p[0] for p in points], [p[1] for p in points]
    else:  # 6 decimals (~0.1 m) as display_point gives: a third less JSON than the stored floats
        out["lat"] = [None if v is None else round(v, 6) for v in columns[12]]
        out["lon"] = [None if v is None else round(v, 6) for v in columns[13]]
    return out


def sla_board(cases: Iterable[dict], now: datetime, size: int = SLA_BOARD_SIZE) -> list[dict]:
    """The open cases nearest their deadline (时限看板), from compact records.

    Cases with a running clock whose deadline is ahead, or passed less than SLA_RECENT_OVERDUE
    ago, sorted by deadline; each gets `level` 0 (in time), 1 (80% used, 预警) or 2 (超期).
    """
    now_ms = epoch_ms(now)
    since = now_ms - int(SLA_RECENT_OVERDUE.total_seconds() * 1000)
    rows = [cs for cs in cases if cs.get("o") and cs.get("dl") is not None and cs["dl"] >= since]
    rows.sort(key=lambda cs: (cs["dl"], cs["id"]))
    out = []
    for cs in rows[:size]:
        level = 2 if now_ms >= cs["dl"] else 1 if cs.get("wa") is not None and now_ms >= cs["wa"] else 0
        out.append(dict(cs, level=level, remaining_ms=cs["dl"] - now_ms))
    return out


# --- KPIs ----------------------------------------------------------------------------------------

def kpis(now: datetime | None = None) -> dict:
    """Today's (local day) 上报, 立案, 派遣, 结案, 按期结案率 and the open overdue cases (超期未结).

    按期结案率 = cases closed today on time / cases closed today (None before the first close).
    """
    ctx = current()
    now = _utc(now) or datetime.now(timezone.utc)
    start = day_start(now, ctx)
    c = CASES.c
    with ctx.reader.connect() as conn:
        reported = conn.execute(select(func.count()).where(c.created_at >= start)).scalar_one()
        registered = conn.execute(select(func.count()).where(c.registered_at >= start)).scalar_one()
        dispatched = conn.execute(select(func.count()).where(c.dispatched_at >= start)).scalar_one()
        closed, on_time = conn.execute(select(func.count(), func.sum(_ON_TIME))
                                       .where(c.status == lifecycle.CLOSED, c.closed_at >= start)).one()
        overdue = conn.execute(select(func.count()).where(
            c.status.notin_(list(lifecycle.FINAL_STATUSES)), c.deadline_at.is_not(None),
            c.deadline_at <= now)).scalar_one()
        open_n = conn.execute(select(func.count()).where(
            c.status.notin_(list(lifecycle.FINAL_STATUSES)))).scalar_one()
    on_time = int(on_time or 0)
    return {"day": start.astimezone(ctx.calendar.tz).date().isoformat(), "reported": reported,
            "registered": registered, "dispatched": dispatched, "closed": closed,
            "on_time_close_rate": round(on_time / closed, 4) if closed else None,
            "overdue_open": overdue, "open": open_n, "at": epoch_ms(now)}


# --- ranking ---------------------------------------------------------------------------------------

def ranking(now: datetime | None = None, days: int = RANKING_DAYS, limit: int = 12) -> list[dict]:
    """Departments by 综合指标值 over the last `days` days (best first), with grade and 按期处置率."""
    now = _utc(now) or datetime.now(timezone.utc)
    result = evaluation.departments(now - timedelta(days=days), now)
    rows = [d for d in result["departments"] if d.get("score") is not None]
    return [{"id": d["department_id"], "name": d["department_name"], "score": round(d["score"], 1),
             "grade": d.get("grade"), "rank": d.get("rank"), "cases": d.get("cases", 0),
             "on_time_rate": d.get("on_time_dispose_rate"), "overdue_open": d.get("overdue_open", 0)}
            for d in rows[:limit]]


# --- trends ------------------------------------------------------------------------------------

QUARTER = 900  # seconds: local midnights and hours fall on 15-minute UTC boundaries in every time zone in use


def _sql_quarter(col, dialect: str):
    """The 15-minute UTC slot of a stored time, as an integer (epoch seconds // 900), computed by the database."""
    return _sql_epoch_seconds(col, dialect).op("/")(QUARTER)  # integer division on both (positive values)


def trends(now: datetime | None = None) -> dict:
    """Reports per hour today against yesterday, per major class (大类), and today's top five subclasses.

    The database counts the reports per 15-minute slot and class (a few hundred rows however many cases);
    each slot lies wholly inside one local hour and one day, so the hours and days are exact.
    """
    ctx = current()
    now = _utc(now) or datetime.now(timezone.utc)
    today = day_start(now, ctx)
    yesterday = today - timedelta(days=1)
    cutoff_yesterday = now - timedelta(days=1)  # yesterday up to the same time of day: a fair comparison
    c = CASES.c
    quarter = _sql_quarter(c.created_at, ctx.engine.dialect.name).label("quarter")
    early = case((c.created_at < cutoff_yesterday, 1), else_=0).label("early")
    q = (select(quarter, c.class_code, early, func.count())
         .where(c.created_at >= yesterday, c.created_at < now).group_by(quarter, c.class_code, early))
    with ctx.reader.connect() as conn:
        rows = conn.execute(q).all()
    hours_today, hours_yesterday = [0] * 24, [0] * 24
    major_today: Counter = Counter()
    major_yesterday: Counter = Counter()
    sub_today: Counter = Counter()
    majors_of: dict[str, str] = {}
    for slot, code, before_cutoff, n in rows:
        t = datetime.fromtimestamp(int(slot) * QUARTER, timezone.utc)
        hour = t.astimezone(ctx.calendar.tz).hour
        major = majors_of.get(code)
        if major is None:
            try:
                major = ctx.catalog.major_of(ctx.catalog.get(code)).name
            except UnknownClass:
                major = code[:3]
            majors_of[code] = major
        if t >= today:
            hours_today[hour] += n
            major_today[major] += n
            sub_today[code] += n
        else:
            hours_yesterday[hour] += n
            if before_cutoff:
                major_yesterday[major] += n
    majors = sorted(set(major_today) | set(major_yesterday), key=lambda k: -(major_today[k] + major_yesterday[k]))
    current_hour = now.astimezone(ctx.calendar.tz).hour
    return {
        "hours": list(range(24)), "today": hours_today[:current_hour + 1], "yesterday": hours_yesterday,
        "majors": majors[:8], "major_today": [major_today[k] for k in majors[:8]],
        "major_yesterday": [major_yesterday[k] for k in majors[:8]],
        "top5": [{"code": k, "name": class_name(k, ctx), "count": n} for k, n in sub_today.most_common(5)],
    }


# --- the ticker ---------------------------------------------------------------------------------

def ticker_item(event: dict, ctx: Context | None = None) -> dict:
    """One bus event (docs/events.md) as a ticker line: kept as data, rendered as text by the screen."""
    ctx = ctx or current()
    snap = event.get("case") or {}
    payload = event.get("payload") or {}
    dept_id = snap.get("department_id")
    dept = ctx.departments.get(dept_id) if dept_id else None
    return {"e": event["event_id"], "a": event.get("action"), "at": epoch_ms(event.get("at")),
            "n": snap.get("case_number"), "cid": event.get("case_id") or snap.get("id"),
            "cls": class_name(snap.get("class_code") or "", ctx), "dept": dept["name"] if dept else None,
            "text": _short(payload.get("description") or payload.get("note") or payload.get("address") or ""),
            "u": snap.get("urgency")}


def recent_events(limit: int = 30) -> list[dict]:
    """The newest ticker events (上报, 立案, 派遣, 超期, 督办, 结案), newest first."""
    ctx = current()
    e = EVENTS.c
    with ctx.reader.connect() as conn:
        rows = conn.execute(select(e.id, e.case_id, e.action, e.created_at, e.payload)
                            .where(e.action.in_(TICKER_ACTIONS)).order_by(e.id.desc()).limit(limit)).all()
    out = []
    for r in rows:
        body = json.loads(r.payload)
        out.append(ticker_item({"event_id": r.id, "case_id": r.case_id, "action": r.action,
                                "at": _utc(r.created_at).isoformat(), "payload": body.get("input") or {},
                                "case": body.get("case") or {}}, ctx))
    return out


def last_event_id() -> int:
    ctx = current()
    with ctx.reader.connect() as conn:
        return conn.execute(select(func.coalesce(func.max(EVENTS.c.id), 0))).scalar_one()


# --- one case, as the read-only wall may show it ------------------------------------------------

def public_case(case_id: int) -> dict:
    """A case summary for the wall's popup: no reporter, no photos, text as data (the screen escapes it)."""
    ctx = current()
    with ctx.reader.connect() as conn:
        r = conn.execute(select(CASES).where(CASES.c.id == case_id)).mappings().first()
    if r is None:
        raise errors.NotFound(f"case {case_id} does not exist")
    dept = ctx.departments.get(r["department_id"]) if r["department_id"] else None
    return {"id": r["id"], "case_number": r["case_number"], "class_code": r["class_code"],
            "class_name": class_name(r["class_code"], ctx), "status": r["status"],
            "status_zh": lifecycle.STATUSES.get(r["status"], r["status"]), "urgency": r["urgency"],
            "description": _short(r["description"]), "address": _short(r["address"]),
            "department": dept["name"] if dept else None, "deadline_at": epoch_ms(r["deadline_at"]),
            "created_at": epoch_ms(r["created_at"])}


# --- base layers of the offline map ---------------------------------------------------------------

def base_layer(name: str) -> dict:
    """District boundary, roads, unit grids or streets as GeoJSON in display coordinates."""
    if name not in BASE_LAYERS:
        raise errors.NotFound(f"map layer {name!r} does not exist", {"layers": list(BASE_LAYERS)})
    if name == "grids":
        fc = reference.grids_geojson()
        for f in fc["features"]:  # the wall needs the code only: keep the response small
            f["properties"] = {"grid_code": f["properties"]["grid_code"], "name": f["properties"]["name"]}
    elif name == "streets":
        fc = reference.areas("streets")
    else:
        fc = reference.map_layer(name)
    return display_geojson(fc)


# --- everything at once --------------------------------------------------------------------------

def lookups() -> dict:
    """Names the screens need to label records: classes, departments, statuses."""
    ctx = current()
    return {"classes": {cl.key: cl.name for cl in ctx.catalog.classes},
            "departments": {str(k): v["name"] for k, v in ctx.departments.items()},
            "statuses": dict(lifecycle.STATUSES)}


def summaries(now: datetime | None = None) -> dict:
    """The server-computed panels, pushed to every screen at once: KPIs, ranking, trends."""
    now = _utc(now) or datetime.now(timezone.utc)
    return {"kpi": kpis(now), "ranking": ranking(now), "trends": trends(now)}


def state(department_id: int | None = None, now: datetime | None = None, summary: dict | None = None,
          timings: dict | None = None, open_now: tuple[int, dict] | None = None) -> dict:
    """The full state of a screen (what a reconnecting screen refetches).

    `event_id` is the last event before the snapshot was read: events after it may already be in
    the snapshot, so a screen applies the pushed events with a greater id in order (idempotent).
    `summary` (KPIs, ranking, trends) may come from the push loop's last computation. `timings`, when
    given, receives the milliseconds spent on the cases and on the summaries. `open_now` (event id,
    columns), when given, are the open cases as the web process keeps them from the event stream.
    """
    now = _utc(now) or datetime.now(timezone.utc)
    t0 = time.perf_counter()
    if open_now is not None:
        event_id, cases = open_now
    else:
        event_id = last_event_id()
        cases = open_case_columns(department_id)
    t1 = time.perf_counter()
    panels = summary or summaries(now)
    t2 = time.perf_counter()
    out = {"event_id": event_id, "now": epoch_ms(now), "cases": cases, "ticker": recent_events(), **panels,
           **lookups()}
    if timings is not None:
        timings.update(cases=(t1 - t0) * 1000, summary=(t2 - t1) * 1000)
    return out


def columns(records: Iterable[dict]) -> dict:
    """Records → one list per field (a third of the JSON size for 20,000 cases)."""
    keys = list(CASE_FIELDS) + list(CASE_TIMES) + ["lat", "lon"]
    return {k: [r.get(k) for r in records] for k in keys}


def events_after(event_id: int, limit: int = 5000) -> list[dict]:
    """Event messages after `event_id` from the store, oldest first (a replay when the stream is short)."""
    from backend.services.outbox import event_message

    ctx = current()
    e = EVENTS.c
    with ctx.reader.connect() as conn:
        rows = conn.execute(select(EVENTS).where(and_(e.id > event_id, e.case_id.is_not(None)))
                            .order_by(e.id).limit(limit)).all()
    return [event_message(r) for r in rows]


# --- vehicles and field staff (车辆与人员), cameras, emergency mode -----------------------------

VEHICLE_FIELDS = ("id", "device", "kind", "name", "plate", "type", "department_id", "department", "speed",
                  "heading", "state", "online", "busy")


def display_vehicle(v: dict, ctx: Context | None = None) -> dict:
    """A live position (`services.gps.vehicles()` item) as the wall keeps it: display coordinates, ms."""
    ctx = ctx or current()
    out = {k: v.get(k) for k in VEHICLE_FIELDS}
    out["lat"], out["lon"] = display_point(v["lat"], v["lon"], ctx)
    out["t"] = epoch_ms(v.get("time"))
    return out


def vehicles() -> dict:
    """Every registered vehicle and phone that has reported, with its latest position (实时位置)."""
    from backend.services import gps

    ctx = current()
    items = [display_vehicle(v, ctx) for v in gps.vehicles()]
    return {"vehicles": items, "stale_after_ms": int(gps.STALE_AFTER_S * 1000),
            "offline_after_ms": int(getattr(gps, "OFFLINE_AFTER_S", 300) * 1000),
            "departments": {str(k): v["name"] for k, v in ctx.departments.items()}}


def summary_for_screen(message: dict, ctx: Context | None = None) -> list[dict]:
    """The devices of one `citywall:gps:summary` message, in display coordinates (bad items dropped)."""
    ctx = ctx or current()
    out = []
    for d in message.get("devices") or []:
        try:
            lat, lon = display_point(float(d["lat"]), float(d["lon"]), ctx)
        except (KeyError, TypeError, ValueError):
            continue
        out.append({"device": str(d.get("device")), "lat": lat, "lon": lon, "speed": d.get("speed"),
                    "heading": d.get("heading"), "state": d.get("status"), "t": epoch_ms(d.get("time"))})
    return out


def vehicle_track(ref: str) -> dict:
    """A device's last hour (轨迹回放) as a GeoJSON line in display coordinates."""
    from backend.services import gps

    ctx = current()
    tr = gps.track(ref)
    coords = []
    for p in tr["points"]:
        lat, lon = display_point(p["lat"], p["lon"], ctx)
        coords.append([lon, lat])
    return {"device": tr["device"]["device"], "id": tr["device"]["id"], "count": tr["count"],
            "track": {"type": "Feature", "geometry": {"type": "LineString", "coordinates": coords},
                      "properties": {"device": tr["device"]["device"]}}}


def alarm_item(alarm: dict) -> dict:
    """A 上岗履职 alarm (`citywall:gps:alarms`) as a ticker line."""
    who = alarm.get("person") or alarm.get("plate") or alarm.get("device") or ""
    raised = alarm.get("state") != "cleared"
    return {"e": f"alarm-{alarm.get('id')}-{alarm.get('state')}", "a": "alarm" if raised else "alarm_cleared",
            "at": epoch_ms(alarm.get("time")) or epoch_ms(datetime.now(timezone.utc)),
            "n": _short(who), "cls": _short(alarm.get("kind_zh") or alarm.get("kind") or ""),
            "dept": None, "text": _short(alarm.get("message") or alarm.get("shift_name") or ""), "cid": None}


def _active_conference(incident_id: int) -> dict | None:
    """The incident's conference room with someone in it (会商进行中), newest first."""
    from backend.services import conferences

    rooms = conferences.list_rooms(lifecycle.Actor("wall", "leader"), {"incident_id": str(incident_id)})["items"]
    for room in rooms:
        full = conferences.get(room["id"])
        if full.get("present"):
            return {"room": str(room["id"]), "title": room["title"], "present": full["present"]}
    return None


def _display_feature(feature: dict, ctx: Context) -> dict:
    return display_geojson({"type": "FeatureCollection", "features": [feature]}, ctx)["features"][0]


def emergency_view() -> dict:
    """What the wall shows in emergency mode (应急模式): the incident holding the wall, or None.

    The incident's perimeter, units (ETAs), cameras and position are in display coordinates; times of
    tasks are epoch ms so the screen counts down by itself.
    """
    from backend.services import emergency

    ctx = current()
    view = emergency.active_view(timeline_last=30)
    inc = view.get("incident")
    if inc is None:
        return {"incident": None, "active": [i["id"] for i in view.get("incidents", [])]}
    lat, lon = display_point(inc["lat"], inc["lon"], ctx)
    units = []
    for u in inc.get("units", []):
        item = {"device": u.get("device"), "name": u.get("name"), "type": u.get("unit_type"),
                "status": u.get("status"), "distance_m": u.get("distance_m"),
                "eta_remaining_s": u.get("eta_remaining_s"), "eta_at": epoch_ms(u.get("eta_at"))}
        if u.get("lat") is not None and u.get("lon") is not None:
            item["lat"], item["lon"] = display_point(u["lat"], u["lon"], ctx)
        units.append(item)
    tasks = [{"id": t["id"], "code": t.get("code"), "title": t.get("title"), "status": t.get("status"),
              "status_zh": t.get("status_zh"), "department": t.get("department_name"),
              "deadline_at": epoch_ms(t.get("deadline_at")), "warn_at": epoch_ms(t.get("warn_at")),
              "started_at": epoch_ms(t.get("started_at")), "overdue": t.get("overdue")}
             for t in inc.get("tasks", [])]
    timeline = [{"e": e["event_id"], "at": epoch_ms(e["at"]), "action": e["action"], "zh": e.get("action_zh"),
                 "actor": e.get("actor"), "text": _short((e.get("payload") or {}).get("text")
                                                         or (e.get("payload") or {}).get("note")
                                                         or (e.get("payload") or {}).get("name") or "")}
                for e in reversed(inc.get("timeline", []))]
    cams = []
    for c in inc.get("cameras", []):
        clat, clon = display_point(c["lat"], c["lon"], ctx)
        cams.append({"id": c["id"], "name": c["name"], "lat": clat, "lon": clon,
                     "distance_m": c.get("distance_m")})
    try:
        conference = _active_conference(inc["id"])
    except Exception:  # conferences are optional: the emergency view stands without them
        conference = None
    return {"incident": {
        "id": inc["id"], "title": inc.get("title"), "type_zh": inc.get("type_zh"), "level": inc.get("level"),
        "level_zh": inc.get("level_zh"), "status": inc.get("status"), "address": inc.get("address"),
        "lat": lat, "lon": lon, "activated_at": epoch_ms(inc.get("activated_at")),
        "perimeter": _display_feature(inc["perimeter"], ctx), "units": units, "tasks": tasks,
        "timeline": timeline, "cameras": cams, "conference": conference,
        "plan": (inc.get("plan") or {}).get("name")}, "active": [i["id"] for i in view.get("incidents", [])]}
