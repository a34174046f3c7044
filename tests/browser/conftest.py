"""The one headless Chromium of a browser test module.

A module launches it with the flags it names in BROWSER_ARGS: the wall's CHROMIUM_ARGS when it names
none; the modules that play WebRTC name streams.testing.harness.chromium_args() (plus fake media devices
for the conference). test_video_player.py uses streams.testing.fixtures' own `browser` instead.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser.wall_server import CHROMIUM, CHROMIUM_ARGS


@pytest.fixture(scope="module")
def browser(request):
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is not installed (make test installs it)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=getattr(request.module, "BROWSER_ARGS", CHROMIUM_ARGS))
        yield b
        b.close()
