"""The OsmAnd HTTP gateway on a real port, writing to the real Redis (127.0.0.1:6379 db 3).

Requests are those of Traccar's OsmAndProtocolDecoderTest (traccar/traccar:
src/test/java/org/traccar/protocol/OsmAndProtocolDecoderTest.java), sent the three ways the
Traccar Client sends them.
"""
from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from backend.gps.pipeline import KEY_LATEST, KEY_TRAIL
from backend.gps.position import trail_positions
from backend.gps.registry import DeviceInfo
from backend.gps.terminal import osmand_report
from tests.integration.test_gps_jt808_gateway import running_gateway
from tests.unit.test_osmand_decoder import JSON_TRACCAR_CLIENT

pytestmark = pytest.mark.timeout(60)

PHONES = [DeviceInfo("osmand", "123456", kind="person", person="inspector01"),
          DeviceInfo("osmand", "48241179", kind="person"),
          DeviceInfo("osmand", "353861053849681", kind="person")]


async def trail(redis) -> list:
    return [p for _, fields in await redis.xrange(KEY_TRAIL) for p in trail_positions(fields[b"p"])]


def test_query_form_and_json_requests_are_stored():
    async def scenario() -> None:
        async with running_gateway(PHONES) as (gateway, redis):
            base = f"http://127.0.0.1:{gateway.osmand_port}"
            async with aiohttp.ClientSession() as http:
                # GET with a query (OsmAnd app)
                async with http.get(f"{base}/?id=123456&timestamp=1377177267&lat=60.0&lon=30.0"
                                    "&speed=10&bearing=90&altitude=20&accuracy=5&batt=87") as response:
                    assert response.status == 200
                # POST with the parameters in the URL (Traccar Client)
                async with http.post(f"{base}/?lat=49.60688&lon=6.15788&timestamp=2014-06-04+09%3A10%3A11"
                                     "&altitude=384.7&speed=0.0&id=353861053849681") as response:
                    assert response.status == 200
                # POST form body
                async with http.post(f"{base}/", data={"id": "123456", "lat": "60.1", "lon": "30.1",
                                                       "timestamp": "1377177300"}) as response:
                    assert response.status == 200
                # POST JSON (Traccar Client 9)
                async with http.post(f"{base}/", data=JSON_TRACCAR_CLIENT,
                                     headers={"Content-Type": "application/json"}) as response:
                    assert response.status == 200
            positions = await trail(redis)
            assert [p.device for p in positions] == ["osmand:123456", "osmand:353861053849681",
                                                     "osmand:123456", "osmand:48241179"]
            first = positions[0]
            assert (first.lat, first.lon, first.time, first.heading) == (60.0, 30.0, 1377177267, 90.0)
            assert first.speed == pytest.approx(18.52)  # 10 knots
            assert positions[1].time == 1401844211  # 09:10:11 Asia/Shanghai
            [(lon, lat)] = await redis.geopos(KEY_LATEST, "osmand:123456")
            assert abs(lat - 60.1) < 1e-5 and abs(lon - 30.1) < 1e-5

    asyncio.run(scenario())


def test_bad_input_gets_400_with_a_clear_message():
    async def scenario() -> None:
        async with running_gateway(PHONES) as (gateway, redis):
            base = f"http://127.0.0.1:{gateway.osmand_port}"
            async with aiohttp.ClientSession() as http:
                cases = [
                    ("get", "/?timestamp=1377177267&lat=60.0&lon=30.0", {}, 400, "id"),
                    ("get", "/?id=123456&lat=100&lon=30", {}, 400, "outside"),
                    ("get", "/?id=123456&lat=x&lon=30", {}, 400, "number"),
                    ("get", "/", {}, 400, "no parameters"),
                    ("post", "/", {"data": "{not json", "headers": {"Content-Type": "application/json"}},
                     400, "JSON"),
                    ("get", "/?id=999&lat=60&lon=30", {}, 400, "not registered"),
                    ("post", "/", {"json": {"device_id": "999", "location": {
                        "coords": {"latitude": 1, "longitude": 2}}}}, 404, "not registered"),
                    ("post", "/", {"data": "x" * 70_000, "headers": {"Content-Type": "text/plain"}},
                     413, ""),
                ]
                for method, path, kwargs, status, words in cases:
                    async with http.request(method, base + path, **kwargs) as response:
                        assert response.status == status, (path, await response.text())
                        if status != 413:
                            error = (await response.json())["error"]
                            assert words in error["message"] and error["code"]
            assert await redis.zcard(KEY_LATEST) == 0
            assert gateway.stats["osmand_bad_requests"] >= 5

    asyncio.run(scenario())


def test_autoregistered_phone_and_client_helper():
    async def scenario() -> None:
        async with running_gateway(autoregister=True) as (gateway, redis):
            url = f"http://127.0.0.1:{gateway.osmand_port}"
            assert await osmand_report(url, "inspector-7", 31.23, 121.47, speed_knots=2.0, batt=55) == 200
            assert await osmand_report(url, "inspector-7", 31.24, 121.48, json_form=True, speed=1.5) == 200
            device = gateway.registry.find("osmand", "inspector-7")
            assert device is not None and device.kind == "person"
            positions = await trail(redis)
            assert [(p.lat, p.lon) for p in positions] == [(31.23, 121.47), (31.24, 121.48)]
            assert positions[1].speed == pytest.approx(1.5 * 3.6)

    asyncio.run(scenario())


def test_report_without_location_reuses_the_last_one():
    async def scenario() -> None:
        async with running_gateway(PHONES) as (gateway, redis):
            base = f"http://127.0.0.1:{gateway.osmand_port}"
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{base}/?id=123456&lat=31.2&lon=121.5&timestamp=1377177267") as r:
                    assert r.status == 200
                async with http.get(f"{base}/?id=123456&timestamp=1377177277&cell=460,0,1,2") as r:
                    assert r.status == 200
            positions = await trail(redis)
            assert [(p.lat, p.lon, p.time) for p in positions] == [(31.2, 121.5, 1377177267),
                                                                   (31.2, 121.5, 1377177277)]

    asyncio.run(scenario())


def test_json_error_shape_is_the_project_contract():
    async def scenario() -> None:
        async with running_gateway(PHONES) as (gateway, _):
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{gateway.osmand_port}/?lat=1&lon=2") as response:
                    body = json.loads(await response.text())
            assert set(body["error"]) == {"code", "message", "details"}

    asyncio.run(scenario())
