"""Case actions per second, through the service layer and through HTTP, on SQLite and PostgreSQL.

    .venv/bin/python bench/bench_cases.py [--cases 800] [--threads 8,16] [--db sqlite,postgresql] [--relay worker]

Each case walks register → dispatch → accept → feedback → check → close (6 actions; creation is
timed too). Printed side by side with the raw ceiling of the same database in the same run: the
same number of bare transactions (one UPDATE + one INSERT each, no rules, no chain, no bus).

The outbox relay runs where `make run` puts it (`--relay worker`: the worker process, started here,
publishes every event to Redis) or in the writing process (`--relay process`). Either way the run
waits until every event is on the stream and says how long that took after the last write.
Goals (issue: case engine): ≥ 2,000 actions/s through the service layer, ≥ 800/s through HTTP,
p99 < 50 ms.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402

from backend.services import cases, seed  # noqa: E402
from backend.services.context import Context, use  # noqa: E402
from backend.store.db import migrate  # noqa: E402
from tests import support  # noqa: E402

WALK = ["register", "dispatch", "accept", "feedback", "check", "close"]
PAYLOAD = {"feedback": {"note": "已处理"}, "check": {"passed": True}}
ROLE = {"register": "supervisor", "dispatch": "dispatcher", "accept": "department", "feedback": "department",
        "check": "inspector", "close": "supervisor"}


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))] * 1000


REDIS_URL = "redis://127.0.0.1:6379/9"


def setup(db: str, tmp: Path, relay: str = "process"):
    schema = None
    if db == "sqlite":
        url = f"sqlite:///{tmp / 'bench.db'}"
    else:
        url, schema = support.pg_url_with_schema()
    ctx = Context.from_config(support.make_config(tmp, url, REDIS_URL, outbox_relay=relay))
    use(ctx)
    migrate(ctx.engine)
    seed.seed_city(support.small_city())
    ctx.redis.flushdb()
    ctx.outbox.start_for("web")
    return ctx, url, schema


def process_env(url: str, tmp: Path, relay: str) -> dict:
    return {**os.environ, "DATABASE_URL": url, "REDIS_URL": REDIS_URL, "CITYWALL_DATA_DIR": str(tmp),
            "CITYWALL_SECRET_KEY": "test-secret", "PYTHONPATH": str(ROOT), "CITYWALL_OUTBOX_RELAY": relay}


def start_worker(url: str, tmp: Path) -> subprocess.Popen:
    """The worker process as `make run` starts it: with CITYWALL_OUTBOX_RELAY=worker it is the only relay."""
    return subprocess.Popen([sys.executable, "-m", "backend.worker"], env=process_env(url, tmp, "worker"),
                            cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_published(ctx, since: float, timeout: float = 60) -> float:
    """Seconds from `since` until the outbox is empty (every event on the stream)."""
    deadline = time.monotonic() + timeout
    while ctx.outbox.pending() and time.monotonic() < deadline:
        time.sleep(0.01)
    if ctx.outbox.pending():
        raise SystemExit(f"{ctx.outbox.pending()} events still unpublished after {timeout} s")
    return time.perf_counter() - since


def actors(ctx):
    from backend.domain.lifecycle import Actor

    dept = next(d["id"] for d in ctx.departments.values() if d["code"] == "sanitation")
    return {r: Actor(r, r) for r in ("inspector", "supervisor", "dispatcher")} | {
        "department": Actor("dept_sanitation", "department", dept)}


def raw_ceiling(ctx, n: int) -> float:
    """Bare transactions on the same database: the floor of what any case write costs."""
    with ctx.engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS bench_raw (id INTEGER PRIMARY KEY, v INTEGER)"))
        conn.execute(text("CREATE TABLE IF NOT EXISTS bench_log (id INTEGER, at TEXT)"))
        conn.execute(text("INSERT INTO bench_raw (id, v) VALUES (1, 0)"))
    t0 = time.perf_counter()
    for i in range(n):
        with ctx.engine.begin() as conn:
            conn.execute(text("UPDATE bench_raw SET v = v + 1 WHERE id = 1"))
            conn.execute(text("INSERT INTO bench_log (id, at) VALUES (:i, 'x')"), {"i": i})
    return n / (time.perf_counter() - t0)


def run_service(ctx, n_cases: int, threads: int) -> dict:
    who = actors(ctx)
    lat, lon = support.inside()
    per_action: dict[str, list[float]] = {a: [] for a in ["create"] + WALK}
    lock = threading.Lock()

    def work(k: int):
        local: dict[str, list[float]] = {a: [] for a in per_action}
        for _ in range(k):
            t = time.perf_counter()
            c = cases.create({"class_code": "E0102", "lat": lat, "lon": lon, "description": "bench",
                              "source": "inspector"}, who["inspector"])
            local["create"].append(time.perf_counter() - t)
            for a in WALK:
                payload = dict(PAYLOAD.get(a, {}))
                if a == "dispatch":
                    payload["department_id"] = who["department"].department_id
                t = time.perf_counter()
                cases.apply(c["id"], a, who[ROLE[a]], payload)
                local[a].append(time.perf_counter() - t)
        with lock:
            for a, v in local.items():
                per_action[a].extend(v)

    t0 = time.perf_counter()
    ts = [threading.Thread(target=work, args=(n_cases // threads,)) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    end = time.perf_counter()
    total = sum(len(v) for v in per_action.values())
    return {"rate": total / (end - t0), "per_action": per_action, "n": total, "end": end}


class LeanConnection:
    """A keep-alive HTTP/1.1 client on a plain socket: the request bytes are written in one go and the
    answer read by its Content-Length. The load generator shares the two cores with the server, and
    http.client spends several times more CPU per request (header objects, the email parser)."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def request(self, method: str, path: str, body: bytes, headers: str) -> tuple[int, bytes]:
        self.sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: bench\r\n{headers}"
                          f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        while b"\r\n\r\n" not in self.buf:
            self._recv()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = next(int(v) for k, _, v in (line.partition(b":") for line in lines[1:])
                      if k.strip().lower() == b"content-length")
        while len(self.buf) < length:
            self._recv()
        data, self.buf = self.buf[:length], self.buf[length:]
        return status, data

    def _recv(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buf += chunk

    def close(self) -> None:
        self.sock.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_http(ctx, url: str, tmp: Path, n_cases: int, threads: int, relay: str) -> dict:
    port = free_port()
    env = process_env(url, tmp, relay)
    from backend.supervisor import web_args

    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", *web_args(url), "-b", f"127.0.0.1:{port}",
                             "--log-level", "warning", "backend.wsgi:app"], env=env, cwd=str(ROOT))
    try:
        for _ in range(100):
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/api/v1/health")
                if c.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.1)
        tokens = {}
        for user, role in [("inspector", "inspector"), ("supervisor", "supervisor"), ("dispatcher", "dispatcher"),
                           ("dept_sanitation", "department")]:
            c = http.client.HTTPConnection("127.0.0.1", port)
            c.request("POST", "/api/v1/auth/token", json.dumps({"username": user, "password": support.PASSWORD}),
                      {"Content-Type": "application/json"})
            tokens[role] = json.loads(c.getresponse().read())["token"]
        lat, lon = support.inside()
        per_action: dict[str, list[float]] = {a: [] for a in ["create"] + WALK}
        lock = threading.Lock()
        errors: list[str] = []

        headers = {role: f"Content-Type: application/json\r\nAuthorization: Bearer {tok}\r\n"
                   for role, tok in tokens.items()}

        def call(conn, method, path, body, role):
            t = time.perf_counter()
            status, data = conn.request(method, path, json.dumps(body).encode(), headers[role])
            dt = time.perf_counter() - t
            if status >= 300:
                errors.append(f"{status} {data[:200]!r}")
            return json.loads(data), dt

        def work(k: int):
            conn = LeanConnection(port)
            local: dict[str, list[float]] = {a: [] for a in per_action}
            for _ in range(k):
                c, dt = call(conn, "POST", "/api/v1/cases", {"class_code": "E0102", "lat": lat, "lon": lon,
                                                             "description": "bench", "source": "inspector"},
                             "inspector")
                local["create"].append(dt)
                for a in WALK:
                    _, dt = call(conn, "POST", f"/api/v1/cases/{c['id']}/actions/{a}", PAYLOAD.get(a, {}), ROLE[a])
                    local[a].append(dt)
            conn.close()
            with lock:
                for a, v in local.items():
                    per_action[a].extend(v)

        t0 = time.perf_counter()
        ts = [threading.Thread(target=work, args=(n_cases // threads,)) for _ in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        end = time.perf_counter()
        total = sum(len(v) for v in per_action.values())
        if errors:
            print(f"  HTTP errors: {len(errors)} e.g. {errors[0]}")
        published = wait_published(ctx, end)  # before the web process stops (with --relay process it relays)
        return {"rate": total / (end - t0), "per_action": per_action, "n": total, "published": published}
    finally:
        proc.terminate()
        proc.wait(10)


def report(name: str, res: dict) -> None:
    print(f"  {name}: {res['n']} actions, {res['rate']:.0f} actions/s")
    for a, v in res["per_action"].items():
        print(f"    {a:<9} p50 {pct(v, 50):6.2f} ms   p99 {pct(v, 99):6.2f} ms")
    allv = [x for v in res["per_action"].values() for x in v]
    print(f"    {'all':<9} p50 {pct(allv, 50):6.2f} ms   p99 {pct(allv, 99):6.2f} ms")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=800)
    ap.add_argument("--threads", default="8,16", help="client threads, one run each (comma-separated)")
    ap.add_argument("--db", default="sqlite,postgresql")
    ap.add_argument("--relay", choices=("worker", "process"), default="worker",
                    help="where the outbox relay runs (make run: worker)")
    ap.add_argument("--skip-http", action="store_true")
    args = ap.parse_args()
    for db in args.db.split(","):
        tmp = Path(tempfile.mkdtemp(prefix="cw-bench-"))
        ctx, url, schema = setup(db, tmp, args.relay)
        worker = None
        try:
            print(f"== {db} (outbox relay: {args.relay}) ==")
            ceiling = raw_ceiling(ctx, 2000)
            print(f"  raw ceiling (bare UPDATE+INSERT transactions, 1 thread): {ceiling:.0f} tx/s")
            if args.relay == "worker":
                worker = start_worker(url, tmp)
            threads = [int(t) for t in str(args.threads).split(",")]
            services = {}
            for n in threads:
                svc = services[n] = run_service(ctx, args.cases, n)
                report(f"service layer ({n} threads)", svc)
                print(f"  ratio service/raw ceiling: {svc['rate'] / ceiling:.2f}")
                published = wait_published(ctx, svc["end"])
                print(f"  every event on the stream {published * 1000:.0f} ms after the last write")
            ctx.outbox.stop()
            if args.skip_http:
                continue
            for n in threads:
                web = run_http(ctx, url, tmp, args.cases, n, args.relay)
                report(f"HTTP, gunicorn as `make run` starts it ({n} client threads)", web)
                print(f"  ratio HTTP/service: {web['rate'] / services[n]['rate']:.2f}")
                print(f"  every event on the stream {web['published'] * 1000:.0f} ms after the last write")
        finally:
            if worker is not None:
                worker.terminate()
                worker.wait(10)
            ctx.close()
            use(None)
            if schema:
                support.drop_schema(schema)


if __name__ == "__main__":
    main()
