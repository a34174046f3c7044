"""The outbox relay (发件箱): event rows not yet on the Redis stream are sent, in id order.

Every writer commits its event row first and then kicks the relay. A relay thread per process sends
whole batches (one pipeline) and marks them published in one UPDATE. While Redis is down the rows
simply wait; the next kick or the periodic retry sends them, in order, exactly once per event id
(the stream refuses an id it already holds, see backend.bus).
"""
from __future__ import annotations

import json
import logging
import threading
from datetime import datetime, timezone

import redis
from sqlalchemy import select, update

from backend import bus
from backend.store import models as m

log = logging.getLogger(__name__)

EVENTS = m.Event.__table__


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

    # --- the relay -------------------------------------------------------------------------
    def flush(self) -> int:
        """Send every unpublished event now. Returns how many were sent; 0 if Redis is away."""
        sent = 0
        with self._lock:
            while True:
                with self.ctx.reader.connect() as conn:
                    rows = conn.execute(
                        select(EVENTS).where(EVENTS.c.published_at.is_(None)).order_by(EVENTS.c.id)
                        .limit(self.batch)).all()
                if not rows:
                    break
                try:
                    r = self.ctx.redis
                    if not self._checked_stale:
                        bus.reset_stale_stream(r, self._max_event_id)
                        self._checked_stale = True
                    done = bus.publish_events(r, [event_message(row) for row in rows])
                except (redis.RedisError, OSError) as exc:
                    if self.last_error != str(exc):
                        log.warning("bus unreachable, %d events wait in the outbox: %s", len(rows), exc)
                    self.last_error = str(exc)
                    return sent
                self.last_error = None
                if done:
                    now = datetime.now(timezone.utc)
                    # Rows another process's relay is marking right now are skipped, not waited for (two
                    # relays marking the same rows in different orders would deadlock on PostgreSQL).
                    mine = (select(EVENTS.c.id).where(EVENTS.c.id.in_(done), EVENTS.c.published_at.is_(None))
                            .with_for_update(skip_locked=True))
                    stmt = update(EVENTS).where(EVENTS.c.id.in_(mine)).values(published_at=now)
                    self.ctx.writes.run(lambda conn: conn.execute(stmt))
                    sent += len(done)
                if len(rows) < self.batch:
                    break
        return sent

    def pending(self) -> int:
        from sqlalchemy import func

        with self.ctx.reader.connect() as conn:
            return conn.execute(select(func.count()).select_from(EVENTS)
                                .where(EVENTS.c.published_at.is_(None))).scalar_one()

    def _max_event_id(self) -> int:
        from sqlalchemy import func

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

    def kick(self) -> None:
        """Called after every commit: wake the relay thread, or relay inline when there is none."""
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
