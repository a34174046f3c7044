"""Server CPU to relay one 720p camera to 1, 4, 8 and 16 viewers.

    .venv/bin/python bench/video/viewers.py [--seconds 10] [--source synthetic|rtsp|both]

Viewers are aiortc clients in a separate process that count frames without decoding them. The
server's CPU is read from /proc over the measuring window (the RTSP camera's own CPU is not counted).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from streams.testing.harness import VENV_PYTHON, RtspCamera, StreamsProcess, cpu_seconds  # noqa: E402


def measure(svc: StreamsProcess, camera: int, viewers: int, seconds: float, warmup: float = 3.0) -> dict:
    client = subprocess.Popen([str(VENV_PYTHON), "-m", "streams.testing.client", "--base", svc.base,
                               "--camera", str(camera), "--viewers", str(viewers),
                               "--warmup", str(warmup), "--seconds", str(seconds)],
                              stdout=subprocess.PIPE, text=True, cwd=str(Path(__file__).resolve().parents[2]))
    try:
        time.sleep(warmup + 0.5)  # connection, first keyframe
        c0, t0 = cpu_seconds(svc.proc.pid), time.monotonic()
        time.sleep(seconds)
        c1, t1 = cpu_seconds(svc.proc.pid), time.monotonic()
        out, _ = client.communicate(timeout=60)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    result = json.loads(out.strip().splitlines()[-1])
    return {"viewers": viewers, "server_cpu_pct": round(100 * (c1 - c0) / (t1 - t0), 1),
            "fps_per_viewer": result["fps_per_viewer"], "fps_min": result["fps_min"]}


def run(source: str, seconds: float) -> list[dict]:
    cam = None
    if source == "rtsp":
        cam = RtspCamera(size="1280x720").start()
        cameras = [{"id": 1, "name": "RTSP 720p", "lat": 30, "lon": 120, "source": cam.url}]
    else:
        cameras = [{"id": 1, "name": "Synthetic 720p", "lat": 30, "lon": 120,
                    "source": "synthetic:BENCH?size=1280x720&fps=25"}]
    svc = StreamsProcess(cameras, env={"CITYWALL_STREAMS_LINGER": "60"}).start()
    rows = []
    try:
        for n in (1, 4, 8, 16):
            row = measure(svc, 1, n, seconds)
            row["source"] = source
            rows.append(row)
            print(json.dumps(row), flush=True)
            time.sleep(1)
    finally:
        svc.stop()
        if cam:
            cam.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--source", choices=["synthetic", "rtsp", "both"], default="both")
    args = parser.parse_args()
    sources = ["synthetic", "rtsp"] if args.source == "both" else [args.source]
    for source in sources:
        rows = run(source, args.seconds)
        base = rows[0]["server_cpu_pct"] or 1
        print(f"\n{source} 720p: viewers | server CPU % of one core | x of 1 viewer | fps per viewer")
        for r in rows:
            print(f"  {r['viewers']:>3} | {r['server_cpu_pct']:>6} | {r['server_cpu_pct'] / base:4.2f} | "
                  f"{r['fps_per_viewer']}")


if __name__ == "__main__":
    main()
