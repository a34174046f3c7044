"""A real web process for the wall's browser tests: gunicorn (our gthread worker, as `make run` starts it) on a
free port, a fresh data dir with the small test city, the real Redis (db 5), and a headless Chromium that
records console errors and failed requests."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import redis as redis_lib

from backend.services import seed
from backend.services.context import Context, use
from backend.store.db import migrate
from tests import support

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
REDIS_URL = "redis://127.0.0.1:6379/5"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
SECRET = "wall-test-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WallServer:
    """gunicorn serving backend.wsgi:app, restartable on the same port and data dir."""

    def __init__(self, data_dir: Path, port: int, extra_env: dict | None = None):
        self.data_dir, self.port = data_dir, port
        self.base = f"http://127.0.0.1:{port}"
        self.env = dict(os.environ, CITYWALL_DATA_DIR=str(data_dir), REDIS_URL=REDIS_URL, CITYWALL_DEMO="0",
                        CITYWALL_SECRET_KEY=SECRET, CITYWALL_HTTP_PORT=str(port), PYTHONUNBUFFERED="1",
                        **(extra_env or {}))
        self.proc: subprocess.Popen | None = None
        self.log = open(data_dir / "web.log", "ab")

    def start(self, timeout: float = 30.0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--worker-class", "backend.webworker.Worker", "--workers", "1",
             "--threads", "64", "--bind", f"127.0.0.1:{self.port}", "--timeout", "60", "--graceful-timeout", "2",
             "--log-level", "warning", "backend.wsgi:app"],
            cwd=ROOT, env=self.env, stdout=self.log, stderr=self.log, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the web process exited: see {self.data_dir / 'web.log'}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the web process did not listen in time")

    def kill(self) -> None:
        """SIGKILL the whole gunicorn process group (master and worker), as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None
        self.log.close()


def flush_redis() -> None:
    r = redis_lib.Redis.from_url(REDIS_URL)
    r.flushdb()
    r.close()


@contextlib.contextmanager
def small_city_store(data_dir: Path) -> Iterator[Context]:
    """The store of this test process on a fresh SQLite file in data_dir, migrated and seeded with the small
    city, on Redis db 5 (flushed before and after); closed and put out of use at the end."""
    flush_redis()
    ctx = Context.from_config(support.make_config(data_dir, f"sqlite:///{data_dir / 'citywall.db'}", REDIS_URL))
    use(ctx)
    try:
        migrate(ctx.engine)
        seed.seed_city(support.small_city())
        yield ctx
    finally:
        ctx.outbox.stop()
        ctx.close()
        use(None)
        flush_redis()


@contextlib.contextmanager
def running_wall(data_dir: Path, port: int | None = None, extra_env: dict | None = None) -> Iterator[WallServer]:
    """A started WallServer on data_dir (on `port`, else a free one), stopped at the end."""
    server = WallServer(data_dir, port if port is not None else free_port(), extra_env)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def served_city(data_dir: Path, extra_env: dict | None = None) -> Iterator[tuple[Context, WallServer]]:
    """small_city_store(data_dir) with a running_wall on it: yields (ctx, server). A module that must add to
    the city before the server starts (cameras, devices, a streams service) nests the two itself."""
    with small_city_store(data_dir) as ctx, running_wall(data_dir, extra_env=extra_env) as server:
        yield ctx, server


class PageWatch:
    """Console errors, page errors, failed requests and non-local requests of one page."""

    def __init__(self, page, base: str):
        self.page, self.base = page, base
        self.errors: list[str] = []
        self.external: list[str] = []
        page.on("console", lambda m: self.errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        page.on("requestfailed", self._failed)
        page.on("response", lambda r: self.errors.append(f"HTTP {r.status} {r.url}") if r.status >= 400 else None)
        page.on("request", lambda r: None if r.url.startswith(base) or r.url.startswith("data:")
                else self.external.append(r.url))

    def _failed(self, request) -> None:
        # a websocket torn down by a server restart is expected in the restart test; all else is a failure
        self.errors.append(f"request failed: {request.url} {request.failure}")


def wait_ready(page, timeout_ms: int = 20000) -> None:
    page.wait_for_selector("body[data-ready='1']", timeout=timeout_ms)
    page.wait_for_function("() => window.citywall && window.citywall.S.connected", timeout=timeout_ms)


def api(base: str, method: str, path: str, body: dict | None = None, token: str | None = None) -> dict:
    """Call the JSON API; raises AssertionError with the error body on a non-2xx answer."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + "/api/v1" + path, data=data, method=method,
                                 headers={"Content-Type": "application/json",
                                          **({"Authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"{method} {path}: {exc.code} {exc.read()[:300]!r}") from exc


def token(base: str, username: str, password: str) -> str:
    return api(base, "POST", "/auth/token", {"username": username, "password": password})["token"]
