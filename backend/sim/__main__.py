"""The demo city's simulator process (模拟): keeps cases flowing through the whole lifecycle, and
drives the demo fleet (vehicles over JT/T 808, inspectors' phones over OsmAnd) to the GPS gateways.

    python -m backend.sim        (CITYWALL_SIM_RATE new reports per minute, default 6;
                                  CITYWALL_SIM_VEHICLES=0 leaves the fleet parked)

Every write goes through the case service, like any other client. It is restart-safe: it reads
the open cases from the store at each step.
"""
from __future__ import annotations

import logging
import os
import signal
import threading

from backend.services.cases import now_utc
from backend.services.context import current

log = logging.getLogger("citywall.sim")


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from backend.sim.city import build_city
    from backend.sim.flow import Flow
    from backend.sim.vehicles import FleetSimulator, demo_fleet, start_in_thread

    rate = float(os.environ.get("CITYWALL_SIM_RATE", "6"))
    ctx = current()
    ctx.outbox.start_for("sim")
    city = build_city()
    flow = Flow(city, rate_per_minute=rate, seed=7)  # fixed: a restart keeps each case's fate
    stop_fleet = None
    if os.environ.get("CITYWALL_SIM_VEHICLES", "1") not in ("0", "false", "no"):
        fleet = FleetSimulator(city, demo_fleet(city), jt808_port=ctx.config.jt808_port,
                               osmand_port=ctx.config.osmand_port)
        _thread, stop_fleet = start_in_thread(fleet)
        log.info("vehicle simulator started: %d units", len(fleet.units))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    log.info("simulator started: %.1f reports per minute", rate)
    while not stop.is_set():
        try:
            flow.step(now_utc())
        except Exception:
            log.exception("simulator step failed; continuing")
        stop.wait(2.0)
    if stop_fleet is not None:
        stop_fleet()
    ctx.outbox.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
