"""Pushes to many screens through a real web process: every screen gets every batch, by the direct path."""
from __future__ import annotations

import asyncio
import time

import pytest

from backend.domain.lifecycle import Actor
from backend.services import cases
from tests import support
from tests.browser.wall_server import api, served_city

pytestmark = pytest.mark.timeout(120)


@pytest.fixture()
def city(tmp_path):
    with served_city(tmp_path) as (ctx, server):
        yield ctx, server


async def _screens_see(base: str, n: int, make_case) -> tuple[list[set[int]], dict]:
    import socketio

    seen: list[set[int]] = [set() for _ in range(n)]
    clients = []
    for i in range(n):
        c = socketio.AsyncClient(reconnection=False)
        c.on("tick", lambda m, i=i: seen[i].update(e["c"]["id"] for e in (m.get("events") or {}).get("events", [])
                                                      if e.get("c")))
        await c.connect(base, transports=["websocket"], auth={"kind": "wall"})
        await c.call("hello", {"after": 0})
        clients.append(c)
    created = await asyncio.to_thread(make_case)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(created in s for s in seen):
        await asyncio.sleep(0.05)
    health = await asyncio.to_thread(api, base, "GET", "/health")
    for c in clients:
        await c.disconnect()
    return [s for s in seen], health | {"created": created}


def test_every_screen_gets_the_new_case_written_directly(city):
    ctx, server = city

    def make_case() -> int:
        lat, lon = support.inside(1, 1)
        case = cases.create({"class_code": "E0102", "lat": lat, "lon": lon, "description": "路边堆放垃圾",
                             "source": "inspector"}, Actor("inspector", "inspector"))
        ctx.outbox.flush()
        return case["id"]

    seen, health = asyncio.run(_screens_see(server.base, 6, make_case))
    assert all(health["created"] in s for s in seen), seen
    screens = health["screens"]
    assert screens["websocket"] == 6
    assert screens["direct"] >= 6, screens       # the batch went out as one frame written to each screen
