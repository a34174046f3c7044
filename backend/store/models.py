"""Tables of the case engine (案件库), the city base data (基础数据) and the audit chain (审计链).

Times are stored as timezone-aware UTC. Geometry is stored as GeoJSON text in WGS-84 (CGCS2000):
the point-in-polygon work is done in memory with shapely (see backend.domain.grid), so the same
schema runs on SQLite and PostgreSQL.
"""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from backend.store.base import Base


class Department(Base):
    """专业部门: a responsible department (处置部门) or street office."""

    __tablename__ = "departments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(40))
    street_code: Mapped[str | None] = mapped_column(String(9), nullable=True)


class User(Base):
    """A person who signs in: 监督员, 受理员, 值班长, 派遣员, 专业部门, 领导 or admin."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20))
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"), nullable=True)
    display_name: Mapped[str] = mapped_column(String(100), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    token_version: Mapped[int] = mapped_column(Integer, default=1)


class Street(Base):
    """街道 (9-digit code: 6 区划 + 3 街道)."""

    __tablename__ = "streets"
    code: Mapped[str] = mapped_column(String(9), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    geometry: Mapped[str] = mapped_column(Text)


class Community(Base):
    """社区 (12-digit code: street + 3)."""

    __tablename__ = "communities"
    code: Mapped[str] = mapped_column(String(12), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    street_code: Mapped[str] = mapped_column(String(9), index=True)
    geometry: Mapped[str] = mapped_column(Text)


class UnitGrid(Base):
    """单元网格 (15-digit 单元网格标识码)."""

    __tablename__ = "unit_grids"
    code: Mapped[str] = mapped_column(String(15), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    street_code: Mapped[str] = mapped_column(String(9), index=True)
    community_code: Mapped[str] = mapped_column(String(12), index=True)
    geometry: Mapped[str] = mapped_column(Text)
    area_m2: Mapped[float] = mapped_column(Float, default=0.0)


class MapLayer(Base):
    """Vector layers of the offline basemap (district boundary, roads) as GeoJSON FeatureCollections."""

    __tablename__ = "map_layers"
    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    geojson: Mapped[str] = mapped_column(Text)


class ResponsibilityRule(Base):
    """责任划分: unit grid (or prefix) × class (or prefix) → department."""

    __tablename__ = "responsibility_rules"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    department_id: Mapped[int] = mapped_column(ForeignKey("departments.id"))
    grid_prefix: Mapped[str] = mapped_column(String(15), default="")
    class_prefix: Mapped[str] = mapped_column(String(5), default="")


class DutyGrid(Base):
    """责任网格: the unit grids one inspector (监督员) patrols."""

    __tablename__ = "duty_grids"
    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    inspector: Mapped[str] = mapped_column(String(64), index=True)
    grid_codes: Mapped[list] = mapped_column(JSON)


class Component(Base):
    """管理部件 instance with its 16-digit 标识码."""

    __tablename__ = "components"
    code: Mapped[str] = mapped_column(String(17), primary_key=True)
    class_code: Mapped[str] = mapped_column(String(5), index=True)
    name: Mapped[str] = mapped_column(String(100))
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    grid_code: Mapped[str] = mapped_column(String(15), index=True)
    status: Mapped[str] = mapped_column(String(10), default="完好")
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"), nullable=True)


class Case(Base):
    """案件: one problem from report (上报) to close (结案).

    `deadline_at` is the deadline of the running stage (NULL when no clock runs: closed, cancelled,
    suspended); `warn_at` is when 80% of that stage's time is used. `bundle_deadline_at` is the
    处置 deadline including approved extensions (捆绑时限), the base of 按期/超期.
    `sla_state`: 0 within time, 1 warned (80% used), 2 overdue, for the running stage.
    """

    __tablename__ = "cases"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_number: Mapped[str] = mapped_column(String(40), unique=True)
    class_code: Mapped[str] = mapped_column(String(5), index=True)
    source: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), index=True)
    urgency: Mapped[str] = mapped_column(String(10), default="normal")
    description: Mapped[str] = mapped_column(Text)
    address: Mapped[str] = mapped_column(String(300), default="")
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    grid_code: Mapped[str] = mapped_column(String(15), index=True)
    street_code: Mapped[str] = mapped_column(String(9), index=True)
    community_code: Mapped[str] = mapped_column(String(12))
    component_code: Mapped[str | None] = mapped_column(String(17), nullable=True)
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"), nullable=True, index=True)
    suggested_department_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    pending: Mapped[str | None] = mapped_column(String(10), nullable=True)
    pending_payload: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    previous_status: Mapped[str | None] = mapped_column(String(20), nullable=True)
    reporter: Mapped[str] = mapped_column(String(64), default="")
    photos: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    registered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True, index=True)
    disposed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    stage: Mapped[str | None] = mapped_column(String(10), nullable=True)
    stage_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    deadline_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    warn_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    sla_state: Mapped[int] = mapped_column(Integer, default=0)
    bundle_deadline_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    dispose_limit_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    suspended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    suspended_until: Mapped[str | None] = mapped_column(String(10), nullable=True)
    postpone_count: Mapped[int] = mapped_column(Integer, default=0)
    postpone_hours: Mapped[float] = mapped_column(Float, default=0.0)
    rework_count: Mapped[int] = mapped_column(Integer, default=0)
    return_count: Mapped[int] = mapped_column(Integer, default=0)
    supervise_count: Mapped[int] = mapped_column(Integer, default=0)
    close_type: Mapped[str | None] = mapped_column(String(10), nullable=True)
    on_time: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=1)

    __table_args__ = (
        Index("ix_cases_sla_deadline", "sla_state", "deadline_at"),
        Index("ix_cases_warn_at", "sla_state", "warn_at"),
        # covers the department evaluation (综合评价): one index range per department and window, read in
        # department order (no sort of the window before aggregating), the index alone holding every column
        Index("ix_cases_evaluation", "department_id", "dispatched_at", "status", "disposed_at", "closed_at",
              "cancelled_at", "bundle_deadline_at", "rework_count", "postpone_count"),
    )


class Event(Base):
    """An immutable event row (事件流水): the audit record and the outbox of the bus in one.

    Rows are hash-chained: `hash = sha256(prev_hash + canonical(row))`. Their ids follow the chain head, so
    they are committed in id order without gaps: the outbox keeps only the last id on the Redis stream
    (`OutboxPosition`); the rows after it are sent, in id order, when Redis is back.
    """

    __tablename__ = "events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    type: Mapped[str] = mapped_column(String(40))
    action: Mapped[str] = mapped_column(String(30))
    actor: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(20))
    from_status: Mapped[str | None] = mapped_column(String(20), nullable=True)
    to_status: Mapped[str | None] = mapped_column(String(20), nullable=True)
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class OutboxPosition(Base):
    """How far the outbox relay got (发件箱进度): one row (id 1), the last event id on the Redis stream."""

    __tablename__ = "outbox_position"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_event_id: Mapped[int] = mapped_column(Integer, default=0)


class AuditHead(Base):
    """The head of the hash chain (one row, id 1): last event id and hash. Locked by every writer."""

    __tablename__ = "audit_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_event_id: Mapped[int] = mapped_column(Integer, default=0)
    last_hash: Mapped[str] = mapped_column(String(64))


class Counter(Base):
    """Named counters, e.g. the daily case-number sequence per class (案卷号流水)."""

    __tablename__ = "counters"
    key: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)


class Setting(Base):
    """Small persistent key/value settings (e.g. the generated secret key, the simulator's cursor)."""

    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Camera(Base):
    """视频监控点: a camera at a street corner: location, unit grid (单元网格), source and status.

    `source` is an RTSP URL, a file path or `synthetic:<name>` (a generated street scene); it is never
    shown to viewers. `status` is `active` or `disabled`; live state (online, viewers) is the streams
    service's, published on `citywall:cameras`.
    """

    __tablename__ = "cameras"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    grid_code: Mapped[str | None] = mapped_column(String(15), nullable=True, index=True)
    source: Mapped[str] = mapped_column(String(1000))
    status: Mapped[str] = mapped_column(String(20), default="active")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=lambda: datetime.now(timezone.utc))
