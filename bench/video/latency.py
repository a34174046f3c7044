"""Glass-to-glass latency and time to first frame, measured in Chromium.

    .venv/bin/python bench/video/latency.py [--seconds 20] [--joins 5]

Latency: the synthetic 720p camera draws the wall-clock time into a barcode in each frame; the page
reads it back on every displayed frame (requestVideoFrameCallback, expectedDisplayTime) and keeps
display time - draw time. Same machine, so both ends share one clock.
First frame: fresh pages joining a camera that is already being watched (a late joiner), measured by
the player from `play()` to the first painted frame: the synthetic camera (its encoder is asked for an
IDR when a viewer joins) and an RTSP 720p passthrough camera (waits for the camera's next IDR, 1 s GOP).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from playwright.sync_api import sync_playwright  # noqa: E402

from streams.testing.harness import CHROMIUM, RtspCamera, StreamsProcess, chromium_args  # noqa: E402


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def wait_frame(page, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = page.evaluate("() => Object.assign({}, window.player.stats)")
        if s["firstFrameMs"] is not None:
            return s
        time.sleep(0.05)
    raise RuntimeError("no first frame")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--joins", type=int, default=5)
    args = parser.parse_args()
    cam = RtspCamera(size="1280x720").start()
    svc = StreamsProcess([
        {"id": 1, "name": "Synthetic 720p", "lat": 30, "lon": 120, "source": "synthetic:LAT?size=1280x720&fps=25"},
        {"id": 2, "name": "RTSP 720p", "lat": 30, "lon": 120, "source": cam.url},
    ], env={"CITYWALL_STREAMS_LINGER": "30"}).start()
    report: dict = {}
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=chromium_args())
            ctx = browser.new_context()
            page = ctx.new_page()
            page.goto(f"{svc.base}/streams/v1/test.html?camera=1&latency=1")
            cold = wait_frame(page)
            report["synthetic_cold_start_first_frame_ms"] = cold["firstFrameMs"]
            time.sleep(3)
            page.evaluate("() => { window.player.latency.length = 0; }")
            time.sleep(args.seconds)
            samples = page.evaluate("() => window.player.latency.slice()")
            st = page.evaluate("() => Object.assign({}, window.player.stats)")
            report["latency_ms"] = {"samples": len(samples), "p50": percentile(samples, 50),
                                    "p90": percentile(samples, 90), "p99": percentile(samples, 99),
                                    "mean": round(statistics.mean(samples), 1)}
            report["frame"] = [st["frameWidth"], st["frameHeight"], st["codec"], st["fps"]]
            for camera_id, label in ((1, "synthetic"), (2, "rtsp_passthrough")):
                keeper = ctx.new_page() if camera_id == 2 else None
                if keeper:
                    keeper.goto(f"{svc.base}/streams/v1/test.html?camera=2")
                    wait_frame(keeper, 20)
                firsts, connects = [], []
                for _ in range(args.joins):
                    c = browser.new_context()
                    p = c.new_page()
                    p.goto(f"{svc.base}/streams/v1/test.html?camera={camera_id}")
                    s = wait_frame(p)
                    firsts.append(s["firstFrameMs"])
                    connects.append(s["connectedMs"])
                    c.close()
                    time.sleep(0.3)
                report[f"late_joiner_{label}"] = {"first_frame_ms": firsts, "connected_ms": connects,
                                                  "first_frame_p50": percentile(firsts, 50),
                                                  "first_frame_max": max(firsts)}
                if keeper:
                    keeper.close()
            browser.close()
    finally:
        svc.stop()
        cam.stop()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
