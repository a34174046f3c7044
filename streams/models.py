"""The camera table (视频监控点位). The lead moves this model into backend.store later."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import DateTime, Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from backend.store.base import Base


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Camera(Base):
    """A camera at a street corner (视频监控点): location, unit grid (单元网格), source and status."""

    __tablename__ = "cameras"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    grid_code: Mapped[str | None] = mapped_column(String(15), nullable=True, index=True)
    source: Mapped[str] = mapped_column(String(1000))  # rtsp://..., a file path or synthetic:<name>
    status: Mapped[str] = mapped_column(String(20), default="active")  # active | disabled
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_utcnow)
