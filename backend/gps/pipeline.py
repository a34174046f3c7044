"""Position pipeline (定位数据批量入库): decoded positions in, batched Redis writes out.

Positions from every connection gather in one batch, flushed when it holds ``max_batch``
positions or is ``max_delay`` seconds old, whichever comes first. One flush is one round trip
carrying three commands:

- ``GEOADD citywall:gps:latest lon lat member ...`` (one command, every device of the batch
  with a fix, newest position per device),
- ``XADD citywall:gps:trail MAXLEN ~ N * n <count> p <json>`` (one entry per batch; ``p`` is a
  JSON array of compact arrays, see ``position.TRAIL_FIELDS``),
- nothing else: acknowledgements wait for this round trip, so an acknowledged position is in
  Redis.

About once a second the summary tick writes ``HSET citywall:gps:last device json ...`` for the
devices that changed, publishes their compact summary on ``citywall:gps:summary`` and adds the
counters into the hash ``citywall:gps:stats`` (HINCRBY, so several gateway processes add up).

Commands are packed by hiredis and sent on one dedicated redis-py asyncio connection.
"""
from __future__ import annotations

import asyncio
import json
from collections import Counter, deque
import logging
import time
from typing import Callable

import hiredis
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from backend.gps.position import Position, iso_utc, position_json, summary_item, trail_json
from backend.gps.stats import Stats

log = logging.getLogger("citywall.gps.pipeline")

KEY_LATEST = "citywall:gps:latest"
KEY_TRAIL = "citywall:gps:trail"
KEY_LAST = "citywall:gps:last"
KEY_STATS = "citywall:gps:stats"
KEY_LATENCY = "citywall:gps:latency"  # histogram: field = whole ms from receipt to written
LATENCY_SAMPLE = 4  # one position in this many is timed
CHANNEL_SUMMARY = "citywall:gps:summary"

Callback = Callable[[bool], None]


class PositionPipeline:
    """批量写入 Redis: one writer task, one Redis connection, whole batches per command."""

    def __init__(self, redis: Redis, stats: Stats | None = None, *, max_batch: int = 2000,
                 max_delay: float = 0.02, summary_interval: float = 1.0,
                 trail_maxlen: int = 20_000, max_backlog: int = 200_000) -> None:
        self.redis = redis
        self.stats = stats or Stats()
        self.max_batch = max_batch
        self.max_delay = max_delay
        self.summary_interval = summary_interval
        self.trail_maxlen = trail_maxlen
        self.max_backlog = max_backlog
        self.max_flush = max_batch * 10
        # called after each successful flush, once its callbacks ran (e.g. to send the
        # acknowledgements gathered per connection in one write each)
        self.flush_listeners: list[Callable[[], None]] = []
        self._batch: list[Position] = []
        # (running count of positions submitted up to and including this call, callback)
        self._callbacks: deque[tuple[int, Callback]] = deque()
        self._submitted = 0  # positions ever queued
        self._written = 0  # positions ever written (or given up at close)
        self._started = 0.0
        self._wake = asyncio.Event()
        self._changed: dict[str, Position] = {}
        self._newest: dict[str, float] = {}
        self._conn = None
        self._closing = False
        self._task: asyncio.Task | None = None
        self.last_flush_ms = 0.0
        self.latency_ms: Counter[int] = Counter()  # ms from receipt to Redis write -> positions
        self._latency_reported: Counter[int] = Counter()

    # ------------------------------------------------------------------ intake
    @property
    def backlog(self) -> int:
        return len(self._batch)

    def submit(self, positions: list[Position], callback: Callback | None = None) -> bool:
        """Queue positions; callback(True) once they are in Redis, callback(False) if the
        pipeline shuts down first. Returns False (positions dropped) when the backlog is full."""
        if len(self._batch) + len(positions) > self.max_backlog or self._closing:
            self.stats.add("positions_dropped", len(positions))
            return False
        if not self._batch:
            self._started = time.monotonic()
            self._wake.set()
        self._batch.extend(positions)
        self._submitted += len(positions)
        if callback is not None:
            self._callbacks.append((self._submitted, callback))
        if len(self._batch) >= self.max_batch:
            self._wake.set()
        return True

    # ------------------------------------------------------------------ writer
    def start(self) -> asyncio.Task:
        self._task = asyncio.get_running_loop().create_task(self.run(), name="gps-pipeline")
        return self._task

    async def run(self) -> None:
        """The writer loop: flush on size or age, summary once per interval."""
        next_summary = time.monotonic() + self.summary_interval
        failures = 0
        while True:
            now = time.monotonic()
            batch = self._batch
            if batch and (len(batch) >= self.max_batch or now >= self._started + self.max_delay
                          or self._closing):
                if await self._flush():
                    failures = 0
                else:
                    failures += 1
                    await asyncio.sleep(min(2.0, 0.05 * 2 ** min(failures, 6)))
                now = time.monotonic()
            finished = self._closing and not self._batch
            if now >= next_summary or finished:
                await self._summary()
                next_summary = time.monotonic() + self.summary_interval
            if finished:
                return
            self._wake.clear()
            if self._batch:
                if len(self._batch) >= self.max_batch:
                    continue
                wait = min(self._started + self.max_delay, next_summary) - time.monotonic()
            else:
                wait = next_summary - time.monotonic()
            if wait > 0:
                try:
                    await asyncio.wait_for(self._wake.wait(), wait)
                except TimeoutError:
                    pass

    async def _connection(self):
        if self._conn is None:
            self._conn = await self.redis.connection_pool.get_connection()
        return self._conn

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.disconnect()
            finally:
                await self.redis.connection_pool.release(conn)

    async def _execute(self, commands: list[tuple]) -> list[object]:
        """Send commands in one write, read every reply; ResponseErrors come back as values."""
        conn = await self._connection()
        try:
            await conn.send_packed_command(b"".join(hiredis.pack_command(c) for c in commands),
                                           check_health=False)
            replies = []
            for _ in commands:
                try:
                    replies.append(await conn.read_response())
                except ResponseError as exc:
                    replies.append(exc)
            return replies
        except (RedisError, OSError, asyncio.CancelledError):
            await self._drop_connection()
            raise

    def _commands(self, batch: list[Position]) -> list[tuple]:
        newest = self._newest
        changed = self._changed
        geo: list[object] = ["GEOADD", KEY_LATEST]
        latest: dict[str, Position] = {}
        for p in batch:
            device = p.device
            if p.time >= newest.get(device, 0.0):
                latest[device] = p
        for device, p in latest.items():
            newest[device] = p.time
            changed[device] = p
            if p.valid:
                geo += (p.lon, p.lat, device)
        commands: list[tuple] = []
        if len(geo) > 2:
            commands.append(tuple(geo))
        commands.append(("XADD", KEY_TRAIL, "MAXLEN", "~", self.trail_maxlen, "*",
                         "n", len(batch), "p", trail_json(batch)))
        return commands

    async def _flush(self) -> bool:
        """Write what is queued (up to ``max_flush`` positions) in one round trip, as commands
        of at most max_batch positions each; acknowledge every submission now complete."""
        batch = self._batch[:self.max_flush]
        begun = time.monotonic()
        commands: list[tuple] = []
        for start in range(0, len(batch), self.max_batch):
            commands += self._commands(batch[start:start + self.max_batch])
        try:
            replies = await self._execute(commands)
        except (RedisError, OSError) as exc:
            self.stats.add("redis_errors")
            log.warning("redis write failed (%s); %d positions kept for retry", exc, len(self._batch))
            self._started = time.monotonic() - self.max_delay
            return False
        done = time.time()
        histogram = self.latency_ms
        for p in batch[::LATENCY_SAMPLE]:
            histogram[min(60_000, int((done - p.received) * 1000))] += 1
        del self._batch[:len(batch)]
        if self._batch:
            self._started = time.monotonic() - self.max_delay  # the rest is already due
        self._written += len(batch)
        errors = [r for r in replies if isinstance(r, Exception)]
        if errors:
            self.stats.add("redis_errors", len(errors))
            log.warning("redis refused part of a batch: %s", errors[0])
        self.last_flush_ms = (time.monotonic() - begun) * 1000
        self.stats.add("redis_batches", -(-len(batch) // self.max_batch))
        self.stats.add("positions_written", len(batch))
        callbacks = self._callbacks
        while callbacks and callbacks[0][0] <= self._written:
            try:
                callbacks.popleft()[1](True)
            except Exception:  # a broken connection must not stop the writer
                log.exception("acknowledgement callback failed")
        for listener in self.flush_listeners:
            listener()
        return True

    async def _summary(self) -> None:
        """HSET the latest full position of changed devices, PUBLISH their summary, add stats."""
        changed, self._changed = self._changed, {}
        commands: list[tuple] = []
        if changed:
            last: list[object] = ["HSET", KEY_LAST]
            for device, p in changed.items():
                last += (device, position_json(p))
            commands.append(tuple(last))
            summary = json.dumps({"time": iso_utc(time.time()), "count": len(changed),
                                  "devices": [summary_item(p) for p in changed.values()]},
                                 separators=(",", ":"), ensure_ascii=False)
            commands.append(("PUBLISH", CHANNEL_SUMMARY, summary))
        deltas = self.stats.deltas()
        for name, change in deltas.items():
            commands.append(("HINCRBY", KEY_STATS, name, change))
        latency = self.latency_ms - self._latency_reported
        for bucket, change in latency.items():
            commands.append(("HINCRBY", KEY_LATENCY, bucket, change))
        self._latency_reported = Counter(self.latency_ms)
        if not commands:
            return
        try:
            await self._execute(commands)
        except (RedisError, OSError) as exc:
            log.warning("summary write failed: %s", exc)
            self.stats.restore(deltas)
            self._latency_reported.subtract(latency)
            for device, p in changed.items():  # keep them for the next tick
                self._changed.setdefault(device, p)
            return
        if changed:
            self.stats.add("summaries")

    def latency_percentile(self, q: float) -> float:
        """Receipt-to-written latency in ms at quantile q (0..1) over this process's samples."""
        total = sum(self.latency_ms.values())
        if not total:
            return float("nan")
        seen = 0
        for bucket in sorted(self.latency_ms):
            seen += self.latency_ms[bucket]
            if seen >= q * total:
                return float(bucket)
        return float(max(self.latency_ms))

    async def close(self, timeout: float = 5.0) -> None:
        """Flush what is queued and write a last summary (waiting up to timeout), then release
        the connection. Positions still unwritten get callback(False)."""
        self._closing = True
        self._wake.set()
        task = self._task
        if task is not None:
            try:
                await asyncio.wait_for(task, timeout)
            except (TimeoutError, asyncio.CancelledError):
                log.warning("pipeline closed with %d positions unwritten", len(self._batch))
            except Exception:
                log.exception("pipeline writer failed")
        callbacks, self._callbacks, self._batch = self._callbacks, deque(), []
        for _, callback in callbacks:
            callback(False)
        await self._drop_connection()
