"""Real time to the screens (实时推送): Socket.IO on the web port, fed from the Redis event stream.

A background reader in the web process XREADs `citywall:events` (blocking) and emits the events to
Socket.IO rooms: `wall` (every wall screen and the centre's consoles), `dept:<id>` (a department's
console: its own cases only) and `screen:<name>` (one screen, for commands aimed at it). Events are
coalesced: the first event after a quiet spell goes out at once, then at most one batch per
`interval` (a burst of a thousand events is a handful of messages). The wall room gets one `tick`
message per `tick_interval` (0.5 s) at most, carrying whatever changed: the events, the vehicles'
positions (coalesced by device) and the panels; a department's console gets `events`. The
server-computed panels (KPIs, ranking, trends) are recomputed once per change for every screen, not
once per screen.

The reader also keeps the open cases in memory from the events it reads (each carries the case as it
now is), so the wall's state is served without reading the store. A screen loads its full state over
HTTP (`/wall/api/state`, with the last event id it reflects) and then says `hello` with that id; the
hello replays what came after it, under the same lock as the broadcasts, so no event falls between the
snapshot and the live stream. After a reconnect a screen refetches the state and says hello again.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Callable

import redis
from flask import Flask, request, session
from flask_socketio import SocketIO, emit, join_room

from backend import bus
from backend.fanout import Fanout
from backend.services import wall
from backend.services.context import Context

log = logging.getLogger(__name__)

ASYNC_MODE = "threading"  # explicit: under gunicorn gthread any other mode delivers nothing (stack notes)
BATCH_INTERVAL = 0.25     # seconds between two batches of events to a department's console
TICK_INTERVAL = 0.5       # seconds between two ticks to the wall room (a wall seen from ten metres needs no more;
                          # each tick is a write per screen)
SUMMARY_INTERVAL = 1.0    # KPIs at most once a second
SLOW_SUMMARY_INTERVAL = 5.0   # ranking and trends (pandas) at most every 5 s
IDLE_SUMMARY_INTERVAL = 30.0  # recomputed even without events (the overdue count moves with time)
# A loading screen's state reuses the panels the bridge last computed if they are this recent. The bridge
# recomputes them within a second of any change and every IDLE_SUMMARY_INTERVAL without one, so they are
# what every open wall shows (and `hello` sends the current ones).
SUMMARY_REUSE_AGE = IDLE_SUMMARY_INTERVAL + 5.0
SUMMARY_KEY = "citywall:wall:summary"        # the panels last computed by a web worker: {at, slow_at, summary}
SUMMARY_LOCK = "citywall:wall:summary:lock"  # held by the web worker computing them
SUMMARY_LOCK_MS = 5000                       # after this a waiting worker computes them itself
SUMMARY_SKEW = 0.25                          # two workers see one event within this of each other
VEHICLE_INTERVAL = 0.5    # positions to the screens at most twice a second (coalesced by device): device to screen < 1 s
GPS_SUMMARY_CHANNEL = "citywall:gps:summary"
GPS_ALARMS_CHANNEL = "citywall:gps:alarms"
REPLAY_LIMIT = 5000
WALL_ROOM = "wall"

socketio = SocketIO(async_mode=ASYNC_MODE, cors_allowed_origins=None, ping_interval=25, ping_timeout=20,
                    logger=False, engineio_logger=False)


def dept_room(department_id: int) -> str:
    return f"dept:{department_id}"


def screen_room(name: str) -> str:
    return f"screen:{name}"


INCIDENT_TICKER = {"activated": "incident", "closed": "incident_closed", "cancelled": "incident_closed"}


def event_for_screen(event: dict, ctx: Context) -> dict:
    """A bus event (docs/events.md) as screens take it: compact case, ticker line for ticker actions.

    An incident event (`incident.*`, 应急指挥) carries `inc` (id, action, status, wall mode) instead of a case.
    """
    if str(event.get("type") or "").startswith("incident."):
        inc = event.get("incident") or {}
        out = {"e": event["event_id"], "a": event.get("action"), "at": wall.epoch_ms(event.get("at")), "c": None,
               "inc": {"id": event.get("incident_id") or inc.get("id"), "a": event.get("action"),
                       "status": inc.get("status"), "wall_mode": inc.get("wall_mode")}}
        if event.get("action") in INCIDENT_TICKER:
            out["tk"] = {"e": event["event_id"], "a": INCIDENT_TICKER[event["action"]], "at": out["at"],
                         "n": f"#{out['inc']['id']}", "cls": wall._short(inc.get("title") or ""), "dept": None,
                         "text": "", "cid": None}
        return out
    snap = event.get("case") or {}
    out = {"e": event["event_id"], "a": event.get("action"), "at": wall.epoch_ms(event.get("at")),
           "from": event.get("from"), "to": event.get("to"),
           "c": wall.compact_case(snap, ctx) if snap else None}
    if event.get("action") in wall.TICKER_ACTIONS:
        out["tk"] = wall.ticker_item(event, ctx)
    return out


class Bridge:
    """Stream reader → Socket.IO rooms, with coalescing and throttled panel summaries."""

    def __init__(self, ctx: Context, sio: SocketIO, interval: float = BATCH_INTERVAL,
                 tick_interval: float = TICK_INTERVAL):
        self.ctx = ctx
        self.sio = sio
        self.interval = interval
        self.tick_interval = tick_interval
        self.lock = threading.RLock()       # held while emitting a batch or replaying to a newcomer
        self.last_id = "0-0"
        self.last_event_id = 0
        self._dept_of: dict[int, int | None] = {}
        self._stop = threading.Event()
        self._dirty = threading.Event()
        self._started = False
        self.stats = {"batches": 0, "events": 0, "summaries": 0, "vehicle_batches": 0, "alarms": 0, "ticks": 0,
                      "summaries_shared": 0}
        self._tick: dict[str, Any] = {}
        self._tick_lock = threading.Lock()
        self._tick_wake = threading.Event()
        self._summary: dict | None = None
        self._summary_at = 0.0
        self._slow_at = 0.0  # when the ranking and trends were last computed (by any web worker)
        # the open cases as screens' compact records, kept by the stream (None until loaded, or after a gap)
        self._open: dict[int, dict] | None = None
        self._open_event_id = 0
        self._open_lock = threading.Lock()

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        if self._started:
            return
        self._started = True
        self.sio.start_background_task(self._read_loop)
        self.sio.start_background_task(self._summary_loop)
        self.sio.start_background_task(self._gps_loop)
        self.sio.start_background_task(self._tick_loop)

    def stop(self) -> None:
        self._stop.set()

    # --- the stream reader -------------------------------------------------------------------
    def _connect(self) -> redis.Redis:
        return bus.connect(self.ctx.config, socket_timeout=10)

    def _tail_id(self, r: redis.Redis) -> str:
        last = r.xrevrange(bus.EVENTS_STREAM, count=1)
        if not last:
            return "0-0"
        eid = last[0][0]
        return eid.decode() if isinstance(eid, bytes) else eid

    def _read_loop(self) -> None:
        r: redis.Redis | None = None
        pending: list[dict] = []
        last_emit = 0.0
        while not self._stop.is_set():
            try:
                if r is None:
                    r = self._connect()
                    if self.last_id == "0-0":
                        self.last_id = self._tail_id(r)
                        self.last_event_id = int(self.last_id.split("-")[0])
                        self.load_open_cases(self.last_event_id)
                wait = 1.0 if not pending else max(0.001, last_emit + self.interval - time.monotonic())
                got = bus.read_events(r, self.last_id, count=2000, block_ms=max(1, int(wait * 1000)))
            except (redis.RedisError, OSError) as exc:
                log.warning("event stream unreachable (%s); retrying", exc)
                r = None
                self._stop.wait(1.0)
                continue
            for stream_id, event in got:
                self.last_id = stream_id
                pending.append(event)
            if pending and time.monotonic() - last_emit >= self.interval:
                try:
                    self.emit_batch(pending)
                except Exception:
                    log.exception("could not push %d events", len(pending))
                pending = []
                last_emit = time.monotonic()

    def emit_batch(self, events: list[dict]) -> None:
        """Send a batch of bus events to the wall room and to the departments they concern."""
        by_dept: dict[int, list[dict]] = {}
        screen_events = []
        for ev in events:
            item = event_for_screen(ev, self.ctx)
            screen_events.append(item)
            case_id = ev.get("case_id")
            new_dept = (ev.get("case") or {}).get("department_id")
            old_dept = self._dept_of.get(case_id) if case_id is not None else None
            if case_id is not None:
                self._dept_of[case_id] = new_dept
            for d in {new_dept, old_dept} - {None}:
                by_dept.setdefault(d, []).append(item)
        self.keep_open_cases(screen_events)
        with self.lock:
            last = screen_events[-1]["e"]
            self.last_event_id = max(self.last_event_id, last)
            ts = int(time.time() * 1000)  # the push time: screens measure push-to-paint from it
            for d, items in by_dept.items():
                self.sio.emit("events", {"events": items, "last": last, "ts": ts}, to=dept_room(d))
            self.stats["batches"] += 1
            self.stats["events"] += len(events)
        self.put_tick("events", screen_events)  # the wall room: with the vehicles and panels, one message
        self._dirty.set()

    # --- the open cases, kept in memory (内存态势) ------------------------------------------------
    def load_open_cases(self, event_id: int) -> None:
        """Read the open cases from the store, as of at least `event_id` (the stream position read first)."""
        try:
            records = {rec["id"]: rec for rec in wall.open_cases()}
        except Exception:
            log.exception("could not read the open cases; the state is read from the store meanwhile")
            return
        with self._open_lock:
            self._open, self._open_event_id = records, event_id

    def keep_open_cases(self, items: list[dict]) -> None:
        """Apply screen events (in stream order) to the open cases; a gap in the ids means reading them again."""
        with self._open_lock:
            if self._open is None:
                return
            for item in items:
                e = item["e"]
                if e <= self._open_event_id:
                    continue
                if e != self._open_event_id + 1:  # events were missed (a trimmed or reset stream)
                    self._open = None
                    break
                c = item.get("c")
                if c is not None:
                    if c.get("o"):
                        self._open[c["id"]] = c
                    else:
                        self._open.pop(c["id"], None)
                self._open_event_id = e
            gap = self._open is None
            last = items[-1]["e"] if items else 0
        if gap:
            self.load_open_cases(last)

    def open_cases_now(self) -> tuple[int, dict] | None:
        """(event id, one list per field) of the open cases as the stream has left them; None before loading."""
        with self._open_lock:
            if self._open is None:
                return None
            event_id, records = self._open_event_id, [self._open[k] for k in sorted(self._open)]
        return event_id, wall.columns(records)

    # --- one message per tick to the wall room ---------------------------------------------------
    def put_tick(self, kind: str, value: Any) -> None:
        """Queue events (appended), vehicle positions (merged by device) or the panels (the newest) for
        the wall room's next tick: at most one message per `tick_interval` carries all three, so every
        screen costs one write per tick rather than one per kind."""
        with self._tick_lock:
            if kind == "events":
                self._tick.setdefault("events", []).extend(value)
            elif kind == "vehicles":
                self._tick.setdefault("vehicles", {}).update({d["device"]: d for d in value})
            else:
                self._tick[kind] = value
        self._tick_wake.set()

    def _tick_loop(self) -> None:
        last = 0.0
        while not self._stop.is_set():
            if not self._tick_wake.wait(1.0):
                continue
            wait = last + self.tick_interval - time.monotonic()
            if wait > 0:  # the first change after a quiet spell goes out at once, then one tick per interval
                self._stop.wait(wait)
            try:
                if self.emit_tick():
                    last = time.monotonic()
            except Exception:
                log.exception("could not push the wall's tick")

    def emit_tick(self) -> bool:
        """Send what is queued for the wall room as one `tick` message; False when nothing was."""
        with self._tick_lock:
            tick, self._tick = self._tick, {}
            self._tick_wake.clear()
        if not tick:
            return False
        with self.lock:  # after a newcomer's replay, never between its join and its replay
            ts = int(time.time() * 1000)
            msg: dict[str, Any] = {"ts": ts}
            if tick.get("events"):
                evs = tick["events"]
                msg["events"] = {"events": evs, "last": evs[-1]["e"], "ts": ts}
            if tick.get("vehicles"):
                msg["vehicles"] = {"devices": list(tick["vehicles"].values()), "ts": ts}
                self.stats["vehicle_batches"] += 1
            if "summary" in tick:
                msg["summary"] = tick["summary"]
            self.sio.emit("tick", msg, to=WALL_ROOM)
            self.stats["ticks"] += 1
        return True

    # --- vehicles and 上岗履职 alarms (GPS) --------------------------------------------------------
    def _gps_loop(self) -> None:
        """Forward `citywall:gps:summary` (coalesced by device, at most every VEHICLE_INTERVAL) and the duty alarms."""
        pending: dict[str, dict] = {}
        last_emit = 0.0
        pubsub = None
        while not self._stop.is_set():
            try:
                if pubsub is None:
                    pubsub = self._connect().pubsub(ignore_subscribe_messages=True)
                    pubsub.subscribe(GPS_SUMMARY_CHANNEL, GPS_ALARMS_CHANNEL)
                wait = 1.0 if not pending else max(0.01, last_emit + VEHICLE_INTERVAL - time.monotonic())
                msg = pubsub.get_message(timeout=wait)
            except (redis.RedisError, OSError) as exc:
                log.warning("GPS channels unreachable (%s); retrying", exc)
                pubsub = None
                self._stop.wait(1.0)
                continue
            if msg is not None:
                self.take_gps_message(msg, pending)
            if pending and time.monotonic() - last_emit >= VEHICLE_INTERVAL:
                self.emit_vehicles(list(pending.values()))
                pending.clear()
                last_emit = time.monotonic()
        if pubsub is not None:
            pubsub.close()

    def take_gps_message(self, msg: dict, pending: dict[str, dict]) -> None:
        """One pub/sub message: positions are merged into `pending`; an alarm goes out at once."""
        channel = msg.get("channel")
        channel = channel.decode() if isinstance(channel, bytes) else channel
        try:
            body = json.loads(msg.get("data") or b"{}")
        except (TypeError, ValueError):
            log.warning("bad message on %s dropped", channel)
            return
        if not isinstance(body, dict):
            return
        if channel == GPS_SUMMARY_CHANNEL:
            for item in wall.summary_for_screen(body, self.ctx):
                pending[item["device"]] = item
        elif channel == GPS_ALARMS_CHANNEL:
            self.sio.emit("alarm", {"alarm": body, "tk": wall.alarm_item(body)}, to=WALL_ROOM)
            self.stats["alarms"] += 1

    def emit_vehicles(self, items: list[dict]) -> None:
        self.put_tick("vehicles", items)

    # --- the panel summaries -----------------------------------------------------------------
    def _summary_loop(self) -> None:
        last_fast = 0.0
        summary: dict = {}
        self._dirty.set()  # the panels at once: a wall loading next reuses them
        while not self._stop.is_set():
            self._dirty.wait(IDLE_SUMMARY_INTERVAL)  # a change, or time passing (overdue counts move)
            since = time.monotonic() - last_fast
            if since < SUMMARY_INTERVAL:
                self._stop.wait(SUMMARY_INTERVAL - since)
            self._dirty.clear()
            try:
                summary = self.panels(summary)
                last_fast = time.monotonic()
                self._summary = summary
                self._summary_at = time.monotonic()
                self.put_tick("summary", self._summary)
                self.stats["summaries"] += 1
            except Exception:
                if not self._stop.is_set():
                    log.exception("could not compute the wall summaries")
                self._stop.wait(2.0)

    def panels(self, previous: dict) -> dict:
        """The wall's panels (KPIs; ranking and trends at most every SLOW_SUMMARY_INTERVAL), computed once per
        instance: every web worker's bridge sees the same events at the same time, so the one that takes
        SUMMARY_LOCK computes them and stores them at SUMMARY_KEY, and the others take those. Without Redis, or
        when the computing worker does not deliver in time, a bridge computes them itself."""
        asked = time.time()
        r: redis.Redis | None = None
        try:
            r = self.ctx.redis
            mine = r.set(SUMMARY_LOCK, "1", nx=True, px=SUMMARY_LOCK_MS)
            stored = None if mine else self._stored_panels(r, asked)
        except (redis.RedisError, OSError, ValueError):
            r, stored = None, None
        if stored is not None:
            self.stats["summaries_shared"] += 1
            return stored["summary"]
        out = dict(previous)
        out["kpi"] = wall.kpis()
        slow_at = self._slow_at
        if r is not None:
            try:
                last = json.loads(r.get(SUMMARY_KEY) or "{}")  # another worker's ranking may be younger than ours
                slow_at = max(slow_at, float(last.get("slow_at") or 0.0))
            except (redis.RedisError, OSError, ValueError):
                pass
        if time.time() - slow_at >= SLOW_SUMMARY_INTERVAL or out.get("ranking") is None or out.get("trends") is None:
            out["ranking"] = wall.ranking()
            out["trends"] = wall.trends()
            slow_at = time.time()
        self._slow_at = slow_at
        if r is not None:
            try:
                r.set(SUMMARY_KEY, json.dumps({"at": asked, "slow_at": slow_at, "summary": out}, ensure_ascii=False),
                      ex=int(SUMMARY_REUSE_AGE))
                r.delete(SUMMARY_LOCK)
            except (redis.RedisError, OSError):
                pass
        return out

    def _stored_panels(self, r: redis.Redis, asked: float) -> dict | None:
        """The panels another worker computes for a change this bridge saw at `asked` (both read the same
        events, within SUMMARY_SKEW of each other). None: compute them here (the lock is now this one's,
        or the other worker did not deliver)."""
        deadline = time.monotonic() + SUMMARY_LOCK_MS / 1000
        while time.monotonic() < deadline and not self._stop.is_set():
            raw = r.get(SUMMARY_KEY)
            if raw:
                stored = json.loads(raw)
                if float(stored.get("at") or 0) >= asked - SUMMARY_SKEW:
                    return stored
            if r.set(SUMMARY_LOCK, "1", nx=True, px=SUMMARY_LOCK_MS):
                return None  # the other worker was computing for an older change: this one is newer
            self._stop.wait(0.05)
        return None

    # --- newcomers ---------------------------------------------------------------------------
    def replay(self, after: int, limit: int = REPLAY_LIMIT) -> list[dict] | None:
        """Events after `after` from the stream (None: too many or trimmed: refetch the full state)."""
        r = self.ctx.redis
        entries = bus.read_events(r, bus.stream_id(after) if after > 0 else "0-0", count=limit + 1)
        if len(entries) > limit:
            return None
        if after > 0 and entries and int(entries[0][0].split("-")[0]) != after + 1:
            # the stream does not hold every event after `after` (trimmed, or not yet published)
            stored = wall.events_after(after, limit + 1)
            if len(stored) > limit:
                return None
            return [event_for_screen(e, self.ctx) for e in stored]
        return [event_for_screen(e, self.ctx) for _sid, e in entries]

    def welcome(self, rooms: list[str], after: int, sid: str, dept: int | None) -> None:
        """Join `rooms` and send the events after `after`, with no broadcast in between."""
        with self.lock:
            for room in rooms:
                join_room(room, sid=sid)
            try:
                events = self.replay(after)
            except redis.RedisError:
                events = None
            if events is None:
                self.sio.emit("resync", {}, to=sid)
                return
            if dept is not None:
                events = [e for e in events if e.get("c") and e["c"].get("d") == dept]
            if events:
                self.sio.emit("events", {"events": events, "last": events[-1]["e"], "replay": True}, to=sid)

    def fresh_summary(self, max_age: float = SUMMARY_REUSE_AGE) -> dict | None:
        """The panels last pushed, if recent (a screen loading its state can reuse them: its `hello` is
        answered with the current panels, and they are pushed again within a second of any change)."""
        if self._summary is None or time.monotonic() - self._summary_at > max_age:
            return None
        return self._summary

    def send_to_screen(self, name: str, event: str, data: Any) -> None:
        self.sio.emit(event, data, to=screen_room(name))


_bridge: Bridge | None = None
fanout: Fanout | None = None


def bridge() -> Bridge | None:
    return _bridge


def init_app(app: Flask, ctx: Context, access: Callable[[dict | None], dict | None]) -> SocketIO:
    """Mount Socket.IO on `app` (same port) and start the stream reader.

    `access(auth)` decides who may connect: it returns the screen's identity
    (`{"kind": "wall"|"console", "department_id": …}`) or None to refuse.
    """
    global _bridge
    if _bridge is not None:
        _bridge.stop()
    socketio.init_app(app, async_mode=ASYNC_MODE)
    global fanout
    fanout = Fanout()
    fanout.install(socketio.server.eio)  # screens on WebSocket: one frame per message, a direct write each
    _bridge = Bridge(ctx, socketio)

    @socketio.on("connect")
    def _connect(auth=None):
        who = access(auth if isinstance(auth, dict) else None)
        if who is None:
            return False
        _bridge.start()  # lazily: an app that never has a screen reads no stream
        session["_screen"] = who
        return True

    @socketio.on("hello")
    def _hello(data=None):
        data = data if isinstance(data, dict) else {}
        who = session.get("_screen") or {}
        try:
            after = max(0, int(data.get("after") or 0))
        except (TypeError, ValueError):
            after = 0
        dept = who.get("department_id")
        rooms = [dept_room(dept)] if dept is not None else [WALL_ROOM]
        screen = str(data.get("screen") or "")[:40]
        if screen:
            rooms.append(screen_room(screen))
        _bridge.welcome(rooms, after, request.sid, dept)
        if dept is None and _bridge._summary is not None:
            emit("summary", _bridge._summary)
        return {"ok": True, "rooms": rooms}

    return socketio
