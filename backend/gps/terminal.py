"""Device simulators (模拟终端): a JT/T 808 terminal over TCP and an OsmAnd phone over HTTP.

The demo drives vehicles along the demo city's roads with ``Terminal.drive`` and inspectors'
phones with ``osmand_report``; tests and the benchmark use the same code.
"""
from __future__ import annotations

import asyncio
import math
import time
from typing import Iterable, Iterator
from urllib.parse import urlencode

from backend.gps import jt808

EARTH_RADIUS_M = 6_371_008.8


def distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance in metres between two (lat, lon) points."""
    lat1, lon1, lat2, lon2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def bearing_deg(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Initial bearing from a to b, degrees clockwise from north."""
    lat1, lon1, lat2, lon2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    y = math.sin(lon2 - lon1) * math.cos(lat2)
    x = math.cos(lat1) * math.sin(lat2) - math.sin(lat1) * math.cos(lat2) * math.cos(lon2 - lon1)
    return math.degrees(math.atan2(y, x)) % 360.0


def walk(path: Iterable[tuple[float, float]], step_m: float) -> Iterator[tuple[float, float, float]]:
    """Points every step_m metres along a polyline of (lat, lon): yields (lat, lon, heading).

    The first vertex comes first and the last vertex last."""
    if step_m <= 0:
        raise ValueError("step must be positive")
    points = list(path)
    if not points:
        raise ValueError("path is empty")
    heading = 0.0
    carried = 0.0  # metres walked since the last yielded point
    yield points[0][0], points[0][1], bearing_deg(points[0], points[1]) if len(points) > 1 else 0.0
    for a, b in zip(points, points[1:]):
        length = distance_m(a, b)
        heading = bearing_deg(a, b) if length > 0 else heading
        offset = step_m - carried
        while offset <= length:
            f = offset / length
            yield a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f, heading
            offset += step_m
        carried = length - (offset - step_m)
    if len(points) > 1 and carried > 1e-6:
        yield points[-1][0], points[-1][1], heading


class Terminal:
    """模拟车载终端: register (注册), authenticate (鉴权), heartbeat (心跳), report (位置汇报)."""

    def __init__(self, phone: str, host: str = "127.0.0.1", port: int = 5015, *,
                 version: int | None = None, plate: str = "", model: str = "CW-SIM",
                 terminal_id: str = "", timeout: float = 10.0) -> None:
        size = 20 if version is not None else 12
        if not phone.isdigit() or len(phone) > size:
            raise ValueError(f"phone must be up to {size} digits")
        self.phone = phone.rjust(size, "0")
        self.host, self.port = host, port
        self.version = version
        self.plate = plate
        self.model = model
        self.terminal_id = terminal_id or self.phone[-7:]
        self.timeout = timeout
        self.serial = 0
        self.auth_code = ""
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._waiting: dict[tuple[int, int], asyncio.Future] = {}
        self._read_task: asyncio.Task | None = None
        self.received: list[jt808.Message] = []  # downlink messages other than replies

    async def connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        self._read_task = asyncio.get_running_loop().create_task(self._read_loop())

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            try:
                await self._writer.wait_closed()
            except OSError:
                pass
        if self._read_task is not None:
            self._read_task.cancel()
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ConnectionError("terminal closed"))

    async def __aenter__(self) -> "Terminal":
        await self.connect()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def _read_loop(self) -> None:
        rest = b""
        assert self._reader is not None
        try:
            while True:
                data = await self._reader.read(65536)
                if not data:
                    break
                frames, rest = jt808.split_frames(rest + data)
                for raw in frames:
                    try:
                        message = jt808.decode_frame(raw)
                    except jt808.FrameError:
                        continue
                    self._dispatch(message)
        finally:
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(ConnectionError("connection closed by the platform"))

    def _dispatch(self, message: jt808.Message) -> None:
        if message.header.msg_id == jt808.PLATFORM_REPLY:
            reply = jt808.decode_general_reply(message.body)
            key = (reply.reply_id, reply.reply_serial)
            value: object = reply.result
        elif message.header.msg_id == jt808.REGISTER_REPLY:
            reply_serial, result, code = jt808.decode_register_reply(message.body)
            key = (jt808.REGISTER, reply_serial)
            value = (result, code)
        else:
            self.received.append(message)
            return
        future = self._waiting.pop(key, None)
        if future is not None and not future.done():
            future.set_result(value)

    def _next_serial(self) -> int:
        serial = self.serial
        self.serial = (self.serial + 1) & 0xFFFF
        return serial

    def encode(self, msg_id: int, body: bytes = b"", serial: int | None = None) -> bytes:
        """A frame from this terminal (uses and advances the serial unless given)."""
        return jt808.encode_message(msg_id, self.phone, self._next_serial() if serial is None else serial,
                                    body, self.version)

    async def request(self, msg_id: int, body: bytes = b"") -> object:
        """Send one message and wait for the platform's reply to it."""
        if self._writer is None:
            raise ConnectionError("not connected")
        serial = self._next_serial()
        future = asyncio.get_running_loop().create_future()
        self._waiting[(msg_id, serial)] = future
        self._writer.write(jt808.encode_message(msg_id, self.phone, serial, body, self.version))
        await self._writer.drain()
        return await asyncio.wait_for(future, self.timeout)

    async def register(self, province: int = 0, city: int = 0, plate_color: int = 1) -> tuple[int, str]:
        """0x0100 -> (result, auth code); the code is kept for authenticate()."""
        body = jt808.encode_register(jt808.Registration(
            province, city, "CWSIM", self.model, self.terminal_id, plate_color if self.plate else 0,
            self.plate), self.version is not None)
        result, code = await self.request(jt808.REGISTER, body)  # type: ignore[misc]
        if result == jt808.REGISTER_OK:
            self.auth_code = code
        return result, code

    async def authenticate(self, code: str | None = None) -> int:
        body = jt808.encode_auth(jt808.Authentication(code if code is not None else self.auth_code,
                                                      self.phone[-15:], "citywall-sim"),
                                 self.version is not None)
        return await self.request(jt808.AUTH, body)  # type: ignore[return-value]

    async def heartbeat(self) -> int:
        return await self.request(jt808.HEARTBEAT)  # type: ignore[return-value]

    async def logout(self) -> int:
        return await self.request(jt808.LOGOUT)  # type: ignore[return-value]

    async def report(self, lat: float, lon: float, *, speed: float = 0.0, heading: float = 0.0,
                     when: float | None = None, alarm: int = 0, altitude: int = 0,
                     mileage_km: float | None = None) -> int:
        """0x0200 location report; returns the 0x8001 result (0 = stored)."""
        items = b""
        if mileage_km is not None:
            items = jt808.encode_item(0x01, round(mileage_km * 10).to_bytes(4, "big"))
        body = jt808.encode_location(lat, lon, time.time() if when is None else when, speed,
                                     int(heading), altitude, alarm, items=items)
        return await self.request(jt808.LOCATION, body)  # type: ignore[return-value]

    async def report_batch(self, points: list[tuple[float, float, float]], backfill: bool = False) -> int:
        """0x0704 batch of (lat, lon, epoch) points; returns the 0x8001 result."""
        body = jt808.encode_batch([jt808.encode_location(lat, lon, when) for lat, lon, when in points],
                                  1 if backfill else 0)
        return await self.request(jt808.BATCH_LOCATION, body)  # type: ignore[return-value]

    async def start(self) -> bool:
        """Register and authenticate; True when the platform accepted both."""
        result, _ = await self.register()
        return result == jt808.REGISTER_OK and await self.authenticate() == jt808.RESULT_OK

    async def drive(self, path: Iterable[tuple[float, float]], speed_kmh: float = 30.0,
                    interval_s: float = 10.0, *, time_scale: float = 1.0,
                    heartbeat_every: int = 0) -> int:
        """Report positions along a path at speed_kmh, one every interval_s of simulated time.

        time_scale > 1 runs faster than real time (the reported times stay realistic).
        Returns the number of positions the platform acknowledged."""
        step = speed_kmh / 3.6 * interval_s
        when = time.time()
        acknowledged = 0
        for count, (lat, lon, heading) in enumerate(walk(path, max(step, 0.1))):
            if await self.report(lat, lon, speed=speed_kmh, heading=heading, when=when) == 0:
                acknowledged += 1
            if heartbeat_every and count % heartbeat_every == heartbeat_every - 1:
                await self.heartbeat()
            when += interval_s
            await asyncio.sleep(interval_s / time_scale)
        return acknowledged


def osmand_query(identifier: str, lat: float, lon: float, *, timestamp: float | None = None,
                 speed_knots: float | None = None, bearing: float | None = None,
                 altitude: float | None = None, accuracy: float | None = None,
                 batt: float | None = None, **extra: object) -> str:
    """The query string a Traccar Client sends (``id=..&lat=..&lon=..&timestamp=..``)."""
    params: dict[str, object] = {"id": identifier, "lat": lat, "lon": lon,
                                 "timestamp": int(time.time() if timestamp is None else timestamp)}
    for key, value in (("speed", speed_knots), ("bearing", bearing), ("altitude", altitude),
                       ("accuracy", accuracy), ("batt", batt)):
        if value is not None:
            params[key] = value
    params.update(extra)
    return urlencode(params)


async def osmand_report(url: str, identifier: str, lat: float, lon: float, *, session=None,
                        json_form: bool = False, **fields: object) -> int:
    """Send one position like an inspector's phone (巡查员手机); returns the HTTP status.

    The query form is POSTed with its parameters in the URL (as Traccar Client does); with
    json_form the Traccar Client 9 JSON body is sent instead."""
    import aiohttp

    own = session is None
    session = session or aiohttp.ClientSession()
    try:
        if json_form:
            stamp = fields.get("timestamp")
            when = time.time() if stamp is None else float(stamp)  # type: ignore[arg-type]
            coords: dict[str, object] = {"latitude": lat, "longitude": lon}
            for key in ("speed", "heading", "altitude", "accuracy"):
                if fields.get(key) is not None:
                    coords[key] = fields[key]
            body = {"device_id": identifier, "location": {
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when)),
                "coords": coords, "is_moving": bool(fields.get("speed")),
                "battery": {"level": fields.get("battery", 1.0), "is_charging": False}}}
            async with session.post(url, json=body) as response:
                return response.status
        query = osmand_query(identifier, lat, lon, **fields)  # type: ignore[arg-type]
        async with session.post(f"{url.rstrip('/')}/?{query}") as response:
            return response.status
    finally:
        if own:
            await session.close()
