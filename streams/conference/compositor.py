"""The MCU video compositor (画面合成): decode once per participant, compose once, encode once.

`TileSource` holds the newest decoded frame of one participant (written by its receiver task).
`Compositor` is a thread paced by the wall clock: every 1/fps it scales each tile with its own
`VideoReformatter` (one per tile: a shared one would rebuild its scaler on every call), copies the
yuv420p planes into one 1280x720 canvas, draws name bars, encodes with the shared libx264 encoder and
hands the Annex-B packets to `on_packets` (every participant and viewer gets the same packets).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

from streams.conference.layout import HEIGHT, WIDTH, Rect, fit
from streams.encoder import H264Encoder
from streams.synthetic import CJK_FONT

log = logging.getLogger(__name__)

BACKGROUND_Y, TILE_Y, NEUTRAL_UV = 16, 40, 128
HIGHLIGHT_YUV = (210, 16, 146)  # yellow frame around the active speaker
LABEL_H = 24

Packets = list[tuple[bytes, int, bool]]


class TileSource:
    """The newest frame of one participant (会商成员画面); any thread may read it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.frame: av.VideoFrame | None = None
        self.frames_in = 0
        self.muted = False

    def put(self, frame: av.VideoFrame) -> None:
        self.frame = frame
        self.frames_in += 1


@dataclass(frozen=True)
class Tile:
    source: TileSource
    rect: Rect
    highlight: bool = False


def _plane(frame: av.VideoFrame, index: int) -> np.ndarray:
    p = frame.planes[index]
    return np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, : p.width]


class Canvas:
    """One yuv420p picture as a contiguous buffer with Y, U and V views."""

    def __init__(self, width: int = WIDTH, height: int = HEIGHT) -> None:
        self.width, self.height = width, height
        self.buffer = np.empty(width * height * 3 // 2, np.uint8)
        ys, cs = width * height, width * height // 4
        self.y = self.buffer[:ys].reshape(height, width)
        self.u = self.buffer[ys: ys + cs].reshape(height // 2, width // 2)
        self.v = self.buffer[ys + cs:].reshape(height // 2, width // 2)

    def fill(self, rect: Rect, y: int, u: int = NEUTRAL_UV, v: int = NEUTRAL_UV) -> None:
        self.y[rect.y: rect.y + rect.h, rect.x: rect.x + rect.w] = y
        cy, cx, ch, cw = rect.y // 2, rect.x // 2, rect.h // 2, rect.w // 2
        self.u[cy: cy + ch, cx: cx + cw] = u
        self.v[cy: cy + ch, cx: cx + cw] = v

    def paste(self, frame: av.VideoFrame, at: Rect) -> None:
        """Copy a yuv420p frame of exactly at.w x at.h to position (at.x, at.y)."""
        self.y[at.y: at.y + at.h, at.x: at.x + at.w] = _plane(frame, 0)[: at.h, : at.w]
        cy, cx = at.y // 2, at.x // 2
        u, v = _plane(frame, 1), _plane(frame, 2)
        self.u[cy: cy + u.shape[0], cx: cx + u.shape[1]] = u
        self.v[cy: cy + v.shape[0], cx: cx + v.shape[1]] = v

    def frame_border(self, rect: Rect, yuv: tuple[int, int, int], width: int = 4) -> None:
        for side in (Rect(rect.x, rect.y, rect.w, width), Rect(rect.x, rect.y + rect.h - width, rect.w, width),
                     Rect(rect.x, rect.y, width, rect.h), Rect(rect.x + rect.w - width, rect.y, width, rect.h)):
            self.fill(side, *yuv)

    def as_array(self) -> np.ndarray:
        return self.buffer.reshape(self.height * 3 // 2, self.width)


class LabelCache:
    """Name bars rendered once per (text, width) as a gray mask."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, int], np.ndarray] = {}

    def get(self, text: str, width: int) -> np.ndarray:
        key = (text, width)
        mask = self._cache.get(key)
        if mask is None:
            if len(self._cache) > 256:
                self._cache.clear()
            mask = np.zeros((LABEL_H, width), np.uint8)
            drawn = False
            if not text.isascii() and CJK_FONT.exists() and hasattr(cv2, "FontFace"):
                try:
                    cv2.putText(mask, text, (6, LABEL_H - 6), 255, cv2.FontFace(str(CJK_FONT)), 16)
                    drawn = True
                except cv2.error:
                    pass
            if not drawn:
                cv2.putText(mask, text.encode("ascii", "replace").decode(), (6, LABEL_H - 7),
                            cv2.FONT_HERSHEY_SIMPLEX, 0.5, 255, 1, cv2.LINE_AA)
            self._cache[key] = mask
        return mask

    def draw(self, canvas: "Canvas", text: str, rect: Rect) -> None:
        if rect.h < LABEL_H * 2 or rect.w < 40:
            return
        mask = self.get(text, rect.w)
        y0 = rect.y + rect.h - LABEL_H
        region = canvas.y[y0: y0 + LABEL_H, rect.x: rect.x + rect.w]
        region[:] = np.maximum(region // 3, mask)  # darken, then white text
        cy, cx = y0 // 2, rect.x // 2
        canvas.u[cy: cy + LABEL_H // 2, cx: cx + rect.w // 2] = NEUTRAL_UV  # a grey bar, not tinted
        canvas.v[cy: cy + LABEL_H // 2, cx: cx + rect.w // 2] = NEUTRAL_UV


class Compositor(threading.Thread):
    """Composes the tiles at `fps` and encodes once; stop() ends the thread."""

    def __init__(self, on_packets: Callable[[Packets], None], fps: int = 25, width: int = WIDTH,
                 height: int = HEIGHT, name: str = "conference") -> None:
        super().__init__(name=f"compositor-{name}", daemon=True)
        self.fps = fps
        self.on_packets = on_packets
        self.canvas = Canvas(width, height)
        self.encoder = H264Encoder(width, height, fps)
        self.labels = LabelCache()
        self._tiles: tuple[Tile, ...] = ()
        self._reformatters: dict[int, VideoReformatter] = {}  # one per participant tile
        self._halt = threading.Event()
        self._keyframe = threading.Event()
        self.frames_out = 0
        self.late_frames = 0
        self.compose_ms = 0.0
        self.encode_ms = 0.0
        self._recent: list[float] = []

    # -- called from the event loop ----------------------------------------------------------
    def set_tiles(self, tiles: list[Tile]) -> None:
        """Replace the scene (one atomic assignment; the thread picks it up on its next frame)."""
        self._tiles = tuple(tiles)

    def request_keyframe(self) -> None:
        self._keyframe.set()

    def stop(self) -> None:
        self._halt.set()

    def output_fps(self) -> float:
        recent = self._recent
        if len(recent) < 2 or time.monotonic() - recent[-1] > 2.0:
            return 0.0
        return round((len(recent) - 1) / (recent[-1] - recent[0]), 1)

    # -- the thread ---------------------------------------------------------------------------
    def compose(self) -> None:
        """Draw the current tiles into the canvas."""
        canvas = self.canvas
        canvas.fill(Rect(0, 0, canvas.width, canvas.height), BACKGROUND_Y)
        tiles = self._tiles
        used: set[int] = set()
        for tile in tiles:
            rect = tile.rect
            frame = tile.source.frame
            canvas.fill(rect, TILE_Y)
            if frame is not None:
                inner = fit(frame.width, frame.height, rect)
                key = id(tile.source)
                reformatter = self._reformatters.get(key)
                if reformatter is None:
                    reformatter = self._reformatters[key] = VideoReformatter()
                used.add(key)
                scaled = reformatter.reformat(frame, width=inner.w, height=inner.h, format="yuv420p")
                canvas.paste(scaled, inner)
            label = tile.source.name + ("  [静音]" if tile.source.muted and not tile.source.name.isascii()
                                        else "  [muted]" if tile.source.muted else "")
            self.labels.draw(canvas, label, rect)
            if tile.highlight:
                canvas.frame_border(rect, HIGHLIGHT_YUV)
        if len(self._reformatters) > len(used):
            live = {id(t.source) for t in tiles}
            for key in [k for k in self._reformatters if k not in live]:
                del self._reformatters[key]

    def run(self) -> None:
        period = 1.0 / self.fps
        next_at = time.monotonic()
        while not self._halt.is_set():
            now = time.monotonic()
            if next_at > now:
                if self._halt.wait(next_at - now):
                    break
            elif now - next_at > 2 * period:
                self.late_frames += 1
                next_at = now  # fell behind: do not try to catch up with a burst
            next_at += period
            try:
                t0 = time.perf_counter()
                self.compose()
                t1 = time.perf_counter()
                force = self._keyframe.is_set()
                self._keyframe.clear()
                packets = self.encoder.encode_i420(self.canvas.as_array(), force_keyframe=force)
                t2 = time.perf_counter()
            except Exception:  # a bad frame must not end the conference picture
                log.exception("conference compositor failed on a frame")
                continue
            self.compose_ms = 0.9 * self.compose_ms + 0.1 * (t1 - t0) * 1000
            self.encode_ms = 0.9 * self.encode_ms + 0.1 * (t2 - t1) * 1000
            self.frames_out += 1
            self._recent.append(time.monotonic())
            if len(self._recent) > 50:
                del self._recent[:-50]
            if packets:
                self.on_packets(packets)
