"""Device registry (设备登记): which terminals and phones the gateways accept.

``Registry`` keeps the known devices in memory and is all the gateway talks to, so the gateway
runs and is tested without a database. ``SqlRegistry`` fills it from the ``gps_devices`` table,
refreshes it periodically, inserts auto-registered devices and records ``last_seen_at``.

Unknown devices are refused (logged once each, counted) unless auto-registration is on
(``CITYWALL_GPS_AUTOREGISTER=1``, on in the demo). A JT/T 808 terminal is matched by its
exact phone string first, then with leading zeros ignored, so ``013912345678`` (2013 header)
and ``00000000013912345678`` (2019 header) find the same registered device.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import time
from dataclasses import dataclass
from typing import Iterable

from backend.gps.stats import Stats

log = logging.getLogger("citywall.gps.registry")

PROTOCOLS = ("jt808", "osmand")
KINDS = ("vehicle", "person")


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """设备: one GPS terminal (车载终端) or phone (执法终端/巡查员手机)."""

    protocol: str
    identifier: str
    name: str = ""
    kind: str = "vehicle"
    plate: str = ""
    vehicle_type: str = ""
    person: str = ""
    department_id: int | None = None
    enabled: bool = True
    auth_code: str = ""
    id: int | None = None

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if not self.identifier or len(self.identifier) > 64:
            raise ValueError("identifier must be 1..64 characters")

    @property
    def key(self) -> str:
        """The Redis member name: ``jt808:013912345678``."""
        return f"{self.protocol}:{self.identifier}"


def autoregister_from_env() -> bool:
    return os.environ.get("CITYWALL_GPS_AUTOREGISTER", "") in ("1", "true", "yes")


def _alias(protocol: str, identifier: str) -> tuple[str, str] | None:
    if protocol == "jt808":
        stripped = identifier.lstrip("0")
        return (protocol, stripped or "0")
    return None


class Registry:
    """In-memory registry: the interface the gateways use."""

    def __init__(self, devices: Iterable[DeviceInfo] = (), autoregister: bool = False,
                 stats: Stats | None = None, secret: str = "citywall") -> None:
        self.autoregister = autoregister
        self.stats = stats or Stats()
        self._secret = secret.encode()
        self._devices: dict[tuple[str, str], DeviceInfo] = {}
        self._aliases: dict[tuple[str, str], DeviceInfo] = {}
        self._logged_unknown: set[str] = set()
        self.new_devices: list[DeviceInfo] = []  # auto-registered, not yet persisted
        self.last_seen: dict[tuple[str, str], float] = {}
        self.replace_all(devices)

    # ---- contents
    def replace_all(self, devices: Iterable[DeviceInfo]) -> None:
        self._devices = {}
        self._aliases = {}
        for device in devices:
            self._index(device)

    def _index(self, device: DeviceInfo) -> None:
        self._devices[(device.protocol, device.identifier)] = device
        alias = _alias(device.protocol, device.identifier)
        if alias is not None:
            self._aliases[alias] = device

    def put(self, device: DeviceInfo) -> None:
        """Add or replace one device (pushed by the API, or loaded)."""
        old = self._devices.get((device.protocol, device.identifier))
        if old is not None:
            alias = _alias(old.protocol, old.identifier)
            if alias is not None:
                self._aliases.pop(alias, None)
        self._index(device)

    def remove(self, protocol: str, identifier: str) -> None:
        device = self._devices.pop((protocol, identifier), None)
        alias = _alias(protocol, identifier)
        if device is not None and alias is not None:
            self._aliases.pop(alias, None)

    def devices(self) -> list[DeviceInfo]:
        return list(self._devices.values())

    def __len__(self) -> int:
        return len(self._devices)

    # ---- lookups used by the gateways
    def find(self, protocol: str, identifier: str) -> DeviceInfo | None:
        """The registered device (enabled or not), matched exactly or by alias."""
        device = self._devices.get((protocol, identifier))
        if device is None:
            alias = _alias(protocol, identifier)
            if alias is not None:
                device = self._aliases.get(alias)
        return device

    def resolve(self, protocol: str, identifier: str, **hints: object) -> DeviceInfo | None:
        """The enabled device for an incoming message, auto-registering it if allowed.

        Returns None for an unknown (or disabled) device: the caller refuses the message."""
        device = self.find(protocol, identifier)
        if device is None and self.autoregister:
            device = self._auto_register(protocol, identifier, hints)
        if device is None or not device.enabled:
            self.stats.add("unknown_devices")
            if identifier not in self._logged_unknown and len(self._logged_unknown) < 10_000:
                self._logged_unknown.add(identifier)
                log.warning("refused %s device %r: %s", protocol, identifier,
                            "disabled" if device else "not registered")
            return None
        self.touch(device)
        return device

    def touch(self, device: DeviceInfo, when: float | None = None) -> None:
        """Note that the device was heard from (written to last_seen_at by the SQL registry)."""
        self.last_seen[(device.protocol, device.identifier)] = when or time.time()

    def _auto_register(self, protocol: str, identifier: str, hints: dict) -> DeviceInfo | None:
        try:
            device = DeviceInfo(
                protocol=protocol, identifier=identifier,
                name=str(hints.get("name") or identifier)[:100],
                kind="person" if protocol == "osmand" else "vehicle",
                plate=str(hints.get("plate") or "")[:20],
            )
        except ValueError as exc:
            log.warning("cannot auto-register %s %r: %s", protocol, identifier, exc)
            return None
        self._index(device)
        self.new_devices.append(device)
        log.info("auto-registered %s", device.key)
        return device

    def auth_code(self, device: DeviceInfo) -> str:
        """鉴权码 given in 0x8100: the stored one, else one derived from the identifier, so
        every gateway process hands out and accepts the same code without sharing state."""
        if device.auth_code:
            return device.auth_code
        digest = hmac.new(self._secret, device.key.encode(), hashlib.sha256).hexdigest()
        return digest[:16]

    def check_auth(self, device: DeviceInfo, code: str) -> bool:
        return hmac.compare_digest(code.encode(), self.auth_code(device).encode())

    # ---- lifecycle (nothing to do in memory)
    async def run(self) -> None:
        """Background upkeep; the in-memory registry has none."""
        await asyncio.Event().wait()


class SqlRegistry(Registry):
    """Registry backed by the ``gps_devices`` table (backend.store.gps_models.Device)."""

    def __init__(self, engine, autoregister: bool = False, stats: Stats | None = None,
                 secret: str = "citywall", refresh_seconds: float = 30.0) -> None:
        super().__init__((), autoregister, stats, secret)
        self.engine = engine
        self.refresh_seconds = refresh_seconds

    def load(self) -> None:
        """Read every device from the database (blocking)."""
        from sqlalchemy import select
        from sqlalchemy.orm import Session

        from backend.store.gps_models import Device

        with Session(self.engine) as session:
            rows = session.scalars(select(Device)).all()
            devices = [DeviceInfo(
                protocol=row.protocol, identifier=row.identifier, name=row.name or "",
                kind=row.kind, plate=row.plate or "", vehicle_type=row.vehicle_type or "",
                person=row.person or "", department_id=row.department_id, enabled=row.enabled,
                auth_code=row.auth_code or "", id=row.id) for row in rows]
        self.replace_all(devices)

    def sync(self) -> None:
        """Insert auto-registered devices, write last_seen_at, reload (blocking)."""
        new, self.new_devices = self.new_devices, []
        seen, self.last_seen = self.last_seen, {}
        try:
            self._write(new, seen)
        except Exception:
            self.new_devices[:0] = new  # try again at the next sync
            for key, when in seen.items():
                self.last_seen.setdefault(key, when)
            raise
        self.load()

    def _write(self, new: list[DeviceInfo], seen: dict[tuple[str, str], float]) -> None:
        from datetime import datetime, timezone

        from sqlalchemy import select, update
        from sqlalchemy.orm import Session

        from backend.store.gps_models import Device

        with Session(self.engine) as session, session.begin():
            for device in new:
                exists = session.scalar(select(Device.id).where(
                    Device.protocol == device.protocol, Device.identifier == device.identifier))
                if exists is None:
                    session.add(Device(protocol=device.protocol, identifier=device.identifier,
                                       name=device.name, kind=device.kind, plate=device.plate,
                                       enabled=True))
            for (protocol, identifier), when in seen.items():
                session.execute(update(Device).where(
                    Device.protocol == protocol, Device.identifier == identifier,
                ).values(last_seen_at=datetime.fromtimestamp(when, timezone.utc)))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_seconds)
            try:
                await asyncio.to_thread(self.sync)
            except Exception:  # keep serving from memory while the database is away
                log.exception("device registry sync failed")
