"""Declarative base shared by every SQLAlchemy model (one metadata, one Alembic history)."""
from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass
