"""Wall benchmark (大屏性能): 20,000 open cases, the simulator running, events flowing.

    .venv/bin/python bench/wall/run.py [--cases 20000] [--data-dir /tmp/citywall-bench-wall] [--seconds 30] [--rounds 3]

Measures, against a real gunicorn web process and headless Chromium:
- time to first full render (navigation start → state loaded and painted: map, board, panels);
- push-to-paint latency in the browser (server emit time → the frame that shows it), p50 and p99;
- the browser main thread's busy share (CDP TaskDuration) while events flow;
- the web process's CPU (its worker processes together) with 1 screen and with 50 screens connected (49
  extra Socket.IO clients), in alternating windows, compared by their medians.
The processes run as `make run` runs them: gunicorn with `backend.supervisor.web_args()`, the worker
(the outbox relay of the instance) and the simulator.
Uses the real Redis at 127.0.0.1:6379 db 5 (flushed). Figures go to stdout as JSON; README.md holds them.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import urllib.request
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

REDIS_URL = "redis://127.0.0.1:6379/5"


def prepare(data_dir: Path, n_cases: int) -> None:
    """The demo city with `n_cases` open cases (created through the case service)."""
    os.environ.update(CITYWALL_DATA_DIR=str(data_dir), REDIS_URL=REDIS_URL, CITYWALL_SECRET_KEY="bench")
    import redis

    from backend import config
    from backend.domain.lifecycle import Actor
    from backend.services import cases, seed
    from backend.services.context import Context, use
    from backend.sim.city import build_city
    from backend.store.db import migrate

    redis.Redis.from_url(REDIS_URL).flushdb()
    ctx = Context.from_config(config.load())
    use(ctx)
    migrate(ctx.engine)
    if not seed.is_seeded():
        seed.seed_city(build_city())
        seed.ensure_admin("admin")
    have = len(cases.query(limit=n_cases + 1))
    rng = random.Random(3)
    west, south, east, north = 116.383, 39.855, 116.445, 39.975
    classes = [c.key for c in ctx.catalog.classes if c.kind == "E"][:30]
    inspector = Actor("insp001", "inspector")
    t0 = time.time()
    made = 0
    while have + made < n_cases:
        try:
            cases.create({"class_code": rng.choice(classes), "lat": rng.uniform(south, north),
                          "lon": rng.uniform(west, east), "description": "基准测试案件", "source": "inspector"},
                         inspector)
            made += 1
        except Exception:
            continue  # outside the district's grids
        if made % 2000 == 0:
            print(f"  {have + made} open cases ({time.time() - t0:.0f} s)", flush=True)
    ctx.outbox.flush()
    ctx.outbox.stop()
    ctx.close()
    use(None)


def start(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def start_hall(data_dir: Path, port: int) -> tuple[subprocess.Popen, ...]:
    """The web process (gunicorn as the supervisor starts it), the worker and the simulator on `data_dir`,
    logging there. The web process comes first."""
    from backend.supervisor import web_args

    env = dict(os.environ, CITYWALL_DATA_DIR=str(data_dir), REDIS_URL=REDIS_URL, CITYWALL_SECRET_KEY="bench",
               CITYWALL_DEMO="1", CITYWALL_SIM_RATE="6", CITYWALL_OUTBOX_RELAY="worker")
    py = sys.executable
    web = start([py, "-m", "gunicorn", *web_args(), "--bind", f"127.0.0.1:{port}", "--log-level", "warning",
                 "backend.wsgi:app"], env, data_dir / "web.log")
    worker = start([py, "-m", "backend.worker"], env, data_dir / "worker.log")
    sim = start([py, "-m", "backend.sim"], env, data_dir / "sim.log")
    return web, worker, sim


def stop_all(procs) -> None:
    for proc in procs:
        try:
            os.killpg(proc.pid, 15)
            proc.wait(10)
        except Exception:
            pass


def worker_pids(master: int) -> list[int]:
    """The gunicorn worker processes of the web process."""
    from backend.supervisor import web_args

    want = int(web_args()[web_args().index("--workers") + 1])
    for _ in range(100):
        kids = [int(k) for k in Path(f"/proc/{master}/task/{master}/children").read_text().split()]
        if len(kids) >= want:
            return kids
        time.sleep(0.1)
    raise RuntimeError("the gunicorn workers did not start")


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


class Driver(threading.Thread):
    """Moves open cases along (立案, 派遣) through the case service: a steady flow of events."""

    def __init__(self, data_dir: Path, rate: float):
        super().__init__(daemon=True)
        self.rate, self.stop_flag, self.count = rate, threading.Event(), 0
        self.data_dir = data_dir

    def run(self) -> None:
        from backend import config
        from backend.domain.lifecycle import Actor
        from backend.services import cases
        from backend.services.context import Context, use

        ctx = Context.from_config(config.load())
        use(ctx)
        ctx.outbox.start_for("sim")
        sup, disp = Actor("supervisor", "supervisor"), Actor("dispatcher", "dispatcher")
        todo = [c["id"] for c in cases.query(statuses=["to_register"], limit=50_000)]
        random.Random(5).shuffle(todo)
        step = 1.0 / self.rate
        nxt = time.monotonic()
        while not self.stop_flag.is_set() and todo:
            cid = todo.pop()
            try:
                cases.apply(cid, "register", sup)
                cases.apply(cid, "dispatch", disp)
                self.count += 2
            except Exception:
                pass
            nxt += 2 * step
            self.stop_flag.wait(max(0.0, nxt - time.monotonic()))
        ctx.outbox.stop()


async def extra_screens(base: str, n: int, hold: float) -> int:
    import socketio

    clients = []
    for _ in range(n):
        c = socketio.AsyncClient(reconnection=False)
        got = {"n": 0}
        c.on("tick", lambda m, got=got: got.__setitem__("n", got["n"] + 1))
        await c.connect(base, transports=["websocket"], auth={"kind": "wall"}, socketio_path="socket.io")
        await c.emit("hello", {"after": 10 ** 12})
        clients.append((c, got))
    await asyncio.sleep(hold)
    received = sum(g["n"] for _c, g in clients)
    for c, _g in clients:
        await c.disconnect()
    return received


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=20_000)
    ap.add_argument("--data-dir", default="/tmp/citywall-bench-wall")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--rounds", type=int, default=3, help="alternating 1-screen / 50-screen CPU windows")
    ap.add_argument("--rate", type=float, default=4.0, help="driver events per second")
    ap.add_argument("--port", type=int, default=18095)
    args = ap.parse_args()
    data_dir = Path(args.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    print(f"preparing {args.cases} open cases in {data_dir} …", flush=True)
    prepare(data_dir, args.cases)
    hall = start_hall(data_dir, args.port)
    web = hall[0]
    base = f"http://127.0.0.1:{args.port}"
    out: dict = {"open_cases": args.cases}
    driver = None
    try:
        time.sleep(4)
        wpid = worker_pids(web.pid)
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
            renders, trends, states = [], [], []
            out["load_average_start"] = round(os.getloadavg()[0], 2)
            for _ in range(4):
                page = browser.new_page(viewport={"width": 1920, "height": 1080})
                page.goto(base + "/")
                page.wait_for_selector("body[data-ready='1']", timeout=60000)
                renders.append(page.evaluate("() => window.citywall.metrics.firstRender"))
                # the trend charts (Plotly) are drawn after the first frame, in idle time
                page.wait_for_function("() => window.citywall.metrics.trendsDrawn != null", timeout=60000)
                trends.append(page.evaluate("() => window.citywall.metrics.trendsDrawn"))
                states.append(page.evaluate("""() => { const r = performance.getEntriesByType('resource')
                    .filter(e => e.name.includes('/wall/api/state'))[0];
                    return r && {ms: Math.round(r.responseEnd - r.startTime), bytes: r.encodedBodySize,
                                 server: (r.serverTiming || []).map(t => t.name + '=' + Math.round(t.duration))}; }"""))
                shown = page.evaluate("() => window.citywall.S.cases.size")
                page.close()
            # run 1 may read the state cold (a fresh process, no pushed summaries yet); later runs may reuse
            # a snapshot read up to 3 s earlier (dashboard/routes.py STATE_MAX_AGE)
            out["first_render_ms"] = {"runs": [round(r) for r in renders], "median_warm": round(statistics.median(renders[1:])),
                                      "median_all": round(statistics.median(renders))}
            out["trends_drawn_ms"] = [round(t) for t in trends]
            out["state_requests"] = states
            out["cases_on_wall"] = shown
            page = browser.new_page(viewport={"width": 1920, "height": 1080})
            page.goto(base + "/")
            page.wait_for_selector("body[data-ready='1']", timeout=60000)
            page.wait_for_function("() => window.citywall.S.connected")
            cdp = page.context.new_cdp_session(page)
            cdp.send("Performance.enable")
            driver = Driver(data_dir, args.rate)
            os.environ.update(CITYWALL_DATA_DIR=str(data_dir), REDIS_URL=REDIS_URL, CITYWALL_SECRET_KEY="bench",
                              CITYWALL_OUTBOX_RELAY="worker")
            driver.start()
            time.sleep(3)
            page.evaluate("() => { window.citywall.metrics.pushToPaint.length = 0; }")

            def task_seconds() -> float:
                return {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}["TaskDuration"]

            t0, task0, cpu0 = time.monotonic(), task_seconds(), cpu_seconds(wpid)
            time.sleep(args.seconds)
            t1, task1, cpu1 = time.monotonic(), task_seconds(), cpu_seconds(wpid)
            p2p = page.evaluate("() => window.citywall.metrics.pushToPaint.slice()")
            out["push_to_paint_ms"] = {"samples": len(p2p), "p50": pct(p2p, 50), "p99": pct(p2p, 99),
                                       "max": max(p2p) if p2p else None}
            out["main_thread_busy_share"] = round((task1 - task0) / (t1 - t0), 3)
            events1 = driver.count
            # server CPU with 1 screen (this page) and with 50 (49 more Socket.IO clients speaking the wall's
            # protocol), in alternating windows: the simulator's flow and the panel recomputations vary from
            # one window to the next, so one window of each would compare noise
            one, fifty, received, screens = [], [], 0, None
            one.append(100 * (cpu1 - cpu0) / (t1 - t0))
            for r in range(args.rounds):
                if r:
                    ta, ca = time.monotonic(), cpu_seconds(wpid)
                    time.sleep(args.seconds)
                    one.append(100 * (cpu_seconds(wpid) - ca) / (time.monotonic() - ta))
                holder: dict = {}

                def run_clients():
                    holder["received"] = asyncio.run(extra_screens(base, 49, args.seconds + 6))

                th = threading.Thread(target=run_clients)
                th.start()
                time.sleep(5)
                t2, cpu2 = time.monotonic(), cpu_seconds(wpid)
                time.sleep(args.seconds)
                t3, cpu3 = time.monotonic(), cpu_seconds(wpid)
                fifty.append(100 * (cpu3 - cpu2) / (t3 - t2))
                with urllib.request.urlopen(base + "/api/v1/health", timeout=10) as resp:
                    screens = json.loads(resp.read()).get("screens")
                th.join()
                received += holder.get("received") or 0
                time.sleep(2)  # the 49 gone before the next one-screen window
            out["server_cpu_1_screen_pct"] = [round(v, 1) for v in one]
            out["server_cpu_50_screens_pct"] = [round(v, 1) for v in fifty]
            m1, m50 = statistics.median(one), statistics.median(fifty)
            out["server_cpu_medians"] = {"1": round(m1, 2), "50": round(m50, 2),
                                         "increase_pct": round(100 * (m50 - m1) / m1, 1)}
            out["screens_at_50"] = screens
            out["extra_screen_ticks_received"] = received
            out["driver_events"] = driver.count
            out["events_per_second"] = round(events1 / (args.seconds + 3), 2)
            out["load_average_end"] = round(os.getloadavg()[0], 2)
            browser.close()
    finally:
        if driver is not None:
            driver.stop_flag.set()
        stop_all(hall)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
