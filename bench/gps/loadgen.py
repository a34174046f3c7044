"""JT/T 808 load generator for the GPS benchmark: many terminals, pre-encoded frames.

Each simulated terminal holds one TCP connection and a ring of pre-encoded 0x0200 frames. In
closed-loop mode it keeps ``inflight`` frames unacknowledged; in paced mode every terminal sends
at a fixed share of ``rate``. Replies are counted by result (0 = stored) and the time from
sending a frame to its 0x8001 gives the latency (which covers frame -> Redis, since the
gateway acknowledges after the write).
"""
from __future__ import annotations

import asyncio
import random
import resource
import time
from collections import deque

from backend.gps import jt808

RING = 32  # distinct frames per terminal


def phone_of(index: int) -> str:
    return f"0139{index:08d}"


def terminal_frames(index: int, base_time: float, ring: int = RING,
                    time_step: float = 1.0) -> list[bytes]:
    """``ring`` location frames walking near the demo city centre; fix times base_time + k *
    time_step (a ring wraps back to older fixes, which the pipeline stores but does not show)."""
    rnd = random.Random(index)
    lat, lon = 22.5 + rnd.random() * 0.2, 114.0 + rnd.random() * 0.2
    phone = phone_of(index)
    out = []
    mileage = rnd.randrange(1000, 100000)
    for k in range(ring):
        items = (jt808.encode_item(0x01, (mileage + k).to_bytes(4, "big"))
                 + jt808.encode_item(0x30, bytes((20 + k % 10,)))
                 + jt808.encode_item(0x31, bytes((8 + k % 5,))))
        body = jt808.encode_location(lat + k * 1e-4, lon + k * 1e-4, base_time + k * time_step,
                                     30.0 + k % 32,
                                     (k * 11) % 360, 10, items=items)
        out.append(jt808.encode_message(jt808.LOCATION, phone, k, body))
    return out


class BenchTerminal(asyncio.Protocol):
    def __init__(self, gen: "LoadGenerator", index: int, frames: list[bytes]) -> None:
        self.gen = gen
        self.index = index
        ring = b"".join(frames)
        self.wire = ring + ring  # doubled, so a slice never wraps
        self.offsets = [0]
        for f in frames + frames:
            self.offsets.append(self.offsets[-1] + len(f))
        self.next = 0
        self.ring = len(frames)
        self.sent_at: deque[float] = deque()
        self.acked = 0
        self.failed = 0
        self.rest = b""
        self.transport: asyncio.Transport | None = None
        self.connected = asyncio.get_running_loop().create_future()

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.connected.set_result(True)

    def connection_lost(self, exc) -> None:
        self.transport = None
        self.gen.lost += 1

    def send(self, count: int) -> None:
        if self.transport is None or count <= 0:
            return
        start = self.next
        self.transport.write(self.wire[self.offsets[start]:self.offsets[start + count]])
        self.next = (start + count) % self.ring
        now = time.perf_counter()
        self.sent_at.extend([now] * count)
        self.gen.sent += count

    def data_received(self, data: bytes) -> None:
        if self.rest:
            data = self.rest + data
        parts = data.split(b"\x7e")
        self.rest = parts.pop()
        ok = bad = 0
        for p in parts:
            if len(p) < 8:
                continue
            result = p[-3] if p[-2] == 0x7D else p[-2]
            if result == 0:
                ok += 1
            else:
                bad += 1
        n = ok + bad
        if not n:
            return
        now = time.perf_counter()
        gen = self.gen
        sent_at = self.sent_at
        for _ in range(n):
            t = sent_at.popleft()
            gen.ack_count += 1
            if gen.ack_count % gen.sample_every == 0 and gen.measuring:
                gen.latencies.append(now - t)
        self.acked += ok
        self.failed += bad
        if gen.measuring:
            gen.window_acked += ok
        if gen.closed_loop and gen.running:
            self.send(n)


class LoadGenerator:
    """Runs in its own process; owns a slice of the terminals."""

    def __init__(self, host: str, port: int, indexes: range, *, inflight: int = 20,
                 rate: float = 0.0, sample_every: int = 8, ring: int = RING,
                 time_step: float = 1.0) -> None:
        self.host, self.port = host, port
        self.indexes = indexes
        self.ring, self.time_step = ring, time_step
        self.inflight = min(inflight, ring)
        self.rate = rate
        self.closed_loop = rate <= 0
        self.sample_every = sample_every
        self.terminals: list[BenchTerminal] = []
        self.sent = 0
        self.ack_count = 0
        self.window_acked = 0
        self.lost = 0
        self.latencies: list[float] = []
        self.running = False
        self.measuring = False

    async def connect(self) -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        loop = asyncio.get_running_loop()
        base = time.time()
        wave = 500
        ids = list(self.indexes)
        for start in range(0, len(ids), wave):
            protos = [BenchTerminal(self, i, terminal_frames(i, base, self.ring, self.time_step))
                      for i in ids[start:start + wave]]
            await asyncio.gather(*(loop.create_connection(lambda p=p: p, self.host, self.port)
                                   for p in protos))
            self.terminals.extend(protos)

    async def run(self, seconds: float, warmup: float = 1.0) -> dict:
        self.running = True
        if self.closed_loop:
            for t in self.terminals:
                t.send(self.inflight)
            pacer = None
        else:
            pacer = asyncio.get_running_loop().create_task(self._pace())
        await asyncio.sleep(warmup)
        self.measuring = True
        begin = time.perf_counter()
        await asyncio.sleep(seconds)
        self.measuring = False
        window = time.perf_counter() - begin
        self.running = False
        if pacer is not None:
            pacer.cancel()
        # drain: wait for every sent frame to be answered (or give up after 10 s)
        deadline = time.perf_counter() + 10.0
        while time.perf_counter() < deadline and any(t.sent_at for t in self.terminals):
            await asyncio.sleep(0.05)
        unanswered = sum(len(t.sent_at) for t in self.terminals)
        return {
            "window_s": window,
            "window_acked": self.window_acked,
            "sent": self.sent,
            "acked": {t.index: t.acked for t in self.terminals},
            "failed": sum(t.failed for t in self.terminals),
            "unanswered": unanswered,
            "lost_connections": self.lost,
            "latencies": self.latencies,
        }

    async def _pace(self) -> None:
        """Open loop: every 50 ms, send rate/20 frames spread over the terminals."""
        tick = 0.05
        per_tick = self.rate * tick
        carry = 0.0
        cursor = 0
        n = len(self.terminals)
        next_at = time.perf_counter()
        while self.running:
            carry += per_tick
            count = int(carry)
            carry -= count
            full, extra = divmod(count, n)
            if full:
                for t in self.terminals:
                    t.send(full)
            for _ in range(extra):
                self.terminals[cursor].send(1)
                cursor = (cursor + 1) % n
            next_at += tick
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))

    async def close(self) -> None:
        for t in self.terminals:
            if t.transport is not None:
                t.transport.close()
        await asyncio.sleep(0.1)


def run_loadgen(host: str, port: int, first: int, count: int, seconds: float, inflight: int,
                rate: float, start_event, result_queue, ring: int = RING,
                time_step: float = 1.0) -> None:
    """Process entry: connect, wait for the go signal, run, report through the queue."""
    async def main() -> None:
        gen = LoadGenerator(host, port, range(first, first + count), inflight=inflight, rate=rate,
                            ring=ring, time_step=time_step)
        await gen.connect()
        result_queue.put({"connected": len(gen.terminals)})
        await asyncio.get_running_loop().run_in_executor(None, start_event.wait)
        result = await gen.run(seconds)
        await gen.close()
        result_queue.put(result)

    asyncio.run(main())
