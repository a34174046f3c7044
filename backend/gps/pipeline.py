"""Position pipeline (定位数据批量入库): decoded positions in, batched Redis writes out.

Positions from every connection gather in one queue, flushed when it holds ``max_batch``
positions or its oldest is ``max_delay`` seconds old. One flush is one round trip carrying, per
slice of at most ``max_batch`` positions:

- ``GEOADD citywall:gps:latest lon lat member ...``: one command, the newest fix of every device
  of the slice (positions without a fix, and fixes older than one already stored, are skipped),
- ``XADD citywall:gps:trail MAXLEN ~ N * n <count> p <json>``: one entry per slice; ``p`` is a
  JSON array of compact arrays in ``position.TRAIL_FIELDS`` order.

Acknowledgements wait for that round trip, so an acknowledged position is in Redis. Every
``summary_interval`` (``SUMMARY_INTERVAL``, 0.5 s: positions reach the wall screens within about a
second, bench/gps/to_screen.py) a summary task prepares ``HSET citywall:gps:last device json ...`` for the devices that
changed, the ``PUBLISH citywall:gps:summary`` of their compact summary and ``HINCRBY`` of the
counters (``citywall:gps:stats``) and latency histogram (``citywall:gps:latency``); the writer
sends them with its next flush. Commands are packed by hiredis and sent on one dedicated
redis-py asyncio connection; when Redis is away the queue is kept (up to ``max_backlog``) and
retried with backoff.
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

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
from backend.gps.stats import Stats

log = logging.getLogger("citywall.gps.pipeline")

KEY_LATEST = "citywall:gps:latest"
KEY_TRAIL = "citywall:gps:trail"
KEY_LAST = "citywall:gps:last"
KEY_STATS = "citywall:gps:stats"
KEY_LATENCY = "citywall:gps:latency"  # histogram of ms from receipt to written (latency_bucket)
LATENCY_SAMPLE = 4  # one position in this many is timed
CHANNEL_SUMMARY = "citywall:gps:summary"
SUMMARY_INTERVAL = 0.5  # seconds between two summaries (coalesced: each device once, its newest fix)

Callback = Callable[[bool], None]


def latency_bucket(ms: float) -> int:
    """Histogram bucket (its lower bound in ms): 1 ms wide below 100 ms, 10 ms below 1 s,
    100 ms below 60 s; everything slower lands in 60000."""
    whole = int(ms)
    if whole < 100:
        return max(whole, 0)
    if whole < 1000:
        return whole - whole % 10
    return min(whole - whole % 100, 60_000)


class PositionPipeline:
    """批量写入 Redis: one writer task, one Redis connection, whole batches per command."""

    def __init__(self, redis: Redis, stats: Stats | None = None, *, max_batch: int = 2000,
                 max_delay: float = 0.02, summary_interval: float = SUMMARY_INTERVAL,
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
        self._summary_task: asyncio.Task | None = None
        self._extra: list[tuple] = []  # summary commands waiting for the writer
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
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self.run(), name="gps-pipeline")
        self._summary_task = loop.create_task(self._summary_loop(), name="gps-summary")
        return self._task

    async def run(self) -> None:
        """The writer loop: flush on size or age (with any summary commands waiting)."""
        failures = 0
        while True:
            now = time.monotonic()
            batch = self._batch
            if self._extra or (batch and (len(batch) >= self.max_batch or self._closing
                                          or now >= self._started + self.max_delay)):
                if await self._flush():
                    failures = 0
                else:
                    failures += 1
                    await asyncio.sleep(min(2.0, 0.05 * 2 ** min(failures, 6)))
                continue
            if self._closing:  # everything written: a last summary, then stop
                self._extra = await self._summary_commands(slice_pause=False)
                if self._extra:
                    await self._flush()
                return
            self._wake.clear()
            wait = self._started + self.max_delay - time.monotonic() if batch else 3600.0
            if wait > 0:
                try:
                    await asyncio.wait_for(self._wake.wait(), wait)
                except TimeoutError:
                    pass

    async def _summary_loop(self) -> None:
        """Once per interval, prepare the summary commands and hand them to the writer."""
        while True:
            await asyncio.sleep(self.summary_interval)
            if self._extra or self._closing:
                continue  # the previous summary is not written yet (Redis away)
            commands = await self._summary_commands()
            if commands:
                self._extra = commands
                self._wake.set()

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

    def _commands(self, batch: list[Position], changed: dict[str, Position]) -> list[tuple]:
        """GEOADD + XADD for one slice; the newest fix per device goes into changed."""
        newest = self._newest
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
        extra = self._extra
        commands: list[tuple] = list(extra)
        changed: dict[str, Position] = {}
        for start in range(0, len(batch), self.max_batch):
            commands += self._commands(batch[start:start + self.max_batch], changed)
        try:
            replies = await self._execute(commands)
        except (RedisError, OSError) as exc:
            self.stats.add("redis_errors")
            log.warning("redis write failed (%s); %d positions kept for retry", exc, len(self._batch))
            self._started = time.monotonic() - self.max_delay
            return False
        self._changed.update(changed)  # for the next summary: only what is stored
        if extra:
            self._extra = []
            if any(c[0] == "PUBLISH" for c in extra):
                self.stats.add("summaries")
        done = time.time()
        histogram = self.latency_ms
        for p in batch[::LATENCY_SAMPLE]:
            histogram[latency_bucket((done - p.received) * 1000)] += 1
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

    async def _summary_commands(self, slice_pause: bool = True) -> list[tuple]:
        """HSET of the latest full position of each changed device, the PUBLISH of their
        summary, HINCRBY of the counters and latency histogram. Built in slices, letting the
        loop serve connections in between (10,000 devices take a while)."""
        changed, self._changed = self._changed, {}
        commands: list[tuple] = []
        if changed:
            last: list[object] = ["HSET", KEY_LAST]
            items: list[str] = []
            positions = list(changed.values())
            for start in range(0, len(positions), 500):
                part = positions[start:start + 500]
                for p in part:
                    last += (p.device, position_json(p))
                items.append(_dumps([summary_item(p) for p in part])[1:-1])
                if slice_pause:
                    await asyncio.sleep(0)
            commands.append(tuple(last))
            summary = '{"time":"%s","count":%d,"devices":[%s]}' % (
                iso_utc(time.time()), len(changed), ",".join(items))
            commands.append(("PUBLISH", CHANNEL_SUMMARY, summary))
        for name, change in self.stats.deltas().items():
            commands.append(("HINCRBY", KEY_STATS, name, change))
        latency = self.latency_ms - self._latency_reported
        for bucket, change in latency.items():
            commands.append(("HINCRBY", KEY_LATENCY, bucket, change))
        self._latency_reported = Counter(self.latency_ms)
        return commands

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
        if self._summary_task is not None:
            self._summary_task.cancel()
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
