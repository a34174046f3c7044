"""One conference room (会商室) in the streams process: participants, layout, speaker, the compositor.

A room exists from its first join and is closed by its owner (the service) after it stayed empty
for a while. All methods run on the event loop; the compositor thread only reads the immutable tile
tuple. The room's audio lives in the audio worker process (`audio_worker.py`): the room tells it
about mutes, removals and its end, and reads the voice levels it reports for the speaker tile.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from aiortc import RTCPeerConnection

from streams.conference import layout as layouts
from streams.conference.audio_link import AudioWorker
from streams.conference.compositor import Compositor, Tile, TileSource
from streams.conference.events import event
from streams.conference.tracks import ConferenceOutput
from streams.relay import PacketTrack

log = logging.getLogger(__name__)

SPEECH_LEVEL = 400.0  # RMS (int16) above which a voice can take the speaker tile
SWITCH_AFTER = 2.0  # seconds between automatic speaker changes


@dataclass
class Participant:
    """A person (browser) or a surveillance camera taking part (参会成员)."""

    pid: str
    name: str
    leader: bool = False
    kind: str = "browser"  # browser | camera
    address: str = ""
    camera_id: int | None = None
    pc: RTCPeerConnection | None = None
    video_out: PacketTrack | None = None
    camera_track: PacketTrack | None = None
    tasks: list[asyncio.Task] = field(default_factory=list)
    joined_at: float = field(default_factory=time.time)
    tile: TileSource = field(init=False)

    def __post_init__(self) -> None:
        self.tile = TileSource(self.name)

    @property
    def muted(self) -> bool:
        return self.tile.muted

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for track in (self.video_out, self.camera_track):
            if track is not None:
                track.stop()
        if self.pc is not None:
            await self.pc.close()


def input_backlog(pc: RTCPeerConnection | None) -> int:
    """Encoded video frames waiting for aiortc's decoder thread (private queue; 0 if unknown)."""
    if pc is None:
        return 0
    sizes = [getattr(r, "_RTCRtpReceiver__decoder_queue").qsize() for r in pc.getReceivers()
             if r.track is not None and r.track.kind == "video" and hasattr(r, "_RTCRtpReceiver__decoder_queue")]
    return max(sizes, default=0)


class Room:
    def __init__(self, room_id: str, publish: Callable[[dict], None], audio: AudioWorker, fps: int = 25,
                 voice_switch: bool = True) -> None:
        self.id = room_id
        self.publish = publish
        self.voice_switch = voice_switch
        self.audio = audio
        self.participants: dict[str, Participant] = {}
        self.layout = "speaker"
        self.pinned: str | None = None
        self.voice_speaker: str | None = None
        self.tiles: list[tuple[str, layouts.Rect]] = []
        self.created_at = time.time()
        self.empty_since: float | None = time.monotonic()
        self.closed = False
        self._last_switch = 0.0
        loop = asyncio.get_running_loop()
        self._loop = loop
        self.compositor = Compositor(lambda packets: loop.call_soon_threadsafe(self.output.push, packets),
                                     fps=fps, name=room_id)
        self.output = ConferenceOutput(self.compositor.request_keyframe, fps=fps)
        self.compositor.start()
        self._watch = loop.create_task(self._watch_voices())

    # -- membership ----------------------------------------------------------------------------
    def add(self, participant: Participant) -> None:
        self.participants[participant.pid] = participant
        self.empty_since = None
        self.update_tiles()
        self.publish(event("conference.join", self.id, participant.pid, participant.name,
                           kind=participant.kind, leader=participant.leader))

    async def remove(self, pid: str, reason: str = "leave", by: str | None = None,
                     only: Participant | None = None) -> bool:
        """Remove a participant (reason leave | removed | disconnected | replaced); False if absent."""
        participant = self.participants.get(pid)
        if participant is None or (only is not None and participant is not only):
            return False
        del self.participants[pid]
        self.audio.command("remove", room=self.id, pid=pid)
        if self.pinned == pid:
            self.pinned = None
        if self.voice_speaker == pid:
            self.voice_speaker = None
        if not self.participants:
            self.empty_since = time.monotonic()
        self.update_tiles()
        if reason == "removed":
            self.publish(event("conference.remove", self.id, pid, participant.name, by=by))
        if reason != "replaced":
            self.publish(event("conference.leave", self.id, pid, participant.name, reason=reason))
        await participant.close()
        return True

    # -- picture -------------------------------------------------------------------------------
    def speaker(self) -> str | None:
        if self.pinned in self.participants:
            return self.pinned
        if self.voice_speaker in self.participants:
            return self.voice_speaker
        return next(iter(self.participants), None)

    def update_tiles(self) -> None:
        """Recompute the tile geometry and hand it to the compositor."""
        order = list(self.participants)
        speaker = self.speaker()
        if self.layout == "speaker" and speaker is not None:
            order.remove(speaker)
            order.insert(0, speaker)
        rects = layouts.compute(self.layout, len(order))
        self.tiles = list(zip(order, rects))
        highlight = self.layout == "grid" and len(order) > 1
        self.compositor.set_tiles([Tile(self.participants[pid].tile, rect, highlight and pid == speaker)
                                   for pid, rect in self.tiles])

    def set_layout(self, name: str, by: str | None = None) -> None:
        if name not in layouts.LAYOUTS:
            raise ValueError(f"unknown layout {name!r}; expected one of {', '.join(layouts.LAYOUTS)}")
        self.layout = name
        self.update_tiles()
        self.publish(event("conference.layout", self.id, by, None, layout=name))

    def pin(self, pid: str | None, by: str | None = None) -> None:
        if pid is not None and pid not in self.participants:
            raise KeyError(pid)
        self.pinned = pid
        self.update_tiles()
        name = self.participants[pid].name if pid else None
        self.publish(event("conference.pin" if pid else "conference.unpin", self.id, pid, name, by=by))

    def mute(self, pid: str, muted: bool, by: str | None = None) -> None:
        participant = self.participants[pid]
        participant.tile.muted = muted
        self.audio.command("mute", room=self.id, pid=pid, muted=muted)
        self.publish(event("conference.mute" if muted else "conference.unmute", self.id, pid,
                           participant.name, by=by))

    # -- audio ---------------------------------------------------------------------------------
    async def _watch_voices(self) -> None:
        """The loudest voice takes the speaker tile (unless someone is pinned), at most every 2 s."""
        while True:
            await asyncio.sleep(0.5)
            if not self.voice_switch or self.pinned or len(self.participants) < 2:
                continue
            levels = self.audio.room(self.id)["levels"]
            if not levels:
                continue
            loudest = max(levels, key=levels.__getitem__)
            current = self.speaker()
            now = time.monotonic()
            if (loudest != current and levels[loudest] > SPEECH_LEVEL
                    and levels[loudest] > 2 * levels.get(current or "", 0.0)
                    and now - self._last_switch > SWITCH_AFTER):
                self.voice_speaker = loudest
                self._last_switch = now
                self.update_tiles()

    # -- state ---------------------------------------------------------------------------------
    def state(self) -> dict:
        rects = dict(self.tiles)
        speaker = self.speaker()
        audio = self.audio.room(self.id)
        connections = audio["participants"]
        return {
            "room": self.id,
            "layout": self.layout,
            "width": layouts.WIDTH,
            "height": layouts.HEIGHT,
            "speaker": speaker,
            "pinned": self.pinned,
            "participants": [
                {"pid": p.pid, "name": p.name, "kind": p.kind, "leader": p.leader, "muted": p.muted,
                 "camera_id": p.camera_id, "frames_in": p.tile.frames_in,
                 "connection": p.pc.connectionState if p.pc else None,
                 "input_backlog": input_backlog(p.pc),
                 "audio_connection": connections.get(p.pid, {}).get("connection"),
                 "tile": rects[p.pid].as_dict() if p.pid in rects else None}
                for p in self.participants.values()
            ],
            "tiles": [{"pid": pid, **rect.as_dict()} for pid, rect in self.tiles],
            "viewers": self.output.count("viewer"),
            "video": {"fps": self.compositor.output_fps(), "frames": self.compositor.frames_out,
                      "compose_ms": round(self.compositor.compose_ms, 2),
                      "encode_ms": round(self.compositor.encode_ms, 2),
                      "late_frames": self.compositor.late_frames, "overflows": self.output.overflows,
                      "max_backlog": self.output.max_backlog()},
            "audio": {"ticks": audio["ticks"], "mix_ms": audio["mix_ms"], "levels": audio["levels"],
                      "worker": self.audio.status()},
        }

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._watch.cancel()
        for pid in list(self.participants):
            await self.remove(pid, reason="closed")
        self.output.close()
        self.compositor.stop()
        self.audio.command("close", room=self.id)
        await asyncio.to_thread(self.compositor.join, 2.0)
        self.publish(event("conference.end", self.id, None, None))
