"""The conference audio worker process (会商音频进程): every room's audio, off the video process.

    python -m streams.conference.audio_worker --socket /path/audio.sock

Started and supervised by the streams service (`audio_link.AudioWorker`), which it answers over a
Unix socket (only the streams process talks to it; browsers reach it through
`POST /streams/v1/conferences/{room}/audio`). Each participant has one audio-only peer connection
here: its Opus is decoded once, the room's `AudioMixer` mixes everyone but the listener (mix-minus)
every 20 ms and aiortc encodes one Opus stream per participant. Exits when its stdin closes (the
streams process is gone).

Routes (JSON): GET /health; GET /state -> {rooms: {room: {ticks, mix_ms, levels, participants}}};
POST /offer {room, pid, sdp, muted} -> {sdp, type}; POST /mute {room, pid, muted};
POST /remove {room, pid}; POST /close {room}.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import threading
from dataclasses import dataclass, field

from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from streams.conference.mixer import AudioMixer, to_mono
from streams.conference.tracks import MixMinusTrack

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 30.0


@dataclass
class AudioMember:
    """One participant's audio connection (参会成员音频)."""

    pid: str
    pc: RTCPeerConnection
    out: MixMinusTrack
    muted: bool = False
    frames_in: int = 0
    tasks: list[asyncio.Task] = field(default_factory=list)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        self.out.stop()
        await self.pc.close()


class AudioRoom:
    """The mixer of one room and its members; lives while it has members."""

    def __init__(self, room_id: str) -> None:
        self.id = room_id
        self.members: dict[str, AudioMember] = {}
        self._loop = asyncio.get_running_loop()
        self.mixer = AudioMixer(self._deliver, name=room_id)
        self.mixer.start()

    def _deliver(self, pid: str, frame) -> None:  # mixer thread
        member = self.members.get(pid)
        if member is not None:
            self._loop.call_soon_threadsafe(member.out.push, frame)

    def mute(self, pid: str, muted: bool) -> bool:
        member = self.members.get(pid)
        if member is not None:
            member.muted = muted
        audio = self.mixer.input(pid)
        if audio is not None:
            audio.muted = muted
        return member is not None

    async def remove(self, pid: str, only: AudioMember | None = None) -> bool:
        member = self.members.get(pid)
        if member is None or (only is not None and member is not only):
            return False
        del self.members[pid]
        self.mixer.remove(pid)
        await member.close()
        return True

    def state(self) -> dict:
        return {"ticks": self.mixer.ticks, "mix_ms": round(self.mixer.mix_ms, 3),
                "levels": {k: round(v, 1) for k, v in self.mixer.levels().items()},
                "participants": {m.pid: {"connection": m.pc.connectionState, "muted": m.muted,
                                         "frames_in": m.frames_in, "frames_out": m.out.frames_sent}
                                 for m in self.members.values()}}

    async def close(self) -> None:
        for pid in list(self.members):
            await self.remove(pid)
        self.mixer.stop()
        await asyncio.to_thread(self.mixer.join, 2.0)


class AudioWorkerService:
    def __init__(self) -> None:
        self.rooms: dict[str, AudioRoom] = {}

    @staticmethod
    async def body(request: web.Request) -> dict:
        try:
            data = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(text="the body must be JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("room"), str):
            raise web.HTTPBadRequest(text="the body must be a JSON object with a room")
        return data

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "pid": os.getpid(), "rooms": len(self.rooms)})

    async def state(self, request: web.Request) -> web.Response:
        return web.json_response({"rooms": {rid: room.state() for rid, room in self.rooms.items()}})

    async def offer(self, request: web.Request) -> web.Response:
        data = await self.body(request)
        room_id, pid, sdp = data["room"], data.get("pid"), data.get("sdp")
        if not isinstance(pid, str) or not isinstance(sdp, str) or "m=audio" not in sdp:
            return web.json_response({"message": "the offer needs an audio section"}, status=400)
        room = self.rooms.get(room_id)
        if room is None:
            room = self.rooms[room_id] = AudioRoom(room_id)
        await room.remove(pid)  # a reconnect replaces the older connection
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        member = AudioMember(pid, pc, MixMinusTrack(), muted=bool(data.get("muted")))

        async def gone() -> None:
            if not await room.remove(pid, only=member):
                await member.close()
            await self._drop_if_empty(room)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await gone()

        @pc.on("track")
        def on_track(track) -> None:
            if track.kind == "audio":
                audio_in = room.mixer.add(pid)
                audio_in.muted = member.muted
                member.tasks.append(asyncio.ensure_future(_read_audio(track, audio_in, member)))

        try:
            pc.addTransceiver(member.out, direction="sendrecv")
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            for transceiver in pc.getTransceivers():
                if transceiver.kind != "audio":
                    transceiver.direction = "inactive"
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:
            await member.close()
            await self._drop_if_empty(room)
            return web.json_response({"message": f"cannot answer this offer: {exc}"}, status=400)
        room.members[pid] = member

        async def watchdog() -> None:
            await asyncio.sleep(CONNECT_TIMEOUT)
            if pc.connectionState != "connected":
                await gone()

        asyncio.get_running_loop().create_task(watchdog())  # not in member.tasks: close() would cancel it
        return web.json_response({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type})

    async def mute(self, request: web.Request) -> web.Response:
        data = await self.body(request)
        room = self.rooms.get(data["room"])
        found = room is not None and room.mute(str(data.get("pid")), bool(data.get("muted")))
        return web.json_response({"found": found})

    async def remove(self, request: web.Request) -> web.Response:
        data = await self.body(request)
        room = self.rooms.get(data["room"])
        found = room is not None and await room.remove(str(data.get("pid")))
        if room is not None:
            await self._drop_if_empty(room)
        return web.json_response({"found": found})

    async def close_room(self, request: web.Request) -> web.Response:
        data = await self.body(request)
        room = self.rooms.pop(data["room"], None)
        if room is not None:
            await room.close()
        return web.json_response({"found": room is not None})

    async def _drop_if_empty(self, room: AudioRoom) -> None:
        if not room.members and self.rooms.get(room.id) is room:
            del self.rooms[room.id]
            await room.close()

    async def on_shutdown(self, app: web.Application) -> None:
        await asyncio.gather(*(room.close() for room in self.rooms.values()), return_exceptions=True)
        self.rooms.clear()


async def _read_audio(track, audio_in, member: AudioMember) -> None:
    try:
        while True:
            frame = await track.recv()
            try:
                audio_in.push(to_mono(frame))
            except ValueError as exc:
                log.warning("conference audio of %s dropped: %s", member.pid, exc)
                return
            member.frames_in += 1
    except MediaStreamError:
        return


def create_worker_app() -> web.Application:
    service = AudioWorkerService()
    app = web.Application(client_max_size=1024 * 1024)
    app["service"] = service
    r = app.router
    r.add_get("/health", service.health)
    r.add_get("/state", service.state)
    r.add_post("/offer", service.offer)
    r.add_post("/mute", service.mute)
    r.add_post("/remove", service.remove)
    r.add_post("/close", service.close_room)
    app.on_shutdown.append(service.on_shutdown)
    return app


def _remove_socket_and_exit(socket_path: str) -> None:
    for remove, path in ((os.unlink, socket_path), (os.rmdir, os.path.dirname(socket_path))):
        try:
            remove(path)
        except OSError:
            pass
    os._exit(0)


def _exit_with_parent(socket_path: str) -> None:
    """Block on stdin; when the streams process is gone (EOF) end this process too."""
    try:
        sys.stdin.buffer.read()
    finally:
        _remove_socket_and_exit(socket_path)


def main() -> None:
    parser = argparse.ArgumentParser(description="citywall conference audio worker")
    parser.add_argument("--socket", required=True, help="Unix socket path to listen on")
    args = parser.parse_args()
    logging.basicConfig(level=os.environ.get("CITYWALL_LOG_LEVEL", "INFO").upper(),
                        format="%(asctime)s audio-worker %(levelname)s %(name)s: %(message)s")
    threading.Thread(target=_exit_with_parent, args=(args.socket,), daemon=True, name="parent-watch").start()
    if os.path.exists(args.socket):
        os.unlink(args.socket)
    try:
        web.run_app(create_worker_app(), path=args.socket, access_log=None, print=None)
    finally:
        # end here: an interpreter shutting down while the watcher thread is blocked reading stdin
        # aborts with "could not acquire lock for <stdin>"
        _remove_socket_and_exit(args.socket)


if __name__ == "__main__":
    main()
