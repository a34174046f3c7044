"""The conference routes of a real streams process, with aiortc participants and a wall viewer."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import aiohttp
import pytest
import redis
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from itsdangerous import URLSafeTimedSerializer

from streams.conference.events import STREAM
from streams.conference.testclient import Participant, SenderTrack, SharedSource, ToneTrack
from streams.conference.tokens import make_token
from streams.testing.fixtures import SYNTHETIC_CAMERA
from streams.testing.harness import StreamsProcess

pytestmark = pytest.mark.timeout(180)

SECRET = "conference-service-secret"
REDIS_URL = "redis://127.0.0.1:6379/5"


@pytest.fixture(scope="module")
def service():
    svc = StreamsProcess([SYNTHETIC_CAMERA], env={
        "CITYWALL_SECRET_KEY": SECRET, "CITYWALL_DEMO": "1", "CITYWALL_WALL_ACCESS": "token",
        "CITYWALL_CONFERENCE_LINGER": "3", "REDIS_URL": REDIS_URL, "CITYWALL_STREAMS_LINGER": "2"}).start()
    yield svc
    svc.stop()


def login_token() -> str:
    return URLSafeTimedSerializer(SECRET, salt="citywall-auth").dumps({"user_id": 1})


async def request(method: str, url: str, body: dict | None = None, token: str | None = None) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url, json=body, headers=headers) as resp:
            return resp.status, await resp.json(content_type=None)


def run(coro):
    return asyncio.run(coro)


def test_join_refuses_bad_tokens(service):
    url = f"{service.base}/streams/v1/conferences/room-a/join"
    offer = {"sdp": "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n", "type": "offer"}
    status, body = run(request("POST", url, {**offer, "token": "forged"}))
    assert status == 401 and body["error"]["code"] == "unauthorized"
    status, _ = run(request("POST", url, offer))
    assert status == 401
    status, _ = run(request("POST", url, {**offer, "token": make_token("wrong-secret", "room-a", "p", "n")}))
    assert status == 401
    status, body = run(request("POST", url, {**offer, "token": make_token(SECRET, "room-b", "p", "n")}))
    assert status == 403 and body["error"]["code"] == "wrong_room"
    status, body = run(request("POST", url, {"sdp": 5, "token": make_token(SECRET, "room-a", "p", "n")}))
    assert status == 400


def test_joins_are_rate_limited_per_room_and_address(service):
    url = f"{service.base}/streams/v1/conferences/limited/join"
    statuses = [run(request("POST", url, {"sdp": "x", "type": "offer", "token": "bad"}))[0] for _ in range(11)]
    assert statuses[:10] == [401] * 10 and statuses[10] == 429
    other = f"{service.base}/streams/v1/conferences/another-room/join"
    assert run(request("POST", other, {"sdp": "x", "type": "offer", "token": "bad"}))[0] == 401


def test_join_page_needs_a_valid_invitation(service):
    async def get(url: str) -> tuple[int, str]:
        async with aiohttp.ClientSession() as session:
            async with session.get(url) as resp:
                return resp.status, await resp.text()

    status, text = run(get(f"{service.base}/streams/v1/conference/join?token=nope"))
    assert status == 401 and "cannot join" in text
    token = make_token(SECRET, "room-<x>", "p1", "王<五>")
    status, text = run(get(f"{service.base}/streams/v1/conference/join?token={token}"))
    assert status == 200 and 'id="conference-video"' in text
    assert "room-&lt;x&gt;" in text and "<五>" not in text, "room and name must be HTML-escaped"


def test_state_and_view_need_authorisation_and_an_active_room(service):
    base = f"{service.base}/streams/v1/conferences/nobody-here"
    assert run(request("GET", base))[0] == 401
    assert run(request("GET", base, token=login_token()))[0] == 404
    assert run(request("POST", base + "/view", {"sdp": "v=0\r\nm=video", "type": "offer"}))[0] == 401
    status, body = run(request("POST", base + "/control", {"action": "layout", "layout": "grid"},
                               make_token(SECRET, "nobody-here", "p1", "n", leader=True)))
    assert status == 404 and body["error"]["code"] == "room_not_found"


async def view_frames(base: str, room: str, token: str, seconds: float) -> tuple[int, set]:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    frames, sizes = 0, set()

    @pc.on("track")
    def on_track(track) -> None:
        async def consume() -> None:
            nonlocal frames
            try:
                while True:
                    frame = await track.recv()
                    frames += 1
                    sizes.add((frame.width, frame.height))
            except MediaStreamError:
                return
        asyncio.ensure_future(consume())

    await pc.setLocalDescription(await pc.createOffer())
    status, body = await request("POST", f"{base}/streams/v1/conferences/{room}/view",
                                 {"sdp": pc.localDescription.sdp, "type": "offer"}, token)
    assert status == 200, body
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type=body["type"]))
    await asyncio.sleep(seconds)
    await pc.close()
    return frames, sizes


def test_leader_controls_a_room_of_aiortc_participants(service):
    room = f"control-{time.time_ns()}"
    url = f"{service.base}/streams/v1/conferences/{room}"
    leader = make_token(SECRET, room, "lead", "指挥长", leader=True)
    member = make_token(SECRET, room, "m1", "Member One")

    async def scenario() -> dict:
        loop = asyncio.get_running_loop()
        source = SharedSource(loop)
        people = []
        for token, freq in ((leader, 300), (member, 500)):
            track = SenderTrack()
            source.tracks.append(track)
            people.append(Participant(service.base, room, token, track, ToneTrack(freq)))
        source.start()
        results: dict = {}
        try:
            async with aiohttp.ClientSession() as session:
                for person in people:
                    await person.join(session)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                status, state = await request("GET", url, token=member)
                if status == 200 and all(p["frames_in"] > 5 for p in state["participants"]) \
                        and len(state["participants"]) == 2:
                    break
                await asyncio.sleep(0.3)
            results["joined"] = state
            results["not_leader"] = await request("POST", url + "/control", {"action": "mute", "participant": "lead"},
                                                  member)
            results["mute"] = await request("POST", url + "/control", {"action": "mute", "participant": "m1"},
                                            leader)
            results["bad_action"] = await request("POST", url + "/control", {"action": "explode"}, leader)
            results["pin"] = await request("POST", url + "/control", {"action": "pin", "participant": "m1"},
                                           leader)
            results["grid"] = await request("POST", url + "/control", {"action": "layout", "layout": "grid"},
                                            leader)
            results["bad_layout"] = await request("POST", url + "/control", {"action": "layout", "layout": "x"},
                                                  leader)
            results["camera"] = await request("POST", url + "/control", {"action": "add_camera", "camera_id": 1},
                                              leader)
            results["no_camera"] = await request("POST", url + "/control",
                                                 {"action": "add_camera", "camera_id": 99}, leader)
            results["view"] = await view_frames(service.base, room, login_token(), 4.0)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # the camera starts, then its first keyframe is decoded
                results["with_camera"] = (await request("GET", url, token=leader))[1]
                if any(p["pid"] == "camera-1" and p["frames_in"] > 0 for p in results["with_camera"]["participants"]):
                    break
                await asyncio.sleep(0.3)
            results["audio_heard"] = [max(p.audio_rms[-25:], default=0) for p in people]
            results["remove"] = await request("POST", url + "/control", {"action": "remove", "participant": "m1"},
                                              leader)
        finally:
            source.stop_event.set()
            await asyncio.gather(*(p.close() for p in people))
            await asyncio.to_thread(source.join, 2)
        return results

    r = run(scenario())
    assert [p["pid"] for p in r["joined"]["participants"]] == ["lead", "m1"]
    assert r["joined"]["video"]["frames"] > 0 and r["joined"]["video"]["fps"] > 0, "no composed picture"
    assert r["not_leader"][0] == 403
    status, state = r["mute"]
    assert status == 200 and next(p for p in state["participants"] if p["pid"] == "m1")["muted"] is True
    assert r["bad_action"][0] == 400 and r["bad_layout"][0] == 400
    assert r["pin"][1]["speaker"] == "m1" and r["pin"][1]["tiles"][0]["pid"] == "m1"
    assert r["grid"][1]["layout"] == "grid" and [t["w"] for t in r["grid"][1]["tiles"]] == [640, 640]
    assert r["camera"][0] == 200 and "camera-1" in [p["pid"] for p in r["camera"][1]["participants"]]
    assert r["no_camera"][0] == 404
    camera = next(p for p in r["with_camera"]["participants"] if p["pid"] == "camera-1")
    assert camera["kind"] == "camera" and camera["frames_in"] > 0, "the camera's feed is not decoded into its tile"
    frames, sizes = r["view"]
    assert frames > 25 and sizes == {(1280, 720)}
    status, state = r["remove"]
    assert status == 200 and [p["pid"] for p in state["participants"]] == ["lead", "camera-1"]
    # mix-minus over real connections: the leader hears the (muted) member as silence, and the member
    # (unmuted leader) hears a tone
    assert r["audio_heard"][1] > 500 and r["audio_heard"][0] < 50, r["audio_heard"]

    client = redis.Redis.from_url(REDIS_URL)
    try:
        entries = [json.loads(f[b"data"]) for _, f in client.xrange(STREAM)]
    except redis.RedisError:
        pytest.fail("no Redis to check the events (make test starts it)")
    finally:
        client.close()
    types = [(e["type"], e["participant"]) for e in entries if e["room"] == room]
    for expected in [("conference.join", "lead"), ("conference.join", "m1"), ("conference.mute", "m1"),
                     ("conference.pin", "m1"), ("conference.layout", "lead"), ("conference.join", "camera-1"),
                     ("conference.remove", "m1"), ("conference.leave", "m1")]:
        assert expected in types, f"{expected} missing from {types}"


def test_audio_offer_needs_a_joined_participant(service):
    room = f"audio-{time.time_ns()}"
    url = f"{service.base}/streams/v1/conferences/{room}/audio"
    offer = {"sdp": "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n", "type": "offer"}
    status, body = run(request("POST", url, {**offer, "token": "forged"}))
    assert status == 401
    status, body = run(request("POST", url, {**offer, "token": make_token(SECRET, "elsewhere", "p", "n")}))
    assert status == 403
    status, body = run(request("POST", url, {**offer, "token": make_token(SECRET, room, "p", "n")}))
    assert status == 404 and body["error"]["code"] == "room_not_found"


def test_audio_runs_in_a_restartable_worker_and_clients_reconnect(service):
    """Audio is answered by another process; when it is killed, it comes back and audio resumes."""
    room = f"worker-{time.time_ns()}"
    url = f"{service.base}/streams/v1/conferences/{room}"
    tokens = [make_token(SECRET, room, "a", "Alpha"), make_token(SECRET, room, "b", "Bravo")]

    async def heard(people: list, seconds: float) -> list[float]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            levels = [max(p.audio_rms[-25:], default=0) for p in people]
            if all(v > 500 for v in levels):
                break
            await asyncio.sleep(0.3)
        return levels

    async def scenario() -> dict:
        loop = asyncio.get_running_loop()
        source = SharedSource(loop)
        people = []
        for token, freq in zip(tokens, (400, 700)):
            track = SenderTrack()
            source.tracks.append(track)
            people.append(Participant(service.base, room, token, track, ToneTrack(freq)))
        source.start()
        r: dict = {}
        try:
            async with aiohttp.ClientSession() as session:
                for person in people:
                    await person.join(session)
                r["before"] = await heard(people, 15)
                deadline = time.monotonic() + 5  # the state shows the worker's view, polled twice a second
                while time.monotonic() < deadline:
                    status, state = await request("GET", url, token=tokens[0])
                    if set(state["audio"]["levels"]) == {"a", "b"}:
                        break
                    await asyncio.sleep(0.3)
                r["state"] = state
                r["not_joined"] = await request("POST", url + "/audio", {
                    "sdp": people[0].audio_pc.localDescription.sdp, "type": "offer",
                    "token": make_token(SECRET, room, "stranger", "S")})
                worker = state["audio"]["worker"]
                os.kill(worker["pid"], signal.SIGKILL)
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    new = (await request("GET", url, token=tokens[0]))[1]["audio"]["worker"]
                    if new["alive"] and new["generation"] > worker["generation"]:
                        break
                    await asyncio.sleep(0.3)
                r["restarted"] = new
                frames = [p["frames_in"] for p in (await request("GET", url, token=tokens[0]))[1]["participants"]]
                for person in people:  # what the join page does when the generation changes
                    person.audio_rms.clear()
                    await person.connect_audio(session)
                r["after"] = await heard(people, 15)
                deadline = time.monotonic() + 5  # the state shows the worker's view, polled twice a second
                while time.monotonic() < deadline:
                    later = await request("GET", url, token=tokens[0])
                    r["connections"] = [p["audio_connection"] for p in later[1]["participants"]]
                    if r["connections"] == ["connected", "connected"]:
                        break
                    await asyncio.sleep(0.3)
                r["frames"] = (frames, [p["frames_in"] for p in later[1]["participants"]])
        finally:
            source.stop_event.set()
            await asyncio.gather(*(p.close() for p in people))
            await asyncio.to_thread(source.join, 2)
        return r

    r = run(scenario())
    assert all(v > 500 for v in r["before"]), f"no mix-minus audio before the restart: {r['before']}"
    worker = r["state"]["audio"]["worker"]
    assert worker["alive"] and worker["pid"] not in (None, service.proc.pid), worker
    assert r["state"]["audio"]["ticks"] > 0 and set(r["state"]["audio"]["levels"]) == {"a", "b"}
    assert r["not_joined"][0] == 409 and r["not_joined"][1]["error"]["code"] == "not_joined"
    assert r["restarted"]["alive"] and r["restarted"]["pid"] != worker["pid"], r["restarted"]
    assert all(v > 500 for v in r["after"]), f"audio did not come back after the restart: {r['after']}"
    before, after = r["frames"]
    assert all(b > a for a, b in zip(before, after)), "video must keep flowing while audio restarts"
    assert r["connections"] == ["connected", "connected"]


def test_audio_in_the_video_offer_is_declined(service):
    """The streams process keeps only video: an audio section in /join is answered inactive."""
    room = f"legacy-{time.time_ns()}"

    async def scenario() -> str:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTransceiver("video", direction="recvonly")
        pc.addTransceiver("audio", direction="sendrecv")
        await pc.setLocalDescription(await pc.createOffer())
        status, body = await request("POST", f"{service.base}/streams/v1/conferences/{room}/join",
                                     {"sdp": pc.localDescription.sdp, "type": "offer",
                                      "token": make_token(SECRET, room, "old", "Old client")})
        await pc.close()
        assert status == 200, body
        return body["sdp"]

    answer = run(scenario())
    audio = answer[answer.index("m=audio"):]
    video = answer[answer.index("m=video"):answer.index("m=audio")] if answer.index("m=video") < \
        answer.index("m=audio") else answer[answer.index("m=video"):]
    assert "a=inactive" in audio.split("m=video")[0]
    assert "a=sendonly" in video or "a=sendrecv" in video
