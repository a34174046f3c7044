"""One feed per camera, fanned out to every viewer (一路拉流，多路分发).

`CameraFeed` pulls its camera only while someone watches: the first subscriber starts the source,
the last one leaving starts a linger timer that stops it. A failed source is reopened with backoff;
the viewers' tracks stay, so their pages recover without a reload. Every viewer gets the same
encoded packets through a bounded queue that, on overflow, flushes and waits for the next keyframe.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from fractions import Fraction
from typing import Callable

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from streams.cameras import CameraInfo
from streams.sources import Source, SourceError, open_source

log = logging.getLogger(__name__)

RTP_CLOCK = 90_000
TIME_BASE = Fraction(1, RTP_CLOCK)


class PacketTrack(MediaStreamTrack):
    """A viewer's track: hands out the camera's shared H.264 packets (no per-viewer encoder)."""

    kind = "video"

    def __init__(self, feed: "CameraFeed", max_queue: int, role: str = "viewer") -> None:
        super().__init__()
        self.feed = feed
        self.role = role
        self.max_queue = max_queue
        self._queue: collections.deque[tuple[av.Packet, bool]] = collections.deque()
        self._ready = asyncio.Event()
        self._waiting_keyframe = True
        self.packets_sent = 0
        self.overflows = 0
        self.started_at = time.monotonic()

    def push(self, packet: av.Packet, keyframe: bool) -> None:
        """Called by the feed on the event loop for every packet."""
        if self.readyState != "live":
            return
        if self._waiting_keyframe:
            if not keyframe:
                return
            self._waiting_keyframe = False
        if len(self._queue) >= self.max_queue:
            self._queue.clear()  # a slow viewer: drop everything up to the next keyframe
            self.overflows += 1
            self.feed.overflows += 1
            if not keyframe:
                self._waiting_keyframe = True
                self.feed.request_keyframe()
                return
        self._queue.append((packet, keyframe))
        self._ready.set()

    def resync(self) -> None:
        """The source was reopened: start again from its next keyframe."""
        self._queue.clear()
        self._waiting_keyframe = True

    async def recv(self) -> av.Packet:  # type: ignore[override]
        while not self._queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        packet, _ = self._queue.popleft()
        self.packets_sent += 1
        return packet

    async def recv_with_flag(self) -> tuple[av.Packet, bool]:
        """Like recv, also telling whether the packet is a keyframe (for snapshots)."""
        while not self._queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        return self._queue.popleft()

    def stop(self) -> None:
        if self.readyState == "live":
            super().stop()
            self._ready.set()
            self.feed.unsubscribe(self)


class CameraFeed:
    """The single pull of one camera and its subscribers."""

    def __init__(
        self,
        camera: CameraInfo,
        *,
        linger: float = 10.0,
        max_queue: int = 50,
        on_change: Callable[["CameraFeed"], None] | None = None,
        source_factory: Callable[[CameraInfo], Source] | None = None,
        max_backoff: float = 10.0,
    ) -> None:
        self.camera = camera
        self.linger = linger
        self.max_queue = max_queue
        self.max_backoff = max_backoff
        self._on_change = on_change
        self._source_factory = source_factory or _default_source
        self.tracks: set[PacketTrack] = set()
        self.state = "idle"  # idle | starting | online | offline
        self.last_error: str | None = None
        self.info: dict = {}
        self.packets = 0
        self.reopens = 0
        self.overflows = 0  # viewer queue overflows (slow viewers), counted over the feed's life
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._stop_session: threading.Event | None = None
        self._source: Source | None = None
        self._linger_handle: asyncio.TimerHandle | None = None
        self._pts_offset = 0
        self._session_first: float | None = None
        self._last_pts = -1
        self._epoch = time.monotonic()
        self._recent: collections.deque[float] = collections.deque(maxlen=50)
        self._last_keyframe_request = 0.0
        self._delivered = False

    # -- viewers ---------------------------------------------------------------------------
    @property
    def viewers(self) -> int:
        return sum(1 for t in self.tracks if t.role == "viewer")

    def subscribe(self, role: str = "viewer") -> PacketTrack:
        """Add a subscriber (starting the pull if needed); it starts at the next keyframe."""
        self._loop = asyncio.get_running_loop()
        track = PacketTrack(self, self.max_queue, role)
        self.tracks.add(track)
        if self._linger_handle:
            self._linger_handle.cancel()
            self._linger_handle = None
        if self._task is None or self._task.done():
            self._task = self._loop.create_task(self._supervise(), name=f"camera-{self.camera.id}")
        self.request_keyframe()
        self._changed()
        return track

    def unsubscribe(self, track: PacketTrack) -> None:
        if track not in self.tracks:
            return
        self.tracks.discard(track)
        if not self.tracks and self._loop and self._task and not self._task.done():
            if self._linger_handle:
                self._linger_handle.cancel()
            self._linger_handle = self._loop.call_later(self.linger, self._stop_if_unwatched)
        self._changed()

    def request_keyframe(self) -> None:
        """Ask the source for an IDR soon (only an encoding source can honour it); rate-limited."""
        now = time.monotonic()
        if self._source is not None and now - self._last_keyframe_request > 0.25:
            self._last_keyframe_request = now
            self._source.request_keyframe()

    def _stop_if_unwatched(self) -> None:
        self._linger_handle = None
        if not self.tracks and self._task:
            self._task.cancel()

    async def close(self) -> None:
        for track in list(self.tracks):
            track.stop()
        if self._linger_handle:
            self._linger_handle.cancel()
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    # -- status -----------------------------------------------------------------------------
    def fps(self) -> float:
        r = self._recent
        if len(r) < 2 or time.monotonic() - r[-1] > 2.0:
            return 0.0
        return round((len(r) - 1) / (r[-1] - r[0]), 1)

    def status(self) -> dict:
        return {
            **self.camera.public(),
            "state": self.state,
            "online": self.state == "online",
            "viewers": self.viewers,
            "width": self.info.get("width"),
            "height": self.info.get("height"),
            "passthrough": self.info.get("passthrough"),
            "fps": self.fps(),
            "reopens": self.reopens,
            "overflows": self.overflows,
            "last_error": self.last_error,
        }

    def _set_state(self, state: str, error: str | None = None) -> None:
        changed = state != self.state or error != self.last_error
        self.state = state
        if error is not None or state == "online":
            self.last_error = error
        if changed:
            self._changed()

    def _changed(self) -> None:
        if self._on_change:
            try:
                self._on_change(self)
            except Exception:  # a status listener must never break the video
                log.exception("camera status listener failed")

    # -- the pull ---------------------------------------------------------------------------
    async def _supervise(self) -> None:
        backoff = 0.5
        first = True
        try:
            while True:
                self._set_state("starting" if first else self.state)
                got_video = await self._session()
                first = False
                if got_video:
                    backoff = 0.5
                self.reopens += 1
                for track in self.tracks:
                    track.resync()
                log.info("camera %s: reopening in %.1f s", self.camera.id, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
        except asyncio.CancelledError:
            pass
        finally:
            if self._stop_session:
                self._stop_session.set()
            self._source = None
            self._set_state("idle")

    async def _session(self) -> bool:
        """Run the source once in its own thread; return whether it delivered any video."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future = loop.create_future()
        stop = threading.Event()
        self._stop_session = stop
        self._delivered = False
        try:
            source = self._source_factory(self.camera)
        except ValueError as exc:
            self._set_state("offline", str(exc))
            return False
        self._source = source
        self._session_first = None

        def emit(data: bytes, t: float, keyframe: bool) -> None:
            if not stop.is_set():
                loop.call_soon_threadsafe(self._deliver, data, t, keyframe, stop)

        def describe(info: dict) -> None:
            loop.call_soon_threadsafe(self.info.update, info)

        def run() -> None:
            error: BaseException | None = None
            try:
                source.run(emit, describe, stop)
            except BaseException as exc:  # reported to the supervisor, never lost in the thread
                error = exc
            if not loop.is_closed():
                loop.call_soon_threadsafe(_finish, error)

        def _finish(error: BaseException | None) -> None:
            if not done.done():
                done.set_result(error)

        threading.Thread(target=run, name=f"camera-{self.camera.id}-source", daemon=True).start()
        try:
            error = await done
        except asyncio.CancelledError:
            stop.set()
            raise
        stop.set()
        if isinstance(error, SourceError):
            message = str(error)
        elif error is not None:
            log.error("camera %s source crashed: %r", self.camera.id, error)
            message = f"source crashed: {error!r}"
        else:
            message = "the source ended"
        log.warning("camera %s offline: %s", self.camera.id, message)
        self._set_state("offline", message)
        return self._delivered

    def _deliver(self, data: bytes, t: float, keyframe: bool, stop: threading.Event) -> None:
        if stop.is_set():
            return
        if self._session_first is None:
            # Continue the RTP timeline across reopens, aligned with the wall clock.
            now_pts = int((time.monotonic() - self._epoch) * RTP_CLOCK)
            self._pts_offset = max(now_pts, self._last_pts + 1) - int(t * RTP_CLOCK)
            self._session_first = t
        pts = self._pts_offset + int(t * RTP_CLOCK)
        if pts <= self._last_pts:
            pts = self._last_pts + 1
        self._last_pts = pts
        packet = av.Packet(data)
        packet.pts = pts
        packet.dts = pts
        packet.time_base = TIME_BASE
        self.packets += 1
        self._recent.append(time.monotonic())
        self._delivered = True
        if self.state != "online":
            self._set_state("online")
        for track in list(self.tracks):
            track.push(packet, keyframe)


def _default_source(camera: CameraInfo) -> Source:
    return open_source(camera.source, label=camera.name)
