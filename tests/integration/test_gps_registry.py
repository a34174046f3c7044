"""Device registry: the in-memory rules and the SQL-backed registry on a real SQLite file."""
from __future__ import annotations

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.gps.registry import DeviceInfo, Registry, SqlRegistry
from backend.store.base import Base
from backend.store.gps_models import Device, TrailPoint


@pytest.fixture
def engine(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'gps.db'}")
    Base.metadata.create_all(engine, tables=[Device.__table__, TrailPoint.__table__])
    yield engine
    engine.dispose()


def test_unknown_device_refused_and_counted_once_logged(caplog):
    registry = Registry([DeviceInfo("jt808", "013912345678")])
    assert registry.resolve("jt808", "013900000000") is None
    assert registry.resolve("jt808", "013900000000") is None
    assert registry.stats["unknown_devices"] == 2
    assert sum("013900000000" in r.message for r in caplog.records) == 1


def test_jt808_lookup_ignores_leading_zeros():
    registry = Registry([DeviceInfo("jt808", "13912345678")])
    assert registry.resolve("jt808", "013912345678").identifier == "13912345678"
    assert registry.resolve("jt808", "00000000013912345678").key == "jt808:13912345678"
    assert registry.resolve("osmand", "013912345678") is None


def test_disabled_device_is_refused():
    registry = Registry([DeviceInfo("osmand", "p1", kind="person", enabled=False)], autoregister=True)
    assert registry.resolve("osmand", "p1") is None
    assert registry.new_devices == []


def test_autoregistration():
    registry = Registry(autoregister=True)
    device = registry.resolve("osmand", "phone-9")
    assert device is not None and device.kind == "person"
    assert registry.resolve("jt808", "013912345678").kind == "vehicle"
    assert len(registry) == 2


def test_auth_code_is_stable_and_checked():
    device = DeviceInfo("jt808", "013912345678")
    a, b = Registry(secret="s1"), Registry(secret="s1")
    assert a.auth_code(device) == b.auth_code(device)  # two gateway processes agree
    assert a.auth_code(device) != Registry(secret="s2").auth_code(device)
    assert a.check_auth(device, a.auth_code(device))
    assert not a.check_auth(device, "guess")
    stored = DeviceInfo("jt808", "013912345678", auth_code="K123")
    assert a.auth_code(stored) == "K123"


@pytest.mark.parametrize("kwargs", [dict(protocol="gt06", identifier="1"), dict(protocol="jt808", identifier=""),
                                    dict(protocol="jt808", identifier="1", kind="robot")])
def test_bad_device_is_refused(kwargs):
    with pytest.raises(ValueError):
        DeviceInfo(**kwargs)


def test_sql_registry_loads_autoregisters_and_records_last_seen(engine):
    with Session(engine) as session, session.begin():
        session.add_all([
            Device(protocol="jt808", identifier="013912345678", name="环卫车 01", kind="vehicle",
                   plate="粤B12345", vehicle_type="环卫车", department_id=3, enabled=True),
            Device(protocol="osmand", identifier="inspector01", name="巡查员 01", kind="person",
                   person="inspector01", enabled=False),
        ])
    registry = SqlRegistry(engine, autoregister=True)
    registry.load()
    device = registry.resolve("jt808", "013912345678")
    assert (device.plate, device.vehicle_type, device.department_id) == ("粤B12345", "环卫车", 3)
    assert registry.resolve("osmand", "inspector01") is None  # disabled
    assert registry.resolve("jt808", "013800000000") is not None  # auto-registered
    registry.sync()
    with Session(engine) as session:
        rows = {d.identifier: d for d in session.scalars(select(Device))}
    assert set(rows) == {"013912345678", "inspector01", "013800000000"}
    assert rows["013800000000"].enabled and rows["013800000000"].kind == "vehicle"
    assert rows["013912345678"].last_seen_at is not None
    assert rows["inspector01"].last_seen_at is None
    assert registry.find("jt808", "013800000000").id == rows["013800000000"].id
    registry.sync()  # a second sync inserts nothing twice
    with Session(engine) as session:
        assert len(session.scalars(select(Device)).all()) == 3


def test_device_is_unique_per_protocol_and_identifier(engine):
    with Session(engine) as session:
        session.add_all([Device(protocol="jt808", identifier="1", kind="vehicle"),
                         Device(protocol="jt808", identifier="1", kind="vehicle")])
        with pytest.raises(IntegrityError):
            session.commit()
    with Session(engine) as session, session.begin():
        session.add_all([Device(protocol="jt808", identifier="2", kind="vehicle"),
                         Device(protocol="osmand", identifier="2", kind="person")])


def test_sync_keeps_its_work_when_the_database_is_away(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'empty.db'}")  # no gps tables yet
    registry = SqlRegistry(engine, autoregister=True)
    registry.resolve("jt808", "013800000000")
    with pytest.raises(Exception):
        registry.sync()
    assert [d.identifier for d in registry.new_devices] == ["013800000000"]
    assert ("jt808", "013800000000") in registry.last_seen
    Base.metadata.create_all(engine, tables=[Device.__table__, TrailPoint.__table__])
    registry.sync()
    with Session(engine) as session:
        assert session.scalar(select(Device.identifier)) == "013800000000"
    engine.dispose()
