"""OsmAnd HTTP gateway (手机定位接入) on aiohttp: Traccar Client and OsmAnd apps post here.

``GET /?id=..&lat=..`` , ``POST /`` with a form body, ``POST /`` with JSON. Answers 200 once the
position is written to Redis; 400 with a JSON error for bad input or (query/form) an unknown
device; 404 for an unknown device in the JSON form (as Traccar does); 503 when the pipeline
cannot take more.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from aiohttp import web

from backend.gps import osmand
from backend.gps.pipeline import PositionPipeline
from backend.gps.registry import Registry
from backend.gps.stats import Stats

log = logging.getLogger("citywall.gps.osmand")

MAX_BODY = 64 * 1024


def _error(status: int, code: str, message: str) -> web.Response:
    body = {"error": {"code": code, "message": message, "details": {}}}
    return web.json_response(body, status=status)


class OsmandServer:
    """The HTTP endpoint; shares registry, pipeline and counters with the JT/T 808 gateway."""

    def __init__(self, registry: Registry, pipeline: PositionPipeline, stats: Stats | None = None,
                 *, tz: str = "Asia/Shanghai", write_timeout: float = 10.0) -> None:
        self.registry = registry
        self.pipeline = pipeline
        self.stats = stats or pipeline.stats
        self.tz = ZoneInfo(tz)
        self.write_timeout = write_timeout
        self.last_location: dict[str, tuple[float, float]] = {}
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_route("GET", "/{tail:.*}", self.handle)
        app.router.add_route("POST", "/{tail:.*}", self.handle)
        return app

    async def start(self, host: str = "0.0.0.0", port: int = 5055, reuse_port: bool = False) -> int:
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_port=reuse_port or None, backlog=1024)
        await site.start()
        return site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _read(self, request: web.Request) -> osmand.Report:
        """The request in any of its three forms -> Report (ValueError on bad input)."""
        if request.query:
            ident = request.query.get("id") or request.query.get("deviceid") or ""
            return osmand.parse_params(request.query, tz=self.tz,
                                       last=self.last_location.get(ident))
        if request.method != "POST":
            raise ValueError("no parameters: send id, lat, lon and timestamp")
        raw = await request.read()  # bounded by client_max_size (413 beyond)
        if request.content_type == "application/json":
            try:
                data = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                raise ValueError("body is not valid JSON") from None
            ident = str(data.get("device_id", "")) if isinstance(data, dict) else ""
            return osmand.parse_json(data, last=self.last_location.get(ident))
        # a form body, whatever content type the client declared
        pairs = parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
        if not pairs:
            raise ValueError("no parameters: send id, lat, lon and timestamp")
        form = dict(pairs)
        ident = form.get("id") or form.get("deviceid") or ""
        return osmand.parse_params(pairs, tz=self.tz, last=self.last_location.get(ident))

    async def handle(self, request: web.Request) -> web.Response:
        stats = self.stats
        stats.add("osmand_requests")
        try:
            report = await self._read(request)
        except web.HTTPRequestEntityTooLarge:
            stats.add("osmand_bad_requests")
            return _error(413, "too_large", f"body larger than {MAX_BODY} bytes")
        except ValueError as exc:
            stats.add("osmand_bad_requests")
            return _error(400, "bad_request", str(exc))
        device = self.registry.resolve("osmand", report.identifier)
        if device is None:
            stats.add("osmand_unknown_device")
            status = 404 if report.json_form else 400
            return _error(status, "unknown_device", f"device {report.identifier!r} is not registered")
        received = time.time()
        positions = [p._replace(device=device.key, received=received)
                     for p in report.positions]
        stats.add("positions", len(positions))
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

        def written(ok: bool) -> None:
            if not done.done():
                done.set_result(ok)

        if not self.pipeline.submit(positions, written):
            return _error(503, "busy", "position store is busy, retry later")
        try:
            ok = await asyncio.wait_for(asyncio.shield(done), self.write_timeout)
        except TimeoutError:
            ok = False
        if not ok:
            return _error(503, "unavailable", "position could not be stored, retry later")
        last = positions[-1]
        self.last_location[report.identifier] = (last.lat, last.lon)
        return web.Response(status=200)
