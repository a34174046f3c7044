"""Where the wall's first render goes (大屏首屏剖析): one cold load after another, broken down.

    .venv/bin/python bench/wall/profile.py [--data-dir /tmp/citywall-bench-wall] [--loads 3] [--trace out.json]

Uses the data dir bench/wall/run.py prepared (run it once first), starts gunicorn and the simulator,
and for each cold load (fresh browser context) prints: the `/wall/api/state` request (start, server
time to first byte, end, transferred size), the screen's `cw:state` mark (the state applied), the first
render, the long tasks (> 50 ms) before it, and the markers on the map. `--trace` writes a Chromium
performance trace of the last load (open it in chrome://tracing or the DevTools performance panel).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import start_hall, stop_all  # noqa: E402

PROBE = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const st = performance.getEntriesByType('resource').filter(r => r.name.includes('/wall/api/state'))[0];
  const mark = performance.getEntriesByName('cw:state')[0];
  const js = performance.getEntriesByType('resource').filter(r => r.initiatorType === 'script')
    .reduce((a, r) => a + (r.encodedBodySize || 0), 0);
  return {first_render: window.citywall.metrics.firstRender,
          dom_content_loaded: nav && nav.domContentLoadedEventEnd,
          state_request: st && {start: st.startTime, ttfb: st.responseStart - st.requestStart, end: st.responseEnd,
                                bytes: st.encodedBodySize, raw_bytes: st.decodedBodySize,
                                server: (st.serverTiming || []).map(t => t.name + '=' + Math.round(t.duration))},
          state_applied: mark && mark.startTime,
          long_tasks: (window.__longTasks || []).map(t => [Math.round(t.startTime), Math.round(t.duration)]),
          script_bytes: js,
          markers: document.querySelectorAll('.leaflet-marker-pane .cw-cluster, .leaflet-marker-pane .cw-case').length,
          cases: window.citywall.S.cases.size};
}"""

LONG_TASKS = """window.__longTasks = [];
new PerformanceObserver(l => window.__longTasks.push(...l.getEntries())).observe({type: 'longtask', buffered: true});"""


def print_top(profile: dict, n: int = 25) -> None:
    """Self time per function (CDP cpuprofile), the top `n`."""
    nodes = {nd["id"]: nd for nd in profile["nodes"]}
    deltas = profile.get("timeDeltas") or []
    self_us: dict[str, float] = {}
    for i, sid in enumerate(profile.get("samples") or []):
        cf = nodes[sid]["callFrame"]
        key = f"{cf['functionName'] or '(anon)'} {cf['url'].rsplit('/', 1)[-1][:40]}:{cf['lineNumber']}"
        self_us[key] = self_us.get(key, 0.0) + (deltas[i + 1] if i + 1 < len(deltas) else 0)
    for key, us in sorted(self_us.items(), key=lambda kv: -kv[1])[:n]:
        print(f"  {us / 1000:8.1f} ms  {key}")
    # inclusive time of the screen runtime's own functions (assets/citywall-*.js), innermost first
    parent = {c: nd["id"] for nd in profile["nodes"] for c in nd.get("children", [])}
    ours: dict[str, float] = {}
    for i, sid in enumerate(profile.get("samples") or []):
        node = sid
        while node is not None:
            cf = nodes[node]["callFrame"]
            if "/assets/citywall" in cf["url"]:
                key = f"{cf['functionName'] or '(anon)'} {cf['url'].rsplit('/', 1)[-1].split('?')[0]}:{cf['lineNumber']}"
                ours[key] = ours.get(key, 0.0) + (deltas[i + 1] if i + 1 < len(deltas) else 0)
                break
            node = parent.get(node)
    print("  -- inclusive, innermost citywall function --")
    for key, us in sorted(ours.items(), key=lambda kv: -kv[1])[:n]:
        print(f"  {us / 1000:8.1f} ms  {key}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default="/tmp/citywall-bench-wall")
    ap.add_argument("--loads", type=int, default=3)
    ap.add_argument("--port", type=int, default=18096)
    ap.add_argument("--trace", default=None)
    ap.add_argument("--cpu", action="store_true", help="print the top self-time functions of each load (CDP Profiler)")
    args = ap.parse_args()
    data_dir = Path(args.data_dir)
    hall = start_hall(data_dir, args.port)
    base = f"http://127.0.0.1:{args.port}"
    out = []
    try:
        time.sleep(4)
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
            for i in range(args.loads):
                ctx = browser.new_context(viewport={"width": 1920, "height": 1080})
                page = ctx.new_page()
                page.add_init_script(LONG_TASKS)
                tracing = args.trace and i == args.loads - 1
                if tracing:
                    browser.start_tracing(page=page, screenshots=False, categories=[
                        "devtools.timeline", "v8.execute", "disabled-by-default-devtools.timeline", "blink.user_timing"])
                cdp = None
                if args.cpu:
                    cdp = ctx.new_cdp_session(page)
                    cdp.send("Profiler.enable")
                    cdp.send("Profiler.setSamplingInterval", {"interval": 500})
                    cdp.send("Profiler.start")
                page.goto(base + "/")
                page.wait_for_selector("body[data-ready='1']", timeout=60000)
                page.wait_for_timeout(500)
                if cdp is not None:
                    print_top(cdp.send("Profiler.stop")["profile"])
                if tracing:
                    Path(args.trace).write_bytes(browser.stop_tracing())
                got = page.evaluate(PROBE)
                out.append(got)
                print(json.dumps(got), flush=True)
                ctx.close()
            browser.close()
    finally:
        stop_all(hall)
    print(json.dumps({"first_render_median_ms": round(statistics.median(o["first_render"] for o in out)),
                      "load_average": os.getloadavg()[0]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
