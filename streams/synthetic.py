"""A synthetic street-corner camera (合成测试画面): a street scene drawn with OpenCV.

Cars and people move along a road between buildings and trees; the camera name and a clock with
milliseconds (in CITYWALL_TIMEZONE, default Asia/Shanghai) are printed on the frame, and a machine-readable timestamp barcode sits in the top-left
corner so a viewer can measure glass-to-glass latency (see `decode_barcode` and assets/webrtc-player.js).
"""
from __future__ import annotations

import math
import os
import time
import zlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import cv2
import numpy as np

CJK_FONT = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")  # Debian fonts-noto-cjk
BARCODE_BITS = 48  # 40 bits of epoch milliseconds + 8 bits of checksum
BARCODE_TS_BITS = 40


def barcode_cell(width: int) -> int:
    """Side of one barcode cell in pixels for a frame of this width (the browser uses the same rule)."""
    return max(4, width // 96)


def barcode_bits(epoch_ms: int) -> list[int]:
    """Bits (most significant first) of the timestamp barcode: 40 bits of ms, then an 8-bit checksum."""
    ts = epoch_ms & ((1 << BARCODE_TS_BITS) - 1)
    checksum = sum((ts >> (8 * i)) & 0xFF for i in range(5)) & 0xFF
    value = (ts << 8) | checksum
    return [(value >> (BARCODE_BITS - 1 - i)) & 1 for i in range(BARCODE_BITS)]


def draw_barcode(image: np.ndarray, epoch_ms: int) -> None:
    """Draw the timestamp barcode: one row of cells (white = 1, black = 0) at the top-left corner."""
    cell = barcode_cell(image.shape[1])
    image[0 : cell * 3, 0 : cell * (BARCODE_BITS + 2)] = 0
    for i, bit in enumerate(barcode_bits(epoch_ms)):
        if bit:
            x = cell * (i + 1)
            image[cell : cell * 2, x : x + cell] = 255


def decode_barcode(image: np.ndarray) -> int | None:
    """Read the timestamp (epoch ms modulo 2**40) back from a BGR or gray frame; None if unreadable."""
    cell = barcode_cell(image.shape[1])
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    value = 0
    for i in range(BARCODE_BITS):
        x = cell * (i + 1) + cell // 2
        y = cell + cell // 2
        value = (value << 1) | (1 if gray[y, x] > 127 else 0)
    ts, checksum = value >> 8, value & 0xFF
    if sum((ts >> (8 * i)) & 0xFF for i in range(5)) & 0xFF != checksum:
        return None
    return ts


@dataclass
class Mover:
    """A car or a person moving along the road."""

    kind: str  # "car" | "person"
    lane_y: float  # fraction of height
    speed: float  # fraction of width per second (negative: right to left)
    phase: float
    color: tuple[int, int, int]


class StreetScene:
    """Draws frames of one synthetic street-corner camera; the layout is seeded by the camera name."""

    def __init__(self, name: str, width: int = 1280, height: int = 720, label: str | None = None,
                 timezone: str | None = None) -> None:
        if width < 160 or height < 90 or width % 2 or height % 2:
            raise ValueError(f"synthetic frame size must be even and at least 160x90, got {width}x{height}")
        self.name = name
        self.label = label or name
        self.tz = ZoneInfo(timezone or os.environ.get("CITYWALL_TIMEZONE") or "Asia/Shanghai")
        self.width = width
        self.height = height
        seed = zlib.crc32(name.encode("utf-8"))
        self._rng = np.random.default_rng(seed)
        self._background = self._draw_background()
        self._movers = self._make_movers()

    def _draw_background(self) -> np.ndarray:
        w, h, rng = self.width, self.height, self._rng
        img = np.zeros((h, w, 3), np.uint8)
        img[:] = (200, 170, 120)  # sky (BGR)
        horizon = int(h * 0.45)
        x = 0
        while x < w:  # buildings with windows
            bw = int(rng.integers(w // 14, w // 6))
            bh = int(rng.integers(h // 6, int(h * 0.42)))
            shade = int(rng.integers(90, 170))
            color = (shade, shade - 10, shade - 25)
            cv2.rectangle(img, (x, horizon - bh), (x + bw - 4, horizon), color, -1)
            for wy in range(horizon - bh + 8, horizon - 12, max(10, h // 36)):
                for wx in range(x + 6, x + bw - 14, max(10, w // 64)):
                    lit = (220, 235, 250) if rng.random() < 0.3 else (70, 60, 50)
                    cv2.rectangle(img, (wx, wy), (wx + max(3, w // 200), wy + max(3, h // 120)), lit, -1)
            x += bw
        cv2.rectangle(img, (0, horizon), (w, h), (95, 140, 95), -1)  # grass
        road_top, road_bottom = int(h * 0.55), int(h * 0.85)
        cv2.rectangle(img, (0, int(h * 0.50)), (w, road_top), (170, 170, 175), -1)  # sidewalk
        cv2.rectangle(img, (0, road_top), (w, road_bottom), (60, 60, 60), -1)  # road
        mid = (road_top + road_bottom) // 2
        for dx in range(0, w, w // 16):
            cv2.rectangle(img, (dx, mid - 2), (dx + w // 32, mid + 2), (240, 240, 240), -1)
        for cx in range(w // 20, w, w // 5):  # trees along the sidewalk
            tx = cx + int(rng.integers(-w // 40, w // 40))
            cv2.rectangle(img, (tx - 3, int(h * 0.43)), (tx + 3, int(h * 0.52)), (40, 70, 100), -1)
            cv2.circle(img, (tx, int(h * 0.41)), max(8, h // 22), (50, 130, 60), -1)
        self._draw_label(img)
        return img

    def _make_movers(self) -> list[Mover]:
        rng = self._rng
        movers: list[Mover] = []
        for i in range(4):
            right = i % 2 == 0
            movers.append(
                Mover(
                    "car",
                    0.63 if right else 0.77,
                    float(rng.uniform(0.12, 0.3)) * (1 if right else -1),
                    float(rng.random()),
                    tuple(int(c) for c in rng.integers(30, 255, 3)),  # type: ignore[arg-type]
                )
            )
        for i in range(3):
            movers.append(
                Mover(
                    "person",
                    0.52,
                    float(rng.uniform(0.03, 0.06)) * (1 if i % 2 else -1),
                    float(rng.random()),
                    tuple(int(c) for c in rng.integers(30, 255, 3)),  # type: ignore[arg-type]
                )
            )
        return movers

    def draw(self, t: float | None = None) -> np.ndarray:
        """One BGR frame for wall-clock time `t` (seconds since the epoch; now when None)."""
        t = time.time() if t is None else t
        img = self._background.copy()
        w, h = self.width, self.height
        for m in self._movers:
            pos = (m.phase + m.speed * t) % 1.2 - 0.1
            x = int(pos * w)
            y = int(m.lane_y * h)
            if m.kind == "car":
                cw, ch = w // 11, h // 16
                cv2.rectangle(img, (x - cw // 2, y - ch), (x + cw // 2, y), m.color, -1)
                cv2.rectangle(img, (x - cw // 4, y - ch - ch // 2), (x + cw // 4, y - ch), m.color, -1)
                for wx in (x - cw // 3, x + cw // 3):
                    cv2.circle(img, (wx, y), max(3, ch // 3), (20, 20, 20), -1)
            else:
                r = max(3, h // 60)
                bob = int(2 * math.sin(t * 8 + m.phase * 10))
                cv2.circle(img, (x, y - 5 * r + bob), r, (150, 180, 220), -1)
                cv2.rectangle(img, (x - r, y - 4 * r + bob), (x + r, y - r), m.color, -1)
                cv2.line(img, (x - r // 2, y - r), (x - r, y + r), (40, 40, 40), 2)
                cv2.line(img, (x + r // 2, y - r), (x + r, y + r), (40, 40, 40), 2)
        self._draw_text(img, t)
        draw_barcode(img, int(t * 1000))
        return img

    def _draw_label(self, img: np.ndarray) -> None:
        """The black caption bar with the camera name (Chinese names need the Noto CJK font)."""
        w, h = self.width, self.height
        scale = h / 720
        cv2.rectangle(img, (0, h - int(90 * scale)), (w, h), (0, 0, 0), -1)
        origin = (int(12 * scale), h - int(55 * scale))
        if not self.label.isascii() and CJK_FONT.exists() and hasattr(cv2, "FontFace"):
            try:
                cv2.putText(img, self.label, origin, (255, 255, 255), cv2.FontFace(str(CJK_FONT)),
                            max(10, int(34 * scale)))
                return
            except cv2.error:
                pass
        cv2.putText(img, self.label, origin, cv2.FONT_HERSHEY_SIMPLEX, 1.1 * scale, (255, 255, 255),
                    max(1, int(2 * scale)), cv2.LINE_AA)

    def _draw_text(self, img: np.ndarray, t: float) -> None:
        w, h = self.width, self.height
        scale = h / 720
        clock = datetime.fromtimestamp(t, self.tz).strftime("%Y-%m-%d %H:%M:%S") + f".{int(t * 1000) % 1000:03d}"
        y0 = h - int(20 * scale)
        cv2.putText(img, clock, (int(12 * scale), y0), cv2.FONT_HERSHEY_SIMPLEX, 1.0 * scale,
                    (0, 255, 255), max(1, int(2 * scale)), cv2.LINE_AA)
