"""GPS latency to the screen (定位上墙时延): terminal frame -> gateway -> Redis -> web -> wall socket.

    .venv/bin/python bench/gps/to_screen.py                       # 1,000 terminals at 5,000/s + probes
    .venv/bin/python bench/gps/to_screen.py --browser             # also a headless Chromium wall page
    .venv/bin/python bench/gps/to_screen.py --bridge-interval 0.5 # what-if: web bridge coalescing 0.5 s

Starts its own Redis database (db 7, flushed), a fresh data dir with the small test city, the real
gateway (``python -m backend.gps``, in-memory registry, auto-registration) and the real web process
(gunicorn as ``backend.supervisor.web_args()`` starts it). A load generator process keeps
``--terminals`` terminals sending at ``--rate`` positions/s; meanwhile probe positions go out at
random (Poisson, ``--probe-rate`` a second, so their phase against the summary and coalescing
intervals is uniform), in turn from ``--probes`` probe terminals in this process (each terminal
sends again only seconds later, so no probe is coalesced away by the next). A position is
recognised by its device and speed (a per-probe token). Measured from the moment the probe's
frame is written to the socket to:

- ``summary``: the position in a ``citywall:gps:summary`` message (gateway + pipeline),
- ``socket``: the position in a ``vehicles`` event on a Socket.IO client that speaks the wall's
  protocol (``auth {kind: "wall"}``, then ``hello``),
- ``browser`` (``--browser``): the wall page's vehicle state updated (``window.citywall.vehicles``)
  and the next animation frame after it (the layer is redrawn in that frame).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
import socketio  # noqa: E402

from backend.gps import jt808  # noqa: E402
from backend.gps.pipeline import CHANNEL_SUMMARY  # noqa: E402
from bench.gps.loadgen import run_loadgen  # noqa: E402
from bench.gps.run import free_port, percentile, start_gateways  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update"]
SECRET = "bench-secret"


def probe_phone(k: int) -> str:
    return f"0188{k:08d}"


def prepare_city(data_dir: Path, redis_url: str, devices: list[str]) -> None:
    """Migrate a fresh SQLite store, seed the small test city, register the probe devices."""
    from backend.services import gps, seed
    from backend.services.context import Context, use
    from backend.store.db import migrate
    from tests import support

    ctx = Context.from_config(support.make_config(data_dir, f"sqlite:///{data_dir / 'citywall.db'}",
                                                  redis_url))
    use(ctx)
    try:
        migrate(ctx.engine)
        seed.seed_city(support.small_city())
        depts = sorted(ctx.departments)
        for k, phone in enumerate(devices):
            gps.create_device({"protocol": "jt808", "identifier": phone, "kind": "vehicle",
                               "plate": f"测B{k:05d}", "vehicle_type": "环卫车",
                               "department_id": depts[0]})
    finally:
        ctx.outbox.stop()
        ctx.close()
        use(None)


def start_web(data_dir: Path, port: int, redis_url: str, bridge_interval: float | None) -> subprocess.Popen:
    from backend.supervisor import web_args

    env = dict(os.environ, CITYWALL_DATA_DIR=str(data_dir), REDIS_URL=redis_url, CITYWALL_DEMO="0",
               CITYWALL_SECRET_KEY=SECRET, CITYWALL_HTTP_PORT=str(port), PYTHONUNBUFFERED="1")
    app = "backend.wsgi:app"
    if bridge_interval is not None:
        env["CITYWALL_BENCH_VEHICLE_INTERVAL"] = str(bridge_interval)
        app = "bench.gps.web_app:app"
    log = open(data_dir / "web.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", *web_args(), "--bind", f"127.0.0.1:{port}",
                             "--log-level", "warning", app],
                            cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the web process exited: see {data_dir / 'web.log'}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the web process did not listen in time")


def stop_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


class Probe(asyncio.Protocol):
    """A probe terminal: sends one 0x0200 at a time; speed (km/h) = the probe's token."""

    def __init__(self, phone: str) -> None:
        self.phone = phone
        self.device = f"jt808:{phone}"
        self.transport: asyncio.Transport | None = None
        self.serial = 0
        self.rnd = random.Random(phone)
        self.lat, self.lon = 22.55 + self.rnd.random() * 0.05, 114.05 + self.rnd.random() * 0.05

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        pass  # acknowledgements: not needed, the probe watches the screen

    def send(self, token: int) -> float:
        self.serial = (self.serial + 1) & 0xFFFF
        self.lat += 1e-5
        body = jt808.encode_location(self.lat, self.lon, time.time(), float(token), 90, 10)
        frame = jt808.encode_message(jt808.LOCATION, self.phone, self.serial, body)
        sent = time.time()
        self.transport.write(frame)
        return sent


class Watch:
    """Arrival times of (device, token) in the summary channel and on the wall socket."""

    def __init__(self) -> None:
        self.waiting: set[tuple[str, int]] = set()
        self.summary_at: dict[tuple[str, int], float] = {}
        self.socket_at: dict[tuple[str, int], float] = {}
        self.messages = 0
        self.summary_times: list[float] = []
        self.socket_times: list[float] = []
        self.devices_per_message: list[int] = []

    def seen(self, devices: list[dict], where: dict[tuple[str, int], float], now: float) -> None:
        for d in devices:
            try:
                key = (d["device"], round(float(d["speed"])))
            except (KeyError, TypeError, ValueError):
                continue
            if key in self.waiting and key not in where:
                where[key] = now


async def summary_listener(url: str, watch: Watch) -> None:
    import redis.asyncio as aredis

    client = aredis.Redis.from_url(url)
    pubsub = client.pubsub()
    await pubsub.subscribe(CHANNEL_SUMMARY)
    try:
        while True:
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if msg is not None:
                now = time.time()
                watch.summary_times.append(now)
                watch.seen(json.loads(msg["data"]).get("devices") or [], watch.summary_at, now)
    finally:
        await pubsub.aclose()
        await client.aclose()


async def send_probes(probes: list[Probe], watch: Watch, until: float, sends: list, rate: float) -> None:
    """Poisson arrivals at ``rate``/s, the probe terminals in turn; token = the round + 1."""
    rnd = random.Random(808)
    count = 0
    while time.time() < until:
        await asyncio.sleep(rnd.expovariate(rate))
        probe = probes[count % len(probes)]
        token = (count // len(probes)) % 6000 + 1
        count += 1
        key = (probe.device, token)
        watch.waiting.add(key)
        sends.append((key, probe.send(token)))


BROWSER_HOOK = """(devices) => {
  const want = new Set(devices);
  window.__probeSeen = [];
  window.citywall.on("vehicles", (msg) => {
    const now = Date.now();
    const hits = (msg && msg.devices || []).filter(d => want.has(d.device));
    if (!hits.length) return;
    requestAnimationFrame(() => {
      const painted = Date.now();
      for (const d of hits) window.__probeSeen.push([d.device, Math.round(d.speed), now, painted]);
    });
  });
}"""


async def run(args: argparse.Namespace, base: str, redis_url: str, gateway_port: int) -> dict:
    watch = Watch()
    sio = socketio.AsyncClient(reconnection=False)

    @sio.on("tick")  # the wall room's tick: the positions ride in it with the events and panels
    async def _vehicles(tick):
        msg = (tick or {}).get("vehicles")
        if not msg:
            return
        now = time.time()
        watch.messages += 1
        watch.socket_times.append(now)
        devices = (msg or {}).get("devices") or []
        watch.devices_per_message.append(len(devices))
        watch.seen(devices, watch.socket_at, now)

    await sio.connect(base, auth={"kind": "wall"}, transports=["websocket"], wait_timeout=20)
    hello = await sio.call("hello", {"after": 0}, timeout=20)
    listener = asyncio.create_task(summary_listener(redis_url, watch))

    browser = page = pw = None
    if args.browser:
        from playwright.async_api import async_playwright

        pw = await async_playwright().start()
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await (await browser.new_context(viewport={"width": 1920, "height": 1080})).new_page()
        await page.goto(base + "/")
        await page.wait_for_selector("body[data-ready='1']", timeout=30000)
        await page.wait_for_function("() => window.citywall && window.citywall.S.connected", timeout=30000)
        await page.wait_for_function("() => window.citywall.vehicles && window.citywall.vehicles.loaded",
                                     timeout=30000)
        await page.evaluate(BROWSER_HOOK, [f"jt808:{probe_phone(k)}" for k in range(args.probes)])

    loop = asyncio.get_running_loop()
    probes = [Probe(probe_phone(k)) for k in range(args.probes)]
    for p in probes:
        await loop.create_connection(lambda p=p: p, "127.0.0.1", gateway_port)
    sends: list[tuple[tuple[str, int], float]] = []
    # a first position from every probe, not measured: the wall learns the devices
    for p in probes:
        p.send(6001)
    await asyncio.sleep(3.0)
    until = time.time() + args.seconds
    await send_probes(probes, watch, until, sends, args.probe_rate)
    await asyncio.sleep(args.timeout)

    browser_seen: dict[tuple[str, int], tuple[float, float]] = {}
    if page is not None:
        for device, token, at, painted in await page.evaluate("() => window.__probeSeen"):
            browser_seen.setdefault((device, token), (at / 1000, painted / 1000))
        await browser.close()
        await pw.stop()
    listener.cancel()
    await asyncio.gather(listener, return_exceptions=True)
    await sio.disconnect()
    for p in probes:
        p.transport.close()

    def figures(delays: list[float]) -> dict:
        return {"n": len(delays), "p50_ms": round(percentile(delays, 0.50) * 1000),
                "p90_ms": round(percentile(delays, 0.90) * 1000),
                "p99_ms": round(percentile(delays, 0.99) * 1000),
                "max_ms": round(max(delays) * 1000) if delays else None}

    def gaps(times: list[float]) -> dict:
        deltas = [b - a for a, b in zip(times, times[1:])]
        return {"p50": round(percentile(deltas, 0.5) * 1000), "max": round(max(deltas) * 1000) if deltas else None}

    to_summary = [watch.summary_at[k] - t for k, t in sends if k in watch.summary_at]
    to_socket = [watch.socket_at[k] - t for k, t in sends if k in watch.socket_at]
    out = {"hello": hello, "probes_sent": len(sends),
           "socket_missed": sum(1 for k, _ in sends if k not in watch.socket_at),
           "vehicles_messages": watch.messages,
           "devices_per_message_p50": percentile(watch.devices_per_message, 0.5),
           "summary_gap_ms": gaps(watch.summary_times), "vehicles_gap_ms": gaps(watch.socket_times),
           "to_summary": figures(to_summary), "to_socket": figures(to_socket)}
    if page is not None:
        out["to_browser_state"] = figures([browser_seen[k][0] - t for k, t in sends if k in browser_seen])
        out["to_browser_frame"] = figures([browser_seen[k][1] - t for k, t in sends if k in browser_seen])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--terminals", type=int, default=1000, help="background terminals")
    parser.add_argument("--rate", type=float, default=5000.0, help="background positions/s (paced)")
    parser.add_argument("--probes", type=int, default=100, help="probe terminals")
    parser.add_argument("--probe-rate", type=float, default=20.0, help="probe positions/s (Poisson)")
    parser.add_argument("--seconds", type=float, default=30.0, help="probing time")
    parser.add_argument("--timeout", type=float, default=5.0, help="wait after the last probe")
    parser.add_argument("--browser", action="store_true", help="also measure a headless Chromium wall page")
    parser.add_argument("--summary-interval", type=float, default=None,
                        help="gateway summary interval (CITYWALL_GPS_SUMMARY_INTERVAL); default: the gateway's")
    parser.add_argument("--bridge-interval", type=float, default=None,
                        help="what-if: the web bridge's vehicle coalescing interval (default: as shipped)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/7")
    parser.add_argument("--json", help="write the result here as JSON")
    args = parser.parse_args()

    client = redis.Redis.from_url(args.redis)
    client.flushdb()
    data_dir = Path(tempfile.mkdtemp(prefix="citywall-gps-screen-"))
    prepare_city(data_dir, args.redis, [probe_phone(k) for k in range(args.probes)])
    if args.summary_interval is not None:
        os.environ["CITYWALL_GPS_SUMMARY_INTERVAL"] = str(args.summary_interval)
    gateway_port = free_port()
    gateways = start_gateways(1, gateway_port, args.redis)
    web_port = free_port()
    web = None
    loadgen = None
    try:
        web = start_web(data_dir, web_port, args.redis, args.bridge_interval)
        ctx = mp.get_context("fork")
        start_event, queue = ctx.Event(), ctx.Queue()
        if args.terminals:
            seconds = args.seconds + 15 + (20 if args.browser else 0)
            ring = int(seconds * args.rate / args.terminals) + 8
            loadgen = ctx.Process(target=run_loadgen, args=(
                "127.0.0.1", gateway_port, 0, args.terminals, seconds, 20, args.rate, start_event, queue,
                # fix times follow the clock and never wrap back during the run: every summary
                # carries every background terminal, as on a busy wall
                ring, args.terminals / args.rate))
            loadgen.start()
            queue.get(timeout=120)
            start_event.set()
            time.sleep(2.0)
        load_before = os.getloadavg()[0]
        result = asyncio.run(run(args, f"http://127.0.0.1:{web_port}", args.redis, gateway_port))
        report = {"terminals": args.terminals, "background_rate": args.rate, "probes": args.probes,
                  "summary_interval": args.summary_interval or "gateway default",
                  "bridge_interval": args.bridge_interval or "as shipped",
                  "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)], **result}
    finally:
        if loadgen is not None:
            loadgen.terminate()
            loadgen.join(10)
        if web is not None:
            stop_group(web)
        for gw in gateways:
            gw.send_signal(signal.SIGTERM)
        for gw in gateways:
            gw.wait(timeout=30)
        client.flushdb()
        shutil.rmtree(data_dir, ignore_errors=True)
    print(json.dumps(report, indent=2, ensure_ascii=False))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
