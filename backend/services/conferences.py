"""Video conference rooms (视频会商): rooms and invitations in SQL, join links, joins and leaves.

The media (an MCU composing one picture) is the streams service's. This side creates a room with its
invitees, gives each a join link carrying a signed token, and records joins and leaves reported by the
streams service on the Redis stream ``citywall:conference:events`` (on the incident's timeline when the room
belongs to an incident).

Token: ``URLSafeTimedSerializer(<backend secret>, salt="citywall-conference").dumps({"room": "<id>",
"pid": "<participant id>", "name": "<display name>", "leader": bool})``; join link
``http://<host>:<streams port>/streams/v1/conference/join?token=<token>``.
"""
from __future__ import annotations

import json
import logging
import secrets
from datetime import datetime, timezone
from typing import Any

import redis
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from backend.domain.lifecycle import Actor
from backend.services import auth, emergency, errors
from backend.services.cases import iso, now_utc, parse_time
from backend.services.context import current
from backend.store import emergency_models as em
from backend.store import models as m

log = logging.getLogger(__name__)

ROOMS = em.Conference.__table__
PEOPLE = em.ConferenceParticipant.__table__
INCIDENTS = em.Incident.__table__
USERS = m.User.__table__

SALT = "citywall-conference"
STREAM = "citywall:conference:events"
GROUP = "citywall-backend"
CREATORS = {"leader", "admin"}
MAX_INVITEES = 50
JOIN_PATH = "/streams/v1/conference/join"


def serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(auth.secret_key(), salt=SALT)


def token_for(room_id: int, pid: str, name: str, leader: bool) -> str:
    return serializer().dumps({"room": str(room_id), "pid": pid, "name": name, "leader": bool(leader)})


def host_without_port(host: str) -> str:
    """``example.org:8050`` → ``example.org``; ``[::1]:8050`` → ``[::1]``."""
    host = (host or "").strip() or "localhost"
    if host.startswith("["):
        end = host.find("]")
        return host[:end + 1] if end > 0 else host
    return host.split(":", 1)[0] if host.count(":") == 1 else host


def join_url(host: str, token: str) -> str:
    return f"http://{host_without_port(host)}:{current().config.streams_port}{JOIN_PATH}?token={token}"


# --- input --------------------------------------------------------------------------------------

def _invitee(raw: Any, i: int, users: dict[str, dict]) -> dict:
    where = f"invitees[{i}]"
    if not isinstance(raw, dict):
        raise errors.BadInput(f"{where} must be an object", {"field": where})
    unknown = sorted(set(raw) - {"name", "username", "department_id", "leader"})
    if unknown:
        raise errors.BadInput(f"{where}: unknown fields: {', '.join(unknown)}", {"field": where})
    username, dept = raw.get("username"), raw.get("department_id")
    if (username is None) == (dept is None):
        raise errors.BadInput(f"{where} needs exactly one of 'username' or 'department_id'", {"field": where})
    name = raw.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip() or len(name) > 100):
        raise errors.BadInput(f"{where}.name must be a non-empty string of at most 100 characters",
                              {"field": f"{where}.name"})
    leader = raw.get("leader", False)
    if not isinstance(leader, bool):
        raise errors.BadInput(f"{where}.leader must be true or false", {"field": f"{where}.leader"})
    if username is not None:
        if not isinstance(username, str) or username not in users:
            raise errors.BadInput(f"{where}: unknown user {username!r}", {"field": f"{where}.username"})
        default = users[username]["display_name"] or username
        dept_id = None
    else:
        depts = current().departments
        if isinstance(dept, bool) or not isinstance(dept, int) or dept not in depts:
            raise errors.BadInput(f"{where}: unknown department {dept!r}", {"field": f"{where}.department_id"})
        default = depts[dept]["name"]
        dept_id = dept
    return {"name": (name or default).strip(), "username": username, "department_id": dept_id, "leader": leader}


def _users(conn: Connection) -> dict[str, dict]:
    rows = conn.execute(select(USERS.c.username, USERS.c.display_name, USERS.c.role, USERS.c.department_id)
                        .where(USERS.c.active.is_(True))).mappings().all()
    return {r["username"]: dict(r) for r in rows}


# --- writes -------------------------------------------------------------------------------------

def create(data: Any, actor: Actor, host: str) -> dict:
    """开会: a room with its invitees; answers the room with a join link per invitee (and the host)."""
    ctx = current()
    if actor.role not in CREATORS:
        raise errors.Forbidden("only a leader (领导) may open a conference room", {"roles": sorted(CREATORS)})
    if not isinstance(data, dict):
        raise errors.BadInput("the body must be a JSON object")
    unknown = sorted(set(data) - {"title", "incident_id", "scheduled_at", "invitees"})
    if unknown:
        raise errors.BadInput(f"unknown fields: {', '.join(unknown)}", {"unknown": unknown})
    title = data.get("title")
    if not isinstance(title, str) or not title.strip() or len(title) > 200:
        raise errors.BadInput("'title' must be a non-empty string of at most 200 characters", {"field": "title"})
    incident_id = data.get("incident_id")
    scheduled = None
    if data.get("scheduled_at") is not None:
        if not isinstance(data["scheduled_at"], str):
            raise errors.BadInput("'scheduled_at' must be an ISO 8601 time", {"field": "scheduled_at"})
        scheduled = parse_time(data["scheduled_at"], "scheduled_at")
    invitees = data.get("invitees")
    if not isinstance(invitees, list) or not 1 <= len(invitees) <= MAX_INVITEES:
        raise errors.BadInput(f"'invitees' must be a list of 1 to {MAX_INVITEES} people", {"field": "invitees"})
    ctx.departments  # loaded before the write transaction
    with ctx.reader.connect() as conn:
        users = _users(conn)
        if incident_id is not None:
            if isinstance(incident_id, bool) or not isinstance(incident_id, int):
                raise errors.BadInput("'incident_id' must be an integer", {"field": "incident_id"})
            if conn.execute(select(INCIDENTS.c.id).where(INCIDENTS.c.id == incident_id)).first() is None:
                raise errors.NotFound(f"incident {incident_id} does not exist")
    people = [_invitee(raw, i, users) for i, raw in enumerate(invitees)]
    host_person = {"name": (users.get(actor.username) or {}).get("display_name") or actor.username,
                   "username": actor.username, "department_id": None, "leader": True, "host": True}
    at = now_utc()

    def write(conn: Connection) -> int:
        room_id = conn.execute(insert(ROOMS).values(
            title=title.strip(), incident_id=incident_id, scheduled_at=scheduled, created_by=actor.username,
            created_at=at).returning(ROOMS.c.id)).scalar_one()
        for p in [*people, host_person]:
            conn.execute(insert(PEOPLE).values(
                conference_id=room_id, pid=secrets.token_hex(8), name=p["name"], username=p["username"],
                department_id=p["department_id"], leader=p["leader"], host=p.get("host", False),
                joined_at=None, left_at=None, joins=0))
        return room_id

    room_id = ctx.writes.run(write)
    return get(room_id, actor, host)


def _participant_dict(p: dict, room_id: int, host: str | None, with_link: bool) -> dict:
    out = {"pid": p["pid"], "name": p["name"], "username": p["username"], "department_id": p["department_id"],
           "leader": bool(p["leader"]), "host": bool(p["host"]), "joined_at": iso(p["joined_at"]),
           "left_at": iso(p["left_at"]), "joins": p["joins"],
           "present": p["joined_at"] is not None and (p["left_at"] is None or p["left_at"] < p["joined_at"])}
    if with_link and host is not None:
        out["join_url"] = join_url(host, token_for(room_id, p["pid"], p["name"], bool(p["leader"])))
    return out


def _may_see_all(actor: Actor | None, room: dict) -> bool:
    return actor is None or actor.role in CREATORS or actor.username == room["created_by"]


def _is_invited(actor: Actor, p: dict) -> bool:
    return p["username"] == actor.username or (
        p["department_id"] is not None and actor.role == "department" and p["department_id"] == actor.department_id)


def get(room_id: int, actor: Actor | None = None, host: str | None = None) -> dict:
    """The room and its participants. Leaders see every join link; an invitee sees only their own."""
    with current().reader.connect() as conn:
        room = conn.execute(select(ROOMS).where(ROOMS.c.id == room_id)).mappings().first()
        if room is None:
            raise errors.NotFound(f"conference {room_id} does not exist")
        people = conn.execute(select(PEOPLE).where(PEOPLE.c.conference_id == room_id)
                              .order_by(PEOPLE.c.id)).mappings().all()
    everything = _may_see_all(actor, room)
    if not everything and not any(_is_invited(actor, p) for p in people):
        raise errors.NotFound(f"conference {room_id} does not exist")
    listed = [_participant_dict(p, room_id, host, everything or _is_invited(actor, p)) for p in people]
    out = {"id": room["id"], "room": str(room["id"]), "title": room["title"], "incident_id": room["incident_id"],
           "scheduled_at": iso(room["scheduled_at"]), "created_by": room["created_by"],
           "created_at": iso(room["created_at"])}
    out["invitees"] = [p for p in listed if not p["host"]]
    out["host"] = next((p for p in listed if p["host"]), None)
    out["present"] = sum(p["present"] for p in listed)
    return out


def list_rooms(actor: Actor, params: dict | None = None) -> dict:
    """Rooms, newest first: all of them for a leader, else the ones the user (or their department) is in."""
    params = params or {}
    unknown = sorted(set(params) - {"incident_id"})
    if unknown:
        raise errors.BadInput(f"unknown filters: {', '.join(unknown)}", {"allowed": ["incident_id"]})
    q = select(ROOMS).order_by(ROOMS.c.id.desc()).limit(200)
    if params.get("incident_id"):
        try:
            q = q.where(ROOMS.c.incident_id == int(params["incident_id"]))
        except ValueError as exc:
            raise errors.BadInput("'incident_id' must be an integer", {"field": "incident_id"}) from exc
    with current().reader.connect() as conn:
        rooms = conn.execute(q).mappings().all()
        mine = set()
        if actor.role not in CREATORS:
            cond = PEOPLE.c.username == actor.username
            if actor.role == "department" and actor.department_id is not None:
                cond = cond | (PEOPLE.c.department_id == actor.department_id)
            mine = set(conn.execute(select(PEOPLE.c.conference_id).where(cond)).scalars().all())
    items = [{"id": r["id"], "title": r["title"], "incident_id": r["incident_id"],
              "scheduled_at": iso(r["scheduled_at"]), "created_by": r["created_by"], "created_at": iso(r["created_at"])}
             for r in rooms if actor.role in CREATORS or r["created_by"] == actor.username or r["id"] in mine]
    return {"items": items}


# --- joins and leaves from the streams service --------------------------------------------------

def _parse_message(fields: dict) -> dict:
    """A stream entry as a dict: either one ``data`` field holding JSON, or flat fields."""
    def text(v: Any) -> Any:
        return v.decode() if isinstance(v, bytes) else v

    flat = {text(k): text(v) for k, v in fields.items()}
    if "data" in flat:
        body = json.loads(flat["data"])
        if not isinstance(body, dict):
            raise ValueError("'data' is not a JSON object")
        return body
    return flat


def _event_time(value: Any) -> datetime:
    if value in (None, ""):
        return now_utc()
    try:
        return datetime.fromtimestamp(float(value), timezone.utc)
    except (TypeError, ValueError):
        t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


KINDS = {"join": "join", "joined": "join", "participant.joined": "join",
         "leave": "leave", "left": "leave", "participant.left": "leave"}


def record_event(body: dict) -> bool:
    """Record one join or leave: on the participant, and on the incident's timeline. False if ignored."""
    kind = KINDS.get(str(body.get("type") or body.get("event") or "").removeprefix("conference."))
    room, pid = body.get("room"), body.get("pid") or body.get("participant")
    if kind is None or room in (None, "") or not pid:
        return False
    try:
        room_id = int(room)
    except (TypeError, ValueError):
        return False
    at = _event_time(body.get("at"))
    ctx = current()
    with ctx.reader.connect() as conn:
        room_row = conn.execute(select(ROOMS).where(ROOMS.c.id == room_id)).mappings().first()
        person = conn.execute(select(PEOPLE).where(PEOPLE.c.pid == str(pid), PEOPLE.c.conference_id == room_id)) \
            .mappings().first()
    if room_row is None or person is None:
        log.info("conference event for unknown room %s / participant %s ignored", room, pid)
        return False
    changes = {"joined_at": at, "joins": person["joins"] + 1} if kind == "join" else {"left_at": at}
    ctx.writes.run(lambda conn: conn.execute(update(PEOPLE).where(PEOPLE.c.id == person["id"]).values(**changes)))
    if room_row["incident_id"] is not None:
        who = Actor((person["username"] or f"conf:{person['name']}")[:64], "system")
        entry = {"conference_id": room_id, "title": room_row["title"], "pid": person["pid"], "name": person["name"],
                 "username": person["username"], "department_id": person["department_id"],
                 "leader": bool(person["leader"])}
        try:
            emergency.record_conference(room_row["incident_id"], f"conference_{kind}", who, entry, at)
        except errors.ServiceError as exc:
            log.warning("could not record %s on incident %s: %s", kind, room_row["incident_id"], exc.message)
    return True


def ensure_group(r: redis.Redis) -> None:
    try:
        r.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def consume(r: redis.Redis | None = None, consumer: str = "worker", count: int = 100,
            block_ms: int | None = None) -> int:
    """Read the conference events stream with a consumer group; record and acknowledge each entry.

    Entries that could not be recorded because of a database error stay pending and are read again
    (the group's pending list is read first). Returns how many entries were handled.
    """
    r = r or current().redis
    ensure_group(r)
    handled = 0
    for start in ("0", ">"):  # our pending entries first, then new ones
        resp = r.xreadgroup(GROUP, consumer, {STREAM: start}, count=count,
                            block=block_ms if start == ">" else None)
        for _stream, entries in resp or []:
            for entry_id, fields in entries:
                if not fields:  # acknowledged meanwhile / trimmed
                    r.xack(STREAM, GROUP, entry_id)
                    continue
                try:
                    record_event(_parse_message(fields))
                except (ValueError, TypeError) as exc:
                    log.warning("bad conference event %s dropped: %s", entry_id, exc)
                r.xack(STREAM, GROUP, entry_id)
                handled += 1
    return handled
