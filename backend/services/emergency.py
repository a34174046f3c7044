"""Emergency command service (应急指挥): the one way in for every incident write.

An incident (突发事件) is raised from a case of the 突发事件 class (E04xx) or directly by a leader. Activating
its plan (启动预案) creates, in one transaction, the command group (指挥组), the tasks with their deadlines,
the notifications (业务短信, sent after commit through ``services.notify``) and the dispatch of the nearest
suitable units (就近调派, ``services.gps.nearest``). Field reports, orders, task changes, level and status
changes, notification deliveries, conference joins and leaves all form the incident's append-only timeline:
hash-chained event rows (``cases.append_event`` with ``case_id=None``, type ``incident.<what>``) that the outbox
puts on ``citywall:events`` with the incident's id. Closing releases the units and renders the summary report.
"""
from __future__ import annotations

import json
import logging
import math
import os
from datetime import datetime, timezone
from typing import Any, Callable

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from backend.domain import emergency as dom
from backend.domain.lifecycle import Actor
from backend.services import cameras, errors, notify
from backend.services.cases import append_event, iso, now_utc
from backend.services.context import current
from backend.store.db import as_utc as _utc
from backend.store import emergency_models as em
from backend.store import models as m

log = logging.getLogger(__name__)

INCIDENTS = em.Incident.__table__
LINKS = em.IncidentEvent.__table__
MEMBERS = em.IncidentMember.__table__
TASKS = em.IncidentTask.__table__
NOTES = em.IncidentNotification.__table__
UNITS = em.IncidentUnit.__table__
CASES = m.Case.__table__
EVENTS = m.Event.__table__

RAISE_FROM_CASE = {"leader", "supervisor", "dispatcher", "admin", "system"}
RAISE_DIRECT = {"leader", "admin"}
COMMAND = {"leader", "admin"}  # activate, close, cancel, change the level
ORDERS = {"leader", "supervisor", "dispatcher", "admin"}  # orders, wall mode, any task
REPORTERS = {"inspector", "operator", "supervisor", "dispatcher", "department", "leader", "admin", "system"}
SYSTEM = Actor("system", "system")
MAX_TEXT = 2000
MAX_PHOTOS = 9
CAMERA_MARGIN_M = 300.0
ENV_PLANS = "CITYWALL_PLANS_FILE"


# --- plans and units (replaceable in tests) -----------------------------------------------------

_book: dom.PlanBook | None = None


def plans() -> dom.PlanBook:
    """The plan book (预案库): the shipped ``backend/data/plans.json`` or ``CITYWALL_PLANS_FILE``."""
    global _book
    if _book is None:
        from backend.services.gps import TYPICAL_SPEED_KMH

        path = os.environ.get(ENV_PLANS) or dom.PLANS_FILE
        _book = dom.PlanBook.load(path, current().catalog.dept_types, TYPICAL_SPEED_KMH)
    return _book


def use_plans(book: dom.PlanBook | None) -> None:
    global _book
    _book = book


def find_units(lat: float, lon: float, unit_type: str, count: int) -> list[dict]:
    """The nearest available units of a type (就近调派) with ``distance_m`` and ``eta_s``: the GPS service's."""
    from backend.services import gps

    return gps.nearest(lat, lon, unit_type, True, min(200, max(count * 3, count)))


def mark_unit(device: str, busy: bool, note: str = "", by: str = "") -> None:
    """Mark a unit busy (执行任务中) or available again in the GPS service."""
    from backend.services import gps

    gps.set_status(device, "busy" if busy else "available", note, by)


# --- input --------------------------------------------------------------------------------------

def _bad(exc: dom.EmergencyError, field: str | None = None) -> errors.ServiceError:
    if isinstance(exc, dom.TransitionNotAllowed):
        return errors.Conflict(str(exc), {"allowed": exc.allowed, "status": exc.status}, code="action_not_allowed")
    return errors.BadInput(str(exc), {"field": field} if field else {})


def _only(data: Any, allowed: set[str]) -> dict:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise errors.BadInput("the body must be a JSON object")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise errors.BadInput(f"unknown fields: {', '.join(unknown)}", {"unknown": unknown, "allowed": sorted(allowed)})
    return data


def _number(data: dict, key: str, lo: float, hi: float) -> float:
    v = data.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
        raise errors.BadInput(f"'{key}' must be a number between {lo} and {hi}", {"field": key})
    return float(v)


def _string(data: dict, key: str, limit: int, required: bool = True) -> str:
    v = data.get(key)
    if v is None and not required:
        return ""
    if not isinstance(v, str) or (required and not v.strip()) or len(v) > limit:
        need = "a non-empty string" if required else "a string"
        raise errors.BadInput(f"'{key}' must be {need} of at most {limit} characters", {"field": key})
    return v.strip()


def _photos(data: dict) -> list[str]:
    photos = data.get("photos") or []
    if not isinstance(photos, list) or len(photos) > MAX_PHOTOS or \
            not all(isinstance(p, str) and 0 < len(p) <= 500 for p in photos):
        raise errors.BadInput(f"'photos' must be a list of at most {MAX_PHOTOS} photo references", {"field": "photos"})
    return photos


def _check_role(actor: Actor, roles: set[str], what: str) -> None:
    if actor.role not in roles:
        raise errors.Forbidden(f"a {actor.role} may not {what}", {"roles": sorted(roles)})


# --- rows and the timeline ----------------------------------------------------------------------

def snapshot(row: dict) -> dict:
    """The compact incident carried by every incident event on the bus."""
    return {"id": row["id"], "title": row["title"], "type": row["type"], "level": row["level"],
            "status": row["status"], "lat": row["lat"], "lon": row["lon"], "grid_code": row["grid_code"],
            "case_id": row["case_id"], "wall_mode": bool(row["wall_mode"]), "plan_key": row["plan_key"],
            "activated_at": iso(row["activated_at"]), "closed_at": iso(row["closed_at"])}


def _record(conn: Connection, row: dict, what: str, actor: Actor, input_: dict, at: datetime,
            from_status: str | None = None) -> int:
    """Append one timeline entry (an event row, hash-chained) and link it to the incident."""
    event_id = append_event(
        conn, case_id=None, type_=f"incident.{what}", action=what, actor=actor,
        from_status=from_status or row["status"], to_status=row["status"],
        body={"input": input_, "incident_id": row["id"], "incident": snapshot(row)}, at=at)
    conn.execute(insert(LINKS).values(event_id=event_id, incident_id=row["id"]))
    return event_id


def _load(conn: Connection, incident_id: int, lock: bool = False) -> dict:
    q = select(INCIDENTS).where(INCIDENTS.c.id == incident_id)
    if lock:
        q = q.with_for_update()
    row = conn.execute(q).mappings().first()
    if row is None:
        raise errors.NotFound(f"incident {incident_id} does not exist")
    return dict(row)


def _change(conn: Connection, row: dict, changes: dict) -> None:
    conn.execute(update(INCIDENTS).where(INCIDENTS.c.id == row["id"]).values(**changes))
    row.update(changes)


def _write(fn: Callable[[Connection], Any]) -> Any:
    ctx = current()
    result = ctx.writes.run(fn)
    ctx.outbox.kick()
    return result


def _transition(row: dict, action: str) -> str:
    try:
        return dom.next_status(row["status"], action)
    except dom.EmergencyError as exc:
        raise _bad(exc) from exc


# --- raising an incident ------------------------------------------------------------------------

RAISE_FIELDS = {"case_id", "type", "level", "title", "lat", "lon", "address", "description", "area"}


def raise_incident(data: Any, actor: Actor, at: datetime | None = None) -> dict:
    """接报: raise an incident from an E04xx case (``case_id``) or directly (type, level, title, lat, lon)."""
    ctx = current()
    data = _only(data, RAISE_FIELDS)
    at = _utc(at) or now_utc()
    case = None
    if data.get("case_id") is not None:
        _check_role(actor, RAISE_FROM_CASE, "raise an incident from a case")
        cid = data["case_id"]
        if isinstance(cid, bool) or not isinstance(cid, int):
            raise errors.BadInput("'case_id' must be an integer", {"field": "case_id"})
        with ctx.reader.connect() as conn:
            case = conn.execute(select(CASES).where(CASES.c.id == cid)).mappings().first()
        if case is None:
            raise errors.NotFound(f"case {cid} does not exist")
        try:
            type_ = dom.check_type(data["type"]) if data.get("type") else dom.type_for_class(case["class_code"])
        except dom.EmergencyError as exc:
            raise errors.BadInput(str(exc), {"field": "case_id", "class_code": case["class_code"]},
                                  code="not_an_emergency_class") from exc
        lat, lon = case["lat"], case["lon"]
        try:
            cls_name = ctx.catalog.get(case["class_code"]).name
        except Exception:
            cls_name = dom.INCIDENT_TYPES[type_]
        title = _string(data, "title", 200) if data.get("title") else \
            f"{case['address'] or case['case_number']} {cls_name}"[:200]
        address = _string(data, "address", 300, required=False) or case["address"] or ""
        description = _string(data, "description", MAX_TEXT, required=False) or case["description"] or ""
    else:
        _check_role(actor, RAISE_DIRECT, "raise an incident directly (a leader raises it, or raise it from a case)")
        missing = [k for k in ("type", "level", "title", "lat", "lon") if data.get(k) in (None, "")]
        if missing:
            raise errors.BadInput(f"missing fields: {', '.join(missing)}", {"missing": missing})
        try:
            type_ = dom.check_type(data["type"])
        except dom.EmergencyError as exc:
            raise _bad(exc, "type") from exc
        lat, lon = _number(data, "lat", -90, 90), _number(data, "lon", -180, 180)
        title = _string(data, "title", 200)
        address = _string(data, "address", 300, required=False)
        description = _string(data, "description", MAX_TEXT, required=False)
    try:
        level = dom.check_level(data.get("level") or "IV")
    except dom.EmergencyError as exc:
        raise _bad(exc, "level") from exc
    try:
        area = dom.parse_area(data.get("area"), lat, lon)
    except dom.EmergencyError as exc:
        raise _bad(exc, "area") from exc
    grid = ctx.grid_index.locate(lat, lon)
    values = {"title": title, "type": type_, "level": level, "status": "raised", "description": description,
              "address": address, "lat": lat, "lon": lon, "grid_code": grid.code if grid else None,
              "area": area.to_dict(), "case_id": case["id"] if case else None, "plan_key": None,
              "raised_by": actor.username, "commander": None, "wall_mode": False, "created_at": at,
              "updated_at": at, "activated_at": None, "closed_at": None, "summary": ""}

    def write(conn: Connection) -> int:
        if case is not None:
            open_one = conn.execute(select(INCIDENTS.c.id).where(
                INCIDENTS.c.case_id == case["id"], INCIDENTS.c.status.notin_(list(dom.FINAL_STATUSES)))).first()
            if open_one is not None:
                raise errors.Conflict(f"case {case['id']} already has an open incident ({open_one.id})",
                                      {"incident_id": open_one.id}, code="incident_exists")
        new_id = conn.execute(insert(INCIDENTS).values(**values).returning(INCIDENTS.c.id)).scalar_one()
        row = values | {"id": new_id}
        _record(conn, row, "raised", actor, {
            "type": type_, "level": level, "title": title, "address": address, "description": description,
            "case_id": row["case_id"], "case_number": case["case_number"] if case else None,
            "area": {"kind": area.kind, "radius_m": area.radius_m}}, at, from_status=None)
        return new_id

    return get(_write(write))


# --- activating the plan ------------------------------------------------------------------------

def _department_for(dept_type: str, street_code: str | None) -> dict | None:
    """The department of a type for this place: the street's own one first, else the district's."""
    best = None
    for d in current().departments.values():
        if d["type"] != dept_type:
            continue
        if street_code and d["street_code"] == street_code:
            return d
        if not d["street_code"] and best is None:
            best = d
    return best


def _pick_units(row: dict, plan: dom.Plan) -> tuple[list[dict], list[dict]]:
    """The nearest available units per the plan's unit kinds; the shortfall per kind."""
    chosen: list[dict] = []
    taken: set[str] = set()
    shortfall = []
    for spec in plan.units:
        try:
            found = find_units(row["lat"], row["lon"], spec.unit_type, spec.count)
        except Exception as exc:  # GPS or Redis away: the plan still starts, the shortfall is recorded
            log.warning("nearest units of %s failed: %s", spec.unit_type, exc)
            found = []
        picked = [u for u in found if u.get("device") not in taken][:spec.count]
        for u in picked:
            taken.add(u["device"])
            chosen.append(u | {"unit_type": spec.unit_type})
        if len(picked) < spec.count:
            shortfall.append({"type": spec.unit_type, "wanted": spec.count, "found": len(picked)})
    return chosen, shortfall


def activate(incident_id: int, actor: Actor, data: Any = None, at: datetime | None = None) -> dict:
    """启动预案: command group, tasks with deadlines, notifications, nearest units; status → active."""
    ctx = current()
    _check_role(actor, COMMAND, "activate a plan")
    data = _only(data, {"plan_key"})
    at = _utc(at) or now_utc()
    with ctx.reader.connect() as conn:
        pre = _load(conn, incident_id)
    _transition(pre, "activate")
    try:
        plan = plans().by_key(data["plan_key"]) if data.get("plan_key") else plans().get(pre["type"], pre["level"])
    except dom.EmergencyError as exc:
        raise _bad(exc, "plan_key") from exc
    if plan.type != pre["type"]:
        raise errors.BadInput(f"plan {plan.key!r} is for {plan.type}, the incident is {pre['type']}",
                              {"field": "plan_key"})
    street = pre["grid_code"][:9] if pre["grid_code"] else None
    dept_types = list(dict.fromkeys([plan.lead_dept_type, *plan.notify, *(t.dept_type for t in plan.tasks)]))
    depts = {t: _department_for(t, street) for t in dept_types}
    units, shortfall = _pick_units(pre, plan)

    def write(conn: Connection) -> dict:
        row = _load(conn, incident_id, lock=True)
        to = _transition(row, "activate")
        _change(conn, row, {"status": to, "plan_key": plan.key, "commander": actor.username, "activated_at": at,
                            "updated_at": at, "wall_mode": True})
        group = [{"role": "commander", "name": actor.username, "username": actor.username, "department_id": None}]
        for t in dept_types:
            d = depts[t]
            if d is not None:
                group.append({"role": "lead" if t == plan.lead_dept_type else "member", "name": d["name"],
                              "username": None, "department_id": d["id"]})
        for g in group:
            conn.execute(insert(MEMBERS).values(incident_id=row["id"], **g))
        tasks = []
        for spec in plan.tasks:
            clock = dom.task_clock(ctx.calendar, at, spec)
            d = depts.get(spec.dept_type)
            tid = conn.execute(insert(TASKS).values(
                incident_id=row["id"], code=spec.code, title=spec.title, dept_type=spec.dept_type,
                department_id=d["id"] if d else None, status="pending", limit_value=spec.limit_value,
                clock=spec.clock, started_at=at, deadline_at=clock.deadline_at, warn_at=clock.warn_at,
                sla_state=0, done_at=None, note="").returning(TASKS.c.id)).scalar_one()
            tasks.append({"id": tid, "code": spec.code, "title": spec.title,
                          "department_id": d["id"] if d else None, "deadline_at": iso(clock.deadline_at)})
        notified = []
        for t in dept_types:
            d = depts.get(t)
            if d is None:
                continue
            text = dom.notification_text(plan, row["title"], row["level"], row["address"], d["name"])
            conn.execute(insert(NOTES).values(
                incident_id=row["id"], department_id=d["id"], recipient=f"dept:{d['code']}", text=text,
                driver="", state="queued", provider_id=None, error="", created_at=at, updated_at=at))
            notified.append(d["id"])
        sent_units = []
        for u in units:
            eta = u.get("eta_s")
            conn.execute(insert(UNITS).values(
                incident_id=row["id"], device_id=u.get("id"), device=str(u["device"]), name=u.get("name") or "",
                unit_type=u["unit_type"], department_id=u.get("department_id"), status="dispatched",
                lat=u.get("lat"), lon=u.get("lon"), distance_m=u.get("distance_m"), eta_s=eta,
                dispatched_at=at, released_at=None))
            sent_units.append({"device": u["device"], "name": u.get("name") or "", "type": u["unit_type"],
                               "distance_m": u.get("distance_m"), "eta_s": eta})
        _record(conn, row, "activated", actor, {
            "plan_key": plan.key, "plan_name": plan.name, "steps": list(plan.steps),
            "command_group": group, "tasks": tasks, "units": sent_units, "shortfall": shortfall,
            "notified_departments": notified,
            "missing_departments": [t for t in dept_types if depts[t] is None]}, at, from_status="raised")
        return row

    _write(write)
    for u in units:
        try:
            mark_unit(str(u["device"]), True, f"应急 #{incident_id}", actor.username)
        except Exception as exc:
            log.warning("could not mark unit %s busy: %s", u["device"], exc)
    send_notifications(incident_id)
    return get(incident_id)


def send_notifications(incident_id: int, at: datetime | None = None) -> int:
    """Hand the incident's queued messages to the gateway; record each delivery state on the timeline."""
    ctx = current()
    with ctx.reader.connect() as conn:
        queued = conn.execute(select(NOTES).where(NOTES.c.incident_id == incident_id, NOTES.c.state == "queued")
                              .order_by(NOTES.c.id)).mappings().all()
    if not queued:
        return 0
    results = [(n, *notify.send(n["recipient"], n["text"])) for n in queued]
    at = _utc(at) or now_utc()
    return _record_deliveries(incident_id, [(n["id"], n["recipient"], n["department_id"], name, d)
                                            for n, name, d in results], at)


def _record_deliveries(incident_id: int, items: list[tuple], at: datetime) -> int:
    def write(conn: Connection) -> int:
        row = _load(conn, incident_id)
        for nid, recipient, dept_id, driver_name, d in items:
            conn.execute(update(NOTES).where(NOTES.c.id == nid).values(
                state=d.state, provider_id=d.provider_id, error=d.error, driver=driver_name, updated_at=at))
            _record(conn, row, "notification", SYSTEM, {
                "notification_id": nid, "recipient": recipient, "department_id": dept_id, "driver": driver_name,
                "state": d.state, "provider_id": d.provider_id, "error": d.error}, at)
        return len(items)

    return _write(write)


def poll_deliveries(limit: int = 200) -> int:
    """Ask the gateway about messages it accepted but has not confirmed (``sent``); record changes."""
    ctx = current()
    with ctx.reader.connect() as conn:
        sent = conn.execute(select(NOTES).where(NOTES.c.state == "sent", NOTES.c.provider_id.is_not(None))
                            .order_by(NOTES.c.id).limit(limit)).mappings().all()
    changed: dict[int, list[tuple]] = {}
    for n in sent:
        d = notify.status(n["provider_id"])
        if d is not None and d.state != "sent":
            changed.setdefault(n["incident_id"], []).append(
                (n["id"], n["recipient"], n["department_id"], n["driver"], d))
    at = now_utc()
    return sum(_record_deliveries(iid, items, at) for iid, items in changed.items())


# --- timeline entries while the incident is open ------------------------------------------------

def field_report(incident_id: int, actor: Actor, data: Any, at: datetime | None = None) -> dict:
    """现场报告: text, photos and a position from the field."""
    _check_role(actor, REPORTERS, "report on an incident")
    data = _only(data, {"text", "photos", "lat", "lon"})
    entry = {"text": _string(data, "text", MAX_TEXT), "photos": _photos(data)}
    if data.get("lat") is not None or data.get("lon") is not None:
        entry["lat"], entry["lon"] = _number(data, "lat", -90, 90), _number(data, "lon", -180, 180)
    return _open_entry(incident_id, actor, "report", "report", entry, at)


def order(incident_id: int, actor: Actor, data: Any, at: datetime | None = None) -> dict:
    """指令: an order of the command (to everyone, or to one department)."""
    _check_role(actor, ORDERS, "give orders")
    data = _only(data, {"text", "department_id"})
    entry: dict = {"text": _string(data, "text", MAX_TEXT)}
    dept = data.get("department_id")
    if dept is not None:
        if isinstance(dept, bool) or not isinstance(dept, int) or dept not in current().departments:
            raise errors.BadInput(f"unknown department {dept!r}", {"field": "department_id"})
        entry["department_id"] = dept
    return _open_entry(incident_id, actor, "order", "order", entry, at)


def set_level(incident_id: int, actor: Actor, data: Any, at: datetime | None = None) -> dict:
    """调整级别: raise or lower the level (the plan already running stays; a new plan is not activated)."""
    _check_role(actor, COMMAND, "change an incident's level")
    data = _only(data, {"level", "reason"})
    try:
        level = dom.check_level(data.get("level"))
    except dom.EmergencyError as exc:
        raise _bad(exc, "level") from exc
    reason = _string(data, "reason", MAX_TEXT, required=False)
    return _open_entry(incident_id, actor, "set_level", "level", {"level": level, "reason": reason}, at,
                       changes=lambda row: {"level": level} if row["level"] != level else None,
                       extra=lambda row: {"from_level": row["level"]})


def _open_entry(incident_id: int, actor: Actor, action: str, what: str, entry: dict, at: datetime | None,
                changes: Callable[[dict], dict | None] | None = None,
                extra: Callable[[dict], dict] | None = None) -> dict:
    at = _utc(at) or now_utc()

    def write(conn: Connection) -> int:
        row = _load(conn, incident_id, lock=True)
        _transition(row, action)
        more = extra(row) if extra else {}
        ch = changes(row) if changes else None
        if ch:
            _change(conn, row, ch | {"updated_at": at})
        return _record(conn, row, what, actor, entry | more, at)

    event_id = _write(write)
    return {"incident_id": incident_id, "event_id": event_id, "type": f"incident.{what}", **entry}


def update_task(incident_id: int, task_id: int, actor: Actor, data: Any, at: datetime | None = None) -> dict:
    """任务变更: a task's status (in_progress / done / cancelled) and a note."""
    _check_role(actor, ORDERS | {"department"}, "change a task")
    data = _only(data, {"status", "note"})
    note = _string(data, "note", MAX_TEXT, required=False)
    new_status = data.get("status")
    if new_status is None and not note:
        raise errors.BadInput("give 'status' (in_progress, done, cancelled) or a 'note'", {"field": "status"})
    at = _utc(at) or now_utc()
    current().departments  # loaded before the write transaction

    def write(conn: Connection) -> dict:
        row = _load(conn, incident_id, lock=True)
        if row["status"] != "active":
            raise errors.Conflict(f"tasks change only while the incident is active (it is {row['status']})",
                                  {"status": row["status"]}, code="action_not_allowed")
        task = conn.execute(select(TASKS).where(TASKS.c.id == task_id, TASKS.c.incident_id == incident_id)) \
            .mappings().first()
        if task is None:
            raise errors.NotFound(f"task {task_id} of incident {incident_id} does not exist")
        if actor.role == "department" and task["department_id"] != actor.department_id:
            raise errors.Forbidden("this task is not your department's")
        ch: dict = {}
        if new_status is not None and new_status != task["status"]:
            try:
                dom.check_task_move(task["status"], new_status)
            except dom.EmergencyError as exc:
                raise _bad(exc, "status") from exc
            ch["status"] = new_status
            if new_status in dom.TASK_FINAL:
                ch["done_at"] = at
        if note:
            ch["note"] = note
        if ch:
            conn.execute(update(TASKS).where(TASKS.c.id == task_id).values(**ch))
        out = dict(task) | ch
        _record(conn, row, "task", actor, {"task_id": task_id, "code": task["code"], "title": task["title"],
                                           "from": task["status"], "to": out["status"], "note": note}, at)
        return out

    return _task_dict(_write(write))


def set_wall_mode(incident_id: int, actor: Actor, on: Any, at: datetime | None = None) -> dict:
    """大屏应急模式: turn the wall to this incident (on) or back to the normal view (off)."""
    _check_role(actor, ORDERS, "switch the wall")
    if not isinstance(on, bool):
        raise errors.BadInput("'on' must be true or false", {"field": "on"})
    at = _utc(at) or now_utc()

    def write(conn: Connection) -> int:
        row = _load(conn, incident_id, lock=True)
        if on and row["status"] != "active":
            raise errors.Conflict(f"only an active incident can take the wall (it is {row['status']})",
                                  {"status": row["status"]}, code="action_not_allowed")
        _change(conn, row, {"wall_mode": on, "updated_at": at})
        return _record(conn, row, "mode", actor, {"on": on}, at)

    _write(write)
    return get(incident_id)


# --- closing ------------------------------------------------------------------------------------

def close(incident_id: int, actor: Actor, data: Any = None, at: datetime | None = None) -> dict:
    """结束响应: status → closed, units released, wall mode off; then the summary report is rendered."""
    _check_role(actor, COMMAND, "close an incident")
    data = _only(data, {"summary"})
    summary = _string(data, "summary", 5000, required=False)
    at = _utc(at) or now_utc()

    def write(conn: Connection) -> list[str]:
        row = _load(conn, incident_id, lock=True)
        to = _transition(row, "close")
        _change(conn, row, {"status": to, "closed_at": at, "updated_at": at, "wall_mode": False,
                            "summary": summary})
        devices = conn.execute(select(UNITS.c.device).where(UNITS.c.incident_id == incident_id,
                                                            UNITS.c.status == "dispatched")).scalars().all()
        conn.execute(update(UNITS).where(UNITS.c.incident_id == incident_id, UNITS.c.status == "dispatched")
                     .values(status="released", released_at=at))
        open_tasks = conn.execute(select(TASKS.c.id).where(
            TASKS.c.incident_id == incident_id, TASKS.c.status.notin_(list(dom.TASK_FINAL)))).scalars().all()
        _record(conn, row, "closed", actor, {"summary": summary, "released_units": list(devices),
                                             "open_tasks": list(open_tasks)}, at, from_status="active")
        return list(devices)

    devices = _write(write)
    for dev in devices:
        try:
            mark_unit(dev, False, "", actor.username)
        except Exception as exc:
            log.warning("could not mark unit %s available: %s", dev, exc)
    from backend.services import reports

    try:
        reports.publish(incident_id)
    except Exception:  # the incident is closed; the report can be rendered again on request
        log.exception("summary report of incident %s failed", incident_id)
    return get(incident_id)


def cancel(incident_id: int, actor: Actor, data: Any = None, at: datetime | None = None) -> dict:
    """撤销: an incident raised in error (before any plan was activated)."""
    _check_role(actor, COMMAND, "cancel an incident")
    data = _only(data, {"reason"})
    reason = _string(data, "reason", MAX_TEXT, required=False)
    at = _utc(at) or now_utc()

    def write(conn: Connection) -> int:
        row = _load(conn, incident_id, lock=True)
        to = _transition(row, "cancel")
        _change(conn, row, {"status": to, "closed_at": at, "updated_at": at, "wall_mode": False})
        return _record(conn, row, "cancelled", actor, {"reason": reason}, at, from_status="raised")

    _write(write)
    return get(incident_id)


def record_report_ready(incident_id: int, files: dict, at: datetime | None = None) -> int:
    """Note on the timeline that the summary report was rendered (file names, sizes, any PDF error)."""
    at = _utc(at) or now_utc()

    def write(conn: Connection) -> int:
        return _record(conn, _load(conn, incident_id), "report_ready", SYSTEM, files, at)

    return _write(write)


def record_conference(incident_id: int, what: str, who: Actor, entry: dict, at: datetime | None = None) -> int:
    """入会 / 离会 on the incident's timeline (from the conference events stream)."""
    if what not in ("conference_join", "conference_leave"):
        raise ValueError(f"unknown conference entry {what!r}")
    at = _utc(at) or now_utc()

    def write(conn: Connection) -> int:
        return _record(conn, _load(conn, incident_id), what, who, entry, at)

    return _write(write)


# --- task deadlines -----------------------------------------------------------------------------

def task_tick(now: datetime | None = None, limit: int = 500) -> int:
    """One pass of the worker over open tasks of active incidents: 80% warnings and overdue marks."""
    ctx = current()
    now = _utc(now) or now_utc()
    q = select(TASKS.c.id, TASKS.c.incident_id).join(INCIDENTS, INCIDENTS.c.id == TASKS.c.incident_id).where(
        INCIDENTS.c.status == "active", TASKS.c.status.notin_(list(dom.TASK_FINAL)))
    with ctx.reader.connect() as conn:
        due = conn.execute(q.where(TASKS.c.sla_state < 2, TASKS.c.deadline_at <= now).limit(limit)).all()
        warn = conn.execute(q.where(TASKS.c.sla_state == 0, TASKS.c.warn_at <= now).limit(limit)).all()
    seen = {t.id for t in due}
    marked = 0
    for t, level in [(t, 2) for t in due] + [(t, 1) for t in warn if t.id not in seen]:
        marked += _mark_task(t.incident_id, t.id, level, now)
    return marked


def _mark_task(incident_id: int, task_id: int, level: int, now: datetime) -> int:
    def write(conn: Connection) -> int:
        row = _load(conn, incident_id, lock=True)
        task = conn.execute(select(TASKS).where(TASKS.c.id == task_id)).mappings().first()
        if row["status"] != "active" or task is None or task["status"] in dom.TASK_FINAL:
            return 0
        state = dom.task_sla_state(now, _utc(task["deadline_at"]), _utc(task["warn_at"]))
        if task["sla_state"] >= level or state < level:
            return 0
        conn.execute(update(TASKS).where(TASKS.c.id == task_id).values(sla_state=level))
        _record(conn, row, "task_overdue" if level == 2 else "task_warning", SYSTEM, {
            "task_id": task_id, "code": task["code"], "title": task["title"],
            "department_id": task["department_id"], "deadline_at": iso(task["deadline_at"])}, now)
        return 1

    return _write(write)


# --- reads --------------------------------------------------------------------------------------

def _task_dict(t: dict, now: datetime | None = None) -> dict:
    now = now or now_utc()
    deadline = _utc(t["deadline_at"])
    out = {k: (iso(v) if isinstance(v, datetime) else v) for k, v in dict(t).items()}
    dept = current().departments.get(t["department_id"]) if t["department_id"] else None
    out["department_name"] = dept["name"] if dept else None
    out["status_zh"] = dom.TASK_STATUSES.get(t["status"], t["status"])
    out["overdue"] = bool(deadline and t["status"] not in dom.TASK_FINAL and now >= deadline)
    out["remaining_s"] = None if deadline is None or t["status"] in dom.TASK_FINAL \
        else round((deadline - now).total_seconds())
    return out


def _incident_dict(row: dict) -> dict:
    out = {k: (iso(v) if isinstance(v, datetime) else v) for k, v in dict(row).items()}
    out["type_zh"] = dom.INCIDENT_TYPES.get(row["type"], row["type"])
    out["level_zh"] = dom.LEVELS.get(row["level"], row["level"])
    out["status_zh"] = dom.STATUSES.get(row["status"], row["status"])
    out["wall_mode"] = bool(row["wall_mode"])
    return out


def perimeter(row: dict) -> dict:
    """The affected area as a GeoJSON Feature (WGS-84)."""
    area = row["area"] if isinstance(row["area"], dict) else json.loads(row["area"])
    return {"type": "Feature", "geometry": area["geometry"],
            "properties": {"incident_id": row["id"], "kind": area["kind"], "radius_m": area["radius_m"],
                           "level": row["level"], "type": row["type"]}}


def _timeline(conn: Connection, incident_id: int, last: int | None = None) -> list[dict]:
    q = select(EVENTS).join(LINKS, LINKS.c.event_id == EVENTS.c.id).where(LINKS.c.incident_id == incident_id)
    if last:
        rows = list(reversed(conn.execute(q.order_by(EVENTS.c.id.desc()).limit(last)).all()))
    else:
        rows = conn.execute(q.order_by(EVENTS.c.id)).all()
    return [{"event_id": e.id, "type": e.type, "action": e.action, "action_zh": dom.ACTION_ZH.get(e.action, e.action),
             "actor": e.actor, "role": e.role, "from": e.from_status, "to": e.to_status, "at": iso(e.created_at),
             "payload": json.loads(e.payload).get("input", {})} for e in rows]


def _unit_dict(u: dict, now: datetime) -> dict:
    out = {k: (iso(v) if isinstance(v, datetime) else v) for k, v in dict(u).items()}
    sent = _utc(u["dispatched_at"])
    if u["eta_s"] is not None and sent is not None:
        arrive = sent.timestamp() + float(u["eta_s"])
        out["eta_at"] = iso(datetime.fromtimestamp(arrive, timezone.utc))
        out["eta_remaining_s"] = max(0, round(arrive - now.timestamp())) if u["status"] == "dispatched" else None
    else:
        out["eta_at"] = out["eta_remaining_s"] = None
    return out


def get(incident_id: int, actor: Actor | None = None, timeline_last: int | None = None) -> dict:
    """The incident with its perimeter, command group, tasks, notifications, units and timeline."""
    ctx = current()
    now = now_utc()
    with ctx.reader.connect() as conn:
        row = _load(conn, incident_id)
        members = conn.execute(select(MEMBERS).where(MEMBERS.c.incident_id == incident_id)
                               .order_by(MEMBERS.c.id)).mappings().all()
        tasks = conn.execute(select(TASKS).where(TASKS.c.incident_id == incident_id)
                             .order_by(TASKS.c.deadline_at, TASKS.c.id)).mappings().all()
        notes = conn.execute(select(NOTES).where(NOTES.c.incident_id == incident_id)
                             .order_by(NOTES.c.id)).mappings().all()
        units = conn.execute(select(UNITS).where(UNITS.c.incident_id == incident_id)
                             .order_by(UNITS.c.id)).mappings().all()
        timeline = _timeline(conn, incident_id, timeline_last)
    out = _incident_dict(row)
    out["perimeter"] = perimeter(row)
    out["plan"] = plans().by_key(row["plan_key"]).to_dict() if row["plan_key"] else None
    out["command_group"] = [dict(r) for r in members]
    out["tasks"] = [_task_dict(t, now) for t in tasks]
    out["notifications"] = [{k: (iso(v) if isinstance(v, datetime) else v) for k, v in dict(n).items()}
                            for n in notes]
    out["units"] = [_unit_dict(u, now) for u in units]
    out["timeline"] = timeline
    out["figures"] = figures(out)
    return out


def figures(view: dict) -> dict:
    """The headline figures of an incident (for the wall and the summary report)."""
    tasks, notes, units = view["tasks"], view["notifications"], view["units"]
    start, end = view.get("created_at"), view.get("closed_at")
    duration = None
    if start:
        t0 = datetime.fromisoformat(start.replace("Z", "+00:00"))
        t1 = datetime.fromisoformat(end.replace("Z", "+00:00")) if end else now_utc()
        duration = round((t1 - t0).total_seconds())
    return {
        "duration_s": duration,
        "tasks": len(tasks), "tasks_done": sum(t["status"] == "done" for t in tasks),
        "tasks_overdue": sum(bool(t["sla_state"] == 2) for t in tasks),
        "notifications": len(notes),
        "notifications_delivered": sum(n["state"] == "delivered" for n in notes),
        "notifications_failed": sum(n["state"] == "failed" for n in notes),
        "units": len(units), "departments": sum(1 for g in view["command_group"] if g["department_id"]),
        "field_reports": sum(e["action"] == "report" for e in view["timeline"]),
        "orders": sum(e["action"] == "order" for e in view["timeline"]),
        "timeline_entries": len(view["timeline"]),
    }


LIST_FILTERS = ("status", "type", "level", "case_id", "limit")


def list_incidents(params: dict) -> dict:
    unknown = sorted(set(params) - set(LIST_FILTERS))
    if unknown:
        raise errors.BadInput(f"unknown filters: {', '.join(unknown)}", {"allowed": list(LIST_FILTERS)})
    q = select(INCIDENTS)
    if params.get("status"):
        statuses = [s for s in str(params["status"]).split(",") if s]
        bad = [s for s in statuses if s not in dom.STATUSES and s != "open"]
        if bad:
            raise errors.BadInput(f"unknown status {bad[0]!r}", {"allowed": list(dom.STATUSES) + ["open"]})
        if "open" in statuses:
            statuses = [s for s in statuses if s != "open"] + ["raised", "active"]
        q = q.where(INCIDENTS.c.status.in_(statuses))
    for key, allowed in (("type", dom.INCIDENT_TYPES), ("level", dom.LEVELS)):
        if params.get(key):
            if params[key] not in allowed:
                raise errors.BadInput(f"unknown {key} {params[key]!r}", {"allowed": list(allowed)})
            q = q.where(getattr(INCIDENTS.c, key) == params[key])
    try:
        if params.get("case_id"):
            q = q.where(INCIDENTS.c.case_id == int(params["case_id"]))
        limit = min(500, max(1, int(params.get("limit") or 100)))
    except ValueError as exc:
        raise errors.BadInput("'case_id' and 'limit' must be integers") from exc
    with current().reader.connect() as conn:
        rows = conn.execute(q.order_by(INCIDENTS.c.id.desc()).limit(limit)).mappings().all()
    return {"items": [_incident_dict(r) | {"perimeter": perimeter(r)} for r in rows]}


def _live_units(units: list[dict], lat: float, lon: float) -> None:
    """Where the dispatched units are now (GPS) and their ETA from there; the dispatch figures otherwise."""
    try:
        from backend.services import gps

        live = {v["device"]: v for v in gps.vehicles()}
    except Exception as exc:
        log.debug("live positions unavailable: %s", exc)
        return
    for u in units:
        v = live.get(u["device"])
        if v is None or u["status"] != "dispatched":
            continue
        dist = dom.distance_m(lat, lon, v["lat"], v["lon"])
        speed = gps.TYPICAL_SPEED_KMH.get(u["unit_type"], gps.TYPICAL_SPEED_KMH["其他"])
        u.update({"lat": v["lat"], "lon": v["lon"], "distance_m": round(dist, 1), "live": True,
                  "eta_remaining_s": round(dist * gps.ROAD_FACTOR / (speed / 3.6))})


def active_view(timeline_last: int = 50) -> dict:
    """What the wall's emergency mode shows (``GET /incidents/active``).

    ``incident`` is the active incident that holds the wall (wall mode on; the most recently activated), or
    None; ``incidents`` lists every active incident. The incident carries its perimeter (GeoJSON), units en
    route with ETAs, the nearest cameras, tasks with deadlines, the command group and the newest timeline.
    """
    with current().reader.connect() as conn:
        rows = conn.execute(select(INCIDENTS).where(INCIDENTS.c.status == "active")
                            .order_by(INCIDENTS.c.activated_at.desc(), INCIDENTS.c.id.desc())).mappings().all()
    listed = [_incident_dict(r) for r in rows]
    chosen = next((r for r in rows if r["wall_mode"]), None)
    if chosen is None:
        return {"incident": None, "incidents": listed}
    view = get(chosen["id"], timeline_last=timeline_last)
    _live_units(view["units"], view["lat"], view["lon"])
    area = dom.Area(view["area"]["kind"], view["area"]["radius_m"], view["area"]["geometry"])
    try:
        view["cameras"] = cameras.list_cameras((view["lat"], view["lon"]), area.reach_m + CAMERA_MARGIN_M)[:12]
    except Exception as exc:
        log.warning("cameras near incident %s: %s", chosen["id"], exc)
        view["cameras"] = []
    return {"incident": view, "incidents": listed}
