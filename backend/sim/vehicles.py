"""The demo fleet (演示车辆与巡查员): vehicles and inspectors moving through the demo city.

Vehicles (环卫车 of the sanitation departments, 执法车 of 城管执法, 巡查车 of the street offices)
drive along the city's streets (``City.road_graph()``) inside their responsibility area and speak
real JT/T 808 over TCP to the gateway (``backend.gps.terminal.Terminal``: 注册, 鉴权, 0x0200 every
``vehicle_interval_s``, less often while parked). Inspectors (监督员) walk the streets of their
责任网格 and report like the Traccar Client over HTTP (``osmand_report``). Now and then a unit
parks for some minutes (a stop) and, rarely, an inspector strays out of the area for a while, so
the on-duty checks and alarms have something to show.

:func:`demo_fleet` is a pure function of the city: the seed (``services.gps.seed_devices``) and the
simulator agree on every device, plate, department, area and shift.
"""
from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from backend.gps.terminal import Terminal, distance_m, osmand_report, walk

log = logging.getLogger("citywall.sim.vehicles")

VEHICLE_SPEED_KMH = {"环卫车": (10.0, 20.0), "执法车": (20.0, 40.0), "巡查车": (20.0, 35.0)}
WALK_SPEED_KMH = (3.5, 5.5)


@dataclass(frozen=True)
class DemoUnit:
    """One simulated device and who or what carries it."""

    protocol: str  # jt808 | osmand
    identifier: str
    name: str
    kind: str  # vehicle | person
    plate: str = ""
    vehicle_type: str = ""
    person: str = ""
    department_code: str | None = None
    area: tuple[str, ...] = ()  # responsibility area: unit grid codes
    shifts: tuple[tuple[str, str], ...] = ()  # local (start, end)
    duty_grid_code: str | None = None

    @property
    def key(self) -> str:
        return f"{self.protocol}:{self.identifier}"


def _street_grids(city, street_code: str) -> tuple[str, ...]:
    return tuple(code for code in city.grid_codes() if code.startswith(street_code))


def demo_fleet(city, vehicles: tuple[int, int, int] = (14, 8, 8), inspectors: int = 12) -> list[DemoUnit]:
    """The demo's devices: (环卫车, 执法车, 巡查车) counts and the number of inspectors' phones."""
    streets = [s["code"] for s in city.streets]
    dept_codes = {d["code"] for d in city.departments}
    street_office = {d["street_code"]: d["code"] for d in city.departments if d["type"] == "street_office"}
    units: list[DemoUnit] = []
    sanitation, law, patrol = vehicles
    serial = 0
    for n in range(sanitation):
        serial += 1
        street = streets[n % len(streets)]
        dept = "wangfujing_office" if street.endswith("001") and "wangfujing_office" in dept_codes else "sanitation"
        shift = ("05:00", "13:00") if n % 2 == 0 else ("13:00", "21:00")
        units.append(DemoUnit("jt808", f"01391{serial:07d}", f"环卫车{n + 1:02d}", "vehicle",
                              plate=f"京AH{n + 1:04d}", vehicle_type="环卫车", department_code=dept,
                              area=_street_grids(city, street), shifts=(shift,)))
    for n in range(law):
        serial += 1
        street = streets[(n * 2 + 1) % len(streets)]
        units.append(DemoUnit("jt808", f"01391{serial:07d}", f"执法车{n + 1:02d}", "vehicle",
                              plate=f"京AZ{n + 1:04d}", vehicle_type="执法车", department_code="law_enforcement",
                              area=_street_grids(city, street), shifts=(("08:00", "20:00"),)))
    for n in range(patrol):
        serial += 1
        street = streets[(n * 3 + 2) % len(streets)]
        units.append(DemoUnit("jt808", f"01391{serial:07d}", f"巡查车{n + 1:02d}", "vehicle",
                              plate=f"京AX{n + 1:04d}", vehicle_type="巡查车",
                              department_code=street_office.get(street),
                              area=_street_grids(city, street), shifts=(("08:00", "18:00"),)))
    duty = {d["inspector"]: d for d in city.duty_grids}
    chosen = city.inspectors[:: max(1, len(city.inspectors) // max(1, inspectors))][:inspectors]
    for inspector in chosen:
        grid = duty.get(inspector["username"])
        if grid is None:
            continue
        units.append(DemoUnit("osmand", inspector["username"], f"{inspector['display_name']}（监督员）", "person",
                              person=inspector["username"], area=tuple(grid["grid_codes"]),
                              shifts=(("08:00", "18:00"),), duty_grid_code=grid["code"]))
    return units


@dataclass
class SimStats:
    sent: int = 0
    acknowledged: int = 0
    failures: int = 0
    by_unit: dict[str, int] = field(default_factory=dict)


class FleetSimulator:
    """Moves the demo units and reports their positions to the gateways (asyncio)."""

    def __init__(self, city, units: list[DemoUnit], *, host: str = "127.0.0.1", jt808_port: int = 5015,
                 osmand_port: int = 5055, vehicle_interval_s: float = 5.0, person_interval_s: float = 10.0,
                 parked_interval_s: float = 30.0, seed: int = 11) -> None:
        if vehicle_interval_s <= 0 or person_interval_s <= 0 or parked_interval_s <= 0:
            raise ValueError("report intervals must be positive")
        self.city = city
        self.units = units
        self.host = host
        self.jt808_port = jt808_port
        self.osmand_url = f"http://{host}:{osmand_port}"
        self.vehicle_interval_s = vehicle_interval_s
        self.person_interval_s = person_interval_s
        self.parked_interval_s = parked_interval_s
        self.seed = seed
        self.stats = SimStats()
        self.graph = city.road_graph()
        self._area_nodes: dict[tuple[str, ...], list[int]] = {}
        self._all_nodes = sorted(max(self.graph.components(), key=len))

    # ------------------------------------------------------------------ routes
    def area_nodes(self, area: tuple[str, ...]) -> list[int]:
        """Road nodes inside an area (the connected network only), or the nearest ones to it."""
        nodes = self._area_nodes.get(area)
        if nodes is None:
            codes = set(area)
            nodes = [n for n in self._all_nodes if self.city.grid_at(*self.graph.nodes[n]) in codes]
            if len(nodes) < 2 and area:
                centre = self.city.grid_geometry(area[0]).representative_point()
                nodes = sorted(self._all_nodes, key=lambda n: distance_m(self.graph.nodes[n],
                                                                         (centre.y, centre.x)))[:6]
            self._area_nodes[area] = nodes
        return nodes

    def route(self, start: int, area: tuple[str, ...], rng: random.Random,
              stray: bool = False) -> list[tuple[float, float]]:
        """A path along the streets from a node to a random node of the area (or, straying, outside it)."""
        choices = self.area_nodes(area)
        if stray:  # somewhere within 800 m but outside the area
            inside = set(choices)
            here = self.graph.nodes[start]
            outside = [n for n in self._all_nodes if n not in inside
                       and distance_m(here, self.graph.nodes[n]) < 800.0]
            choices = outside or choices
        goal = rng.choice(choices)
        for _ in range(5):
            if goal != start:
                break
            goal = rng.choice(choices)
        if goal == start:
            return [self.graph.nodes[start]]
        return self.graph.path_coords(self.graph.shortest_path(start, goal))

    # ------------------------------------------------------------------ running
    async def run(self, stop: asyncio.Event) -> None:
        import aiohttp

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            tasks = []
            for index, unit in enumerate(self.units):
                rng = random.Random(f"{self.seed}:{unit.key}")
                if unit.kind == "vehicle":
                    tasks.append(asyncio.create_task(self._vehicle(unit, rng, stop, index)))
                else:
                    tasks.append(asyncio.create_task(self._person(unit, rng, stop, session, index)))
            await stop.wait()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _pause(self, stop: asyncio.Event, seconds: float) -> bool:
        """Sleep; True when asked to stop."""
        try:
            await asyncio.wait_for(stop.wait(), seconds)
            return True
        except TimeoutError:
            return False

    def _count(self, unit: DemoUnit, ok: bool) -> None:
        self.stats.sent += 1
        if ok:
            self.stats.acknowledged += 1
            self.stats.by_unit[unit.key] = self.stats.by_unit.get(unit.key, 0) + 1

    def _start_node(self, unit: DemoUnit, rng: random.Random) -> int:
        return rng.choice(self.area_nodes(unit.area) or self._all_nodes)

    async def _vehicle(self, unit: DemoUnit, rng: random.Random, stop: asyncio.Event, index: int) -> None:
        """A JT/T 808 terminal driving around its area, reconnecting when the gateway goes away."""
        await self._pause(stop, (index % 10) * self.vehicle_interval_s / 10)  # spread the reports
        node = self._start_node(unit, rng)
        low, high = VEHICLE_SPEED_KMH.get(unit.vehicle_type, (15.0, 30.0))
        while not stop.is_set():
            try:
                async with Terminal(unit.identifier, self.host, self.jt808_port, plate=unit.plate) as terminal:
                    if not await terminal.start():
                        raise ConnectionError("the gateway refused the terminal")
                    while not stop.is_set():
                        path = self.route(node, unit.area, rng)
                        speed = rng.uniform(low, high)
                        step = speed / 3.6 * self.vehicle_interval_s
                        for lat, lon, heading in walk(path, max(step, 1.0)):
                            result = await terminal.report(lat, lon, speed=speed, heading=heading)
                            self._count(unit, result == 0)
                            if await self._pause(stop, self.vehicle_interval_s):
                                return
                        node = self.graph.nearest_node(*path[-1])
                        if rng.random() < 0.3:  # parked: 作业/停靠 for some minutes
                            until = time.monotonic() + rng.uniform(300, 720)
                            lat, lon = path[-1]
                            while time.monotonic() < until:
                                self._count(unit, await terminal.report(lat, lon, speed=0.0) == 0)
                                if await self._pause(stop, self.parked_interval_s):
                                    return
            except (OSError, ConnectionError, TimeoutError) as exc:
                self.stats.failures += 1
                log.debug("%s: %s; reconnecting", unit.key, exc)
                if await self._pause(stop, min(30.0, 5.0 + rng.random() * 5)):
                    return

    async def _person(self, unit: DemoUnit, rng: random.Random, stop: asyncio.Event, session,
                      index: int) -> None:
        """An inspector's phone: walks the 责任网格's streets, reports over OsmAnd HTTP."""
        await self._pause(stop, (index % 10) * self.person_interval_s / 10)
        node = self._start_node(unit, rng)
        while not stop.is_set():
            stray = rng.random() < 0.05  # rarely: leaves the area for a while (越界)
            path = self.route(node, unit.area, rng, stray=stray)
            speed = rng.uniform(*WALK_SPEED_KMH)
            step = speed / 3.6 * self.person_interval_s
            for lat, lon, heading in walk(path, max(step, 1.0)):
                if not await self._osmand(unit, session, lat, lon, speed, heading):
                    if await self._pause(stop, 5.0):
                        return
                if await self._pause(stop, self.person_interval_s):
                    return
            node = self.graph.nearest_node(*path[-1])
            if stray:  # walk back into the area
                continue
            if rng.random() < 0.5:  # checking something on site (核实/核查)
                until = time.monotonic() + rng.uniform(180, 480)
                lat, lon = path[-1]
                while time.monotonic() < until:
                    await self._osmand(unit, session, lat, lon, 0.0, 0.0)
                    if await self._pause(stop, self.parked_interval_s):
                        return

    async def _osmand(self, unit: DemoUnit, session, lat: float, lon: float, speed_kmh: float,
                      heading: float) -> bool:
        try:
            status = await osmand_report(self.osmand_url, unit.identifier, round(lat, 6), round(lon, 6),
                                         session=session, speed_knots=round(speed_kmh / 1.852, 2),
                                         bearing=round(heading, 1), accuracy=8, batt=80)
        except Exception as exc:  # aiohttp errors, timeouts: the gateway is away
            self.stats.failures += 1
            log.debug("%s: %s", unit.key, exc)
            return False
        self._count(unit, status == 200)
        return status == 200


def start_in_thread(simulator: FleetSimulator) -> tuple[threading.Thread, Callable[[], None]]:
    """Run the simulator on its own asyncio loop in a daemon thread; returns (thread, stop)."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, asyncio.Event] = {}

    def main() -> None:
        asyncio.set_event_loop(loop)
        holder["stop"] = asyncio.Event()
        ready.set()
        try:
            loop.run_until_complete(simulator.run(holder["stop"]))
        finally:
            loop.close()

    thread = threading.Thread(target=main, name="vehicle-sim", daemon=True)
    thread.start()
    ready.wait(5)

    def stop() -> None:
        if not loop.is_closed():
            loop.call_soon_threadsafe(holder["stop"].set)
        thread.join(15)

    return thread, stop
