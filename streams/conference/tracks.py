"""Outgoing tracks of a conference (会商输出): the shared composed video and each participant's audio.

`ConferenceOutput` turns the compositor's packets into `av.Packet`s (90 kHz time base) and pushes
the same packets to every subscriber's `PacketTrack` (the relay's bounded, keyframe-gated queue).
A subscriber more than `max_queue` frames (about half a second) behind is flushed and restarts at the
next keyframe, which bounds the latency a slow connection can build up.
`MixMinusTrack` hands one participant the audio frames the mixer made for them.
"""
from __future__ import annotations

import asyncio
import collections
import time

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from streams.relay import TIME_BASE, PacketTrack


class ConferenceOutput:
    """Subscribers of one composed picture; quacks like the relay's CameraFeed for PacketTrack."""

    def __init__(self, request_keyframe, fps: int = 25, max_queue: int = 12) -> None:
        self._request_keyframe = request_keyframe
        self._last_keyframe_request = 0.0
        self.ticks_per_frame = 90_000 // fps
        self.max_queue = max_queue
        self.tracks: set[PacketTrack] = set()
        self.overflows = 0
        self.packets = 0

    def subscribe(self, role: str = "participant") -> PacketTrack:
        track = PacketTrack(self, self.max_queue, role)  # type: ignore[arg-type]
        self.tracks.add(track)
        self.request_keyframe()
        return track

    def unsubscribe(self, track: PacketTrack) -> None:
        self.tracks.discard(track)

    def request_keyframe(self) -> None:
        """Force an IDR soon (a new or lagging subscriber), at most twice a second."""
        now = time.monotonic()
        if now - self._last_keyframe_request >= 0.5:
            self._last_keyframe_request = now
            self._request_keyframe()

    def max_backlog(self) -> int:
        return max((len(t._queue) for t in self.tracks), default=0)

    def count(self, role: str) -> int:
        return sum(1 for t in self.tracks if t.role == role)

    def push(self, packets: list[tuple[bytes, int, bool]]) -> None:
        """Called on the event loop with the encoder's (data, frame number, keyframe) triples."""
        for data, frame_no, keyframe in packets:
            packet = av.Packet(data)
            packet.pts = packet.dts = frame_no * self.ticks_per_frame
            packet.time_base = TIME_BASE
            self.packets += 1
            for track in list(self.tracks):
                track.push(packet, keyframe)

    def close(self) -> None:
        for track in list(self.tracks):
            track.stop()


class MixMinusTrack(MediaStreamTrack):
    """One participant's mix (everyone but them); keeps at most `max_queue` frames (drops the oldest)."""

    kind = "audio"

    def __init__(self, max_queue: int = 10) -> None:
        super().__init__()
        self._queue: collections.deque[av.AudioFrame] = collections.deque(maxlen=max_queue)
        self._ready = asyncio.Event()
        self.frames_sent = 0

    def push(self, frame: av.AudioFrame) -> None:
        if self.readyState != "live":
            return
        self._queue.append(frame)
        self._ready.set()

    async def recv(self) -> av.AudioFrame:  # type: ignore[override]
        while not self._queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        self.frames_sent += 1
        return self._queue.popleft()

    def stop(self) -> None:
        if self.readyState == "live":
            super().stop()
            self._ready.set()
