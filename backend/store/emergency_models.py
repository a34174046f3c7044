"""Tables of emergency command (应急指挥) and the video conference rooms (视频会商).

An ``Incident`` (突发事件) has its command group (``IncidentMember``, 指挥组), tasks (``IncidentTask``, each with a
deadline like a case stage), notifications (``IncidentNotification``, 业务短信 with delivery state) and
dispatched units (``IncidentUnit``, 调派力量). Its timeline is the hash-chained event rows (``events``);
``IncidentEvent`` links each row to its incident. Conference rooms (``Conference``) and their invitations
(``ConferenceParticipant``) live here too. Times are timezone-aware UTC; geometry is GeoJSON text (WGS-84).
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from backend.store.base import Base


class Incident(Base):
    """突发事件: type, level (I 特别重大 … IV 一般), location, affected area (perimeter polygon), status."""

    __tablename__ = "incidents"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(30))
    level: Mapped[str] = mapped_column(String(4))
    status: Mapped[str] = mapped_column(String(20), index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    address: Mapped[str] = mapped_column(String(300), default="")
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    grid_code: Mapped[str | None] = mapped_column(String(15), nullable=True)
    area: Mapped[dict] = mapped_column(JSON)  # {"kind", "radius_m", "geometry"}
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), nullable=True, index=True)
    plan_key: Mapped[str | None] = mapped_column(String(60), nullable=True)
    raised_by: Mapped[str] = mapped_column(String(64))
    commander: Mapped[str | None] = mapped_column(String(64), nullable=True)
    wall_mode: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    activated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    summary: Mapped[str] = mapped_column(Text, default="")


class IncidentEvent(Base):
    """Links an event row (the timeline entry) to its incident."""

    __tablename__ = "incident_events"
    event_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)


class IncidentMember(Base):
    """指挥组 member: 总指挥 (a user), 牵头单位 / 成员单位 (a department)."""

    __tablename__ = "incident_members"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    role: Mapped[str] = mapped_column(String(20))  # commander | lead | member
    name: Mapped[str] = mapped_column(String(200))
    username: Mapped[str | None] = mapped_column(String(64), nullable=True)
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"), nullable=True)


class IncidentTask(Base):
    """应急任务: one task of the plan for a department, with its deadline and 80% warning (like a case stage)."""

    __tablename__ = "incident_tasks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    code: Mapped[str] = mapped_column(String(40))
    title: Mapped[str] = mapped_column(String(200))
    dept_type: Mapped[str] = mapped_column(String(40))
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"), nullable=True)
    status: Mapped[str] = mapped_column(String(20))
    limit_value: Mapped[float] = mapped_column(Float)
    clock: Mapped[str] = mapped_column(String(20))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    deadline_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    warn_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    sla_state: Mapped[int] = mapped_column(Integer, default=0)
    done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (Index("ix_incident_tasks_due", "sla_state", "deadline_at"),)


class IncidentNotification(Base):
    """业务短信: one message sent through the gateway and its delivery state (queued/sent/delivered/failed)."""

    __tablename__ = "incident_notifications"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"), nullable=True)
    recipient: Mapped[str] = mapped_column(String(120))
    text: Mapped[str] = mapped_column(Text)
    driver: Mapped[str] = mapped_column(String(200), default="")
    state: Mapped[str] = mapped_column(String(20), index=True)
    provider_id: Mapped[str | None] = mapped_column(String(120), nullable=True)
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class IncidentUnit(Base):
    """调派力量: a unit (GPS device) sent to the incident, with distance and ETA at dispatch."""

    __tablename__ = "incident_units"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    device_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    device: Mapped[str] = mapped_column(String(100))  # "<protocol>:<identifier>"
    name: Mapped[str] = mapped_column(String(200), default="")
    unit_type: Mapped[str] = mapped_column(String(20))
    department_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[str] = mapped_column(String(20))  # dispatched | released
    lat: Mapped[float | None] = mapped_column(Float, nullable=True)
    lon: Mapped[float | None] = mapped_column(Float, nullable=True)
    distance_m: Mapped[float | None] = mapped_column(Float, nullable=True)
    eta_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    dispatched_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    released_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Conference(Base):
    """视频会商 room: title, optional incident, scheduled time; the media is the streams service's."""

    __tablename__ = "conferences"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"), nullable=True, index=True)
    scheduled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ConferenceParticipant(Base):
    """An invitation to a room: a user or a department, leader or not; joins and leaves as reported."""

    __tablename__ = "conference_participants"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conference_id: Mapped[int] = mapped_column(ForeignKey("conferences.id"), index=True)
    pid: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    username: Mapped[str | None] = mapped_column(String(64), nullable=True)
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"), nullable=True)
    leader: Mapped[bool] = mapped_column(Boolean, default=False)
    host: Mapped[bool] = mapped_column(Boolean, default=False)
    joined_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    left_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    joins: Mapped[int] = mapped_column(Integer, default=0)
