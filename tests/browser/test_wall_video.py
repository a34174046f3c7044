"""The wall's video (视频墙) in a real Chromium: cameras relayed by a real streams service over WebRTC.

What operators rely on: the wall opens on 2×2 tiles playing cameras, each a live picture (frames keep
being decoded, at the camera's size, changing and not black); the layout switches between 1, 2×2,
3×3 and 4×4; a tile's camera can be picked and a tile enlarged; a camera clicked on the map plays.
"""
from __future__ import annotations

import time

import pytest

from backend.services import cameras
from streams.testing.harness import StreamsProcess, chromium_args
from tests import support
from tests.browser.helpers import FRAME_SAMPLE, wait_until
from tests.browser.wall_server import ARTIFACTS, PageWatch, free_port, running_wall, small_city_store, wait_ready

pytestmark = pytest.mark.timeout(240)

BROWSER_ARGS = chromium_args()  # the `browser` of conftest.py: WebRTC video plays in the wall

SIZE = (640, 360)


@pytest.fixture(scope="module")
def video_city(tmp_path_factory):
    """The small city with four synthetic cameras, a real streams service and a real web process."""
    data_dir = tmp_path_factory.mktemp("wall-video")
    with small_city_store(data_dir) as ctx:
        source = f"synthetic:{{name}}?size={SIZE[0]}x{SIZE[1]}&fps=12"
        cams = []
        for k, (i, j) in enumerate([(0, 0), (1, 2), (2, 1), (3, 3)]):
            lat, lon = support.inside(i, j)
            cams.append(cameras.create({"name": f"路口{k + 1}", "lat": lat, "lon": lon,
                                        "source": source.format(name=f"CAM{k + 1}")}))
        wall_port = free_port()
        svc = StreamsProcess([{"id": c["id"], "name": c["name"], "lat": c["lat"], "lon": c["lon"],
                               "grid_code": c["grid_code"], "source": source.format(name=f"CAM{k + 1}")}
                              for k, c in enumerate(cams)],
                             env={"CITYWALL_DEMO": "1", "CITYWALL_STREAMS_LINGER": "2",
                                  "CITYWALL_HTTP_PORT": str(wall_port)}).start()  # the wall's origin may call it
        try:
            with running_wall(data_dir, wall_port, {"CITYWALL_STREAMS_PORT": str(svc.port)}) as server:
                yield ctx, server, svc, cams
        finally:
            svc.stop()


def open_wall(browser, base: str, query: str = ""):
    page = browser.new_context(viewport={"width": 1920, "height": 1080}).new_page()
    watch = PageWatch(page, base)
    page.goto(base + "/" + query)
    wait_ready(page)
    page.wait_for_function("() => window.citywall.videoWall && window.citywall.videoWall.ready", timeout=20000)
    return page, watch


def tile_stats(page, index: int) -> dict | None:
    return page.evaluate("i => { const t = window.citywall.videoWall.tiles[i];"
                         " return t && t.player ? Object.assign({}, t.player.stats) : null; }", index)


def test_wall_opens_on_2x2_playing_live_cameras(video_city, browser):
    _ctx, server, svc, cams = video_city
    page, watch = open_wall(browser, server.base)
    tiles = page.locator("#video-wall-tiles .vt")
    assert tiles.count() == 4
    assert page.locator("#video-wall-tiles .vt video").count() == 4
    shown = [int(tiles.nth(i).get_attribute("data-camera")) for i in range(4)]
    assert shown == [c["id"] for c in cams]
    for i in range(4):
        wait_until(lambda: (tile_stats(page, i) or {}).get("framesDecoded", 0) > 0, 30, f"frames in tile {i}")
    # frames keep being decoded, at the source's size
    for i in range(4):
        first = tile_stats(page, i)["framesDecoded"]
        later = wait_until(lambda: (tile_stats(page, i) or {}).get("framesDecoded", 0) > first + 5 and
                           tile_stats(page, i), 15, f"more frames in tile {i}")
        assert (later["frameWidth"], later["frameHeight"]) == SIZE
        assert later["codec"].lower() == "video/h264"
    # the pixels change and are not black
    sel = "#video-wall-tiles .vt[data-tile='0'] video"
    a = page.evaluate(FRAME_SAMPLE, sel)
    b = wait_until(lambda: (lambda s: s if s and s["hash"] != a["hash"] else None)(page.evaluate(FRAME_SAMPLE, sel)),
                   10, "a changed picture")
    assert (a["w"], a["h"]) == SIZE
    assert a["std"] > 10 and b["std"] > 10, "a flat (black or frozen) picture"
    assert a["mean"] > 10
    # every viewer of the wall is counted by the streams service
    assert svc.get_json(f"/streams/v1/cameras/{cams[0]['id']}")["viewers"] >= 1
    # no case today: the class charts say so instead of showing bare axes
    page.wait_for_function("() => document.querySelectorAll('#trend-chart .main-svg').length >= 3")
    for chart in ("trend-major", "trend-top5"):
        assert page.locator(f"#{chart} .annotation-text").text_content() == "暂无"
        assert page.locator(f"#{chart} .xtick").count() == 0
    time.sleep(0.5)
    page.screenshot(path=str(ARTIFACTS / "wall_video_1920x1080.png"))
    assert [u for u in watch.external if not u.startswith(svc.base + "/")] == [], "requests left the machine"
    assert watch.errors == []
    page.context.close()


def test_layouts_pick_and_enlarge(video_city, browser):
    _ctx, server, _svc, cams = video_city
    page, watch = open_wall(browser, server.base)
    for n in (1, 9, 16, 4):
        page.click(f"#video-wall .vw-layout[data-layout='{n}']")
        page.wait_for_function("n => document.querySelectorAll('#video-wall-tiles .vt video').length === n", arg=n)
        assert page.locator(f"#video-wall .vw-layout.on[data-layout='{n}']").count() == 1
    # pick the fourth camera for the first tile: it plays there
    page.select_option("#video-wall-tiles .vt[data-tile='0'] select", str(cams[3]["id"]))
    page.wait_for_function("id => document.querySelector(\"#video-wall-tiles .vt[data-tile='0']\")"
                           ".getAttribute('data-camera') === String(id)", arg=cams[3]["id"])
    wait_until(lambda: (tile_stats(page, 0) or {}).get("framesDecoded", 0) > 0, 30, "the picked camera's frames")
    # a click enlarges the tile over the panel; a second click puts it back
    page.click("#video-wall-tiles .vt[data-tile='1'] video")
    assert "vt-big" in page.locator("#video-wall-tiles .vt[data-tile='1']").get_attribute("class")
    big = page.locator("#video-wall-tiles .vt[data-tile='1']").bounding_box()
    panel = page.locator("#video-wall-tiles").bounding_box()
    assert big["width"] >= panel["width"] - 2 and big["height"] >= panel["height"] - 2
    page.click("#video-wall-tiles .vt[data-tile='1'] video")
    assert "vt-big" not in page.locator("#video-wall-tiles .vt[data-tile='1']").get_attribute("class")
    # the choice is kept: a reload shows the same camera in the first tile
    page.reload()
    wait_ready(page)
    page.wait_for_function("() => window.citywall.videoWall.ready")
    assert page.locator("#video-wall-tiles .vt[data-tile='0']").get_attribute("data-camera") == str(cams[3]["id"])
    assert watch.errors == []
    page.context.close()


def test_camera_clicked_on_the_map_plays(video_city, browser):
    _ctx, server, _svc, cams = video_city
    page, watch = open_wall(browser, server.base)
    page.wait_for_function("() => document.querySelectorAll('.leaflet-marker-pane .cw-cam').length === 4")
    page.locator(".leaflet-marker-pane .cw-cam").first.click()
    page.wait_for_selector("#video-popout video")
    wait_until(lambda: page.evaluate("() => { const p = window.citywall.videoWall.popout;"
                                     " return p && p.player.stats.framesDecoded > 0; }"), 30, "the pop-out's frames")
    assert page.locator("#video-popout").get_attribute("data-camera") in {str(c["id"]) for c in cams}
    page.click("#video-popout .vp-close")
    assert page.locator("#video-popout").count() == 0
    assert watch.errors == []
    page.context.close()


def test_console_case_shows_nearby_cameras_units_and_takes_evidence(video_city, browser):
    import json
    from datetime import datetime, timezone

    import redis as redis_lib

    from backend.domain.lifecycle import Actor
    from backend.services import cases, gps
    from tests.browser.wall_server import REDIS_URL

    ctx, server, _svc, cams = video_city
    lat, lon = cams[1]["lat"], cams[1]["lon"]
    case = cases.create({"class_code": "E0102", "lat": lat, "lon": lon + 0.0002, "description": "路边堆放垃圾",
                         "source": "inspector"}, Actor("inspector", "inspector"))
    cases.apply(case["id"], "register", Actor("supervisor", "supervisor"))
    ctx.outbox.flush()
    truck = gps.create_device({"protocol": "jt808", "identifier": "013900000099", "kind": "vehicle",
                               "plate": "京A99999", "vehicle_type": "环卫车"})
    now = datetime.now(timezone.utc)
    r = redis_lib.Redis.from_url(REDIS_URL)
    r.hset("citywall:gps:last", truck["device"], json.dumps({
        "device": truck["device"], "time": now.isoformat().replace("+00:00", "Z"), "ts": now.timestamp(),
        "lat": lat + 0.002, "lon": lon, "speed": 10.0, "heading": 0.0, "state": "moving", "received": now.timestamp()}))
    r.geoadd("citywall:gps:latest", (lon, lat + 0.002, truck["device"]))
    r.close()
    page = browser.new_context(viewport={"width": 1600, "height": 1000}).new_page()
    watch = PageWatch(page, server.base)
    page.goto(server.base + "/console/login")
    page.fill("input[name=username]", "dispatcher")
    page.fill("input[name=password]", support.PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("#console-root")
    wait_ready(page)
    page.evaluate("id => window.dash_clientside.set_props('console-selected', {data: id})", case["id"])
    page.wait_for_selector(f"#case-cameras .cam-row[data-camera='{cams[1]['id']}']")
    # 就近调度: the truck 222 m away, with an ETA
    unit = page.locator(f"#nearest-units .unit-row[data-device='{truck['device']}']")
    unit.wait_for()
    assert "京A99999" in unit.inner_text() and "分钟" in unit.locator(".unit-eta").inner_text()
    # watch the camera next to the case
    page.click(f"#case-cameras .cam-row[data-camera='{cams[1]['id']}'] .cam-watch")
    wait_until(lambda: page.evaluate("() => { const p = window.citywall.videoWall.popout;"
                                     " return p && p.player.stats.framesDecoded > 0; }"), 30, "the console's video")
    page.click("#video-popout .vp-close")
    # 截图取证: the camera's picture becomes a photo of the case
    page.click(f"#case-cameras .cam-row[data-camera='{cams[1]['id']}'] .cam-evidence")
    page.wait_for_selector("#cam-result .ok", timeout=20000)
    photos = cases.get(case["id"])["photos"]
    assert len(photos) == 1
    # the detail shows the new photo: as an image when it is stored here, else as its reference
    page.wait_for_function("p => { const box = document.querySelector('#case-detail .d-photos');"
                           " return !!box && (box.textContent === p || !!box.querySelector(`img[src='${p}']`)); }",
                           arg=photos[0])
    # 视频上报 is the operator's (受理员): the dispatcher is told so, the operator reports
    page.fill("#act-note", "路口机动车乱停放")
    page.click(f"#case-cameras .cam-row[data-camera='{cams[1]['id']}'] .cam-report")
    page.wait_for_selector("#cam-result .error:has-text('may not report')", timeout=20000)
    assert [e for e in watch.errors if "/_dash-update-component" not in e] == []
    page.context.close()
    page = browser.new_context(viewport={"width": 1600, "height": 1000}).new_page()
    page.goto(server.base + "/console/login")
    page.fill("input[name=username]", "operator")
    page.fill("input[name=password]", support.PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("#console-root")
    wait_ready(page)
    page.evaluate("id => window.dash_clientside.set_props('console-selected', {data: id})", case["id"])
    page.wait_for_selector(f"#case-cameras .cam-row[data-camera='{cams[1]['id']}']")
    assert page.locator("#nearest-units").count() == 0  # the operator does not dispatch
    page.fill("#act-note", "路口机动车乱停放")
    page.click(f"#case-cameras .cam-row[data-camera='{cams[1]['id']}'] .cam-report")
    page.wait_for_selector("#cam-result .ok:has-text('视频上报成功')", timeout=20000)
    new_id = int(page.locator("#cam-result .ok").get_attribute("data-case"))
    reported = cases.get(new_id)
    assert reported["source"] == "video" and reported["description"] == "路口机动车乱停放"
    assert len(reported["photos"]) == 1
    page.context.close()
