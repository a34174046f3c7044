"""The streams HTTP service (视频流服务): signalling, camera status, snapshots, the test page.

Routes (all under /streams/v1):
  GET  /health                       liveness and counts
  GET  /cameras                      every camera with its status (state, online, viewers, fps)
  GET  /cameras/{id}                 one camera
  POST /cameras/{id}/offer           WebRTC offer {sdp, type} -> answer {sdp, type}
  GET  /cameras/{id}/snapshot.jpg    one decoded frame as JPEG
  GET  /test.html, /webrtc-player.js a minimal viewer page for tests
  /conference/..., /conferences/...  video conferences (视频会商), see streams/conference/service.py
                                     (their audio runs in a worker process the conference service
                                     starts and restarts: streams/conference/audio_link.py)
Errors are JSON {"error": {"code", "message", "details"}}.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import av
import cv2
from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription

from streams.auth import DefaultVerifier, TokenVerifier, token_from
from streams.cameras import CameraDirectory, CameraInfo
from streams.conference.service import ConferenceService, ConferenceSettings, add_routes as add_conference_routes
from streams.relay import CameraFeed
from streams.status import StatusPublisher

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
PLAYER_JS = Path(__file__).resolve().parent.parent / "assets" / "webrtc-player.js"


@dataclass
class Settings:
    """Tunables of the service; `from_env` reads CITYWALL_STREAMS_* variables."""

    max_viewers: int = 32
    linger: float = 10.0
    max_offer_bytes: int = 64 * 1024
    max_queue: int = 50
    connect_timeout: float = 30.0
    snapshot_timeout: float = 8.0
    wall_port: int = 8050
    cors_origins: tuple[str, ...] = ()
    redis_url: str = ""
    redis_socket: str = ""
    conference_secret: str = ""  # empty: taken from the viewing verifier's login-token key
    conference_join_limit: int = 10
    conference_linger: float = 30.0
    conference_max_participants: int = 16

    @classmethod
    def from_env(cls, config) -> "Settings":
        def num(name: str, default: float) -> float:
            raw = os.environ.get(name, "")
            try:
                return float(raw) if raw else default
            except ValueError as exc:
                raise SystemExit(f"{name} must be a number, got {raw!r}") from exc

        origins = tuple(o.strip() for o in os.environ.get("CITYWALL_STREAMS_CORS_ORIGINS", "").split(",")
                        if o.strip())
        return cls(
            max_viewers=int(num("CITYWALL_STREAMS_MAX_VIEWERS", 32)),
            linger=num("CITYWALL_STREAMS_LINGER", 10.0),
            wall_port=config.http_port,
            cors_origins=origins,
            redis_url=config.redis_url,
            redis_socket=str(config.redis_socket) if not config.redis_url else "",
            conference_secret=config.secret_key or "",
            conference_join_limit=int(num("CITYWALL_CONFERENCE_JOIN_LIMIT", 10)),
            conference_linger=num("CITYWALL_CONFERENCE_LINGER", 30.0),
            conference_max_participants=int(num("CITYWALL_CONFERENCE_MAX_PARTICIPANTS", 16)),
        )


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details or {}


def error_response(status: int, code: str, message: str, details: dict | None = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message, "details": details or {}}},
                             status=status)


_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 413: "too_large", 429: "too_many"}


@web.middleware
async def errors_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.details)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, _HTTP_CODES.get(exc.status, "http_error"), exc.reason)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "internal error in the streams service")


class StreamsService:
    """Holds the camera feeds, the peer connections and the status publisher."""

    def __init__(self, directory: CameraDirectory, verifier: TokenVerifier, settings: Settings,
                 own_port: int = 8060) -> None:
        self.directory = directory
        self.verifier = verifier
        self.settings = settings
        self.own_port = own_port
        self.feeds: dict[int, CameraFeed] = {}
        self.peers: set[RTCPeerConnection] = set()
        self.publisher = StatusPublisher(settings.redis_url, settings.redis_socket)

    # -- helpers ----------------------------------------------------------------------------
    def origin_allowed(self, origin: str) -> bool:
        if "*" in self.settings.cors_origins or origin in self.settings.cors_origins:
            return True
        try:
            parts = urlsplit(origin)
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return False
        return parts.scheme in ("http", "https") and port in (self.settings.wall_port, self.own_port)

    def authorize(self, request: web.Request) -> None:
        if not self.verifier(token_from(request.headers, request.query)):
            raise ApiError(401, "unauthorized", "a valid viewing token is required "
                           "(Authorization: Bearer <token> or ?token=)")

    async def camera(self, request: web.Request) -> CameraInfo:
        raw = request.match_info["camera_id"]
        try:
            camera_id = int(raw)
        except ValueError:
            raise ApiError(404, "camera_not_found", f"no camera {raw!r}") from None
        camera = await asyncio.to_thread(self.directory.get, camera_id)
        if camera is None:
            raise ApiError(404, "camera_not_found", f"no camera {camera_id}")
        if camera.status != "active":
            raise ApiError(409, "camera_disabled", f"camera {camera_id} is {camera.status}")
        return camera

    def feed(self, camera: CameraInfo) -> CameraFeed:
        feed = self.feeds.get(camera.id)
        if feed is not None and feed.camera.source != camera.source:
            asyncio.get_running_loop().create_task(feed.close())  # the camera was re-pointed
            feed = None
        if feed is None:
            feed = CameraFeed(camera, linger=self.settings.linger, max_queue=self.settings.max_queue,
                              on_change=lambda f: self.publisher.offer(f.status()))
            self.feeds[camera.id] = feed
        return feed

    def status_of(self, camera: CameraInfo) -> dict:
        feed = self.feeds.get(camera.id)
        if feed is not None:
            return feed.status()
        return {**camera.public(), "state": "idle", "online": False, "viewers": 0, "width": None,
                "height": None, "passthrough": None, "fps": 0.0, "reopens": 0, "overflows": 0, "last_error": None}

    # -- handlers ---------------------------------------------------------------------------
    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "feeds": sum(1 for f in self.feeds.values() if f.state != "idle"),
                                  "peers": len(self.peers)})

    async def list_cameras(self, request: web.Request) -> web.Response:
        self.authorize(request)
        cameras = await asyncio.to_thread(self.directory.list_cameras)
        return web.json_response({"cameras": [self.status_of(c) for c in cameras]})

    async def get_camera(self, request: web.Request) -> web.Response:
        self.authorize(request)
        return web.json_response(self.status_of(await self.camera(request)))

    async def offer(self, request: web.Request) -> web.Response:
        self.authorize(request)
        limit = self.settings.max_offer_bytes
        if request.content_length is not None and request.content_length > limit:
            raise ApiError(413, "offer_too_large", f"an offer may be at most {limit} bytes")
        body = await request.content.read(limit + 1)
        if len(body) > limit:
            raise ApiError(413, "offer_too_large", f"an offer may be at most {limit} bytes")
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ApiError(400, "bad_json", "the body must be JSON {\"sdp\": ..., \"type\": \"offer\"}") from None
        if not isinstance(data, dict) or not isinstance(data.get("sdp"), str) or data.get("type") != "offer":
            raise ApiError(400, "bad_offer", "the body must be JSON {\"sdp\": ..., \"type\": \"offer\"}")
        if "m=video" not in data["sdp"]:
            raise ApiError(400, "bad_offer", "the offer has no video section")
        camera = await self.camera(request)
        feed = self.feed(camera)
        if feed.viewers >= self.settings.max_viewers:
            raise ApiError(429, "too_many_viewers", f"camera {camera.id} already has "
                           f"{self.settings.max_viewers} viewers", {"limit": self.settings.max_viewers})
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.peers.add(pc)
        track = feed.subscribe()
        closed = False

        async def cleanup() -> None:
            nonlocal closed
            if closed:
                return
            closed = True
            track.stop()
            self.peers.discard(pc)
            await pc.close()

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await cleanup()

        try:
            transceiver = pc.addTransceiver(track, direction="sendonly")
            h264 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"]
            transceiver.setCodecPreferences(h264)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=data["sdp"], type="offer"))
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
        except Exception as exc:
            await cleanup()
            raise ApiError(400, "bad_offer", f"cannot answer this offer: {exc}") from None
        if "H264" not in pc.localDescription.sdp:
            await cleanup()
            raise ApiError(400, "no_h264", "the offer does not accept H.264 video")

        async def watchdog() -> None:
            await asyncio.sleep(self.settings.connect_timeout)
            if pc.connectionState != "connected":
                await cleanup()

        asyncio.get_running_loop().create_task(watchdog())
        return web.json_response({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type})

    async def snapshot(self, request: web.Request) -> web.Response:
        self.authorize(request)
        camera = await self.camera(request)
        feed = self.feed(camera)
        track = feed.subscribe(role="snapshot")
        try:
            jpeg = await asyncio.wait_for(self._first_jpeg(track), self.settings.snapshot_timeout)
        except asyncio.TimeoutError:
            raise ApiError(503, "camera_unavailable", f"camera {camera.id} sent no picture in "
                           f"{self.settings.snapshot_timeout:.0f} s", {"state": feed.state,
                                                                     "last_error": feed.last_error}) from None
        finally:
            track.stop()
        return web.Response(body=jpeg, content_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @staticmethod
    async def _first_jpeg(track) -> bytes:
        decoder = av.CodecContext.create("h264", "r")
        while True:
            packet, _ = await track.recv_with_flag()

            def decode(p=packet) -> bytes | None:
                for frame in decoder.decode(av.Packet(bytes(p))):
                    ok, buf = cv2.imencode(".jpg", frame.to_ndarray(format="bgr24"),
                                           [cv2.IMWRITE_JPEG_QUALITY, 85])
                    if ok:
                        return buf.tobytes()
                return None

            jpeg = await asyncio.to_thread(decode)
            if jpeg:
                return jpeg

    async def test_page(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / "test.html")

    async def player_js(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(PLAYER_JS, headers={"Content-Type": "text/javascript; charset=utf-8"})

    async def on_startup(self, app: web.Application) -> None:
        self.publisher.start()

    async def on_shutdown(self, app: web.Application) -> None:
        await asyncio.gather(*(pc.close() for pc in list(self.peers)), return_exceptions=True)
        self.peers.clear()
        await asyncio.gather(*(f.close() for f in self.feeds.values()), return_exceptions=True)
        await self.publisher.close()


def create_app(directory: CameraDirectory, verifier: TokenVerifier | None = None,
               settings: Settings | None = None, own_port: int = 8060) -> web.Application:
    """Build the aiohttp application of the streams service."""
    settings = settings or Settings()
    service = StreamsService(directory, verifier or DefaultVerifier(demo=True), settings, own_port)

    @web.middleware
    async def cors_middleware(request: web.Request, handler):
        origin = request.headers.get("Origin")
        allowed = bool(origin) and service.origin_allowed(origin)
        if request.method == "OPTIONS" and origin:
            response: web.StreamResponse = web.Response(status=204 if allowed else 403)
        else:
            response = await handler(request)
        if allowed:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
            response.headers["Access-Control-Max-Age"] = "600"
            response.headers["Vary"] = "Origin"
        return response

    app = web.Application(middlewares=[cors_middleware, errors_middleware],
                          client_max_size=settings.max_offer_bytes * 4)
    app["service"] = service
    r = app.router
    r.add_get("/streams/v1/health", service.health)
    r.add_get("/streams/v1/cameras", service.list_cameras)
    r.add_get("/streams/v1/cameras/{camera_id}", service.get_camera)
    r.add_post("/streams/v1/cameras/{camera_id}/offer", service.offer)
    r.add_get("/streams/v1/cameras/{camera_id}/snapshot.jpg", service.snapshot)
    r.add_get("/streams/v1/test.html", service.test_page)
    r.add_get("/streams/v1/webrtc-player.js", service.player_js)
    app.on_startup.append(service.on_startup)
    app.on_shutdown.append(service.on_shutdown)
    conference = ConferenceService(service, ConferenceSettings(
        secret_key=settings.conference_secret or _login_key(service.verifier),
        join_limit=settings.conference_join_limit, linger=settings.conference_linger,
        max_participants=settings.conference_max_participants))
    app["conference"] = conference
    add_conference_routes(app, conference)
    return app


def _login_key(verifier: TokenVerifier) -> str:
    """The backend secret the viewing verifier checks login tokens with (invitations use the same key)."""
    serializer = getattr(verifier, "_serializer", None)
    keys = getattr(serializer, "secret_keys", None)
    if not keys:
        return ""
    key = keys[-1]
    return key.decode() if isinstance(key, bytes) else str(key)
