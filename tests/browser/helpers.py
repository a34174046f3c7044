"""Small helpers shared by the browser tests of the wall and of the streams service."""
from __future__ import annotations

import time

# Hash, mean and standard deviation of the grey level of every `step`-th pixel of RGBA image data: a JS
# function (d, step) => {hash, mean, std}, for the page scripts below and the tests' own.
PIXEL_STATS = """(d, step) => {
  let hash = 0, s = 0, s2 = 0, n = 0;
  for (let i = 0; i < d.length; i += 4 * step) {
    const g = (d[i] + d[i + 1] + d[i + 2]) / 3;
    hash = (Math.imul(hash, 31) + d[i] + 7 * d[i + 1] + 13 * d[i + 2]) >>> 0;
    s += g; s2 += g * g; n++;
  }
  const mean = s / n;
  return {hash: hash, mean: mean, std: Math.sqrt(Math.max(0, s2 / n - mean * mean))};
}"""

# PIXEL_STATS of one video element's current frame (every 7th pixel) with the frame's size {w, h}; null while
# the element (a CSS selector) is missing or has no frame yet.
FRAME_SAMPLE = """sel => {
  const v = document.querySelector(sel);
  if (!v || !v.videoWidth) return null;
  const c = document.createElement('canvas');
  c.width = v.videoWidth; c.height = v.videoHeight;
  const x = c.getContext('2d');
  x.drawImage(v, 0, 0);
  const stats = (""" + PIXEL_STATS + """)(x.getImageData(0, 0, c.width, c.height).data, 7);
  return Object.assign(stats, {w: c.width, h: c.height});
}"""


def wait_until(predicate, timeout: float, what: str, poll: float = 0.25):
    """The first truthy value of predicate(), polled every `poll` seconds; AssertionError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out waiting for {what}")
