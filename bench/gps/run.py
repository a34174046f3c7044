"""GPS gateway benchmark: JT/T 808 terminals -> gateway -> Redis, measured end to end.

    .venv/bin/python bench/gps/run.py --terminals 1000 --seconds 10
    .venv/bin/python bench/gps/run.py --terminals 10000 --seconds 10 --gateways 2
    .venv/bin/python bench/gps/run.py --terminals 1000 --seconds 10 --rate 50000   # paced, for p99

Steps: (1) redis-benchmark with pipelined GEOADD (-P 16) gives the machine's Redis ceiling;
(2) the gateway runs as ``python -m backend.gps`` (1 or 2 processes with SO_REUSEPORT) against
a real Redis (db 4 by default, flushed); (3) load generator processes open the terminals'
connections and send pre-encoded 0x0200 frames; (4) a subscriber counts summaries; (5) at the
end every acknowledged position is checked against the trail stream and the GEO set.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from backend.gps.pipeline import (  # noqa: E402
    CHANNEL_SUMMARY, KEY_LATENCY, KEY_LATEST, KEY_STATS, KEY_TRAIL)
from bench.gps.loadgen import phone_of, run_loadgen  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_benchmark_geoadd(host: str, port: int, db: int, requests: int = 300_000) -> float:
    """redis-benchmark, 50 clients, pipelined 16, a one-member GEOADD: ops/s."""
    out = subprocess.run(
        ["redis-benchmark", "-h", host, "-p", str(port), "--dbnum", str(db), "-n", str(requests),
         "-c", "50", "-P", "16", "-r", "100000", "-q",
         "GEOADD", "citywall:bench:geo", "114.05", "22.55", "member:__rand_int__"],
        capture_output=True, text=True, timeout=120)
    match = re.findall(r"([\d.]+) requests per second", out.stdout)
    if not match:
        raise RuntimeError(f"redis-benchmark gave no figure: {out.stdout} {out.stderr}")
    return float(match[-1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_gateways(count: int, port: int, redis_url: str, profile: str = "") -> list[subprocess.Popen]:
    """count gateway processes on port; profile: write cProfile output to <profile>.<k>."""
    env = dict(os.environ)
    env.update({
        "CITYWALL_JT808_PORT": str(port), "CITYWALL_OSMAND_PORT": str(free_port()),
        "REDIS_URL": redis_url, "CITYWALL_GPS_REGISTRY": "memory", "CITYWALL_GPS_AUTOREGISTER": "1",
        "CITYWALL_GPS_REUSE_PORT": "1" if count > 1 else "0", "CITYWALL_GPS_TRAIL_MAXLEN": "100000000",
        "CITYWALL_GPS_HOST": "127.0.0.1", "CITYWALL_LOG_LEVEL": "WARNING",
    })

    def raise_limit() -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    def command(k: int) -> list[str]:
        if profile:
            return [sys.executable, "-m", "cProfile", "-o", f"{profile}.{k}", "-m", "backend.gps"]
        return [sys.executable, "-m", "backend.gps"]

    procs = [subprocess.Popen(command(k), cwd=ROOT, env=env, preexec_fn=raise_limit)
             for k in range(count)]
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            time.sleep(0.5 if count > 1 else 0.1)  # let the second process bind as well
            return procs
        except OSError:
            time.sleep(0.1)
    for p in procs:
        p.kill()
    raise RuntimeError("gateway did not start")


class SummaryCounter(threading.Thread):
    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.client = redis.Redis.from_url(url)
        self.pubsub = self.client.pubsub()
        self.pubsub.subscribe(CHANNEL_SUMMARY)
        self.messages = 0
        self.devices: set[str] = set()
        self.stop = False

    def run(self) -> None:
        while not self.stop:
            message = self.pubsub.get_message(timeout=0.2)
            if message and message["type"] == "message":
                self.messages += 1
                for item in json.loads(message["data"])["devices"]:
                    self.devices.add(item["device"])


def verify(client: redis.Redis, acked: dict[int, int]) -> dict:
    """Every acknowledged position must be in the trail; every terminal in the GEO set."""
    written: Counter[str] = Counter()
    last_id = "-"
    entries = 0
    while True:
        batch = client.xrange(KEY_TRAIL, min=last_id, count=2000)
        if last_id != "-" and batch and batch[0][0] == last_id:
            batch = batch[1:]
        if not batch:
            break
        for entry_id, fields in batch:
            for record in json.loads(fields[b"p"]):
                written[record[0]] += 1
            entries += 1
        last_id = batch[-1][0]
    missing = {i: (n, written.get(f"jt808:{phone_of(i)}", 0)) for i, n in acked.items()
               if written.get(f"jt808:{phone_of(i)}", 0) < n}
    geo = client.zcard(KEY_LATEST)
    return {"trail_entries": entries, "trail_positions": sum(written.values()),
            "acked_positions": sum(acked.values()), "devices_short": len(missing),
            "geo_members": geo, "all_verified": not missing and geo >= sum(1 for n in acked.values() if n)}


def histogram_percentile(histogram: dict[int, int], q: float) -> float:
    total = sum(histogram.values())
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= q * total:
            return float(bucket)
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--terminals", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--inflight", type=int, default=20, help="closed loop: frames in flight per terminal")
    parser.add_argument("--rate", type=float, default=0.0, help="paced positions/s (0 = closed loop)")
    parser.add_argument("--gateways", type=int, default=1, help="gateway processes (SO_REUSEPORT)")
    parser.add_argument("--loadgens", type=int, default=1, help="load generator processes")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/4")
    parser.add_argument("--skip-redis-benchmark", action="store_true")
    parser.add_argument("--json", help="write the result here as JSON")
    parser.add_argument("--profile", default="", help="cProfile the gateways into PROFILE.<k>")
    args = parser.parse_args()

    client = redis.Redis.from_url(args.redis)
    client.flushdb()
    host = client.connection_pool.connection_kwargs.get("host", "127.0.0.1")
    rport = client.connection_pool.connection_kwargs.get("port", 6379)
    db = client.connection_pool.connection_kwargs.get("db", 0)
    ceiling = 0.0
    if not args.skip_redis_benchmark:
        ceiling = redis_benchmark_geoadd(host, rport, db)
        client.flushdb()
    redis_pid = int(client.info("server")["process_id"])

    port = free_port()
    gateways = start_gateways(args.gateways, port, args.redis, args.profile)
    summaries = SummaryCounter(args.redis)
    summaries.start()
    ctx = mp.get_context("fork")
    start_event = ctx.Event()
    queue = ctx.Queue()
    share = -(-args.terminals // args.loadgens)
    loadgens = []
    for k in range(args.loadgens):
        first = k * share
        count = min(share, args.terminals - first)
        if count <= 0:
            break
        proc = ctx.Process(target=run_loadgen, args=("127.0.0.1", port, first, count, args.seconds,
                                                      args.inflight, args.rate / args.loadgens,
                                                      start_event, queue))
        proc.start()
        loadgens.append(proc)
    connected = sum(queue.get(timeout=120)["connected"] for _ in loadgens)
    time.sleep(0.5)
    cpu_before = {p.pid: cpu_seconds(p.pid) for p in gateways}
    redis_cpu_before = cpu_seconds(redis_pid) if Path(f"/proc/{redis_pid}").exists() else 0.0
    wall_before = time.perf_counter()
    start_event.set()
    results = [queue.get(timeout=args.seconds + 60) for _ in loadgens]
    wall = time.perf_counter() - wall_before
    cpu_gateway = sum(cpu_seconds(p.pid) - cpu_before[p.pid] for p in gateways)
    redis_cpu = (cpu_seconds(redis_pid) - redis_cpu_before) if redis_cpu_before else float("nan")
    for proc in loadgens:
        proc.join(timeout=30)
    for gw in gateways:
        gw.send_signal(signal.SIGTERM)
    for gw in gateways:
        gw.wait(timeout=30)
    time.sleep(0.3)
    summaries.stop = True
    summaries.join(timeout=2)

    acked: dict[int, int] = {}
    latencies: list[float] = []
    window_acked = 0
    window = 0.0
    for r in results:
        acked.update({int(k): v for k, v in r["acked"].items()})
        latencies.extend(r["latencies"])
        window_acked += r["window_acked"]
        window = max(window, r["window_s"])
    total_acked = sum(acked.values())
    check = verify(client, acked)
    stats = {k.decode(): int(v) for k, v in client.hgetall(KEY_STATS).items()}
    histogram = {int(k): int(v) for k, v in client.hgetall(KEY_LATENCY).items()}
    rate = window_acked / window if window else 0.0
    report = {
        "terminals": args.terminals, "connected": connected, "gateways": args.gateways,
        "mode": f"paced {args.rate:.0f}/s" if args.rate else f"closed loop, {args.inflight} in flight",
        "positions_per_s": round(rate),
        "redis_benchmark_geoadd_P16_ops": round(ceiling),
        "ratio_to_redis_benchmark": round(rate / ceiling, 3) if ceiling else None,
        "frame_to_redis_ms_p50": histogram_percentile(histogram, 0.50),
        "frame_to_redis_ms_p99": histogram_percentile(histogram, 0.99),
        "send_to_ack_ms_p50": round(percentile(latencies, 0.50) * 1000, 1),
        "send_to_ack_ms_p99": round(percentile(latencies, 0.99) * 1000, 1),
        "latency_samples": len(latencies),
        "gateway_cpu_us_per_position": round(cpu_gateway / max(1, total_acked) * 1e6, 2),
        "gateway_cpu_cores": round(cpu_gateway / wall, 2),
        "redis_cpu_cores": round(redis_cpu / wall, 2),
        "acked_total": total_acked,
        "failed_replies": sum(r["failed"] for r in results),
        "unanswered": sum(r["unanswered"] for r in results),
        "lost_connections": sum(r["lost_connections"] for r in results),
        "summaries_received": summaries.messages,
        "devices_in_summaries": len(summaries.devices),
        **check,
        "gateway_stats": {k: stats.get(k, 0) for k in (
            "frames", "positions_written", "redis_batches", "frames_bad_checksum", "positions_dropped",
            "redis_errors", "connections_total")},
    }
    print(json.dumps(report, indent=2, ensure_ascii=False))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    client.flushdb()
    sys.exit(0 if report["all_verified"] else 1)


if __name__ == "__main__":
    main()
