"""``python -m backend.gps`` as a process: ports and Redis from the environment, clean SIGTERM."""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from backend.gps.gateway import CHANNEL_REGISTRY
from backend.gps.pipeline import KEY_LATEST
from backend.gps.terminal import Terminal, osmand_report
from backend.store.base import Base
from backend.store.gps_models import Device, TrailPoint

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = "redis://127.0.0.1:6379/3"
pytestmark = pytest.mark.timeout(60)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"port {port} never opened")


def test_gateway_process_with_the_database_registry(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'citywall.db'}")
    Base.metadata.create_all(engine, tables=[Device.__table__, TrailPoint.__table__])
    with Session(engine) as session, session.begin():
        session.add(Device(protocol="jt808", identifier="013912345678", kind="vehicle", enabled=True))
    engine.dispose()
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    jt_port, os_port = free_port(), free_port()
    env = dict(os.environ, CITYWALL_JT808_PORT=str(jt_port), CITYWALL_OSMAND_PORT=str(os_port),
               REDIS_URL=REDIS_URL, CITYWALL_DATA_DIR=str(tmp_path), CITYWALL_GPS_AUTOREGISTER="0",
               CITYWALL_GPS_HOST="127.0.0.1")
    env.pop("DATABASE_URL", None)
    process = subprocess.Popen([sys.executable, "-m", "backend.gps"], cwd=ROOT, env=env)
    try:
        wait_port(jt_port)
        wait_port(os_port)

        async def devices() -> tuple[int, int, int]:
            async with Terminal("13912345678", port=jt_port) as known:
                assert await known.start()
                known_result = await known.report(22.5, 114.0)
            async with Terminal("13800000000", port=jt_port) as stranger:
                stranger_result = await stranger.report(22.5, 114.0)
            phone = await osmand_report(f"http://127.0.0.1:{os_port}", "nobody", 22.5, 114.0)
            return known_result, stranger_result, phone

        assert asyncio.run(devices()) == (0, 1, 400)
        assert client.zrange(KEY_LATEST, 0, -1) == [b"jt808:013912345678"]
        # the API adds a phone and asks the gateways to reload
        engine = create_engine(f"sqlite:///{tmp_path / 'citywall.db'}")
        with Session(engine) as session, session.begin():
            session.add(Device(protocol="osmand", identifier="nobody", kind="person", enabled=True))
        engine.dispose()
        client.publish(CHANNEL_REGISTRY, "reload")

        async def phone_until_accepted() -> int:
            for _ in range(50):
                status = await osmand_report(f"http://127.0.0.1:{os_port}", "nobody", 22.5, 114.0)
                if status == 200:
                    return status
                await asyncio.sleep(0.1)
            return status

        assert asyncio.run(phone_until_accepted()) == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
        client.flushdb()
        client.close()
