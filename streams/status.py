"""Camera status to Redis (摄像头状态发布): JSON on channel `citywall:cameras` when it changes.

Redis is optional: when it cannot be reached the service logs once and carries on, trying again later.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time

log = logging.getLogger(__name__)

CHANNEL = "citywall:cameras"


class StatusPublisher:
    """Publishes a camera's status whenever its (state, viewers) pair changes."""

    def __init__(self, redis_url: str = "", unix_socket: str = "", retry_after: float = 30.0) -> None:
        self.redis_url = redis_url
        self.unix_socket = unix_socket
        self.retry_after = retry_after
        self._client = None
        self._down_since: float | None = None
        self._last: dict[int, tuple] = {}
        self._queue: asyncio.Queue[dict | None] = asyncio.Queue(maxsize=1000)
        self._task: asyncio.Task | None = None
        self.published = 0
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        """Stop publishing. A cancel thrown into redis-py mid-command can be swallowed, so the task
        is told to stop with a sentinel and is never awaited without a time bound."""
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
            try:  # a publish cancelled mid-flight can leave aclose() waiting: bound it
                await asyncio.wait_for(self._client.aclose(), 2.0)
            except (Exception, asyncio.TimeoutError):
                pass
            self._client = None

    def offer(self, status: dict) -> None:
        """Queue a status for publishing if it differs from the last one sent for that camera."""
        if self._closing:
            return
        key = (status.get("state"), status.get("viewers"))
        if self._last.get(status["id"]) == key:
            return
        self._last[status["id"]] = key
        try:
            self._queue.put_nowait(status)
        except asyncio.QueueFull:
            pass

    async def _connect(self):
        import redis.asyncio as aioredis

        if self.redis_url:
            client = aioredis.from_url(self.redis_url, socket_connect_timeout=2, socket_timeout=2)
        elif self.unix_socket:
            client = aioredis.Redis(unix_socket_path=self.unix_socket, socket_connect_timeout=2,
                                    socket_timeout=2)
        else:
            return None
        await client.ping()
        return client

    async def _run(self) -> None:
        while not self._closing:
            status = await self._queue.get()
            if status is None:
                return
            if self._client is None:
                if self._down_since and time.monotonic() - self._down_since < self.retry_after:
                    continue
                try:
                    self._client = await self._connect()
                    self._down_since = None
                except Exception as exc:
                    log.warning("Redis unavailable, camera status not published: %s", exc)
                    self._down_since = time.monotonic()
                    continue
                if self._client is None:
                    self._down_since = time.monotonic()
                    continue
            try:
                await self._client.publish(CHANNEL, json.dumps({"type": "camera.status", **status},
                                                               ensure_ascii=False))
                self.published += 1
            except Exception as exc:
                log.warning("Redis publish failed: %s", exc)
                self._client = None
                self._down_since = time.monotonic()
