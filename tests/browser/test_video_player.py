"""A real Chromium receives cameras from the streams service through assets/webrtc-player.js."""
from __future__ import annotations

import time
from functools import partial

import pytest

from streams.testing.fixtures import ARTIFACTS, browser, open_page, rtsp_camera, streams_service  # noqa: F401
from tests.browser import helpers
from tests.browser.helpers import FRAME_SAMPLE

pytestmark = pytest.mark.timeout(120)

wait_until = partial(helpers.wait_until, poll=0.2)  # this module polls a little faster than the default


TOP_LEFT_PIXEL = """() => {
  const v = document.querySelector('video');
  const c = document.createElement('canvas');
  c.width = v.videoWidth; c.height = v.videoHeight;
  const x = c.getContext('2d');
  x.drawImage(v, 0, 0);
  return Array.from(x.getImageData(20, 150, 1, 1).data.slice(0, 3));
}"""


def stats(page) -> dict:
    return page.evaluate("() => Object.assign({}, window.player.stats)")


def viewers_of(service, camera_id: int) -> int:
    return service.get_json(f"/streams/v1/cameras/{camera_id}")["viewers"]


def test_browser_receives_live_synthetic_camera(streams_service, open_page):
    page, errors = open_page(f"{streams_service.base}/streams/v1/test.html?camera=1")
    wait_until(lambda: stats(page)["framesDecoded"] > 0, 15, "the first decoded frame")
    counts = []
    for _ in range(3):
        time.sleep(1.2)
        counts.append(stats(page)["framesDecoded"])
    assert counts[0] < counts[1] < counts[2], f"framesDecoded must keep growing: {counts}"
    s = stats(page)
    assert (s["frameWidth"], s["frameHeight"]) == (640, 360)
    assert s["codec"] == "video/H264"
    first = page.evaluate(FRAME_SAMPLE, "video")
    time.sleep(0.5)
    second = page.evaluate(FRAME_SAMPLE, "video")
    assert (first["w"], first["h"]) == (640, 360)
    assert first["std"] > 10 and first["mean"] > 20, f"picture looks black or flat: {first}"
    assert first["hash"] != second["hash"], "picture is frozen"
    stamp = page.evaluate("() => CitywallVideo.readBarcode(document.querySelector('video'), "
                          "document.createElement('canvas'))")
    assert stamp is not None, "the timestamp barcode of the synthetic frame is unreadable (corrupt picture)"
    page.screenshot(path=str(ARTIFACTS / "video_synthetic.png"))
    assert viewers_of(streams_service, 1) >= 1
    assert errors == []


def test_late_joiner_starts_within_one_keyframe_interval(streams_service, open_page):
    """Camera 2 is a passthrough RTSP camera (1 s GOP): a late joiner waits at most for its next IDR."""
    first, errors1 = open_page(f"{streams_service.base}/streams/v1/test.html?camera=2")
    wait_until(lambda: stats(first)["framesDecoded"] > 10, 20, "the first viewer's video")
    late, errors2 = open_page(f"{streams_service.base}/streams/v1/test.html?camera=2")
    s = wait_until(lambda: (lambda st: st if st["firstFrameMs"] is not None else None)(stats(late)), 10,
                   "the late joiner's first frame")
    assert s["connectedMs"] is not None
    wait_for_keyframe_ms = s["firstFrameMs"] - s["connectedMs"]
    assert wait_for_keyframe_ms < 1000 + 500, f"first frame {wait_for_keyframe_ms} ms after connecting"
    wait_until(lambda: stats(late)["frameWidth"] > 0, 5, "the late joiner's stats")
    assert (stats(late)["frameWidth"], stats(late)["frameHeight"]) == (640, 360)
    assert errors1 == [] and errors2 == []


def test_closed_page_releases_its_viewer(streams_service, open_page, browser):
    before = viewers_of(streams_service, 1)
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{streams_service.base}/streams/v1/test.html?camera=1")
    wait_until(lambda: stats(page)["framesDecoded"] > 0, 15, "video on the page")
    assert viewers_of(streams_service, 1) == before + 1
    context.close()  # fires pagehide: the player closes its peer connection
    wait_until(lambda: viewers_of(streams_service, 1) == before, 10, "the viewer to be released")


def test_rtsp_camera_killed_and_restarted_recovers_in_the_same_page(streams_service, rtsp_camera, open_page):
    page, errors = open_page(f"{streams_service.base}/streams/v1/test.html?camera=2")
    page.evaluate("() => { window.__sameDocument = true; }")
    wait_until(lambda: stats(page)["framesDecoded"] > 10, 20, "RTSP video")
    assert streams_service.get_json("/streams/v1/cameras/2")["passthrough"] is True

    rtsp_camera.kill()
    wait_until(lambda: streams_service.get_json("/streams/v1/cameras/2")["state"] == "offline", 15,
               "the camera to be reported offline")
    time.sleep(1.5)  # let the player's once-a-second stats catch up
    frozen = stats(page)["framesDecoded"]
    time.sleep(1.5)
    assert stats(page)["framesDecoded"] - frozen <= 2, "frames kept coming from a dead camera"

    rtsp_camera.start()
    wait_until(lambda: stats(page)["framesDecoded"] > frozen + 25, 30, "video to come back")
    assert page.evaluate("() => window.__sameDocument === true"), "the page was reloaded"
    s = stats(page)
    assert s["attempts"] == 1, "the player had to reconnect: the server should keep the viewer's track"
    assert streams_service.get_json("/streams/v1/cameras/2")["state"] == "online"
    sample = page.evaluate(FRAME_SAMPLE, "video")
    assert sample["std"] > 10
    white_bar = page.evaluate(TOP_LEFT_PIXEL)
    assert min(white_bar) > 180, f"the SMPTE white bar is not white ({white_bar}): a corrupt picture"
    page.screenshot(path=str(ARTIFACTS / "video_rtsp_recovered.png"))
    assert errors == []
