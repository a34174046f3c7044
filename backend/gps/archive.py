"""Trail archiver (轨迹归档): the Redis trail stream into the ``gps_trail_points`` table.

The gateways append batches of positions to ``citywall:gps:trail``. The archiver reads it with
the consumer group ``archiver`` (XREADGROUP), inserts each read in one bulk INSERT and only then
acknowledges (XACK) the entries, so a crash or restart loses nothing: the entries read but not
acknowledged stay pending and are read again first (XREADGROUP from id 0; entries another
consumer left pending for over a minute are taken over with XAUTOCLAIM). Re-read entries are
checked against the rows already stored, so a retry does not store a point twice.

A trail position of a device the database does not know yet (auto-registered by a gateway that
has not written it yet) gets its device row here.
"""
from __future__ import annotations

import logging
import socket
from datetime import datetime, timezone

import redis
from sqlalchemy import and_, insert, or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from backend.store.db import as_utc, reader
from backend.gps.pipeline import KEY_TRAIL
from backend.gps.position import Position, trail_positions
from backend.store.gps_models import Device, TrailPoint

log = logging.getLogger("citywall.gps.archive")

GROUP = "archiver"
CLAIM_IDLE_MS = 60_000
DEVICES = Device.__table__
POINTS = TrailPoint.__table__


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def ensure_group(r: redis.Redis, stream: str = KEY_TRAIL, group: str = GROUP) -> None:
    """Create the consumer group (from the start of the stream) unless it exists."""
    try:
        r.xgroup_create(stream, group, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def unarchived_from(r: redis.Redis, stream: str = KEY_TRAIL, group: str = GROUP) -> str:
    """The stream id from which entries may not be archived yet ("0" without a group):
    the oldest pending entry, else just after the group's last delivered entry."""
    try:
        groups = r.xinfo_groups(stream)
    except redis.ResponseError:
        return "0"
    info = next((g for g in groups if _text(g["name"]) == group), None)
    if info is None:
        return "0"
    if int(info.get("pending", 0)):
        summary = r.xpending(stream, group)
        if summary and summary.get("min"):
            return _text(summary["min"])
    return "(" + _text(info["last-delivered-id"])


class Archiver:
    """One consumer of the trail stream writing into SQL."""

    def __init__(self, r: redis.Redis, engine: Engine, *, stream: str = KEY_TRAIL, group: str = GROUP,
                 consumer: str | None = None, count: int = 200) -> None:
        self.redis = r
        self.engine = engine
        self.reader = reader(engine)  # its reads take no write lock on SQLite
        self.stream = stream
        self.group = group
        self.consumer = consumer or f"archiver-{socket.gethostname()}"
        self.count = count
        self._device_ids: dict[str, int] = {}
        self._ready = False
        self._recovered = False
        self._last_read = 0  # entries in the last read
        self.archived = 0  # points written by this archiver

    # ------------------------------------------------------------------ reading
    def _prepare(self) -> None:
        if not self._ready:
            ensure_group(self.redis, self.stream, self.group)
            self._ready = True

    def run_once(self, block_ms: int | None = None) -> int:
        """Archive one read of entries; returns the number of points written (0: nothing new)."""
        self._prepare()
        if not self._recovered:  # our own entries read before a restart, not acknowledged
            entries = self._read("0")
            if entries:
                return self._store(entries, recheck=True)
            self._recovered = True
            claimed = self._claim()
            if claimed:
                return self._store(claimed, recheck=True)
        entries = self._read(">", block_ms)
        return self._store(entries, recheck=False) if entries else 0

    def drain(self, max_rounds: int = 50) -> int:
        """Archive until the stream is caught up (or max_rounds reads); returns points written."""
        total = 0
        for _ in range(max_rounds):
            total += self.run_once()
            if self._recovered and self._last_read == 0:
                break
        return total

    def _read(self, start: str, block_ms: int | None = None) -> list[tuple[str, dict | None]]:
        reply = self.redis.xreadgroup(self.group, self.consumer, {self.stream: start}, count=self.count,
                                      block=block_ms)
        entries: list[tuple[str, dict | None]] = []
        for _stream, items in reply or []:
            for entry_id, fields in items:
                entries.append((_text(entry_id), fields))
        self._last_read = len(entries)
        return entries

    def _claim(self) -> list[tuple[str, dict | None]]:
        """Entries another consumer read over a minute ago and never acknowledged."""
        try:
            reply = self.redis.xautoclaim(self.stream, self.group, self.consumer, CLAIM_IDLE_MS,
                                          start_id="0-0", count=self.count)
        except redis.ResponseError:
            return []
        items = reply[1] if reply and len(reply) > 1 else []
        self._last_read = len(items)
        return [(_text(entry_id), fields) for entry_id, fields in items]

    # ------------------------------------------------------------------ writing
    def _store(self, entries: list[tuple[str, dict | None]], recheck: bool) -> int:
        positions: list[Position] = []
        for entry_id, fields in entries:
            if not fields:  # trimmed from the stream before it was archived
                log.warning("trail entry %s was trimmed before it was archived", entry_id)
                continue
            raw = fields.get(b"p", fields.get("p"))
            try:
                positions.extend(trail_positions(raw))
            except (ValueError, TypeError) as exc:
                log.warning("skipping malformed trail entry %s: %s", entry_id, exc)
        rows = self._rows(positions)
        if rows:
            with self.engine.begin() as conn:
                if recheck:
                    rows = self._without_stored(conn, rows)
                for start in range(0, len(rows), 1000):
                    conn.execute(insert(POINTS), rows[start:start + 1000])
        ids = [entry_id for entry_id, _ in entries]
        if ids:
            self.redis.xack(self.stream, self.group, *ids)
        self.archived += len(rows)
        return len(rows)

    def _rows(self, positions: list[Position]) -> list[dict]:
        keys = {p.device for p in positions}
        self._resolve(keys - set(self._device_ids))
        rows = []
        for p in positions:
            device_id = self._device_ids.get(p.device)
            if device_id is None:
                continue
            rows.append({"device_id": device_id, "time": datetime.fromtimestamp(p.time, timezone.utc),
                         "lat": p.lat, "lon": p.lon, "speed": p.speed, "heading": p.heading,
                         "altitude": p.altitude, "valid": bool(p.valid), "alarm": int(p.alarm),
                         "status": int(p.status)})
        return rows

    def _resolve(self, keys: set[str]) -> None:
        """Device ids of device keys, inserting the devices the database does not know yet."""
        if not keys:
            return
        pairs = []
        for key in keys:
            protocol, _, identifier = key.partition(":")
            if protocol in ("jt808", "osmand") and identifier:
                pairs.append((protocol, identifier))
        with self.reader.connect() as conn:
            for chunk in range(0, len(pairs), 200):
                part = pairs[chunk:chunk + 200]
                found = conn.execute(select(DEVICES.c.id, DEVICES.c.protocol, DEVICES.c.identifier).where(
                    or_(*[and_(DEVICES.c.protocol == p, DEVICES.c.identifier == i) for p, i in part]))).all()
                for row in found:
                    self._device_ids[f"{row.protocol}:{row.identifier}"] = row.id
        for protocol, identifier in pairs:
            key = f"{protocol}:{identifier}"
            if key in self._device_ids:
                continue
            try:
                with self.engine.begin() as conn:
                    device_id = conn.execute(insert(DEVICES).values(
                        protocol=protocol, identifier=identifier, name=identifier,
                        kind="person" if protocol == "osmand" else "vehicle", enabled=True,
                        created_at=datetime.now(timezone.utc)).returning(DEVICES.c.id)).scalar_one()
            except IntegrityError:  # a gateway inserted it meanwhile
                with self.reader.connect() as conn:
                    device_id = conn.execute(select(DEVICES.c.id).where(
                        DEVICES.c.protocol == protocol, DEVICES.c.identifier == identifier)).scalar_one()
            log.info("archiver added device %s", key)
            self._device_ids[key] = device_id

    @staticmethod
    def _without_stored(conn, rows: list[dict]) -> list[dict]:
        """Rows whose (device, time) is not stored yet (for entries read a second time)."""
        by_device: dict[int, list[dict]] = {}
        for row in rows:
            by_device.setdefault(row["device_id"], []).append(row)
        kept: list[dict] = []
        for device_id, items in by_device.items():
            low = min(r["time"] for r in items)
            high = max(r["time"] for r in items)
            stored = {as_utc(t).timestamp() for t in conn.execute(select(POINTS.c.time).where(
                POINTS.c.device_id == device_id, POINTS.c.time >= low, POINTS.c.time <= high)).scalars()}
            kept.extend(r for r in items if r["time"].timestamp() not in stored)
        return kept
