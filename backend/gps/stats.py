"""Gateway counters (网关统计): frames in, frames dropped and why, positions written, connections.

Plain integer counters in one process. ``deltas()`` hands out what changed since the last call,
so several gateway processes can add theirs into one Redis hash with HINCRBY.
"""
from __future__ import annotations

from collections import Counter

COUNTER_NAMES = (
    "connections_total", "connections_open", "connections_idle_closed", "connections_overflow_closed",
    "unknown_devices",
    "frames", "frames_bad_escape", "frames_bad_checksum", "frames_malformed", "frames_oversize",
    "frames_unsupported", "frames_unknown_device", "frames_auth_failed",
    "positions", "positions_invalid", "positions_written", "positions_dropped",
    "registrations", "auths", "heartbeats", "logouts",
    "osmand_requests", "osmand_bad_requests", "osmand_unknown_device",
    "redis_batches", "redis_errors", "summaries",
)


class Stats:
    """Counters of one gateway process."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter({name: 0 for name in COUNTER_NAMES})
        self._reported: Counter[str] = Counter()

    def add(self, name: str, amount: int = 1) -> None:
        self.counts[name] += amount

    def __getitem__(self, name: str) -> int:
        return self.counts[name]

    def snapshot(self) -> dict[str, int]:
        return dict(self.counts)

    def deltas(self) -> dict[str, int]:
        """What changed since the previous call (non-zero entries only)."""
        out = {}
        for name, value in self.counts.items():
            change = value - self._reported[name]
            if change:
                out[name] = change
                self._reported[name] = value
        return out
