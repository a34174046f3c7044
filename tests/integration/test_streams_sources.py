"""Real camera sources: an RTSP camera (GStreamer) passed through and recovered, and media files."""
from __future__ import annotations

import asyncio
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer

from streams.app import Settings, create_app
from streams.cameras import CameraInfo, StaticCameraDirectory
from streams.h264 import is_keyframe, nal_types
from streams.relay import CameraFeed
from streams.synthetic import StreetScene
from streams.testing.fixtures import rtsp_camera  # noqa: F401

pytestmark = pytest.mark.timeout(90)


async def next_keyframe(track, timeout: float = 10.0) -> av.Packet:
    async def find():
        while True:
            packet = await track.recv()
            if is_keyframe(bytes(packet)):
                return packet

    return await asyncio.wait_for(find(), timeout)


async def wait_state(feed: CameraFeed, state: str, timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while feed.state != state:
        assert loop.time() < deadline, f"camera stayed {feed.state}, expected {state} ({feed.last_error})"
        await asyncio.sleep(0.05)


def test_rtsp_camera_is_passed_through_and_recovers_after_a_restart(rtsp_camera):
    camera = CameraInfo(7, "RTSP", 30.0, 120.0, None, rtsp_camera.url)

    async def scenario():
        feed = CameraFeed(camera, linger=0.5, max_backoff=1.0)
        track = feed.subscribe()
        first = await next_keyframe(track, 15)
        assert nal_types(bytes(first))[:2] == [7, 8] or 7 in nal_types(bytes(first))
        assert feed.info["passthrough"] is True and (feed.info["width"], feed.info["height"]) == (640, 360)
        rtsp_camera.kill()
        await wait_state(feed, "offline")
        rtsp_camera.start()
        await wait_state(feed, "online", 20)
        again = await next_keyframe(track, 10)  # the same viewer track carries on
        assert again.pts > first.pts  # one continuous timeline across the reopen
        assert track.readyState == "live" and feed.reopens >= 1
        track.stop()
        await feed.close()

    asyncio.run(scenario())


def test_snapshot_of_a_passthrough_camera(rtsp_camera):
    camera = CameraInfo(8, "RTSP", 30.0, 120.0, None, rtsp_camera.url)

    async def scenario():
        app = create_app(StaticCameraDirectory([camera]), settings=Settings(linger=0.5))
        async with TestClient(TestServer(app)) as client:
            resp = await client.get("/streams/v1/cameras/8/snapshot.jpg")
            assert resp.status == 200
            body = await resp.read()
        image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (360, 640, 3)
        assert image[150, 20].min() > 180  # the white SMPTE bar: a clean decode, not green garbage

    asyncio.run(scenario())


def write_clip(path, fmt: str, bframes: int, seconds: float = 1.0) -> None:
    scene = StreetScene("FILE", 320, 180)
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 320, 180, "yuv420p"
        stream.codec_context.max_b_frames = bframes
        stream.options = {"preset": "ultrafast" if not bframes else "fast", "g": "25",
                          "x264-params": f"bframes={bframes}:keyint=25"}
        for n in range(int(seconds * 25)):
            frame = av.VideoFrame.from_ndarray(scene.draw(1000 + n / 25), format="bgr24").reformat(format="yuv420p")
            frame.pts, frame.time_base = n, Fraction(1, 25)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


@pytest.mark.parametrize("fmt,suffix,bframes,passthrough", [
    ("mpegts", "ts", 0, True),
    ("mp4", "mp4", 0, True),  # length-prefixed: converted to Annex-B
    ("mpegts", "ts", 2, False),  # B-frames: decoded and encoded once
])
def test_file_sources_loop_and_decode(tmp_path, fmt, suffix, bframes, passthrough):
    path = tmp_path / f"clip.{suffix}"
    write_clip(path, fmt, bframes)
    camera = CameraInfo(9, "File", 30.0, 120.0, None, str(path))

    async def scenario():
        feed = CameraFeed(camera, linger=0.2)
        track = feed.subscribe()
        decoder = av.CodecContext.create("h264", "r")
        first = await next_keyframe(track)
        frames = decoder.decode(av.Packet(bytes(first)))
        last_pts = first.pts
        count = 1
        while count < 40:  # 1.6 s of a 1 s clip: the file loops
            packet = await asyncio.wait_for(track.recv(), 5)
            assert packet.pts > last_pts
            last_pts = packet.pts
            frames += decoder.decode(av.Packet(bytes(packet)))
            count += 1
        assert feed.info["passthrough"] is passthrough
        assert frames and (frames[0].width, frames[0].height) == (320, 180)
        track.stop()
        await feed.close()

    asyncio.run(scenario())
