"""The running context of a process: database, bus, catalog, calendar and city base data.

Service functions take their dependencies from the current context. A process (web, worker,
simulator, CLI, a test) builds one with `Context.from_config(...)` and installs it with `use(ctx)`.
"""
from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import redis as redis_lib
from sqlalchemy import select
from sqlalchemy.engine import Engine

from backend import bus
from backend.config import Config
from backend.domain.catalog import Catalog, default_catalog
from backend.domain.clock import WorkCalendar, default_calendar
from backend.domain.grid import GridIndex, Responsibilities, ResponsibilityRule
from backend.store import models as m
from backend.store.db import make_engine, reader

log = logging.getLogger(__name__)


@dataclass
class Context:
    config: Config
    engine: Engine
    catalog: Catalog
    calendar: WorkCalendar
    _redis: redis_lib.Redis | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _grid_index: GridIndex | None = None
    _responsibilities: Responsibilities | None = None
    _departments: dict | None = None

    @classmethod
    def from_config(cls, config: Config) -> "Context":
        installed = config.data_dir / "catalog.json"
        if config.catalog_file:
            catalog = Catalog.load(config.catalog_file)
        elif installed.exists():
            catalog = Catalog.load(installed)
        else:
            catalog = default_catalog()
        calendar = WorkCalendar.load(config.calendar_file) if config.calendar_file else default_calendar()
        return cls(config=config, engine=make_engine(config.effective_database_url), catalog=catalog,
                   calendar=calendar)

    # --- bus -------------------------------------------------------------------------------
    @property
    def redis(self) -> redis_lib.Redis:
        with self._lock:
            if self._redis is None:
                self._redis = bus.connect(self.config)
            return self._redis

    @cached_property
    def reader(self) -> Engine:
        """The engine for read-only work (no write lock on SQLite): `ctx.reader.connect()`."""
        return reader(self.engine)

    @cached_property
    def writes(self):
        """Group commit of this process's writes (see backend.store.groupcommit)."""
        from backend.services.errors import ServiceError
        from backend.store import rows
        from backend.store.groupcommit import GroupCommit

        lock_file = None
        database = self.engine.url.database if self.engine.dialect.name == "sqlite" else None
        if database and database != ":memory:":
            lock_file = Path(database + ".writelock")  # the writers of every process on this file queue on it
        return GroupCommit(self.engine, clean_errors=(ServiceError,), lock_file=lock_file,
                           prefetch=rows.prefetch_cases, opening=rows.case_opening)

    @cached_property
    def outbox(self):
        from backend.services.outbox import Outbox

        return Outbox(self)

    # --- base data, cached; reload() after an import -----------------------------------------
    def reload(self) -> None:
        with self._lock:
            self._grid_index = None
            self._responsibilities = None
            self._departments = None

    @property
    def grid_index(self) -> GridIndex:
        if self._grid_index is None:
            with self.reader.connect() as conn:
                rows = conn.execute(select(m.UnitGrid.code, m.UnitGrid.name, m.UnitGrid.geometry)).all()
            fc = {"type": "FeatureCollection", "features": [
                {"type": "Feature", "properties": {"grid_code": r.code, "name": r.name},
                 "geometry": json.loads(r.geometry)} for r in rows]}
            self._grid_index = GridIndex.from_geojson(fc)
        return self._grid_index

    @property
    def responsibilities(self) -> Responsibilities:
        if self._responsibilities is None:
            with self.reader.connect() as conn:
                rows = conn.execute(select(m.ResponsibilityRule).order_by(m.ResponsibilityRule.id)).all()
            self._responsibilities = Responsibilities([
                ResponsibilityRule(department_id=r.department_id, grid_prefix=r.grid_prefix,
                                   class_prefix=r.class_prefix) for r in rows])
        return self._responsibilities

    @property
    def departments(self) -> dict[int, dict]:
        if self._departments is None:
            with self.reader.connect() as conn:
                rows = conn.execute(select(m.Department.id, m.Department.code, m.Department.name,
                                           m.Department.type, m.Department.street_code)).all()
            self._departments = {r.id: {"id": r.id, "code": r.code, "name": r.name, "type": r.type,
                                        "street_code": r.street_code} for r in rows}
        return self._departments

    def close(self) -> None:
        if "writes" in self.__dict__:
            self.writes.close()
        if self._redis is not None:
            try:
                self._redis.close()
            except Exception:
                pass
        self.engine.dispose()


_current: Context | None = None
_released = False  # use(None) was called: the process gave its context up on purpose
_current_lock = threading.Lock()


def use(ctx: Context | None) -> None:
    """Install `ctx` as the process's context (None: give it up, e.g. a test's teardown)."""
    global _current, _released
    with _current_lock:
        _current = ctx
        _released = ctx is None


def current() -> Context:
    """The process's context; built from the configuration on first use when nothing was installed.

    After use(None) there is none until the next use(ctx): a background thread still finishing (a wall bridge
    being stopped) gets an error instead of building a default context that would replace the next one."""
    global _current
    ctx = _current
    if ctx is not None:
        return ctx
    with _current_lock:
        if _current is None:
            if _released:
                raise RuntimeError("no context in use: it was released (use(None)) and none installed since")
            from backend import config as cfg

            _current = Context.from_config(cfg.load())
        return _current
