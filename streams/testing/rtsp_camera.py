"""A real RTSP test camera (GStreamer RTSP server). Run with Debian's python3, which has `gi`:

    /usr/bin/python3 streams/testing/rtsp_camera.py --port 8554 --path /cam --size 640x360 --fps 25

Serves H.264 Baseline without B-frames, a keyframe every second, SPS/PPS before every IDR.
"""
import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8554)
    parser.add_argument("--path", default="/cam")
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--pattern", default="smpte")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f"( videotestsrc is-live=true pattern={args.pattern} "
        f"! video/x-raw,width={width},height={height},framerate={args.fps}/1 "
        f"! timeoverlay font-desc=\"Sans 32\" ! videoconvert "
        f"! x264enc tune=zerolatency bframes=0 key-int-max={args.fps} speed-preset=ultrafast "
        f"! video/x-h264,profile=baseline ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
    )
    factory.set_shared(True)
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on port {args.port}")
    loop = GLib.MainLoop()
    signal.signal(signal.SIGTERM, lambda *_: loop.quit())
    print(f"rtsp://127.0.0.1:{args.port}{args.path}", flush=True)
    loop.run()


if __name__ == "__main__":
    main()
