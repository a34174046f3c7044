"""The worker process (后台任务): outbox relay retries, SLA ticker (预警/超期/自动督办), 挂账 resumes,
the GPS trail archiver (轨迹归档) and the on-duty checker (上岗履职告警).

    python -m backend.worker
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from datetime import datetime, timezone

from sqlalchemy import select

from backend.domain.lifecycle import Actor
from backend.services import cases, errors
from backend.services.context import current
from backend.store import models as m

log = logging.getLogger("citywall.worker")
SYSTEM = Actor("system", "system")


def resume_due_suspensions(now: datetime) -> int:
    """挂账 with an `until` date: resumed by the system on that date (local)."""
    ctx = current()
    today = now.astimezone(ctx.calendar.tz).date().isoformat()
    t = m.Case.__table__
    with ctx.reader.connect() as conn:
        ids = conn.execute(select(t.c.id).where(t.c.status == "suspended", t.c.suspended_until.is_not(None),
                                                t.c.suspended_until <= today).limit(200)).scalars().all()
    n = 0
    for cid in ids:
        try:
            cases.apply(cid, "resume", SYSTEM, {}, at=now)
            n += 1
        except errors.ServiceError as exc:
            log.warning("could not resume case %s: %s", cid, exc.message)
    return n


DUTY_EVERY_S = 30.0


def archive_tick(archiver) -> int:
    """Trail stream -> gps_trail_points until caught up; errors are logged, the loop goes on."""
    try:
        return archiver.drain()
    except Exception:
        log.exception("trail archive pass failed; retrying")
        return 0


def duty_tick(now: datetime) -> None:
    from backend.services import duty

    try:
        result = duty.tick(now)
        if result["raised"] or result["cleared"]:
            log.info("duty alarms: %d raised, %d cleared", result["raised"], result["cleared"])
    except Exception:
        log.exception("duty check failed; retrying")


def emergency_pass(now: datetime) -> int:
    """应急指挥: task deadline ticks, SMS delivery states, conference joins/leaves onto incident timelines."""
    from backend.services import conferences, emergency

    n = emergency.task_tick(now)
    n += emergency.poll_deliveries()
    n += conferences.consume()
    return n


def run(stop: threading.Event, tick: float = 1.0) -> None:
    from backend.gps.archive import Archiver

    ctx = current()
    last_sla = 0.0
    last_duty = 0.0
    archiver = Archiver(ctx.redis, ctx.engine)
    ctx.outbox.start_for("worker")  # the relay of the whole instance when CITYWALL_OUTBOX_RELAY=worker
    while not stop.is_set():
        archive_tick(archiver)
        if time.monotonic() - last_duty >= DUTY_EVERY_S:
            duty_tick(datetime.now(timezone.utc))
            last_duty = time.monotonic()
        try:
            if ctx.config.outbox_relay != "worker":  # otherwise the relay thread started above watches it
                ctx.outbox.flush()  # the retry of what the processes' own relays could not send
            if time.monotonic() - last_sla >= 2.0:
                now = datetime.now(timezone.utc)
                marked = cases.sla_tick(now)
                resumed = resume_due_suspensions(now)
                if marked or resumed:
                    log.info("SLA: %d marked, %d resumed", marked, resumed)
                last_sla = time.monotonic()
                try:
                    emergency_pass(now)
                except Exception:
                    log.exception("emergency pass failed; retrying")
        except Exception:
            log.exception("worker pass failed; retrying")
        stop.wait(tick)
    ctx.outbox.stop()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    log.info("worker started")
    run(stop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
