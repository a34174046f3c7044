"""Tile geometry of the composed picture (会商画面布局): pure functions, no I/O.

Two layouts: "speaker" (主讲人大画面 + 小画面网格) and "grid" (宫格). Every rectangle has even x, y,
width and height so that yuv420p planes can be copied without rounding.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

WIDTH = 1280
HEIGHT = 720
LAYOUTS = ("speaker", "grid")


@dataclass(frozen=True)
class Rect:
    x: int
    y: int
    w: int
    h: int

    def as_dict(self) -> dict:
        return {"x": self.x, "y": self.y, "w": self.w, "h": self.h}


def _even(v: float) -> int:
    return int(v) // 2 * 2


def grid_rects(n: int, width: int = WIDTH, height: int = HEIGHT) -> list[Rect]:
    """n equal tiles, row by row; a short last row is centred."""
    if n <= 0:
        return []
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    tw, th = _even(width / cols), _even(height / rows)
    rects: list[Rect] = []
    for i in range(n):
        row, col = divmod(i, cols)
        in_row = min(cols, n - row * cols)
        left = _even((width - in_row * tw) / 2)
        rects.append(Rect(left + col * tw, row * th, tw, th))
    return rects


def speaker_rects(n: int, width: int = WIDTH, height: int = HEIGHT) -> list[Rect]:
    """The first rectangle is the speaker's (top-left, large); the others fill the L-shaped rest.

    With up to 7 others the speaker takes 3/4 of each side (tiles of 1/4); with 8 or 9 others it
    takes 4/5 (tiles of 1/5); with more the layout falls back to a grid.
    """
    if n <= 0:
        return []
    if n == 1:
        return [Rect(0, 0, width, height)]
    others = n - 1
    if others <= 7:
        parts = 4
    elif others <= 9:
        parts = 5
    else:
        return grid_rects(n, width, height)
    tw, th = _even(width / parts), _even(height / parts)
    sw, sh = width - tw, height - th
    slots = [Rect(sw, y * th, tw, th) for y in range(parts)]  # right column, top to bottom
    slots += [Rect(x * tw, sh, tw, th) for x in range(parts - 2, -1, -1)]  # bottom row, right to left
    return [Rect(0, 0, sw, sh)] + slots[:others]


def compute(layout: str, n: int, width: int = WIDTH, height: int = HEIGHT) -> list[Rect]:
    """Rectangles for `n` tiles in `layout`; raises ValueError for an unknown layout."""
    if layout == "speaker":
        return speaker_rects(n, width, height)
    if layout == "grid":
        return grid_rects(n, width, height)
    raise ValueError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")


def fit(src_w: int, src_h: int, tile: Rect) -> Rect:
    """The largest rectangle of the source's aspect ratio centred in `tile` (letterbox), even-sized."""
    if src_w <= 0 or src_h <= 0:
        raise ValueError(f"source size must be positive, got {src_w}x{src_h}")
    scale = min(tile.w / src_w, tile.h / src_h)
    w = max(2, min(tile.w, _even(src_w * scale + 1)))
    h = max(2, min(tile.h, _even(src_h * scale + 1)))
    return Rect(tile.x + _even((tile.w - w) / 2), tile.y + _even((tile.h - h) / 2), w, h)
