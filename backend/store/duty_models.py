"""上岗履职 tables: shifts (班次) with their responsibility area, and duty alarms (履职告警).

A ``DutyShift`` is for one device (a vehicle's terminal) or one person (an inspector's username:
every device carried by that person counts). Times are local wall times with the days of the week
the shift starts on; ``grid_codes`` is the responsibility area (unit grid codes). A ``DutyAlarm``
is raised by the worker while a shift runs (out of area too long, no signal) and closed when the
condition clears. Times are timezone-aware UTC.
"""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from backend.store.base import Base


def _now() -> datetime:
    return datetime.now(timezone.utc)


class DutyShift(Base):
    """班次: who (device or person), when (local start/end, weekdays), where (unit grid codes)."""

    __tablename__ = "duty_shifts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    device_id: Mapped[int | None] = mapped_column(ForeignKey("gps_devices.id", ondelete="CASCADE"),
                                                  nullable=True, index=True)
    person: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)  # username
    start_time: Mapped[str] = mapped_column(String(8))  # local "HH:MM"
    end_time: Mapped[str] = mapped_column(String(8))  # local "HH:MM"; <= start: ends the next day
    days: Mapped[str] = mapped_column(String(7), default="1234567")  # ISO weekdays it starts on
    grid_codes: Mapped[list] = mapped_column(JSON)  # responsibility area (unit grid codes)
    duty_grid_code: Mapped[str | None] = mapped_column(String(40), nullable=True)  # 责任网格, if from one
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class DutyAlarm(Base):
    """履职告警: ``out_of_area`` (越界/离岗) or ``no_signal`` (无信号) during a shift."""

    __tablename__ = "duty_alarms"
    __table_args__ = (Index("ix_duty_alarms_shift_kind_open", "shift_id", "kind", "ended_at"),
                      Index("ix_duty_alarms_raised_at", "raised_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shift_id: Mapped[int] = mapped_column(ForeignKey("duty_shifts.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20))
    person: Mapped[str | None] = mapped_column(String(64), nullable=True)
    device_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    since: Mapped[datetime] = mapped_column(DateTime(timezone=True))  # when the condition began
    raised_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    lat: Mapped[float | None] = mapped_column(Float, nullable=True)
    lon: Mapped[float | None] = mapped_column(Float, nullable=True)
