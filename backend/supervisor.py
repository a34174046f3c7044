"""The supervisor (进程守护): prepares the store and starts every process of one instance.

It starts the embedded Redis when REDIS_URL is not set, migrates, seeds the demo city on first
start, then runs the web process (Flask + API on CITYWALL_HTTP_PORT), the worker, the GPS gateways,
the streams service and, in demo mode, the simulator; a child that dies is restarted with backoff.
SIGTERM or Ctrl-C stops them all.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from backend import bus
from backend import config as cw_config

log = logging.getLogger("citywall.supervisor")


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = field(default=0.0)


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def web_args(database_url: str | None = None) -> list[str]:
    """gunicorn settings of the web process: gthread workers (backend.webworker: a busy keep-alive connection
    stays with its thread). Screens hold a websocket each (one thread); every web worker reads the event stream
    for its own screens, so workers need no sticky sessions (websocket transport), and the wall's panels are
    computed by one of them for all (backend.realtime, Bridge.panels).

    On PostgreSQL two worker processes, one per core. On the embedded SQLite one: two take ~30% more API
    writes (both queueing on the write lock's file), but each reads the stream and pushes to its own screens,
    which costs the walls more CPU per screen than one worker (bench/README.md); CITYWALL_WEB_WORKERS=2
    chooses the API."""
    postgres = (database_url or cw_config.load().effective_database_url).startswith("postgres")
    workers = os.environ.get("CITYWALL_WEB_WORKERS", "2" if postgres else "1")
    threads = os.environ.get("CITYWALL_WEB_THREADS", "64" if postgres else "128")
    return ["--worker-class", "backend.webworker.Worker", "--workers", workers, "--threads", threads,
            "--timeout", "120", "--graceful-timeout", "5"]


def children(cfg: cw_config.Config) -> list[Child]:
    py = sys.executable
    bind = os.environ.get("CITYWALL_BIND", "0.0.0.0")
    out = [
        Child("web", [py, "-m", "gunicorn", *web_args(), "--bind", f"{bind}:{cfg.http_port}",
                      "--log-level", "warning", "backend.wsgi:app"]),
        Child("worker", [py, "-m", "backend.worker"]),
    ]
    if _has_module("backend.gps.__main__"):
        out.append(Child("gps", [py, "-m", "backend.gps"]))
    if _has_module("streams.__main__"):
        out.append(Child("streams", [py, "-m", "streams"]))
    if cfg.demo and _has_module("backend.sim.__main__"):
        out.append(Child("sim", [py, "-m", "backend.sim"]))
    return out


def prepare(cfg: cw_config.Config) -> None:
    """Migrate, make sure `admin` exists, seed the demo city on an empty store."""
    from backend.services import seed
    from backend.services.context import Context, use
    from backend.store.db import migrate

    ctx = Context.from_config(cfg)
    use(ctx)
    migrate(ctx.engine)
    seed.ensure_admin(cfg.admin_password)
    if cfg.demo and not seed.is_seeded():
        from backend import cli

        cli.cmd_seed(type("A", (), {"history_days": 14, "per_day": 120})())
    ctx.outbox.flush()
    ctx.close()
    use(None)


def banner(cfg: cw_config.Config) -> str:
    lines = [
        "",
        "citywall 数字城管指挥大厅 is running",
        f"  wall       http://localhost:{cfg.http_port}/",
        f"  console    http://localhost:{cfg.http_port}/console",
        f"  API        http://localhost:{cfg.http_port}/api/v1/health  (OpenAPI: /api/v1/openapi.json)",
        f"  GPS        JT/T 808 tcp://localhost:{cfg.jt808_port}   OsmAnd http://localhost:{cfg.osmand_port}/",
        f"  streams    http://localhost:{cfg.streams_port}/",
        f"  data       {cfg.data_dir}  database {cfg.effective_database_url.split('@')[-1]}",
        f"  redis      {cfg.redis_url or 'embedded (' + str(cfg.redis_socket) + ')'}",
    ]
    if cfg.demo:
        lines += ["  demo users (password demo1234): insp001…insp056 监督员, operator1 受理员, supervisor 值班长, "
                  "dispatcher 派遣员, leader 领导, dept_sanitation / dept_law_enforcement / dept_roads … 专业部门",
                  f"  admin password: {'from CITYWALL_ADMIN_PASSWORD' if cfg.admin_password else 'admin'}"]
    return "\n".join(lines) + "\n"


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # One outbox relay for the whole instance, in the worker (see backend.services.outbox); the children
    # inherit this.
    os.environ.setdefault("CITYWALL_OUTBOX_RELAY", "worker")
    cfg = cw_config.load()
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    if not cfg.redis_url:
        bus.start_embedded(cfg)
    prepare(cfg)
    procs = children(cfg)
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(banner(cfg), flush=True)
    try:
        while not stopping:
            now = time.monotonic()
            for c in procs:
                if c.proc is not None and c.proc.poll() is not None:
                    code = c.proc.returncode
                    c.proc = None
                    c.restarts += 1
                    delay = min(30.0, 0.5 * 2 ** min(c.restarts, 6))
                    if now - c.started_at > 60:
                        c.restarts, delay = 0, 0.5
                    c.next_start = now + delay
                    log.warning("%s exited with %s; restarting in %.1f s", c.name, code, delay)
                if c.proc is None and now >= c.next_start:
                    c.proc = subprocess.Popen(c.argv)
                    c.started_at = now
            time.sleep(0.3)
    finally:
        for c in procs:
            if c.proc is not None and c.proc.poll() is None:
                c.proc.terminate()
        deadline = time.monotonic() + 8
        for c in procs:
            if c.proc is not None:
                try:
                    c.proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    c.proc.kill()
        bus.stop_embedded()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
