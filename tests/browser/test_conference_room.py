"""Three Chromium participants (fake camera + microphone) meet in one composed conference room.

Video goes over one peer connection to the streams process, audio over a second one to its audio
worker process; the page reopens its audio connection when that worker is restarted.
"""
from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request

import pytest

from streams.conference.tokens import make_token
from streams.testing.fixtures import ARTIFACTS, SYNTHETIC_CAMERA
from streams.testing.harness import StreamsProcess, chromium_args
from tests.browser.helpers import PIXEL_STATS, wait_until

pytestmark = pytest.mark.timeout(240)

# the `browser` of conftest.py: WebRTC, with a fake camera and microphone that need no permission prompt
BROWSER_ARGS = chromium_args() + ["--use-fake-device-for-media-stream=fps=25", "--use-fake-ui-for-media-stream"]

SECRET = "conference-browser-test-secret"
ROOM = "incident-42"

# Mean luma (with hash and std, every 5th pixel) of each tile region of the composed picture, from one canvas grab.
TILE_SAMPLE = """(tiles) => {
  const v = document.getElementById('conference-video');
  const c = document.createElement('canvas');
  c.width = v.videoWidth; c.height = v.videoHeight;
  const x = c.getContext('2d');
  x.drawImage(v, 0, 0);
  const stats = """ + PIXEL_STATS + """;
  return tiles.map(t => stats(x.getImageData(t.x + 8, t.y + 8, t.w - 16, t.h - 40).data, 5));
}"""


def post(url: str, body: dict, token: str | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.fixture(scope="module")
def service():
    svc = StreamsProcess([SYNTHETIC_CAMERA], env={"CITYWALL_SECRET_KEY": SECRET, "CITYWALL_DEMO": "1",
                                                  "CITYWALL_WALL_ACCESS": "token",
                                                  "CITYWALL_CONFERENCE_LINGER": "5"}).start()
    yield svc
    svc.stop()


def room_state(service, path: str, token: str) -> dict | None:
    """The room state, or None while the room does not exist yet."""
    try:
        return service.get_json(path, token)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def stats(page) -> dict:
    return page.evaluate("() => Object.assign({}, window.conference.stats)")


def join_url(service, pid: str, name: str, leader: bool = False) -> str:
    return (f"{service.base}/streams/v1/conference/join?token="
            f"{make_token(SECRET, ROOM, pid, name, leader)}")


def test_three_participants_share_one_composed_picture(service, browser):
    leader_token = make_token(SECRET, ROOM, "p1", "Commander", True)
    people = [("p1", "Commander", True), ("p2", "Dept Office", False), ("p3", "Inspector", False)]
    contexts, pages, errors = [], [], []
    for pid, name, leader in people:
        context = browser.new_context(viewport={"width": 1280, "height": 860},
                                      permissions=["camera", "microphone"])
        page = context.new_page()
        page_errors: list[str] = []
        page.on("console", lambda m, e=page_errors: e.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc, e=page_errors: e.append(str(exc)))
        page.goto(join_url(service, pid, name, leader))
        contexts.append(context)
        pages.append(page)
        errors.append(page_errors)
    try:
        room_path = f"/streams/v1/conferences/{ROOM}"
        state = wait_until(lambda: (lambda s: s if s and len(s["participants"]) == 3 and
                                    all(p["frames_in"] > 10 for p in s["participants"]) else None)(
            room_state(service, room_path, leader_token)), 30, "three participants sending video")
        assert state["layout"] == "speaker" and len(state["tiles"]) == 3

        for page in pages:  # each receives the composed picture, decoding more and more frames
            wait_until(lambda p=page: stats(p)["framesDecoded"] > 10, 20, "the composed picture")
        first = [stats(p)["framesDecoded"] for p in pages]
        time.sleep(1.5)
        for page, before in zip(pages, first):
            s = stats(page)
            assert s["framesDecoded"] > before + 2, f"decoding stalled: {before} -> {s['framesDecoded']}"
            assert (s["frameWidth"], s["frameHeight"]) == (1280, 720)
            assert s["codec"] == "video/H264"

        tiles = state["tiles"]
        grabs = pages[1].evaluate(TILE_SAMPLE, tiles)
        time.sleep(0.7)
        later = pages[1].evaluate(TILE_SAMPLE, tiles)
        for tile, a, b in zip(tiles, grabs, later):  # every participant's region shows live video
            assert a["std"] > 5, f"tile of {tile['pid']} looks flat: {a}"
            assert a["hash"] != b["hash"], f"tile of {tile['pid']} is frozen"

        for page in pages:  # mix-minus audio arrives with a level above silence
            wait_until(lambda p=page: (lambda s: s["audioPackets"] > 50 and s["totalAudioEnergy"] > 0)(stats(p)),
                       15, "audio with energy")
        audio_state = wait_until(lambda: (lambda s: s if all(p["audio_connection"] == "connected"
                                                               for p in s["participants"]) else None)(
            room_state(service, room_path, leader_token)), 10, "every audio connection in the worker")
        worker = audio_state["audio"]["worker"]
        assert worker["alive"] and worker["pid"] != service.proc.pid, "audio must run in its own process"
        assert set(audio_state["audio"]["levels"]) == {"p1", "p2", "p3"}
        pages[0].screenshot(path=str(ARTIFACTS / "conference_three.png"))

        contexts[2].close()  # the inspector leaves (pagehide: beacon + pc.close)
        state2 = wait_until(lambda: (lambda s: s if len(s["participants"]) == 2 else None)(
            service.get_json(room_path, leader_token)), 15, "the room to notice the leave")
        assert len(state2["tiles"]) == 2
        gone = next(t for t in tiles if t["pid"] == "p3")
        assert "p3" not in [t["pid"] for t in state2["tiles"]]
        assert [(t["w"], t["h"]) for t in state2["tiles"]] == [(960, 540), (320, 180)]
        # the departed participant's region of the composed picture goes dark (within the time the compositor,
        # the encoder and the receiver's jitter buffer take: ~1 s on a quiet machine, more under CI load)
        deadline = time.monotonic() + 10
        vacated = pages[0].evaluate(TILE_SAMPLE, [gone])[0]
        while vacated["std"] >= 3 and time.monotonic() < deadline:
            time.sleep(0.25)
            vacated = pages[0].evaluate(TILE_SAMPLE, [gone])[0]
        assert vacated["std"] < 3, f"the departed participant's tile still shows video after 10 s: {vacated}"
        pages[0].screenshot(path=str(ARTIFACTS / "conference_after_leave.png"))

        status, body = post(f"{service.base}{room_path}/control", {"action": "layout", "layout": "grid"},
                            leader_token)
        assert status == 200 and body["layout"] == "grid"
        assert [(t["w"], t["h"]) for t in body["tiles"]] == [(640, 720), (640, 720)]
        status, _ = post(f"{service.base}{room_path}/control", {"action": "layout", "layout": "grid"},
                         make_token(SECRET, ROOM, "p2", "Dept Office", False))
        assert status == 403, "a participant who is not the leader must not control the room"
        time.sleep(1.0)
        pages[0].screenshot(path=str(ARTIFACTS / "conference_grid.png"))

        os.kill(worker["pid"], signal.SIGKILL)  # the audio worker dies: it is restarted, pages reconnect
        for page in pages[:2]:
            wait_until(lambda p=page: (lambda s: s["audioReconnects"] >= 1 and s["audioState"] == "connected"
                                       and s["audioPackets"] > 50 and s["totalAudioEnergy"] > 0)(stats(p)),
                       30, "audio to come back after the worker restart")
        restarted = service.get_json(room_path, leader_token)["audio"]["worker"]
        assert restarted["generation"] > worker["generation"] and restarted["pid"] != worker["pid"]
        before = [stats(p)["framesDecoded"] for p in pages[:2]]
        time.sleep(1.0)
        assert all(stats(p)["framesDecoded"] > b for p, b in zip(pages[:2], before)), "video stopped"
        assert errors[0] == [] and errors[1] == []
    finally:
        for context in contexts:
            try:
                context.close()
            except Exception:
                pass
