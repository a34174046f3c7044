"""The streams service over real HTTP and real WebRTC (aiortc viewers), in-process."""
from __future__ import annotations

import asyncio
import json

import aiohttp
import cv2
import numpy as np
import pytest
from aiohttp.test_utils import TestServer
from itsdangerous import URLSafeTimedSerializer

from streams.app import Settings, create_app
from streams.auth import DefaultVerifier
from streams.cameras import CameraInfo, StaticCameraDirectory
from streams.testing.client import Viewer

pytestmark = pytest.mark.timeout(60)

CAMERAS = [
    CameraInfo(1, "Corner A", 30.27, 120.15, "330102001001001", "synthetic:A?size=320x180&fps=25"),
    CameraInfo(2, "Corner B", 30.26, 120.16, None, "synthetic:B?size=320x180&fps=25"),
    CameraInfo(3, "Old camera", 30.25, 120.17, None, "synthetic:C", status="disabled"),
    CameraInfo(4, "Broken", 30.25, 120.17, None, "rtsp://127.0.0.1:9/none"),
]


def run(coro_fn, **settings):
    async def main():
        verifier = settings.pop("verifier", DefaultVerifier(demo=True))
        app = create_app(StaticCameraDirectory(CAMERAS), verifier, Settings(**{"linger": 0.5, **settings}))
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        try:
            async with aiohttp.ClientSession() as session:
                return await coro_fn(server, session, app["service"])
        finally:
            await server.close()

    return asyncio.run(main())


async def wait_for(predicate, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.05)


def base(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


def test_viewers_receive_the_camera_and_share_one_pull():
    async def scenario(server, session, service):
        assert service.feeds == {}  # nothing is pulled before someone watches
        viewers = [Viewer(base(server), 1) for _ in range(3)]
        for v in viewers:
            await v.connect(session)
        await wait_for(lambda: all(v.frames >= 10 for v in viewers))
        assert {s for v in viewers for s in v.sizes} == {(320, 180)}
        feed = service.feeds[1]
        assert feed.viewers == 3 and feed.state == "online"
        async with session.get(f"{base(server)}/streams/v1/cameras/1") as resp:
            status = await resp.json()
        assert status["viewers"] == 3 and status["online"] is True and status["passthrough"] is False
        assert "source" not in status
        for v in viewers:
            await v.close()
        await wait_for(lambda: feed.viewers == 0)
        assert feed.state == "online"  # lingers a little after the last viewer
        await wait_for(lambda: feed.state == "idle", timeout=5)  # then stops pulling

    run(scenario)


def test_shared_packets_are_identical_objects():
    async def scenario(server, session, service):
        camera = CAMERAS[0]
        feed = service.feed(camera)
        a, b = feed.subscribe(), feed.subscribe()
        first_a = await asyncio.wait_for(a.recv(), 5)
        first_b = await asyncio.wait_for(b.recv(), 5)
        assert first_a is first_b  # the same encoded packet: no per-viewer encoder
        a.stop()
        b.stop()

    run(scenario)


def test_snapshot_is_a_jpeg_of_the_camera_size():
    async def scenario(server, session, service):
        async with session.get(f"{base(server)}/streams/v1/cameras/2/snapshot.jpg") as resp:
            assert resp.status == 200
            assert resp.content_type == "image/jpeg"
            body = await resp.read()
        image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (180, 320, 3)
        assert image.std() > 10
        assert service.feeds[2].viewers == 0  # a snapshot is not a viewer

    run(scenario)


def test_errors_are_json_with_the_right_status():
    async def scenario(server, session, service):
        url = f"{base(server)}/streams/v1/cameras"
        good = {"sdp": "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n", "type": "offer"}
        cases = [
            (f"{url}/99/offer", json.dumps(good), 404, "camera_not_found"),
            (f"{url}/abc/offer", json.dumps(good), 404, "camera_not_found"),
            (f"{url}/3/offer", json.dumps(good), 409, "camera_disabled"),
            (f"{url}/1/offer", "not json", 400, "bad_json"),
            (f"{url}/1/offer", json.dumps({"sdp": 1, "type": "offer"}), 400, "bad_offer"),
            (f"{url}/1/offer", json.dumps({"sdp": "v=0", "type": "answer"}), 400, "bad_offer"),
            (f"{url}/1/offer", json.dumps(good), 400, "bad_offer"),  # not a usable SDP
            (f"{url}/1/offer", json.dumps({"sdp": "x" * 70_000, "type": "offer"}), 413, "offer_too_large"),
        ]
        for target, body, status, code in cases:
            async with session.post(target, data=body, headers={"Content-Type": "application/json"}) as resp:
                payload = await resp.json()
                assert resp.status == status, (target, body[:40], payload)
                assert payload["error"]["code"] == code
                assert payload["error"]["message"]
                assert "details" in payload["error"]
        async with session.get(f"{url}/99/snapshot.jpg") as resp:
            assert resp.status == 404
        assert all(f.viewers == 0 for f in service.feeds.values())  # refused offers hold no viewer

    run(scenario)


def test_viewer_limit_answers_429():
    async def scenario(server, session, service):
        first = Viewer(base(server), 1)
        await first.connect(session)
        second = Viewer(base(server), 1)
        with pytest.raises(RuntimeError, match="429"):
            await second.connect(session)
        await second.pc.close()
        await first.close()

    run(scenario, max_viewers=1)


def test_token_required_outside_demo_mode():
    secret = "test-secret"
    login_token = URLSafeTimedSerializer(secret, salt="citywall-auth").dumps({"user": 7})
    forged = URLSafeTimedSerializer("other", salt="citywall-auth").dumps({"user": 7})

    async def scenario(server, session, service):
        url = f"{base(server)}/streams/v1/cameras"
        async with session.get(url) as resp:
            assert resp.status == 401
            assert (await resp.json())["error"]["code"] == "unauthorized"
        async with session.get(url, headers={"Authorization": f"Bearer {forged}"}) as resp:
            assert resp.status == 401
        async with session.get(url, headers={"Authorization": f"Bearer {login_token}"}) as resp:
            assert resp.status == 200
            assert [c["id"] for c in (await resp.json())["cameras"]] == [1, 2, 3, 4]
        async with session.get(url, params={"token": "wall-screen-token"}) as resp:
            assert resp.status == 200
        viewer = Viewer(base(server), 1, token="wall-screen-token")
        await viewer.connect(session)
        await wait_for(lambda: viewer.frames > 0)
        await viewer.close()
        no_token = Viewer(base(server), 1)
        with pytest.raises(RuntimeError, match="401"):
            await no_token.connect(session)
        await no_token.pc.close()

    run(scenario, verifier=DefaultVerifier(secret, "wall-screen-token", demo=False))


def test_cors_allows_the_wall_origin_only():
    async def scenario(server, session, service):
        url = f"{base(server)}/streams/v1/cameras/1/offer"
        headers = {"Origin": "http://wall.example:8050", "Access-Control-Request-Method": "POST",
                   "Access-Control-Request-Headers": "authorization, content-type"}
        async with session.options(url, headers=headers) as resp:
            assert resp.status == 204
            assert resp.headers["Access-Control-Allow-Origin"] == "http://wall.example:8050"
            assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]
        async with session.options(url, headers={**headers, "Origin": "http://evil.example"}) as resp:
            assert resp.status == 403
            assert "Access-Control-Allow-Origin" not in resp.headers
        async with session.get(f"{base(server)}/streams/v1/cameras",
                               headers={"Origin": "http://wall.example:8050"}) as resp:
            assert resp.headers["Access-Control-Allow-Origin"] == "http://wall.example:8050"

    run(scenario, wall_port=8050)


def test_a_failing_camera_is_offline_and_retried():
    async def scenario(server, session, service):
        feed = service.feed(CAMERAS[3])
        track = feed.subscribe()
        await wait_for(lambda: feed.state == "offline" and feed.reopens >= 2, timeout=10)
        assert "rtsp" in feed.last_error
        async with session.get(f"{base(server)}/streams/v1/cameras/4") as resp:
            status = await resp.json()
        assert status["state"] == "offline" and status["online"] is False and status["viewers"] == 1
        track.stop()

    run(scenario)


def test_status_changes_are_published_to_redis():
    redis = pytest.importorskip("redis")
    url = "redis://127.0.0.1:6379/4"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.exceptions.ConnectionError:
        pytest.fail("no Redis on 127.0.0.1:6379 (make test starts it)")

    async def scenario(server, session, service):
        import redis.asyncio as aioredis

        client = aioredis.from_url(url)
        pubsub = client.pubsub()
        await pubsub.subscribe("citywall:cameras")
        await pubsub.get_message(timeout=1)  # the subscribe confirmation
        viewer = Viewer(base(server), 2)
        await viewer.connect(session)
        await wait_for(lambda: viewer.frames > 0)
        seen = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while loop.time() < deadline and not any(m["state"] == "online" for m in seen):
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
            if message:
                seen.append(json.loads(message["data"]))
        await viewer.close()
        await pubsub.aclose()
        await client.aclose()
        assert any(m["id"] == 2 and m["state"] == "online" and m["viewers"] == 1 for m in seen), seen

    run(scenario, redis_url=url)
