"""The vehicle layer (车辆实时位置) in a real Chromium against a real web process and Redis.

What operators rely on: positions published on `citywall:gps:summary` (as the GPS gateways do) move
the vehicles on the open wall; a fix older than two minutes is drawn grey; a click draws the last
hour's track; the filters hide other departments; a 上岗履职 alarm appears in the ticker.
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pytest
import redis as redis_lib

from backend.services import gps
from tests import support
from tests.browser.wall_server import REDIS_URL, PageWatch, running_wall, small_city_store, wait_ready

pytestmark = pytest.mark.timeout(180)


def iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """The small city with three trucks of two departments, the web process and a Redis client."""
    data_dir = tmp_path_factory.mktemp("wall-vehicles")
    with small_city_store(data_dir) as ctx:
        depts = sorted(ctx.departments)
        trucks = [gps.create_device({"protocol": "jt808", "identifier": f"01391234567{k}", "kind": "vehicle",
                                     "plate": f"京A1234{k}", "vehicle_type": "环卫车" if k < 2 else "执法车",
                                     "department_id": depts[0] if k < 2 else depts[1]}) for k in range(3)]
        with running_wall(data_dir) as server:
            r = redis_lib.Redis.from_url(REDIS_URL)
            yield ctx, server, trucks, r
            r.close()


def publish(r, devices: list[dict]) -> None:
    """What the GPS pipeline does about once a second: the latest full fixes, then the summary."""
    now = datetime.now(timezone.utc)
    for d in devices:
        r.hset("citywall:gps:last", d["device"], json.dumps({
            "device": d["device"], "time": d["time"], "ts": datetime.fromisoformat(d["time"].replace("Z", "+00:00"))
            .timestamp(), "lat": d["lat"], "lon": d["lon"], "speed": d["speed"], "heading": d["heading"],
            "valid": True, "alarm": 0, "status": 0, "state": d["status"], "received": now.timestamp()}))
        r.geoadd("citywall:gps:latest", (d["lon"], d["lat"], d["device"]))
    r.publish("citywall:gps:summary", json.dumps({"time": iso(now), "count": len(devices), "devices": devices}))


def fix(device: str, i: int, j: int, age_s: float = 0, heading: float = 90.0) -> dict:
    lat, lon = support.inside(i, j)
    return {"device": device, "lat": lat, "lon": lon, "speed": 18.0, "heading": heading,
            "time": iso(datetime.now(timezone.utc) - timedelta(seconds=age_s)), "status": "moving"}


def vehicle(page, device: str) -> dict | None:
    return page.evaluate("d => { const v = window.citywall.vehicles.byDevice[d]; return v ? Object.assign({}, v) : null; }",
                         device)


def test_positions_from_the_gps_summary_move_vehicles_and_stale_ones_are_grey(fleet, browser):
    _ctx, server, trucks, r = fleet
    keys = [t["device"] for t in trucks]
    page = browser.new_context(viewport={"width": 1920, "height": 1080}).new_page()
    watch = PageWatch(page, server.base)
    page.goto(server.base + "/")
    wait_ready(page)
    page.wait_for_function("() => window.citywall.vehicles && window.citywall.vehicles.loaded")
    # the gateways publish: two fresh fixes and one five minutes old
    publish(r, [fix(keys[0], 1, 1), fix(keys[1], 2, 2), fix(keys[2], 3, 1, age_s=300)])
    page.wait_for_function("() => document.querySelectorAll('.leaflet-marker-pane .cw-veh').length === 3",
                           timeout=5000)
    assert page.locator(".leaflet-marker-pane .cw-veh.cw-veh-stale").count() == 1
    grey = page.evaluate("() => getComputedStyle(document.querySelector('.leaflet-marker-pane .cw-veh-stale'))"
                         ".backgroundColor")
    assert grey == "rgb(100, 116, 139)"
    fresh = page.evaluate("() => getComputedStyle(document.querySelector('.leaflet-marker-pane .cw-veh:not(.cw-veh-stale)'))"
                          ".backgroundColor")
    assert fresh != grey
    # a later summary moves the first truck; the wall follows within a few seconds
    lat, lon = support.inside(0, 3)
    publish(r, [dict(fix(keys[0], 0, 3), heading=180.0)])
    page.wait_for_function("([d, lat]) => { const v = window.citywall.vehicles.byDevice[d];"
                           " return Math.abs(v.lat - lat) < 1e-6 && v.plate; }",
                           arg=[keys[0], lat], timeout=5000)
    v = vehicle(page, keys[0])
    assert v["heading"] == 180.0 and v["plate"] == "京A12340" and v["type"] == "环卫车"
    # the filter by department hides the law-enforcement truck
    page.select_option("#vehicle-controls .veh-dept", str(trucks[0]["department_id"]))
    page.wait_for_function("() => document.querySelectorAll('.leaflet-marker-pane .cw-veh').length === 2")
    page.select_option("#vehicle-controls .veh-dept", "")
    page.select_option("#vehicle-controls .veh-type", "执法车")
    page.wait_for_function("() => document.querySelectorAll('.leaflet-marker-pane .cw-veh').length === 1")
    page.select_option("#vehicle-controls .veh-type", "")
    page.wait_for_function("() => document.querySelectorAll('.leaflet-marker-pane .cw-veh').length === 3")
    assert watch.errors == []
    page.context.close()


def test_click_shows_the_track_and_an_alarm_reaches_the_ticker(fleet, browser):
    _ctx, server, trucks, r = fleet
    key = trucks[1]["device"]
    # the last hour as the pipeline leaves it in the trail stream (not yet archived)
    now = datetime.now(timezone.utc).timestamp()
    points = []
    for k in range(5):
        lat, lon = support.inside(2, k % 4)
        points.append([key, now - 600 + k * 60, lat, lon, 20.0, 90.0, 0.0, True, 0, 0])
    r.xadd("citywall:gps:trail", {"n": len(points), "p": json.dumps(points)})
    publish(r, [fix(key, 2, 3)])
    page = browser.new_context(viewport={"width": 1920, "height": 1080}).new_page()
    watch = PageWatch(page, server.base)
    page.goto(server.base + "/")
    wait_ready(page)
    page.wait_for_function("d => window.citywall.vehicles.byDevice[d]", arg=key)
    page.evaluate("d => window.citywall.vehicles.select(d)", key)
    page.wait_for_function("() => window.citywall.vehicles.track && window.citywall.vehicles.track.count >= 5",
                           timeout=5000)
    page.wait_for_selector("#vehicle-controls .veh-selected")
    page.click("#vehicle-controls .veh-follow-btn")
    assert page.locator("#vehicle-controls .veh-follow").count() == 1
    # 上岗履职: an alarm raised by the worker
    r.publish("citywall:gps:alarms", json.dumps({
        "type": "duty_alarm", "state": "raised", "id": 7, "kind": "out_of_area", "kind_zh": "越界离岗",
        "shift_id": 1, "shift_name": "早班", "person": "insp001", "device": key, "plate": "京A12341",
        "since": iso(datetime.now(timezone.utc)), "time": iso(datetime.now(timezone.utc)),
        "message": "离开责任网格 15 分钟"}))
    item = page.locator("#event-ticker-list .tk-alarm")
    item.wait_for(timeout=5000)
    assert "越界离岗" in item.inner_text() and "离开责任网格" in item.inner_text()
    assert watch.errors == []
    page.context.close()
