"""16 cameras with 4 viewers each: server CPU and the frame rate every viewer gets.

    .venv/bin/python bench/video/cameras.py [--source file|synthetic] [--size 1280x720] [--seconds 10]

`file` (default): 16 looped 720p H.264 MPEG-TS clips, passed through like RTSP cameras (clips are
pre-encoded once from the synthetic scene, so no camera costs encoding during the run).
`synthetic`: 16 synthetic cameras, each drawn and encoded once by the service (size via --size).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import av  # noqa: E402
import cv2  # noqa: E402

from streams.encoder import H264Encoder  # noqa: E402
from streams.synthetic import StreetScene  # noqa: E402
from streams.testing.harness import VENV_PYTHON, StreamsProcess, cpu_seconds  # noqa: E402


def write_clip(path: Path, name: str, width: int, height: int, seconds: float = 4.0, fps: int = 25) -> None:
    """An MPEG-TS clip encoded like a camera: Baseline, no B-frames, 1 s GOP."""
    scene = StreetScene(name, width, height)
    encoder = H264Encoder(width, height, fps)
    with av.open(str(path), "w", format="mpegts") as out:
        stream = out.add_stream("h264", rate=fps)
        stream.width, stream.height = width, height
        for n in range(int(seconds * fps)):
            image = scene.draw(1_000_000 + n / fps)
            for data, pts, _key in encoder.encode_i420(cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420)):
                packet = av.Packet(data)
                packet.pts = packet.dts = pts
                packet.time_base = Fraction(1, fps)
                packet.stream = stream
                out.mux(packet)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", choices=["file", "synthetic"], default="file")
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--cameras", type=int, default=16)
    parser.add_argument("--viewers", type=int, default=4, help="per camera")
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    tmp = tempfile.TemporaryDirectory(prefix="citywall-bench-")
    cameras = []
    for i in range(1, args.cameras + 1):
        if args.source == "file":
            clip = Path(tmp.name) / f"cam{i}.ts"
            write_clip(clip, f"FILE-{i:02d}", width, height)
            source = str(clip)
        else:
            source = f"synthetic:BENCH-{i:02d}?size={args.size}&fps=25"
        cameras.append({"id": i, "name": f"Bench {i}", "lat": 30, "lon": 120, "source": source})
    svc = StreamsProcess(cameras, env={"CITYWALL_STREAMS_LINGER": "60"}).start()
    warmup = 4.0
    try:
        client = subprocess.Popen([str(VENV_PYTHON), "-m", "streams.testing.client", "--base", svc.base,
                                   "--camera", f"1-{args.cameras}", "--viewers", str(args.viewers),
                                   "--warmup", str(warmup), "--seconds", str(args.seconds)],
                                  stdout=subprocess.PIPE, text=True, cwd=str(ROOT))
        time.sleep(warmup + 1.0)
        c0, t0 = cpu_seconds(svc.proc.pid), time.monotonic()
        cc0 = cpu_seconds(client.pid)
        time.sleep(args.seconds - 1.0)
        c1, t1 = cpu_seconds(svc.proc.pid), time.monotonic()
        cc1 = cpu_seconds(client.pid)
        out, _ = client.communicate(timeout=120)
        result = json.loads(out.strip().splitlines()[-1])
        status = svc.get_json("/streams/v1/cameras")["cameras"]
    finally:
        svc.stop()
        tmp.cleanup()
    row = {"source": args.source, "size": args.size, "cameras": args.cameras,
           "viewers": result["viewers"], "server_cpu_pct": round(100 * (c1 - c0) / (t1 - t0), 1),
           "client_cpu_pct": round(100 * (cc1 - cc0) / (t1 - t0), 1),
           "fps_per_viewer": result["fps_per_viewer"], "fps_min": result["fps_min"],
           "camera_fps": sorted(c["fps"] for c in status),
           "queue_overflows": sum(c["overflows"] for c in status),
           "passthrough": all(c["passthrough"] for c in status) if args.source == "file" else False}
    print(json.dumps(row))


if __name__ == "__main__":
    main()
