"""Conference events to Redis (会商事件): XADD on stream `citywall:conference:events`.

Each entry has one field `data`: JSON {"type": "conference.join" | "conference.leave" | "conference.mute"
| "conference.unmute" | "conference.remove" | "conference.layout" | "conference.pin" | ..., "room",
"participant", "name", "at" (ISO UTC), ...}. The backend's worker copies them onto the incident timeline.
Redis is optional: without it events are logged and dropped.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import datetime, timezone

log = logging.getLogger(__name__)

STREAM = "citywall:conference:events"
MAXLEN = 100_000


def event(type_: str, room: str, participant: str | None, name: str | None, **extra) -> dict:
    """One event dict with the time of now in ISO UTC."""
    return {"type": type_, "room": room, "participant": participant, "name": name,
            "at": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            **extra}


class EventPublisher:
    """Queues events and XADDs them from one task; never blocks or breaks the caller."""

    def __init__(self, redis_url: str = "", unix_socket: str = "", retry_after: float = 30.0) -> None:
        self.redis_url = redis_url
        self.unix_socket = unix_socket
        self.retry_after = retry_after
        self.published = 0
        self.dropped = 0
        self._client = None
        self._down_since: float | None = None
        self._queue: asyncio.Queue[dict | None] = asyncio.Queue(maxsize=10_000)
        self._task: asyncio.Task | None = None
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def publish(self, data: dict) -> None:
        log.info("conference event %s", json.dumps(data, ensure_ascii=False))
        if self._closing or self._task is None:
            return
        try:
            self._queue.put_nowait(data)
        except asyncio.QueueFull:
            self.dropped += 1

    async def close(self) -> None:
        if self._task:
            self._closing = True
            try:
                self._queue.put_nowait(None)
            except asyncio.QueueFull:
                pass
            await asyncio.wait({self._task}, timeout=2.0)
            if not self._task.done():
                self._task.cancel()
                await asyncio.wait({self._task}, timeout=1.0)
        if self._client is not None:
            try:
                await asyncio.wait_for(self._client.aclose(), 2.0)
            except (Exception, asyncio.TimeoutError):
                pass
            self._client = None

    async def _connect(self):
        import redis.asyncio as aioredis

        if self.redis_url:
            client = aioredis.from_url(self.redis_url, socket_connect_timeout=2, socket_timeout=2)
        elif self.unix_socket:
            client = aioredis.Redis(unix_socket_path=self.unix_socket, socket_connect_timeout=2, socket_timeout=2)
        else:
            return None
        await client.ping()
        return client

    async def _run(self) -> None:
        while True:
            data = await self._queue.get()
            if data is None:
                return
            if self._client is None:
                if self._down_since and time.monotonic() - self._down_since < self.retry_after:
                    self.dropped += 1
                    continue
                try:
                    self._client = await self._connect()
                except Exception as exc:
                    log.warning("Redis unavailable, conference events not recorded: %s", exc)
                    self._client = None
                if self._client is None:
                    self._down_since = time.monotonic()
                    self.dropped += 1
                    continue
                self._down_since = None
            try:
                await self._client.xadd(STREAM, {"data": json.dumps(data, ensure_ascii=False)},
                                        maxlen=MAXLEN, approximate=True)
                self.published += 1
            except Exception as exc:
                log.warning("Redis XADD failed, conference event dropped: %s", exc)
                self.dropped += 1
                self._client = None
                self._down_since = time.monotonic()
