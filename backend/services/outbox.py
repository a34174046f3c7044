"""The outbox relay (发件箱): event rows not yet on the Redis stream are sent, in id order.

Every writer commits its event row first and then kicks the relay. The relay sends whole batches
(one pipeline) and then moves the outbox's position (`outbox_position`: the last event id on the
stream) in one small UPDATE. Event ids follow the chain head, so they are committed in id order without
gaps, and the rows after the position are exactly the ones still to send; no event row is written twice.
While Redis is down the rows simply wait; the next kick or the periodic retry sends them, in order,
exactly once per event id (the stream refuses an id it already holds, see backend.bus). Two relays
sending the same rows at once is harmless for the same reason, and the position only moves forward.

Where the relay runs (`CITYWALL_OUTBOX_RELAY`): `process` (the default) gives every writing process
a relay thread kicked after each commit; `worker` (what the supervisor sets for a whole instance)
leaves relaying to the worker process alone, which watches the outbox every `WORKER_POLL` seconds.
One relay then serves the web process, the simulator and the worker, and its work is done on the
worker's core instead of between the web process's requests.
"""
from __future__ import annotations

import json
import logging
import threading
from collections import namedtuple
from datetime import timezone

import redis
from sqlalchemy import func, select

from backend import bus
from backend.store import models as m
from backend.store import rows

log = logging.getLogger(__name__)

WORKER_POLL = 0.02  # seconds between two looks at the outbox by the worker's relay (when nothing kicks it)

EVENTS = m.Event.__table__
POSITION = m.OutboxPosition.__table__

# The columns of an event row that make its bus message; `created_at` last.
_EventRow = namedtuple("_EventRow", "id type action case_id actor role from_status to_status payload created_at")
_COLUMNS = ", ".join(_EventRow._fields)
_AFTER_POSITION = "id > (SELECT last_event_id FROM outbox_position WHERE id = 1)"
_SQL = {
    False: {
        "unpublished": f"SELECT {_COLUMNS} FROM events WHERE {_AFTER_POSITION} ORDER BY id LIMIT :n",
        "advance": "UPDATE outbox_position SET last_event_id = :id WHERE id = 1 AND last_event_id < :id",
    },
    True: {
        "unpublished": f"SELECT {_COLUMNS} FROM events WHERE {_AFTER_POSITION} ORDER BY id LIMIT %(n)s",
        "advance": "UPDATE outbox_position SET last_event_id = %(id)s WHERE id = 1 AND last_event_id < %(id)s",
    },
}


def _advance(conn, last_id: int) -> None:
    """Every event up to `last_id` is on the stream (never moves back: another relay may be further)."""
    rows.write_sql(conn, _SQL[rows.dialect(conn).postgres]["advance"], {"id": last_id})


def event_message(row) -> dict:
    """The JSON published on `citywall:events` for one event row (the bus contract, see docs/events.md)."""
    body = json.loads(row.payload)
    message = {
        "event_id": row.id,
        "type": row.type,
        "action": row.action,
        "case_id": row.case_id,
        "actor": row.actor,
        "role": row.role,
        "from": row.from_status,
        "to": row.to_status,
        "at": row.created_at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
        if row.created_at.tzinfo else row.created_at.isoformat() + "Z",
        "payload": body.get("input", {}),
        "case": body.get("case"),
    }
    if "incident_id" in body:  # incident.* events (应急指挥, README "Emergency command")
        message["incident_id"] = body["incident_id"]
        message["incident"] = body.get("incident")
    return message


class Outbox:
    def __init__(self, ctx, batch: int = 2000, coalesce: float = 0.02):
        self.ctx = ctx
        self.batch = batch
        self.coalesce = coalesce  # after a kick, gather more events this long: one batch, not one per write
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self._checked_stale = False
        self._relayed_elsewhere = False

    # --- the relay -------------------------------------------------------------------------
    def flush(self) -> int:
        """Send every unpublished event now. Returns how many were sent; 0 if Redis is away."""
        sent = 0
        with self._lock:
            while True:
                found = self._unpublished()
                if not found:
                    break
                try:
                    r = self.ctx.redis
                    if not self._checked_stale:
                        bus.reset_stale_stream(r, self._max_event_id)
                        self._checked_stale = True
                    done = bus.publish_events(r, [event_message(row) for row in found])
                except (redis.RedisError, OSError) as exc:
                    if self.last_error != str(exc):
                        log.warning("bus unreachable, %d events wait in the outbox: %s", len(found), exc)
                    self.last_error = str(exc)
                    return sent
                self.last_error = None
                if done:  # the sent rows' ids, in order, from the first after the position
                    self.ctx.writes.run(lambda conn: _advance(conn, done[-1]))
                    sent += len(done)
                if len(found) < self.batch:
                    break
        return sent

    def _unpublished(self) -> list[_EventRow]:
        """The oldest unpublished event rows, read on the driver's cursor (a flush runs many times a second)."""
        with self.ctx.reader.connect() as conn:
            d = rows.dialect(conn)
            found = rows.read_sql(conn, _SQL[d.postgres]["unpublished"], {"n": self.batch})
        return [_EventRow(*row[:-1], d.read_time(row[-1])) for row in found]

    def pending(self) -> int:
        """How many event rows wait to be sent."""
        with self.ctx.reader.connect() as conn:
            position = select(POSITION.c.last_event_id).where(POSITION.c.id == 1).scalar_subquery()
            return conn.execute(select(func.count()).select_from(EVENTS)
                                .where(EVENTS.c.id > position)).scalar_one()

    def _max_event_id(self) -> int:
        with self.ctx.reader.connect() as conn:
            return conn.execute(select(func.coalesce(func.max(EVENTS.c.id), 0))).scalar_one()

    # --- background thread -------------------------------------------------------------------
    def start(self, retry_seconds: float = 1.0) -> None:
        if self._thread is not None:
            return

        def run() -> None:
            while not self._stop.is_set():
                if self._wake.wait(retry_seconds) and self.coalesce:
                    self._stop.wait(self.coalesce)
                self._wake.clear()
                try:
                    self.flush()
                except Exception:  # keep relaying whatever one batch did
                    log.exception("outbox relay failed")

        self._thread = threading.Thread(target=run, name="outbox-relay", daemon=True)
        self._thread.start()

    def start_for(self, process: str) -> None:
        """Start relaying as this process's role asks (`web`, `sim` or `worker`), see the module's docstring."""
        if self.ctx.config.outbox_relay != "worker":
            if process != "worker":
                self.start()
            return
        if process == "worker":
            self.start(retry_seconds=WORKER_POLL)
        else:
            self._relayed_elsewhere = True

    def kick(self) -> None:
        """Called after every commit: wake the relay thread, or relay inline when there is none
        (nothing when the worker process relays)."""
        if self._relayed_elsewhere:
            return
        if self._thread is not None:
            self._wake.set()
        else:
            self.flush()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
