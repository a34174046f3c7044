"""Emergency mode (应急模式) of the wall in a real Chromium against a real web process, Redis and streams.

What operators rely on: activating an incident's plan through the API turns every open wall to the
incident (command board with the tasks counting down, the perimeter on the map, the cameras nearest
the site in the video wall); a leader switching the wall back restores the normal wall and its cameras.
"""
from __future__ import annotations

import pytest

from backend.services import cameras
from streams.testing.harness import StreamsProcess, chromium_args
from tests import support
from tests.browser.wall_server import (ARTIFACTS, PageWatch, api, free_port, running_wall, small_city_store, token,
                                       wait_ready)

pytestmark = pytest.mark.timeout(240)

BROWSER_ARGS = chromium_args()  # the `browser` of conftest.py: WebRTC video plays in the wall

SOURCE = "synthetic:{name}?size=320x180&fps=8"


@pytest.fixture(scope="module")
def hall(tmp_path_factory):
    """The small city with a camera far from the incident and one next to it, streams and the web process."""
    data_dir = tmp_path_factory.mktemp("wall-emergency")
    with small_city_store(data_dir) as ctx:
        far_lat, far_lon = support.inside(0, 0)
        near_lat, near_lon = support.inside(2, 2)
        far = cameras.create({"name": "远处路口", "lat": far_lat, "lon": far_lon, "source": SOURCE.format(name="FAR")})
        near = cameras.create({"name": "现场路口", "lat": near_lat + 0.0003, "lon": near_lon,
                               "source": SOURCE.format(name="NEAR")})
        wall_port = free_port()
        svc = StreamsProcess([{**c, "source": SOURCE.format(name=k)} for c, k in ((far, "FAR"), (near, "NEAR"))],
                             env={"CITYWALL_DEMO": "1", "CITYWALL_STREAMS_LINGER": "2",
                                  "CITYWALL_HTTP_PORT": str(wall_port)}).start()
        try:
            with running_wall(data_dir, wall_port, {"CITYWALL_STREAMS_PORT": str(svc.port)}) as server:
                yield ctx, server, far, near
        finally:
            svc.stop()


def tile_camera(page, index: int) -> str | None:
    return page.locator(f"#video-wall-tiles .vt[data-tile='{index}']").get_attribute("data-camera")


def test_activating_a_plan_turns_the_wall_and_switching_back_restores_it(hall, browser):
    _ctx, server, far, near = hall
    page = browser.new_context(viewport={"width": 1920, "height": 1080}).new_page()
    watch = PageWatch(page, server.base)
    page.goto(server.base + "/?video=1")  # one tile: the far camera
    wait_ready(page)
    page.wait_for_function("() => window.citywall.videoWall && window.citywall.videoWall.ready")
    assert tile_camera(page, 0) == str(far["id"])
    assert page.locator("#sla-board").is_visible() and not page.locator("#emergency-panel").is_visible()

    lead = token(server.base, "leader", support.PASSWORD)
    lat, lon = support.inside(2, 2)
    inc = api(server.base, "POST", "/incidents", {"type": "flooding", "level": "III", "title": "景山路口内涝",
                                                  "lat": lat, "lon": lon, "area": {"radius_m": 250}}, lead)
    api(server.base, "POST", f"/incidents/{inc['id']}/activate", {}, lead)

    page.wait_for_selector("body.em-on", timeout=5000)
    assert page.locator("body").get_attribute("data-emergency") == str(inc["id"])
    assert page.locator("#emergency-panel").is_visible() and not page.locator("#sla-board").is_visible()
    assert page.locator("#emergency-title").inner_text() == "景山路口内涝"
    # the task board counts down by itself
    page.wait_for_selector("#emergency-body .em-task [data-deadline]")
    cd = page.locator("#emergency-body .em-task [data-deadline]").first
    first = cd.inner_text()
    page.wait_for_function("t => document.querySelector('#emergency-body .em-task [data-deadline]').textContent !== t",
                           arg=first, timeout=4000)
    # the perimeter is drawn on the map and the site marked
    page.wait_for_function("() => Array.from(document.querySelectorAll('.leaflet-overlay-pane path'))"
                           ".some(p => p.getAttribute('stroke') === '#ef4444')", timeout=5000)
    assert page.locator(".leaflet-marker-pane .cw-em-site").count() == 1
    # the camera next to the site is on the video wall first
    page.wait_for_function("id => document.querySelector(\"#video-wall-tiles .vt[data-tile='0']\")"
                           ".getAttribute('data-camera') === String(id)", arg=near["id"], timeout=5000)
    page.wait_for_function("() => { const t = window.citywall.videoWall.tiles[0];"
                           " return t.player && t.player.stats.framesDecoded > 0; }", timeout=30000)
    page.screenshot(path=str(ARTIFACTS / "wall_emergency_1920x1080.png"))

    # a leader switches the wall back
    api(server.base, "POST", f"/incidents/{inc['id']}/wall-mode", {"on": False}, lead)
    page.wait_for_function("() => !document.body.classList.contains('em-on')", timeout=5000)
    assert page.locator("#sla-board").is_visible() and not page.locator("#emergency-panel").is_visible()
    page.wait_for_function("id => document.querySelector(\"#video-wall-tiles .vt[data-tile='0']\")"
                           ".getAttribute('data-camera') === String(id)", arg=far["id"], timeout=5000)
    assert page.locator(".leaflet-marker-pane .cw-em-site").count() == 0
    # and turns it to the incident again
    api(server.base, "POST", f"/incidents/{inc['id']}/wall-mode", {"on": True}, lead)
    page.wait_for_selector("body.em-on", timeout=5000)
    # a screen opened with ?emergency=off stays as it is
    other = browser.new_context(viewport={"width": 1280, "height": 720}).new_page()
    other.goto(server.base + "/?emergency=off")
    wait_ready(other)
    other.wait_for_timeout(500)
    assert other.locator("body.em-on").count() == 0
    other.context.close()
    assert watch.errors == []
    page.context.close()
