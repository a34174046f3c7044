"""Engine creation and migrations (数据库): SQLite file by default, PostgreSQL by DATABASE_URL."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine

from backend.store.groupcommit import in_group_transaction

READ_OPTION = "citywall_read"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def as_utc(t: datetime | None) -> datetime | None:
    """A stored time as an aware UTC datetime: SQLite hands back naive datetimes, and they were stored as UTC."""
    if t is None:
        return None
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


def normalise_url(url: str) -> str:
    """Accept the usual spellings of a PostgreSQL URL and use the psycopg 3 driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def make_engine(url: str, pool_size: int = 10, busy_timeout: float = 30.0) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": busy_timeout})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):  # pragma: no cover - trivial
            # Let SQLAlchemy emit BEGIN itself (below) so writers take the lock up front.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn):  # pragma: no cover - trivial
            # BEGIN IMMEDIATE: a writer holds the write lock from its first statement, so two
            # writers never deadlock on a read-then-write upgrade. A reader (see `reader`) takes a
            # plain BEGIN: a WAL snapshot that neither waits for writers nor holds them up. The group
            # commit (backend.store.groupcommit) begins its transactions on the driver itself.
            if in_group_transaction(conn):  # the group commit began it on the driver already
                return
            read = conn.get_execution_options().get(READ_OPTION)
            cur = conn.connection.dbapi_connection.cursor()
            cur.execute("BEGIN" if read else "BEGIN IMMEDIATE")
            cur.close()

        return engine
    engine = create_engine(url, pool_size=pool_size, max_overflow=20, pool_pre_ping=True)

    @event.listens_for(engine, "connect")
    def _utc_session(dbapi_conn, _record):  # pragma: no cover - trivial
        # The case tables' timestamp columns hold naive UTC, and the server converts the aware times we send
        # into the session's time zone: a server (or PGTZ) set to Asia/Shanghai would store them 8 hours off.
        dbapi_conn.execute("SET TIME ZONE 'UTC'")
        dbapi_conn.commit()

    return engine


def reader(engine: Engine) -> Engine:
    """The same engine (same pool) for read-only work: on SQLite its transactions take no write lock.

    Reads through `engine.connect()` would begin IMMEDIATE like writers and queue behind them (and a
    one-second evaluation scan would hold every writer up). Never write through a reader.
    """
    return engine.execution_options(**{READ_OPTION: True})


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision."""
    from alembic import command
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
