"""HTTP side of the conferences (会商信令): join, leave, view, control, state, the join page.

Routes (under /streams/v1):
  GET  /conference/join?token=T        the join page (conference.html) for invitation T
  GET  /conference.js                  its script
  GET  /conferences                    active rooms (viewing token, like cameras)
  GET  /conferences/{room}             room state: participants, layout, tile geometry, video/audio stats
                                       (an invitation to the room, or a viewing token)
  POST /conferences/{room}/join        {sdp, type, token} -> answer; sendrecv video; 10/min per address
  POST /conferences/{room}/audio       {sdp, type, token} -> answer from the audio worker process:
                                       sendrecv audio (own voice in, mix-minus out); after /join
  POST /conferences/{room}/leave       {token} (also from navigator.sendBeacon)
  POST /conferences/{room}/view        {sdp, type} -> answer; view-only composed video (viewing token)
  POST /conferences/{room}/control     {action, ...} with a leader's invitation (Authorization: Bearer)
Control actions: mute / unmute / remove {participant}; layout {layout: speaker|grid};
pin {participant} / unpin; add_camera {camera_id} (any camera of the directory, pid "camera-<id>").

Video and audio run in separate processes: this (the streams) process decodes, composes and encodes
the video; the audio worker it starts and supervises (`audio_link.AudioWorker`) terminates every
participant's second, audio-only peer connection and mixes. An audio section in the /join offer is
answered "inactive".
"""
from __future__ import annotations

import asyncio
import html
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import av
from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from streams.auth import token_from
from streams.conference.audio_link import AudioRefused, AudioUnavailable, AudioWorker
from streams.conference.events import EventPublisher
from streams.conference.room import Participant, Room
from streams.conference.tokens import Invitation, InvitationError, InvitationVerifier, RateLimiter

if TYPE_CHECKING:
    from streams.app import StreamsService

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
ROOM_ID_MAX = 64


@dataclass
class ConferenceSettings:
    secret_key: str = ""
    join_limit: int = 10  # joins per minute per room per client address
    linger: float = 30.0  # seconds an empty room lives on
    max_participants: int = 16
    fps: int = 25
    voice_switch: bool = True


class ConferenceService:
    def __init__(self, streams: "StreamsService", settings: ConferenceSettings) -> None:
        from streams.app import ApiError

        self.ApiError = ApiError
        self.streams = streams
        self.settings = settings
        self.verifier = InvitationVerifier(settings.secret_key)
        self.limiter = RateLimiter(settings.join_limit, 60.0)
        self.rooms: dict[str, Room] = {}
        self.events = EventPublisher(streams.settings.redis_url, streams.settings.redis_socket)
        self.audio_worker = AudioWorker()
        self._reaper: asyncio.Task | None = None

    # -- helpers -------------------------------------------------------------------------------
    def invitation(self, token: str | None, room_id: str) -> Invitation:
        try:
            invitation = self.verifier.load(token)
        except InvitationError as exc:
            raise self.ApiError(401, "unauthorized", str(exc)) from None
        if invitation.room != room_id:
            raise self.ApiError(403, "wrong_room", "this invitation is for another conference room")
        return invitation

    def room_id(self, request: web.Request) -> str:
        room_id = request.match_info["room"]
        if not room_id or len(room_id) > ROOM_ID_MAX:
            raise self.ApiError(404, "room_not_found", "no such conference room")
        return room_id

    def existing_room(self, room_id: str) -> Room:
        room = self.rooms.get(room_id)
        if room is None or room.closed:
            raise self.ApiError(404, "room_not_found", f"conference room {room_id!r} is not active",
                                {"room": room_id})
        return room

    async def read_json(self, request: web.Request) -> dict:
        limit = self.streams.settings.max_offer_bytes
        if request.content_length is not None and request.content_length > limit:
            raise self.ApiError(413, "too_large", f"the body may be at most {limit} bytes")
        body = await request.content.read(limit + 1)
        if len(body) > limit:
            raise self.ApiError(413, "too_large", f"the body may be at most {limit} bytes")
        if not body.strip():
            return {}
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise self.ApiError(400, "bad_json", "the body must be a JSON object") from None
        if not isinstance(data, dict):
            raise self.ApiError(400, "bad_json", "the body must be a JSON object")
        return data

    def offer_of(self, data: dict) -> str:
        if not isinstance(data.get("sdp"), str) or data.get("type") != "offer":
            raise self.ApiError(400, "bad_offer", "the body must be JSON {\"sdp\": ..., \"type\": \"offer\"}")
        return data["sdp"]

    def authorize_viewer(self, request: web.Request, room_id: str) -> None:
        """A viewing token (screen / login / open demo) or any invitation to this room."""
        token = token_from(request.headers, request.query)
        if self.streams.verifier(token):
            return
        self.invitation(token, room_id)

    # -- handlers ------------------------------------------------------------------------------
    async def join_page(self, request: web.Request) -> web.Response:
        token = request.query.get("token")
        try:
            invitation = self.verifier.load(token)
        except InvitationError as exc:
            return web.Response(status=401, content_type="text/html", charset="utf-8",
                                text=f"<!DOCTYPE html><meta charset=utf-8><title>会商</title>"
                                     f"<p>无法加入会商 / cannot join: {html.escape(str(exc))}</p>")
        page = (STATIC_DIR / "conference.html").read_text(encoding="utf-8")
        page = page.replace("{{ROOM}}", html.escape(invitation.room)).replace("{{NAME}}",
                                                                               html.escape(invitation.name))
        return web.Response(text=page, content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})

    async def script(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / "conference.js",
                                headers={"Content-Type": "text/javascript; charset=utf-8"})

    async def list_rooms(self, request: web.Request) -> web.Response:
        self.streams.authorize(request)
        return web.json_response({"rooms": [
            {"room": r.id, "participants": len(r.participants), "layout": r.layout,
             "viewers": r.output.count("viewer")} for r in self.rooms.values() if not r.closed]})

    async def state(self, request: web.Request) -> web.Response:
        room_id = self.room_id(request)
        self.authorize_viewer(request, room_id)
        return web.json_response(self.existing_room(room_id).state())

    def body_invitation(self, data: dict, request: web.Request, room_id: str) -> Invitation:
        token = data.get("token") if isinstance(data.get("token"), str) else token_from(request.headers,
                                                                                         request.query)
        return self.invitation(token, room_id)

    async def join(self, request: web.Request) -> web.Response:
        room_id = self.room_id(request)
        address = request.remote or ""
        if not self.limiter.allow((room_id, address)):
            raise self.ApiError(429, "too_many_joins", f"at most {self.settings.join_limit} joins per minute "
                                "per room from one address", {"limit": self.settings.join_limit})
        data = await self.read_json(request)
        invitation = self.body_invitation(data, request, room_id)
        sdp = self.offer_of(data)
        if "m=video" not in sdp and "m=audio" not in sdp:
            raise self.ApiError(400, "bad_offer", "the offer has neither audio nor video")
        room = self.rooms.get(room_id)
        if room is not None and room.closed:
            room = None
        if room is not None and invitation.pid not in room.participants and \
                len(room.participants) >= self.settings.max_participants:
            raise self.ApiError(409, "room_full", f"the room already has {self.settings.max_participants} "
                                "participants", {"limit": self.settings.max_participants})
        if room is None:
            room = Room(room_id, self.events.publish, self.audio_worker, self.settings.fps,
                        self.settings.voice_switch)
            self.rooms[room_id] = room
        if invitation.pid in room.participants:  # a reload or a second device: the newest wins
            await room.remove(invitation.pid, reason="replaced")

        participant = Participant(invitation.pid, invitation.name, invitation.leader, "browser", address)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        participant.pc = pc
        self.streams.peers.add(pc)

        async def gone(reason: str) -> None:
            self.streams.peers.discard(pc)
            if not await room.remove(participant.pid, reason=reason, only=participant):
                await participant.close()

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await gone("disconnected")

        @pc.on("track")
        def on_track(track) -> None:
            if track.kind == "video":
                participant.tasks.append(asyncio.ensure_future(_read_video(track, participant)))

        try:
            if "m=video" in sdp:
                participant.video_out = room.output.subscribe("participant")
                video = pc.addTransceiver(participant.video_out, direction="sendrecv")
                video.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs
                                           if c.mimeType == "video/H264"])
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            for transceiver in pc.getTransceivers():
                if transceiver.kind == "audio":  # audio goes to the audio worker (POST .../audio)
                    transceiver.direction = "inactive"
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
        except Exception as exc:
            await participant.close()
            self.streams.peers.discard(pc)
            raise self.ApiError(400, "bad_offer", f"cannot answer this offer: {exc}") from None
        if "m=video" in sdp and "H264" not in pc.localDescription.sdp:
            await participant.close()
            self.streams.peers.discard(pc)
            raise self.ApiError(400, "no_h264", "the offer does not accept H.264 video")
        room.add(participant)
        asyncio.get_running_loop().create_task(self._watchdog(pc, gone))
        return web.json_response({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type,
                                  "room": room_id, "participant": participant.pid,
                                  "leader": participant.leader})

    async def audio(self, request: web.Request) -> web.Response:
        """A joined participant's audio-only offer, answered by the audio worker process."""
        room_id = self.room_id(request)
        data = await self.read_json(request)
        invitation = self.body_invitation(data, request, room_id)
        sdp = self.offer_of(data)
        if "m=audio" not in sdp:
            raise self.ApiError(400, "bad_offer", "the offer has no audio section")
        room = self.existing_room(room_id)
        participant = room.participants.get(invitation.pid)
        if participant is None:
            raise self.ApiError(409, "not_joined", "join the conference (POST .../join) before its audio")
        try:
            answer = await self.audio_worker.offer(room_id, invitation.pid, sdp, participant.muted)
        except AudioRefused as exc:
            raise self.ApiError(400, "bad_offer", f"cannot answer this offer: {exc}") from None
        except AudioUnavailable as exc:
            raise self.ApiError(503, "audio_unavailable", str(exc), {"retry_after": 1}) from None
        if room.participants.get(invitation.pid) is not participant:  # left or replaced meanwhile
            self.audio_worker.command("remove", room=room_id, pid=invitation.pid)
            raise self.ApiError(409, "not_joined", "the participant left the conference")
        return web.json_response({"sdp": answer["sdp"], "type": answer["type"], "room": room_id,
                                  "participant": invitation.pid, "generation": self.audio_worker.generation})

    async def leave(self, request: web.Request) -> web.Response:
        room_id = self.room_id(request)
        data = await self.read_json(request)
        invitation = self.body_invitation(data, request, room_id)
        room = self.rooms.get(room_id)
        left = bool(room) and await room.remove(invitation.pid, reason="leave")
        return web.json_response({"left": left})

    async def view(self, request: web.Request) -> web.Response:
        room_id = self.room_id(request)
        self.authorize_viewer(request, room_id)
        sdp = self.offer_of(await self.read_json(request))
        if "m=video" not in sdp:
            raise self.ApiError(400, "bad_offer", "the offer has no video section")
        room = self.existing_room(room_id)
        if room.output.count("viewer") >= self.streams.settings.max_viewers:
            raise self.ApiError(429, "too_many_viewers", "this conference has too many viewers",
                                {"limit": self.streams.settings.max_viewers})
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.streams.peers.add(pc)
        track = room.output.subscribe("viewer")

        async def gone(reason: str = "") -> None:
            track.stop()
            self.streams.peers.discard(pc)
            await pc.close()

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await gone()

        try:
            transceiver = pc.addTransceiver(track, direction="sendonly")
            transceiver.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs
                                             if c.mimeType == "video/H264"])
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:
            await gone()
            raise self.ApiError(400, "bad_offer", f"cannot answer this offer: {exc}") from None
        if "H264" not in pc.localDescription.sdp:
            await gone()
            raise self.ApiError(400, "no_h264", "the offer does not accept H.264 video")
        asyncio.get_running_loop().create_task(self._watchdog(pc, gone))
        return web.json_response({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type})

    async def control(self, request: web.Request) -> web.Response:
        room_id = self.room_id(request)
        data = await self.read_json(request)
        token = token_from(request.headers, request.query) or (
            data.get("token") if isinstance(data.get("token"), str) else None)
        invitation = self.invitation(token, room_id)
        if not invitation.leader:
            raise self.ApiError(403, "not_leader", "only the conference leader may do this")
        room = self.existing_room(room_id)
        action = data.get("action")
        by = invitation.pid
        pid = data.get("participant")
        if action in ("mute", "unmute", "remove", "pin"):
            if not isinstance(pid, str) or pid not in room.participants:
                raise self.ApiError(404, "participant_not_found", f"no participant {pid!r} in this room")
        if action in ("mute", "unmute"):
            room.mute(pid, action == "mute", by=by)
        elif action == "remove":
            await room.remove(pid, reason="removed", by=by)
        elif action == "pin":
            room.pin(pid, by=by)
        elif action == "unpin":
            room.pin(None, by=by)
        elif action == "layout":
            try:
                room.set_layout(str(data.get("layout")), by=by)
            except ValueError as exc:
                raise self.ApiError(400, "bad_layout", str(exc)) from None
        elif action == "add_camera":
            await self.add_camera(room, data.get("camera_id"), by)
        else:
            raise self.ApiError(400, "bad_action", "action must be one of mute, unmute, remove, pin, unpin, "
                                "layout, add_camera", {"action": action})
        return web.json_response(room.state())

    async def add_camera(self, room: Room, raw_id, by: str) -> None:
        """Bring a surveillance camera into the room: its relay feed, decoded once into a tile."""
        try:
            camera_id = int(raw_id)
        except (TypeError, ValueError):
            raise self.ApiError(400, "bad_camera", f"camera_id must be an integer, got {raw_id!r}") from None
        camera = await asyncio.to_thread(self.streams.directory.get, camera_id)
        if camera is None:
            raise self.ApiError(404, "camera_not_found", f"no camera {camera_id}")
        if camera.status != "active":
            raise self.ApiError(409, "camera_disabled", f"camera {camera_id} is {camera.status}")
        pid = f"camera-{camera_id}"
        if pid in room.participants:
            return
        if len(room.participants) >= self.settings.max_participants:
            raise self.ApiError(409, "room_full", "the room is full")
        participant = Participant(pid, camera.name, False, "camera", camera_id=camera_id)
        participant.camera_track = self.streams.feed(camera).subscribe(role="conference")
        participant.tasks.append(asyncio.ensure_future(_read_camera(participant.camera_track, participant)))
        room.add(participant)

    # -- lifecycle -----------------------------------------------------------------------------
    async def _watchdog(self, pc: RTCPeerConnection, gone) -> None:
        await asyncio.sleep(self.streams.settings.connect_timeout)
        if pc.connectionState != "connected":
            await gone("disconnected")

    async def _reap(self) -> None:
        """Close rooms that stayed empty longer than the linger time."""
        while True:
            await asyncio.sleep(min(5.0, max(0.5, self.settings.linger / 4)))
            now = time.monotonic()
            for room_id, room in list(self.rooms.items()):
                if room.empty_since is not None and now - room.empty_since >= self.settings.linger:
                    del self.rooms[room_id]
                    await room.close()

    async def on_startup(self, app: web.Application) -> None:
        self.events.start()
        self.audio_worker.start()
        self._reaper = asyncio.get_running_loop().create_task(self._reap())

    async def on_shutdown(self, app: web.Application) -> None:
        if self._reaper:
            self._reaper.cancel()
        await asyncio.gather(*(room.close() for room in self.rooms.values()), return_exceptions=True)
        self.rooms.clear()
        await self.audio_worker.stop()
        await self.events.close()


async def newest_frame(track):
    """The next frame of a remote track, skipping frames that queued up while the loop was busy
    (only the newest matters for the picture; stale ones would only add latency)."""
    frame = await track.recv()
    queue = getattr(track, "_queue", None)  # aiortc's RemoteStreamTrack queue of decoded frames
    while queue is not None and not queue.empty():
        newer = queue.get_nowait()
        if newer is None:
            track.stop()
            raise MediaStreamError
        frame = newer
    return frame


async def _read_video(track, participant: Participant) -> None:
    try:
        while True:
            participant.tile.put(await newest_frame(track))
    except MediaStreamError:
        return


async def _read_camera(track, participant: Participant) -> None:
    """Decode a relay subscription (H.264 packets) once, off the event loop."""
    decoder = av.CodecContext.create("h264", "r")

    def decode(data: bytes) -> list:
        try:
            return list(decoder.decode(av.Packet(data)))
        except av.FFmpegError:
            return []

    try:
        while True:
            packet = await track.recv()
            for frame in await asyncio.to_thread(decode, bytes(packet)):
                participant.tile.put(frame)
    except MediaStreamError:
        return


def add_routes(app: web.Application, conference: ConferenceService) -> None:
    r = app.router
    r.add_get("/streams/v1/conference/join", conference.join_page)
    r.add_get("/streams/v1/conference.js", conference.script)
    r.add_get("/streams/v1/conferences", conference.list_rooms)
    r.add_get("/streams/v1/conferences/{room}", conference.state)
    r.add_post("/streams/v1/conferences/{room}/join", conference.join)
    r.add_post("/streams/v1/conferences/{room}/audio", conference.audio)
    r.add_post("/streams/v1/conferences/{room}/leave", conference.leave)
    r.add_post("/streams/v1/conferences/{room}/view", conference.view)
    r.add_post("/streams/v1/conferences/{room}/control", conference.control)
    app.on_startup.append(conference.on_startup)
    app.on_shutdown.append(conference.on_shutdown)
