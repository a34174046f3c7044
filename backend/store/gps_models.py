"""GPS device registry (设备登记) and the trail archive (轨迹库).

``Device`` is a vehicle terminal (车载终端, JT/T 808) or a phone (巡查员/执法人员手机, OsmAnd),
unique per (protocol, identifier). A JT/T 808 identifier is the terminal phone number as
digits with its leading zeros (12 digits for 2013 terminals, 20 for 2019). ``TrailPoint`` rows
are written by the archiver from the Redis trail stream, for history, on-duty checks (上岗履职)
and reports. Times are timezone-aware UTC.
"""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, String,
                        UniqueConstraint)
from sqlalchemy.orm import Mapped, mapped_column

from backend.store.base import Base

VEHICLE_TYPES = ("环卫车", "执法车", "巡查车", "渣土车", "洒水车", "抢修车", "其他")


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Device(Base):
    """设备: one GPS terminal or phone, as the gateways know it."""

    __tablename__ = "gps_devices"
    __table_args__ = (UniqueConstraint("protocol", "identifier", name="uq_gps_devices_protocol_identifier"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    protocol: Mapped[str] = mapped_column(String(16))  # "jt808" | "osmand"
    identifier: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(100), default="")
    kind: Mapped[str] = mapped_column(String(16), default="vehicle")  # "vehicle" | "person"
    plate: Mapped[str | None] = mapped_column(String(20), nullable=True)  # 车牌号
    vehicle_type: Mapped[str | None] = mapped_column(String(20), nullable=True)  # 环卫车/执法车/巡查车…
    person: Mapped[str | None] = mapped_column(String(64), nullable=True)  # username of the carrier
    department_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    auth_code: Mapped[str | None] = mapped_column(String(64), nullable=True)  # 鉴权码, JT/T 808
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    last_seen_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    @property
    def key(self) -> str:
        """The device's member name in Redis: ``jt808:013912345678``."""
        return f"{self.protocol}:{self.identifier}"


class TrailPoint(Base):
    """轨迹点: one archived position of a device."""

    __tablename__ = "gps_trail_points"
    __table_args__ = (Index("ix_gps_trail_points_device_time", "device_id", "time"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("gps_devices.id", ondelete="CASCADE"))
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True))  # fix time, UTC
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    speed: Mapped[float] = mapped_column(Float, default=0.0)  # km/h
    heading: Mapped[float] = mapped_column(Float, default=0.0)  # degrees from north
    altitude: Mapped[float] = mapped_column(Float, default=0.0)  # metres
    valid: Mapped[bool] = mapped_column(Boolean, default=True)  # positioned (定位有效)
    alarm: Mapped[int] = mapped_column(BigInteger, default=0)  # JT/T 808 alarm bits
    status: Mapped[int] = mapped_column(BigInteger, default=0)  # JT/T 808 status bits
