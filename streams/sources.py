"""Camera sources (视频源): each runs in its own thread and emits H.264 Annex-B access units.

- `SyntheticSource` (`synthetic:<name>[?size=WxH&fps=N]`): a drawn street scene, encoded once.
- `DemuxSource` (RTSP URL, MPEG-TS/MP4 file): H.264 without B-frames is passed through untouched
  (parameter sets kept in-band); anything else is decoded and encoded once. Files are paced by their
  timestamps and looped.

A source calls `emit(data, pts_seconds, keyframe)` for every access unit and `describe(info)` once it
knows its frame size. It returns when `stop` is set; it raises `SourceError` when the camera fails.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Protocol
from urllib.parse import parse_qs

import av
import cv2

from streams.encoder import H264Encoder
from streams.h264 import ParameterSets
from streams.synthetic import StreetScene

log = logging.getLogger(__name__)

Emit = Callable[[bytes, float, bool], None]
Describe = Callable[[dict], None]


class SourceError(Exception):
    """A camera could not be opened or stopped delivering video."""


class Source(Protocol):
    kind: str

    def run(self, emit: Emit, describe: Describe, stop: threading.Event) -> None: ...

    def request_keyframe(self) -> None: ...


@dataclass(frozen=True)
class SyntheticSpec:
    name: str
    width: int = 640
    height: int = 360
    fps: int = 25


def parse_synthetic(source: str) -> SyntheticSpec:
    """Parse `synthetic:<name>[?size=WxH&fps=N]`; raises ValueError with a clear message."""
    if not source.startswith("synthetic:"):
        raise ValueError(f"not a synthetic source: {source!r}")
    rest = source[len("synthetic:"):]
    name, _, query = rest.partition("?")
    if not name:
        raise ValueError("a synthetic source needs a name: synthetic:<name>")
    params = parse_qs(query)
    width, height, fps = 640, 360, 25
    if "size" in params:
        try:
            w, h = params["size"][0].lower().split("x")
            width, height = int(w), int(h)
        except ValueError as exc:
            raise ValueError(f"synthetic size must look like 1280x720, got {params['size'][0]!r}") from exc
    if "fps" in params:
        try:
            fps = int(params["fps"][0])
        except ValueError as exc:
            raise ValueError(f"synthetic fps must be an integer, got {params['fps'][0]!r}") from exc
    if not (160 <= width <= 1920 and 90 <= height <= 1080 and width % 2 == 0 and height % 2 == 0):
        raise ValueError(f"synthetic size must be even, between 160x90 and 1920x1080, got {width}x{height}")
    if not 1 <= fps <= 30:
        raise ValueError(f"synthetic fps must be between 1 and 30, got {fps}")
    return SyntheticSpec(name, width, height, fps)


class SyntheticSource:
    """A street scene drawn and encoded once per camera, paced by the wall clock."""

    kind = "synthetic"

    def __init__(self, spec: SyntheticSpec, label: str | None = None) -> None:
        self.spec = spec
        self.label = label or spec.name
        self._keyframe_wanted = threading.Event()

    def request_keyframe(self) -> None:
        self._keyframe_wanted.set()

    def run(self, emit: Emit, describe: Describe, stop: threading.Event) -> None:
        spec = self.spec
        scene = StreetScene(spec.name, spec.width, spec.height, label=self.label)
        encoder = H264Encoder(spec.width, spec.height, spec.fps, threads=1 if spec.width <= 960 else 0)
        describe({"width": spec.width, "height": spec.height, "fps": spec.fps, "passthrough": False,
                  "codec": "h264"})
        interval = 1.0 / spec.fps
        start = time.monotonic()
        n = 0
        while not stop.is_set():
            due = start + n * interval
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -1.0:  # far behind (machine overloaded): skip frames instead of bursting
                n = int((time.monotonic() - start) / interval)
            now = time.time()
            image = scene.draw(now)
            force = self._keyframe_wanted.is_set()
            self._keyframe_wanted.clear()
            i420 = cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420)
            for data, pts, key in encoder.encode_i420(i420, force_keyframe=force):
                emit(data, pts * interval, key)
            n += 1


class DemuxSource:
    """An RTSP camera or a media file; passthrough when it is H.264 without B-frames."""

    def __init__(self, url: str, read_timeout: float = 5.0) -> None:
        self.url = url
        self.read_timeout = read_timeout
        self.kind = "rtsp" if url.lower().startswith(("rtsp://", "rtsps://")) else "file"
        self._keyframe_wanted = threading.Event()

    def request_keyframe(self) -> None:
        self._keyframe_wanted.set()  # honoured only when transcoding

    def _open(self) -> av.container.InputContainer:
        options = {}
        if self.kind == "rtsp":
            options = {"rtsp_transport": "tcp", "fflags": "nobuffer", "max_delay": "200000"}
        try:
            return av.open(self.url, options=options, timeout=(10.0, self.read_timeout))
        except (av.error.FFmpegError, OSError) as exc:
            raise SourceError(f"cannot open {self.kind} source: {exc}") from exc

    def run(self, emit: Emit, describe: Describe, stop: threading.Event) -> None:
        container = self._open()
        try:
            streams = [s for s in container.streams if s.type == "video"]
            if not streams:
                raise SourceError("the source has no video stream")
            stream = streams[0]
            ctx = stream.codec_context
            passthrough = ctx.name == "h264" and not ctx.has_b_frames
            fps = float(stream.average_rate or stream.guessed_rate or 25)
            describe({"width": ctx.width, "height": ctx.height, "fps": round(fps, 2),
                      "passthrough": passthrough, "codec": ctx.name})
            if passthrough:
                self._relay(container, stream, emit, stop)
            else:
                self._transcode(container, stream, fps, emit, stop)
        finally:
            container.close()

    def _packets(self, container, stream, stop: threading.Event):
        """Demuxed packets with seconds since the start (None when the packet has no timestamp);
        a file is paced by its clock and looped."""
        live = self.kind == "rtsp"
        start = time.monotonic()
        loop_offset = 0.0
        first: float | None = None
        last = 0.0
        while not stop.is_set():
            got_any = False
            try:
                for packet in container.demux(stream):
                    if stop.is_set():
                        return
                    if packet.size == 0:
                        continue
                    got_any = True
                    raw = packet.pts if packet.pts is not None else packet.dts
                    if raw is None:
                        yield packet, None
                        continue
                    ts = float(raw * packet.time_base)
                    if first is None:
                        first = ts
                    t = ts - first + loop_offset
                    last = max(last, t)
                    if not live:
                        delay = start + t - time.monotonic()
                        if delay > 0:
                            time.sleep(delay)
                    yield packet, t
            except av.error.FFmpegError as exc:
                raise SourceError(f"{self.kind} source failed: {exc}") from exc
            if live:
                raise SourceError("the camera closed the stream")
            if not got_any:
                raise SourceError("the file holds no video packets")
            container.seek(0)  # loop a file
            loop_offset = last + 1.0 / 25
            first = None

    def _relay(self, container, stream, emit: Emit, stop: threading.Event) -> None:
        """Pass H.264 through. Demuxers may split one picture over several packets with the same
        timestamp (e.g. two IDR slices): they are joined into one access unit before relaying, which
        costs one frame interval of delay."""
        params = ParameterSets()
        extradata = stream.codec_context.extradata
        bsf = None
        if extradata and not extradata.startswith((b"\x00\x00\x01", b"\x00\x00\x00\x01")):
            bsf = av.BitStreamFilterContext("h264_mp4toannexb", stream)  # MP4/MKV: length-prefixed
        elif extradata:
            params.learn(extradata)
        pending: list[bytes] = []
        pending_t: float | None = None
        for packet, t in self._packets(container, stream, stop):
            for out in (bsf.filter(packet) if bsf else [packet]):
                if pending and t is not None and pending_t is not None and t != pending_t:
                    data, key = params.complete(b"".join(pending))
                    emit(data, pending_t, key)
                    pending = []
                pending.append(bytes(out))
                if t is not None:
                    pending_t = t

    def _transcode(self, container, stream, fps: float, emit: Emit, stop: threading.Event) -> None:
        encoder: H264Encoder | None = None
        rate = max(1, min(30, round(fps)))
        last_t = 0.0
        for packet, t in self._packets(container, stream, stop):
            last_t = t if t is not None else last_t
            for frame in packet.decode():
                if encoder is None:
                    encoder = H264Encoder(frame.width - frame.width % 2, frame.height - frame.height % 2, rate)
                force = self._keyframe_wanted.is_set()
                self._keyframe_wanted.clear()
                for data, _pts, key in encoder.encode(frame, force_keyframe=force):
                    emit(data, last_t, key)


def open_source(source: str, label: str | None = None) -> Source:
    """Build the source object for a camera's `source` string; raises ValueError for an unknown form."""
    source = source.strip()
    if source.startswith("synthetic:"):
        return SyntheticSource(parse_synthetic(source), label=label)
    lowered = source.lower()
    if lowered.startswith(("rtsp://", "rtsps://", "file:", "/")) or lowered.endswith((".ts", ".mp4", ".mkv")):
        return DemuxSource(source[5:] if lowered.startswith("file:") else source)
    raise ValueError(f"unknown camera source {source!r}: expected rtsp://..., a file path or synthetic:<name>")
