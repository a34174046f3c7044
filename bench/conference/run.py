"""Conference MCU benchmark (视频会商压测): server CPU, frame rate and latency for 3, 6, 9 participants.

    .venv/bin/python bench/conference/run.py [--participants 3,6,9] [--seconds 15] [--warmup 5]

For each size a fresh streams process is started (it starts its audio worker process); the participants
are aiortc clients (streams.conference.testclient) sending 640x360 H.264 at 25 fps and receiving the
1280x720 composition over one connection, and sending a tone and receiving their mix-minus audio over a
second, audio-only connection to the audio worker. Server (video), audio worker and client CPU are read
from /proc over the measurement window. The participants only count received frames (no decoding, to
keep the load generator light); a separate process subscribes like the wall (`/view`), decodes the
composition and measures latency: the senders draw the wall-clock time as a barcode into their frames,
the viewer reads it back from the speaker tile (time of decoding minus the barcode; loopback; no render
delay).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from streams.testing.harness import VENV_PYTHON, StreamsProcess, cpu_seconds  # noqa: E402

SECRET = "conference-bench-secret"


def children(pid: int) -> list[int]:
    """Child processes of pid (the streams process's audio worker)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except OSError:
            pass
    return total


def one(n: int, warmup: float, seconds: float, processes: int, audio: bool = True) -> dict:
    svc = StreamsProcess([], env={"CITYWALL_SECRET_KEY": SECRET, "CITYWALL_DEMO": "1",
                                  "CITYWALL_LOG_LEVEL": "WARNING"}).start()
    try:
        sizes = [n // processes + (1 if i < n % processes else 0) for i in range(processes)]
        clients = []
        for i, size in enumerate(s for s in sizes if s):
            clients.append(subprocess.Popen(
                [str(VENV_PYTHON), "-m", "streams.conference.testclient", "--base", svc.base, "--secret", SECRET,
                 "--room", f"bench-{n}", "--participants", str(size), "--offset", str(sum(sizes[:i])),
                 "--warmup", str(warmup), "--seconds", str(seconds), "--decode", "0"]
                + ([] if audio else ["--no-audio"]), cwd=ROOT,
                stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}))
        for client in clients:
            if client.stdout.readline().strip() != "joined":
                raise RuntimeError(f"the participants could not join\n{svc.log()[-2000:]}")
        viewer = subprocess.Popen(
            [str(VENV_PYTHON), "-m", "streams.conference.testclient", "--base", svc.base, "--secret", SECRET,
             "--room", f"bench-{n}", "--viewer", "--warmup", str(warmup - 1), "--seconds", str(seconds)],
            cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        for client in clients:
            line = client.stdout.readline()
            if line.strip() != "measuring":
                raise RuntimeError(f"the client failed: {line!r}\n{svc.log()[-2000:]}")
        workers = children(svc.proc.pid)
        s0, c0, t0 = cpu_seconds(svc.proc.pid), sum(cpu_seconds(c.pid) for c in clients), time.monotonic()
        w0 = cpu_of(workers)
        load0 = os.getloadavg()[0]
        v0 = cpu_seconds(viewer.pid)
        results = [json.loads(c.stdout.readline()) for c in clients]
        s1, c1, t1 = cpu_seconds(svc.proc.pid), sum(cpu_seconds(c.pid) for c in clients), time.monotonic()
        w1 = cpu_of(workers)
        v1 = cpu_seconds(viewer.pid)
        for client in clients:
            client.wait(30)
        result = results[-1]
        result["participants"] = n
        result["client_processes"] = len(clients)
        result["received_fps_min"] = min(r["received_fps_min"] for r in results)
        result["received_fps_max"] = max(r["received_fps_max"] for r in results)
        result["sender_overflows"] = sum(r["sender_overflows"] for r in results)
        result["audio_fps_min"] = min(r["audio_fps_min"] for r in results)
        result["audio_streams_received"] = sum(r["audio_streams_received"] for r in results)
        view = json.loads(viewer.stdout.readline())
        viewer.wait(30)
        result.update(view)
        result["viewer_cpu_pct"] = round(100 * (v1 - v0) / (t1 - t0))
        result["server_cpu_pct"] = round(100 * (s1 - s0) / (t1 - t0))
        result["audio_worker_cpu_pct"] = round(100 * (w1 - w0) / (t1 - t0))
        result["client_cpu_pct"] = round(100 * (c1 - c0) / (t1 - t0))
        result["load_avg_1m"] = round((load0 + os.getloadavg()[0]) / 2, 1)
        return result
    finally:
        svc.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--participants", default="3,6,9")
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--processes", type=int, default=3, help="participant processes for more than 3")
    parser.add_argument("--no-audio", action="store_true", help="participants send and receive video only")
    args = parser.parse_args()
    rows = []
    for n in (int(x) for x in args.participants.split(",")):
        result = one(n, args.warmup, args.seconds, args.processes if n > 3 else 1, not args.no_audio)
        result["audio"] = not args.no_audio
        print(json.dumps(result), flush=True)
        rows.append(result)
    print("\n| participants | server (video) CPU % | audio worker CPU % | server fps | compose ms | encode ms "
          "| input fps min-max | received fps min-max "
          "| viewer fps | latency p50 / p90 ms | audio frames/s min (streams) | clients CPU % | viewer CPU % "
          "| load avg |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['participants']} | {r['server_cpu_pct']} | {r['audio_worker_cpu_pct']} | {r['server_fps']} "
              f"| {r['compose_ms']} "
              f"| {r['encode_ms']} | {r['input_fps_min']}-{r['input_fps_max']} "
              f"| {r['received_fps_min']}-{r['received_fps_max']} "
              f"| {r['viewer_fps']} | {r['latency_p50_ms']} / {r['latency_p90_ms']} "
              f"| {r['audio_fps_min']} ({r['audio_streams_received']}) | {r['client_cpu_pct']} "
              f"| {r['viewer_cpu_pct']} | {r['load_avg_1m']} |")


if __name__ == "__main__":
    main()
