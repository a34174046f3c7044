"""pytest fixtures for the streams tests (import them into a test module).

Every process started here is stopped in the fixture's teardown.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from streams.testing.harness import CHROMIUM, RtspCamera, StreamsProcess, chromium_args

ARTIFACTS = Path(__file__).resolve().parents[2] / "tests" / "artifacts"

SYNTHETIC_CAMERA = {"id": 1, "name": "Test Corner 1", "lat": 30.27, "lon": 120.15,
                    "grid_code": "330102001001001", "source": "synthetic:TEST-01?size=640x360&fps=25"}


@pytest.fixture(scope="module")
def rtsp_camera():
    cam = RtspCamera(size="640x360").start()
    yield cam
    cam.stop()


@pytest.fixture(scope="module")
def streams_service(rtsp_camera):
    """The service with a synthetic camera (id 1) and the RTSP test camera (id 2)."""
    rtsp = {"id": 2, "name": "RTSP Test", "lat": 30.26, "lon": 120.16, "grid_code": "330102001002001",
            "source": rtsp_camera.url}
    svc = StreamsProcess([SYNTHETIC_CAMERA, rtsp], env={"CITYWALL_STREAMS_LINGER": "2",
                                                        "CITYWALL_DEMO": "1"}).start()
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is not installed (make test installs it)")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=chromium_args())
        yield chromium
        chromium.close()


class ConsoleErrors(list):
    """Console errors and page errors of one page; a test asserts it stays empty."""


@pytest.fixture
def open_page(browser):
    """open_page(url) -> (page, errors); pages (one per context) are closed at teardown."""
    contexts = []

    def _open(url: str):
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        contexts.append(context)
        page = context.new_page()
        errors = ConsoleErrors()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        return page, errors

    yield _open
    for context in contexts:
        try:
            context.close()
        except Exception:
            pass
