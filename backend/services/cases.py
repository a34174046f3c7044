"""The case service (案件服务): the one way in for every case write.

`create` registers a report (上报); `apply` takes an action on a case (立案, 派遣, 处理反馈, 核查 …).
The API, the console, the simulator and the SLA worker all call these. Each write, in one
transaction: decide with `domain.lifecycle`, compute deadlines with `domain.clock`, update the case,
append the hash-chained event row (the audit record and the outbox). After commit the outbox relay
puts the event on the Redis stream.
"""
from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.engine import Connection

from backend.domain import lifecycle
from backend.domain.audit import canonical, chain_hash
from backend.domain.case_number import format_case_number, prefix_for
from backend.domain.catalog import CaseClass, UnknownClass
from backend.domain.clock import sla_state
from backend.domain.lifecycle import Actor
from backend.services import errors
from backend.services.context import Context, current
from backend.store import models as m
from backend.store import rows
from backend.store.db import as_utc as _utc
from backend.store.groupcommit import on_commit, tx_state

CASES = m.Case.__table__
EVENTS = m.Event.__table__

CREATE_ROLES = {"inspector", "operator", "supervisor", "dispatcher", "leader", "admin", "system", "public"}
WARN_SHARE = 0.8
MAX_DESCRIPTION = 2000
MAX_PHOTOS = 9


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def iso(t: datetime | None) -> str | None:
    if t is None:
        return None
    if t.tzinfo is not timezone.utc:
        t = _utc(t)
    return t.isoformat().replace("+00:00", "Z")


# --- the chain and counters -----------------------------------------------------------------------

def _lock_head(conn: Connection) -> tuple[int, str]:
    """Take the chain head (FOR UPDATE on PostgreSQL; SQLite writers already hold the write lock).

    In a group-commit transaction the head is read once and kept in the transaction's state.
    """
    state = tx_state(conn)
    if state is not None and "head" in state:
        return state["head"]
    head = rows.lock_head(conn)
    if head is None:  # the first migration inserts it; its absence means the table was tampered with
        raise RuntimeError("the audit chain head (audit_head id 1) is missing: run migrations")
    if state is not None:
        state["head"] = head
    return head


def _write_head(conn: Connection) -> None:
    rows.write_head(conn, *tx_state(conn)["head"])


def append_event(conn: Connection, *, case_id: int | None, type_: str, action: str, actor: Actor,
                 from_status: str | None, to_status: str | None, body: dict, at: datetime) -> int:
    """Append one event row to the chain. Must run inside the writer's transaction.

    Ids are the head's id + 1: holding the head lock, writers number their events without gaps, in
    commit order, which is also the order of the bus stream.
    """
    last_id, last_hash = _lock_head(conn)
    event_id = last_id + 1
    payload = json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=str)
    at = _utc(at)
    digest = chain_hash(last_hash, canonical(event_id, case_id, type_, action, actor.username, actor.role,
                                             from_status, to_status, payload, at))
    rows.insert_event(conn, {
        "id": event_id, "case_id": case_id, "type": type_, "action": action, "actor": actor.username,
        "role": actor.role, "from_status": from_status, "to_status": to_status, "payload": payload,
        "created_at": at, "prev_hash": last_hash, "hash": digest})
    state = tx_state(conn)
    if state is None:
        rows.write_head(conn, event_id, digest)
    else:  # written once, just before the batch commits
        state["head"] = (event_id, digest)
        on_commit(conn, "chain_head", _write_head)
    return event_id


# --- deadlines -------------------------------------------------------------------------------------

def _stage_fields(ctx: Context, cls: CaseClass, stage: str | None, at: datetime) -> dict:
    """Fields that start the SLA clock of `stage` at `at` (none when no clock runs)."""
    if stage is None:
        return {"stage": None, "stage_started_at": None, "deadline_at": None, "warn_at": None, "sla_state": 0}
    limit = cls.limits[stage]
    seconds = limit.value * ctx.calendar.unit_seconds(limit.clock)
    deadline = ctx.calendar.add_seconds(at, seconds, limit.clock)
    warn = ctx.calendar.add_seconds(at, seconds * WARN_SHARE, limit.clock)
    return {"stage": stage, "stage_started_at": at, "deadline_at": deadline, "warn_at": warn, "sla_state": 0}


# --- views -----------------------------------------------------------------------------------------

def _case_view(row: dict) -> lifecycle.CaseView:
    return lifecycle.CaseView.from_record(row)


ACTION_ZH = {name: spec.zh for name, spec in lifecycle.ACTIONS.items()}
ACTION_ZH.update({"create": "上报", "sla_warning": "时限预警", "overdue": "超期", "evidence": "取证"})


def describe_actions() -> list[dict]:
    """Every action with its Chinese term, the roles and states it needs and its fields."""
    return [{"name": s.name, "zh": s.zh, "roles": sorted(s.roles), "from_states": sorted(s.from_states),
             "required": list(s.required), "optional": list(s.optional), "doc": s.doc,
             "needs_pending": s.needs_pending} for s in lifecycle.ACTIONS.values()]


def to_dict(ctx: Context, row: Any, now: datetime | None = None) -> dict:
    """The case as the API and the bus show it."""
    r = {k: (iso(v) if isinstance(v, datetime) else v)
         for k, v in (row._mapping if hasattr(row, "_mapping") else row).items()}
    now = now or now_utc()
    deadline = _utc(row["deadline_at"]) if row["deadline_at"] is not None else None
    try:
        cls = ctx.catalog.get(r["class_code"])
        r["class_name"] = cls.name
        r["kind"] = cls.kind
    except UnknownClass:
        r["class_name"] = r["class_code"]
    dept = ctx.departments.get(r["department_id"]) if r.get("department_id") else None
    r["department_name"] = dept["name"] if dept else None
    r["status_zh"] = lifecycle.STATUSES.get(r["status"], r["status"])
    r["overdue"] = bool(deadline is not None and now >= deadline)
    r["open"] = r["status"] not in lifecycle.FINAL_STATUSES
    return r


def snapshot(ctx: Context, row: dict) -> dict:
    """The compact case summary carried by every bus event (what a wall needs to redraw it)."""
    keys = ("id", "case_number", "status", "class_code", "urgency", "lat", "lon", "grid_code", "street_code",
            "department_id", "deadline_at", "warn_at", "stage_started_at", "bundle_deadline_at", "sla_state",
            "pending", "source", "supervise_count", "rework_count", "created_at", "closed_at")
    return {k: (iso(row[k]) if isinstance(row[k], datetime) else row[k]) for k in keys}


# --- input checks ----------------------------------------------------------------------------------

def _number(data: dict, key: str, lo: float, hi: float) -> float:
    v = data.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        if isinstance(v, str):
            try:
                v = float(v)
            except ValueError:
                v = None
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise errors.BadInput(f"'{key}' must be a number", {"field": key})
    if not math.isfinite(v) or not lo <= v <= hi:
        raise errors.BadInput(f"'{key}' must be between {lo} and {hi}", {"field": key, "value": v})
    return float(v)


def _validate_create(ctx: Context, data: Any) -> dict:
    if not isinstance(data, dict):
        raise errors.BadInput("the body must be a JSON object")
    allowed = {"class_code", "kind", "lat", "lon", "description", "source", "address", "photos",
               "component_code", "reporter", "urgency"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise errors.BadInput(f"unknown fields: {', '.join(unknown)}", {"unknown": unknown})
    missing = [k for k in ("class_code", "lat", "lon", "description", "source") if data.get(k) in (None, "")]
    if missing:
        raise errors.BadInput(f"missing fields: {', '.join(missing)}", {"missing": missing})
    code = data["class_code"]
    if not isinstance(code, str):
        raise errors.BadInput("'class_code' must be a string like 'E0102'", {"field": "class_code"})
    try:
        cls = ctx.catalog.resolve(code, data.get("kind"))
    except UnknownClass as exc:
        raise errors.BadInput(str(exc), {"field": "class_code", "value": code}, code="unknown_class") from exc
    lat = _number(data, "lat", -90, 90)
    lon = _number(data, "lon", -180, 180)
    desc = data["description"]
    if not isinstance(desc, str) or not desc.strip():
        raise errors.BadInput("'description' must be a non-empty string", {"field": "description"})
    if len(desc) > MAX_DESCRIPTION:
        raise errors.BadInput(f"'description' is longer than {MAX_DESCRIPTION} characters",
                              {"field": "description"})
    source = data["source"]
    if source not in lifecycle.SOURCES:
        raise errors.BadInput(f"unknown source {source!r}; one of: {', '.join(lifecycle.SOURCES)}",
                              {"field": "source", "allowed": list(lifecycle.SOURCES)})
    photos = data.get("photos") or []
    if not isinstance(photos, list) or not all(isinstance(p, str) and 0 < len(p) <= 500 for p in photos) \
            or len(photos) > MAX_PHOTOS:
        raise errors.BadInput(f"'photos' must be a list of at most {MAX_PHOTOS} photo references",
                              {"field": "photos"})
    address = data.get("address") or ""
    if not isinstance(address, str) or len(address) > 300:
        raise errors.BadInput("'address' must be a string of at most 300 characters", {"field": "address"})
    urgency = data.get("urgency") or cls.urgency
    if urgency not in ("normal", "urgent"):
        raise errors.BadInput("'urgency' must be 'normal' or 'urgent'", {"field": "urgency"})
    component = data.get("component_code")
    if component is not None and (not isinstance(component, str) or not component.isdigit()
                                  or len(component) not in (16, 17)):
        raise errors.BadInput("'component_code' must be a 16- or 17-digit 部件标识码", {"field": "component_code"})
    return {"cls": cls, "lat": lat, "lon": lon, "description": desc.strip(), "source": source,
            "photos": photos, "address": address.strip(), "urgency": urgency, "component_code": component}


def suggest_department(ctx: Context, grid_code: str, cls: CaseClass) -> int | None:
    """派遣建议: the department responsible for this class in this grid, else one of the class's type."""
    dept = ctx.responsibilities.suggest(grid_code, cls.key)
    if dept is not None:
        return dept
    for d in ctx.departments.values():
        if d["type"] == cls.dept_type and not d["street_code"]:
            return d["id"]
    return None


# --- writes ----------------------------------------------------------------------------------------

def create(data: Any, actor: Actor, at: datetime | None = None) -> dict:
    """上报: register a new report. Returns the case (with id, case_number, grid_code, status)."""
    ctx = current()
    if actor.role not in CREATE_ROLES:
        raise errors.Forbidden(f"a {actor.role} ({lifecycle.ROLES.get(actor.role, '')}) may not report cases")
    v = _validate_create(ctx, data)
    cls: CaseClass = v["cls"]
    grid = ctx.grid_index.locate(v["lat"], v["lon"])
    if grid is None:
        raise errors.BadInput("the location is outside the city's unit grids",
                              {"lat": v["lat"], "lon": v["lon"]}, code="outside_city")
    at = _utc(at) or now_utc()
    try:
        status = lifecycle.report_status(actor, v["source"])
    except lifecycle.Forbidden as exc:
        raise errors.Forbidden(str(exc)) from exc
    suggested = suggest_department(ctx, grid.code, cls)
    local_date = at.astimezone(ctx.calendar.tz).date()
    values = {
        "class_code": cls.key, "source": v["source"], "status": status, "urgency": v["urgency"],
        "description": v["description"], "address": v["address"], "lat": v["lat"], "lon": v["lon"],
        "grid_code": grid.code, "street_code": grid.street_code, "community_code": grid.community_code,
        "component_code": v["component_code"], "department_id": None, "suggested_department_id": suggested,
        "pending": None, "previous_status": None, "reporter": actor.username, "photos": v["photos"],
        "created_at": at, "updated_at": at, "postpone_count": 0, "postpone_hours": 0.0, "rework_count": 0,
        "return_count": 0, "supervise_count": 0, "version": 1,
        "bundle_deadline_at": None, "dispose_limit_seconds": None,
    }
    values.update(_stage_fields(ctx, cls, lifecycle.STAGE_OF_STATUS.get(status), at))

    counter_key = prefix_for(cls.key, local_date)

    def write(conn: Connection) -> dict:
        _lock_head(conn)  # serialise writers before the counter (one order for ids, numbers and chain)
        seq, case_id = rows.reserve_case(conn, counter_key)
        number = format_case_number(cls.key, local_date, seq)
        case_id = rows.insert_case(conn, values | {"case_number": number, "id": case_id})
        row = {c.name: None for c in CASES.columns} | values | {"case_number": number, "id": case_id}
        append_event(conn, case_id=case_id, type_="case.created", action="create", actor=actor,
                     from_status=None, to_status=status,
                     body={"input": {"description": v["description"], "source": v["source"],
                                     "photos": v["photos"], "address": v["address"]},
                           "case": snapshot(ctx, row)}, at=at)
        return row

    row = ctx.writes.run(write, key=rows.case_number_key(counter_key))
    ctx.outbox.kick()
    return to_dict(ctx, row)


def _effects(ctx: Context, row: dict, decision, actor: Actor, at: datetime) -> dict:
    """The stored consequences of an allowed action: timestamps, deadlines, the 处置 bundle."""
    action = decision.action
    cls = ctx.catalog.get(row["class_code"])
    ch: dict = dict(decision.changes)
    ch["status"] = decision.to_status
    ch["updated_at"] = at
    ch["version"] = row["version"] + 1
    payload = decision.payload
    new_status = decision.to_status
    old_stage = row["stage"]
    new_stage = lifecycle.STAGE_OF_STATUS.get(new_status)

    if action == "register":
        ch["registered_at"] = at
        if payload.get("urgency"):
            ch["urgency"] = payload["urgency"]
    if action in ("dispatch", "rework"):
        dept = payload.get("department_id") if action == "dispatch" else row["department_id"]
        if dept is None:
            dept = row["suggested_department_id"]
        if dept is None or dept not in ctx.departments:
            raise errors.BadInput("no department to dispatch to: give 'department_id'",
                                  {"field": "department_id", "value": dept})
        ch["department_id"] = dept
        if row["dispatched_at"] is None:
            ch["dispatched_at"] = at
        fields = _stage_fields(ctx, cls, "dispose", at)
        ch.update(fields)
        ch["bundle_deadline_at"] = fields["deadline_at"]
        limit = cls.limits["dispose"]
        ch["dispose_limit_seconds"] = limit.value * ctx.calendar.unit_seconds(limit.clock)
        return ch
    if action == "feedback":
        ch["disposed_at"] = at
    if action == "approve_postpone":
        limit = cls.limits["dispose"]
        hours = payload.get("hours")
        extra = float(hours) * 3600.0 if hours else float(row["dispose_limit_seconds"] or
                                                            limit.value * ctx.calendar.unit_seconds(limit.clock))
        bundle = ctx.calendar.add_seconds(_utc(row["bundle_deadline_at"]) or at, extra, limit.clock)
        ch["bundle_deadline_at"] = bundle
        ch["postpone_hours"] = (row["postpone_hours"] or 0.0) + extra / 3600.0
        ch["pending_payload"] = None
        if row["stage"] == "dispose":
            ch["deadline_at"] = bundle
            total = ctx.calendar.counted_seconds(_utc(row["stage_started_at"]), bundle, limit.clock)
            ch["warn_at"] = ctx.calendar.add_seconds(_utc(row["stage_started_at"]), total * WARN_SHARE,
                                                     limit.clock)
            ch["sla_state"] = sla_state(at, bundle, ch["warn_at"])
        return ch
    if action in ("postpone", "suspend", "return"):
        ch["pending_payload"] = payload
        return ch
    if action in ("reject_postpone", "reject_suspend", "reject_return"):
        ch["pending_payload"] = None
        return ch
    if action == "approve_suspend":
        ch.update({"suspended_at": at, "pending_payload": None})
        ch.update(_stage_fields(ctx, cls, None, at))
        ch["stage"] = old_stage  # remember which clock stopped
        return ch
    if action == "resume":
        limit = cls.limits["dispose"]
        suspended_at = _utc(row["suspended_at"]) or at
        bundle = _utc(row["bundle_deadline_at"])
        remaining = ctx.calendar.counted_seconds(suspended_at, bundle, limit.clock) if bundle else 0.0
        new_bundle = ctx.calendar.add_seconds(at, remaining, limit.clock)
        started = _utc(row["stage_started_at"]) or at
        paused = ctx.calendar.counted_seconds(suspended_at, at, limit.clock)
        new_started = ctx.calendar.add_seconds(started, paused, limit.clock) if paused else started
        total = ctx.calendar.counted_seconds(new_started, new_bundle, limit.clock)
        ch.update({"suspended_at": None, "bundle_deadline_at": new_bundle, "deadline_at": new_bundle,
                   "stage": "dispose", "stage_started_at": new_started,
                   "warn_at": ctx.calendar.add_seconds(new_started, total * WARN_SHARE, limit.clock)})
        ch["sla_state"] = sla_state(at, new_bundle, ch["warn_at"])
        return ch
    if action == "approve_return":
        ch.update({"department_id": None, "pending_payload": None})
    if action in ("close", "self_handle"):
        ch["closed_at"] = at
        bundle = _utc(row["bundle_deadline_at"])
        disposed = _utc(row["disposed_at"]) or at
        on_time = True if bundle is None else disposed <= bundle
        ch["on_time"] = on_time
        if action == "self_handle":
            ch["close_type"] = "self"
        else:
            ch["close_type"] = payload.get("close_type") or ("normal" if on_time else "overtime")
    if action == "cancel":
        ch["cancelled_at"] = at
    if action == "supervise":
        return ch
    if new_stage != old_stage or action == "approve_return":
        ch.update(_stage_fields(ctx, cls, new_stage, at))
    return ch


def apply(case_id: int, action: str, actor: Actor, payload: dict | None = None,
          at: datetime | None = None) -> dict:
    """Take `action` on a case as `actor`. Raises NotFound, Forbidden (403), Conflict (409) or BadInput."""
    ctx = current()
    at = _utc(at) or now_utc()
    if payload is not None and not isinstance(payload, dict):
        raise errors.BadInput("the action payload must be a JSON object")
    ctx.departments  # load the cache before the write transaction: no second connection inside it

    def write(conn: Connection) -> dict:
        row = rows.load_case(conn, case_id)
        if row is None:
            raise errors.NotFound(f"case {case_id} does not exist")
        decision = _decide(ctx, row, action, actor, payload)  # refuses another department's case (403)
        changes = _effects(ctx, row, decision, actor, at)
        rows.update_case(conn, case_id, changes)
        row.update(changes)
        append_event(conn, case_id=case_id, type_=f"case.{action}", action=action, actor=actor,
                     from_status=decision.from_status, to_status=decision.to_status,
                     body={"input": decision.payload, "case": snapshot(ctx, row)}, at=at)
        return row

    row = ctx.writes.run(write, key=case_id)
    ctx.outbox.kick()
    return to_dict(ctx, row)


def _decide(ctx: Context, row: dict, action: str, actor: Actor, payload: dict | None):
    try:
        return lifecycle.decide(_case_view(row), action, actor, payload)
    except lifecycle.UnknownAction as exc:
        raise errors.NotFound(str(exc), {"actions": sorted(lifecycle.ACTIONS)}, code="unknown_action") from exc
    except lifecycle.Forbidden as exc:
        raise errors.Forbidden(str(exc)) from exc
    except lifecycle.InvalidPayload as exc:
        raise errors.BadInput(str(exc), getattr(exc, "details", None) or {}) from exc
    except lifecycle.ActionNotAllowed as exc:
        raise errors.Conflict(str(exc), {"status": row["status"], "pending": row["pending"],
                                         "allowed": list(exc.allowed)}, code="action_not_allowed") from exc


SYSTEM = Actor("system", "system")
EVIDENCE_ROLES = {"inspector", "operator", "supervisor", "dispatcher", "department", "leader", "admin", "system"}
MAX_EVIDENCE = 30


def add_evidence(case_id: int, photo: str, actor: Actor, note: str = "", at: datetime | None = None) -> dict:
    """取证: attach a photo (e.g. a camera snapshot) to a case as evidence; the status does not change."""
    ctx = current()
    at = _utc(at) or now_utc()
    if actor.role not in EVIDENCE_ROLES:
        raise errors.Forbidden(f"a {actor.role} may not attach evidence")
    if not isinstance(photo, str) or not photo or len(photo) > 500:
        raise errors.BadInput("'photo' must be a photo reference", {"field": "photo"})
    ctx.departments

    def write(conn: Connection) -> dict:
        row = rows.load_case(conn, case_id)
        if row is None:
            raise errors.NotFound(f"case {case_id} does not exist")
        if actor.role == "department" and row["department_id"] != actor.department_id:
            raise errors.Forbidden("this case is not dispatched to your department")
        photos = list(row["photos"] or [])
        if len(photos) >= MAX_EVIDENCE:
            raise errors.Conflict(f"a case holds at most {MAX_EVIDENCE} photos", {"photos": len(photos)})
        photos.append(photo)
        changes = {"photos": photos, "updated_at": at, "version": row["version"] + 1}
        rows.update_case(conn, case_id, changes)
        row.update(changes)
        append_event(conn, case_id=case_id, type_="case.evidence", action="evidence", actor=actor,
                     from_status=row["status"], to_status=row["status"],
                     body={"input": {"photo": photo, "note": note}, "case": snapshot(ctx, row)}, at=at)
        return row

    row = ctx.writes.run(write, key=case_id)
    ctx.outbox.kick()
    return to_dict(ctx, row)


def mark_sla(case_id: int, level: int, at: datetime | None = None) -> dict | None:
    """Record that a case's running stage passed 80% of its time (1, 预警) or its deadline (2, 超期).

    The overdue mark of a case in the 处置 stage is followed by an automatic 督办.
    Returns None when the case no longer qualifies (moved on meanwhile).
    """
    ctx = current()
    at = _utc(at) or now_utc()

    def write(conn: Connection) -> dict | None:
        row = rows.load_case(conn, case_id)
        if row is None:
            return None
        deadline, warn = _utc(row["deadline_at"]), _utc(row["warn_at"])
        if deadline is None or row["sla_state"] >= level or sla_state(at, deadline, warn) < level:
            return None
        rows.update_case(conn, case_id, {"sla_state": level})
        row["sla_state"] = level
        action = "overdue" if level == 2 else "sla_warning"
        append_event(conn, case_id=case_id, type_=f"case.{action}", action=action, actor=SYSTEM,
                     from_status=row["status"], to_status=row["status"],
                     body={"input": {"stage": row["stage"], "deadline_at": iso(deadline)},
                           "case": snapshot(ctx, row)}, at=at)
        return row

    row = ctx.writes.run(write, key=case_id)
    if row is None:
        return None
    ctx.outbox.kick()
    if level == 2 and row["stage"] == "dispose" and row["status"] in ("dispatched", "handling"):
        try:
            return apply(case_id, "supervise", SYSTEM, {"note": "超期自动督办"}, at=at)
        except errors.ServiceError:
            pass
    return to_dict(ctx, row)


def due_cases(now: datetime | None = None, limit: int = 1000) -> dict[str, list[int]]:
    """Open cases whose running stage just passed 80% (`warning`) or its deadline (`overdue`), unmarked."""
    ctx = current()
    now = _utc(now) or now_utc()
    with ctx.reader.connect() as conn:
        overdue = conn.execute(select(CASES.c.id).where(CASES.c.sla_state.in_([0, 1]), CASES.c.deadline_at <= now)
                               .order_by(CASES.c.deadline_at).limit(limit)).scalars().all()
        warning = conn.execute(select(CASES.c.id).where(CASES.c.sla_state == 0, CASES.c.warn_at <= now)
                               .order_by(CASES.c.warn_at).limit(limit)).scalars().all()
    return {"overdue": list(overdue), "warning": [i for i in warning if i not in set(overdue)]}


def sla_tick(now: datetime | None = None, limit: int = 500) -> int:
    """One pass of the SLA worker: mark warnings and overdue cases. Returns how many were marked."""
    now = _utc(now) or now_utc()
    due = due_cases(now, limit)
    n = 0
    for cid in due["overdue"]:
        n += mark_sla(cid, 2, now) is not None
    for cid in due["warning"]:
        n += mark_sla(cid, 1, now) is not None
    return n


# --- reads -----------------------------------------------------------------------------------------

def get(case_id: int, actor: Actor | None = None) -> dict:
    """The case with its full timeline and the actions this actor may take now."""
    ctx = current()
    with ctx.reader.connect() as conn:
        row = conn.execute(select(CASES).where(CASES.c.id == case_id)).mappings().first()
        if row is None:
            raise errors.NotFound(f"case {case_id} does not exist")
        if actor is not None and actor.role == "department" and row["department_id"] != actor.department_id:
            raise errors.NotFound(f"case {case_id} does not exist")
        events = conn.execute(select(EVENTS).where(EVENTS.c.case_id == case_id).order_by(EVENTS.c.id)).all()
    out = to_dict(ctx, row)
    out["timeline"] = [{
        "event_id": e.id, "action": e.action, "action_zh": ACTION_ZH.get(e.action, e.action),
        "actor": e.actor, "role": e.role, "from": e.from_status, "to": e.to_status, "at": iso(e.created_at),
        "payload": json.loads(e.payload).get("input", {})} for e in events]
    if actor is not None:
        out["allowed_actions"] = lifecycle.allowed_actions(_case_view(dict(row)), actor)
    return out


FILTERS = ("status", "class_code", "department_id", "grid_code", "street_code", "source", "overdue",
           "from", "to", "q", "page", "per_page", "sort")


def parse_time(value: str, name: str) -> datetime:
    """An ISO 8601 date or time from a request, in UTC; a time without zone is Asia/Shanghai local."""
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise errors.BadInput(f"'{name}' must be an ISO 8601 date or time", {"field": name, "value": value}) from exc
    if t.tzinfo is None:
        t = t.replace(tzinfo=current().calendar.tz)
    return t.astimezone(timezone.utc)  # stored as UTC (SQLite compares the text)


def list_cases(params: dict, actor: Actor | None = None) -> dict:
    """Cases filtered by status, class, department, grid, street, source, overdue and time range."""
    ctx = current()
    unknown = sorted(set(params) - set(FILTERS))
    if unknown:
        raise errors.BadInput(f"unknown filters: {', '.join(unknown)}", {"unknown": unknown, "allowed": FILTERS})
    conds = []
    if params.get("status"):
        statuses = [s for s in str(params["status"]).split(",") if s]
        bad = [s for s in statuses if s not in lifecycle.STATUSES and s not in ("open",)]
        if bad:
            raise errors.BadInput(f"unknown status {bad[0]!r}", {"allowed": list(lifecycle.STATUSES)})
        if "open" in statuses:
            conds.append(CASES.c.status.notin_(list(lifecycle.FINAL_STATUSES)))
            statuses = [s for s in statuses if s != "open"]
        if statuses:
            conds.append(CASES.c.status.in_(statuses))
    if params.get("class_code"):
        code = str(params["class_code"])
        if not any(c.key.startswith(code) for c in ctx.catalog.classes):
            raise errors.BadInput(f"unknown class code {code!r}", {"field": "class_code"}, code="unknown_class")
        conds.append(CASES.c.class_code.like(code + "%") if len(code) < 5 else CASES.c.class_code == code)
    if params.get("grid_code"):
        if str(params["grid_code"]) not in ctx.grid_index:
            raise errors.BadInput(f"unknown unit grid {params['grid_code']!r}", {"field": "grid_code"},
                                  code="unknown_grid")
        conds.append(CASES.c.grid_code == str(params["grid_code"]))
    for key in ("street_code", "source"):
        if params.get(key):
            conds.append(getattr(CASES.c, key) == str(params[key]))
    if params.get("department_id") not in (None, ""):
        try:
            conds.append(CASES.c.department_id == int(params["department_id"]))
        except ValueError as exc:
            raise errors.BadInput("'department_id' must be an integer") from exc
    if str(params.get("overdue", "")).lower() in ("1", "true", "yes"):
        conds.append(CASES.c.deadline_at <= now_utc())
    if params.get("from"):
        conds.append(CASES.c.created_at >= parse_time(str(params["from"]), "from"))
    if params.get("to"):
        conds.append(CASES.c.created_at < parse_time(str(params["to"]), "to"))
    if params.get("q"):
        like = f"%{params['q']}%"
        conds.append(or_(CASES.c.description.like(like), CASES.c.case_number.like(like),
                         CASES.c.address.like(like)))
    if actor is not None and actor.role == "department":
        conds.append(CASES.c.department_id == actor.department_id)
    try:
        page = max(1, int(params.get("page") or 1))
        per_page = min(500, max(1, int(params.get("per_page") or 50)))
    except ValueError as exc:
        raise errors.BadInput("'page' and 'per_page' must be integers") from exc
    sort = params.get("sort") or "-created_at"
    sort_cols = {"created_at": CASES.c.created_at, "deadline_at": CASES.c.deadline_at, "id": CASES.c.id}
    col = sort_cols.get(sort.lstrip("-"))
    if col is None:
        raise errors.BadInput(f"cannot sort by {sort!r}", {"allowed": list(sort_cols)})
    order = col.desc() if sort.startswith("-") else col.asc()
    where = and_(*conds) if conds else None
    with ctx.reader.connect() as conn:
        q = select(CASES)
        cq = select(func.count()).select_from(CASES)
        if where is not None:
            q, cq = q.where(where), cq.where(where)
        total = conn.execute(cq).scalar_one()
        rows = conn.execute(q.order_by(order, CASES.c.id.desc()).limit(per_page)
                            .offset((page - 1) * per_page)).mappings().all()
    now = now_utc()
    return {"items": [to_dict(ctx, r, now) for r in rows], "total": total, "page": page, "per_page": per_page}


def query(statuses: list[str] | None = None, limit: int = 1000) -> list[dict]:
    """Open (or given-status) cases, oldest first: what the simulator continues after a restart."""
    ctx = current()
    q = select(CASES)
    if statuses:
        q = q.where(CASES.c.status.in_(statuses))
    else:
        q = q.where(CASES.c.status.notin_(list(lifecycle.FINAL_STATUSES)))
    with ctx.reader.connect() as conn:
        rows = conn.execute(q.order_by(CASES.c.id).limit(limit)).mappings().all()
    now = now_utc()
    return [to_dict(ctx, r, now) for r in rows]
