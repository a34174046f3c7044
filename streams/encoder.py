"""The one encoder of a camera that must be re-encoded (编码一次，分发所有观看者).

libx264 Baseline, tune zerolatency, a 1 s GOP, no B-frames, SPS/PPS repeated before every IDR, so
the same packets can be handed to every viewer (see stack notes "Encode once, fan out").
"""
from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
from av.video.frame import PictureType


def bitrate_for(width: int, height: int, fps: int) -> int:
    """About 1.8 Mbit/s for 720p25, scaled by pixel rate, at least 300 kbit/s."""
    return max(300_000, int(1_800_000 * (width * height * fps) / (1280 * 720 * 25)))


class H264Encoder:
    """Encodes yuv420p frames once; `encode` returns Annex-B access units as (bytes, pts, keyframe)."""

    def __init__(self, width: int, height: int, fps: int, threads: int = 0) -> None:
        if width % 2 or height % 2:
            raise ValueError(f"frame size must be even, got {width}x{height}")
        if not 1 <= fps <= 60:
            raise ValueError(f"fps must be between 1 and 60, got {fps}")
        self.width, self.height, self.fps = width, height, fps
        self.time_base = Fraction(1, fps)
        ctx = av.CodecContext.create("libx264", "w")
        ctx.width, ctx.height = width, height
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = self.time_base
        ctx.framerate = Fraction(fps, 1)
        ctx.bit_rate = bitrate_for(width, height, fps)
        ctx.gop_size = fps
        ctx.max_b_frames = 0
        if threads:
            ctx.thread_count = threads
        ctx.options = {
            "profile": "baseline",
            "preset": "veryfast",
            "tune": "zerolatency",
            "forced-idr": "1",
            "x264-params": f"keyint={fps}:min-keyint={fps}:scenecut=0:repeat-headers=1:bframes=0",
        }
        self._ctx = ctx
        self._frames = 0

    def encode_i420(self, i420: np.ndarray, force_keyframe: bool = False) -> list[tuple[bytes, int, bool]]:
        """Encode one frame given as an I420 plane array (height * 3 / 2 rows)."""
        frame = av.VideoFrame.from_ndarray(i420, format="yuv420p")
        return self.encode(frame, force_keyframe)

    def encode(self, frame: av.VideoFrame, force_keyframe: bool = False) -> list[tuple[bytes, int, bool]]:
        """Encode one yuv420p frame; the pts counts frames in 1/fps."""
        if frame.format.name != "yuv420p" or frame.width != self.width or frame.height != self.height:
            frame = frame.reformat(width=self.width, height=self.height, format="yuv420p")
        frame.pts = self._frames
        frame.time_base = self.time_base
        self._frames += 1
        if force_keyframe:
            frame.pict_type = PictureType.I
        return [(bytes(p), int(p.pts), bool(p.is_keyframe)) for p in self._ctx.encode(frame)]
