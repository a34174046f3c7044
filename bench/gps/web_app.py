"""The web process's WSGI app for ``bench/gps/to_screen.py``'s what-if runs: ``backend.wsgi:app``
with the web bridge's vehicle coalescing interval taken from ``CITYWALL_BENCH_VEHICLE_INTERVAL``
(seconds; unset: the shipped ``backend.realtime.VEHICLE_INTERVAL``). Only for measuring what a
shorter interval would give; the shipped app is ``backend.wsgi:app``."""
from __future__ import annotations

import os

from backend import realtime

_interval = os.environ.get("CITYWALL_BENCH_VEHICLE_INTERVAL", "")
if _interval:
    realtime.VEHICLE_INTERVAL = float(_interval)  # read by Bridge._gps_loop on every turn

from backend.wsgi import app  # noqa: E402

__all__ = ["app"]
