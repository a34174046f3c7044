"""The demo fleet end to end: simulated vehicles speak JT/T 808 and inspectors' phones OsmAnd to
the real gateway process (database registry, no auto-registration), positions land in Redis and
the archiver stores them."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, func, insert, select

from backend.gps.archive import Archiver
from backend.gps.pipeline import KEY_LATEST, KEY_TRAIL
from backend.gps.position import trail_positions
from backend.sim.city import default_city
from backend.sim.vehicles import FleetSimulator, demo_fleet, start_in_thread
from backend.store.base import Base
from backend.store.gps_models import Device, TrailPoint
from tests.integration.test_gps_process import free_port, wait_port

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = "redis://127.0.0.1:6379/6"
pytestmark = pytest.mark.timeout(90)


def test_demo_fleet_is_consistent():
    city = default_city()
    fleet = demo_fleet(city)
    vehicles = [u for u in fleet if u.kind == "vehicle"]
    people = [u for u in fleet if u.kind == "person"]
    assert len(vehicles) == 30 and len(people) == 12
    assert len({u.key for u in fleet}) == len(fleet)
    assert {u.vehicle_type for u in vehicles} == {"环卫车", "执法车", "巡查车"}
    departments = {d["code"]: d for d in city.departments}
    for unit in vehicles:
        assert len(unit.identifier) == 12 and unit.identifier.isdigit() and unit.plate.startswith("京A")
        dept = departments[unit.department_code]
        expected = {"环卫车": "sanitation", "执法车": "law_enforcement", "巡查车": "street_office"}[unit.vehicle_type]
        assert dept["type"] == expected
        assert unit.area and all(code in set(city.grid_codes()) for code in unit.area)
    duty_grids = {d["code"]: d for d in city.duty_grids}
    for person in people:
        grid = duty_grids[person.duty_grid_code]
        assert grid["inspector"] == person.person == person.identifier
        assert person.area == tuple(grid["grid_codes"])
    assert demo_fleet(city) == fleet  # the seed and the simulator agree


def test_fleet_drives_through_the_real_gateway(tmp_path):
    city = default_city()
    fleet = demo_fleet(city)
    units = [u for u in fleet if u.kind == "vehicle"][:2] + [u for u in fleet if u.kind == "person"][:2]
    engine = create_engine(f"sqlite:///{tmp_path / 'citywall.db'}")
    Base.metadata.create_all(engine, tables=[Device.__table__, TrailPoint.__table__])
    with engine.begin() as conn:
        conn.execute(insert(Device.__table__), [
            {"protocol": u.protocol, "identifier": u.identifier, "name": u.name, "kind": u.kind,
             "plate": u.plate or None, "vehicle_type": u.vehicle_type or None, "person": u.person or None,
             "enabled": True} for u in units])
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    jt_port, os_port = free_port(), free_port()
    env = dict(os.environ, CITYWALL_JT808_PORT=str(jt_port), CITYWALL_OSMAND_PORT=str(os_port),
               REDIS_URL=REDIS_URL, CITYWALL_DATA_DIR=str(tmp_path), CITYWALL_GPS_AUTOREGISTER="0",
               CITYWALL_GPS_HOST="127.0.0.1")
    env.pop("DATABASE_URL", None)
    process = subprocess.Popen([sys.executable, "-m", "backend.gps"], cwd=ROOT, env=env)
    stop = None
    try:
        wait_port(jt_port)
        wait_port(os_port)
        simulator = FleetSimulator(city, units, jt808_port=jt_port, osmand_port=os_port,
                                   vehicle_interval_s=0.2, person_interval_s=0.2, parked_interval_s=0.2)
        _thread, stop = start_in_thread(simulator)
        wanted = {u.key for u in units}
        deadline = time.time() + 30
        while time.time() < deadline:
            seen = {m.decode() for m in client.zrange(KEY_LATEST, 0, -1)}
            if seen >= wanted and all(simulator.stats.by_unit.get(k, 0) >= 5 for k in wanted):
                break
            time.sleep(0.2)
        stop()
        stop = None
        assert {m.decode() for m in client.zrange(KEY_LATEST, 0, -1)} == wanted
        assert simulator.stats.acknowledged == simulator.stats.sent > 0
        positions = [p for _id, fields in client.xrange(KEY_TRAIL) for p in trail_positions(fields[b"p"])]
        for unit in units:
            mine = [p for p in positions if p.device == unit.key]
            assert len(mine) >= 5
            assert all(city.grid_at(p.lat, p.lon) is not None for p in mine)  # in the district
            assert len({(round(p.lat, 6), round(p.lon, 6)) for p in mine}) > 1  # it moves
            assert city.grid_at(mine[0].lat, mine[0].lon) in set(unit.area)  # starts in its area
        assert Archiver(client, engine).drain() == len(positions)
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(TrailPoint)).scalar_one() == len(positions)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if stop is not None:
            stop()
        if process.poll() is None:
            process.kill()
        engine.dispose()
        client.flushdb()
        client.close()
